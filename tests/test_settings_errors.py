"""The settings module's validation and the exit code each error class carries."""
import pytest

from virnucpro import errors, settings
from virnucpro.cli import main


@pytest.mark.parametrize("cls, code", [
    (errors.VirnucproError, 1), (errors.InputError, 2), (errors.SettingError, 2),
    (errors.ModelLoadError, 3), (errors.OutputError, 1), (errors.NonFiniteError, 1),
    (errors.WorkerError, 1)])
def test_each_error_class_carries_the_documented_exit_code(cls, code):
    assert cls("x").exit_code == code


def test_a_worker_error_ends_with_the_worker_own_code():
    assert errors.WorkerError("worker process 1 exited with code 3", 3).exit_code == 3


def test_rank_env_unset_and_set(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert settings.rank_env() is None
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert settings.rank_env() == (1, 4, 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert settings.rank_env() == (1, 4, 1)


@pytest.mark.parametrize("rank, world, match", [
    ("one", "2", "RANK='one': expected a whole number >= 0"),
    ("0", "0", "WORLD_SIZE='0': expected a whole number >= 1"),
    ("2", "2", "RANK='2' is not below WORLD_SIZE='2'")])
def test_a_bad_rank_setting_is_one_clear_line(monkeypatch, rank, world, match):
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", world)
    with pytest.raises(errors.SettingError, match=match):
        settings.rank_env()


def test_a_bad_rank_setting_ends_predict_with_exit_code_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RANK", "x")
    monkeypatch.setenv("WORLD_SIZE", "2")
    fa = tmp_path / "a.fa"
    fa.write_text(">a\nACGT\n")
    rc = main(["predict", str(fa), "-l", "300", "-o", str(tmp_path / "out"), "--random-weights",
               "--preset", "tiny", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == ["virnucpro: error: RANK='x': expected a whole number >= 0 (set by torchrun or by --gpus)"]
    assert not (tmp_path / "out").exists()


def test_trace_and_fault_settings_are_off_when_unset_or_empty(monkeypatch):
    monkeypatch.delenv(settings.TRACE, raising=False)
    monkeypatch.setenv(settings.TEST_FAULT, "")
    assert settings.trace_file() is None and settings.test_fault() is None
    monkeypatch.setenv(settings.TRACE, "/tmp/t")
    assert settings.trace_file() == "/tmp/t"


def test_mkl_defaults_leave_a_user_setting_alone(monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    monkeypatch.delenv("MKL_DYNAMIC", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    settings.apply_process_defaults()
    import os
    assert (os.environ["MKL_CBWR"], os.environ["MKL_DYNAMIC"]) == ("COMPATIBLE", "FALSE")
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # waiting threads sleep: no spinning against another run


@pytest.mark.parametrize("name", [settings.EARLY_WORKERS, settings.SPAWN_ONE])
def test_the_process_switches_are_off_by_default_and_take_0_or_1(monkeypatch, name):
    read = {settings.EARLY_WORKERS: settings.early_workers, settings.SPAWN_ONE: settings.spawn_one}[name]
    monkeypatch.delenv(name, raising=False)
    assert read() is False
    monkeypatch.setenv(name, "1")
    assert read() is True
    monkeypatch.setenv(name, "yes")
    with pytest.raises(errors.SettingError, match=f"{name}='yes': expected 0 or 1"):
        read()


@pytest.mark.parametrize("gpus, cpu_workers, spawns", [
    (None, None, False), ("1", None, False), ("3,", None, False), ("2", None, True), ("0,2", None, True),
    ("all", None, True), (None, 2, True)])
def test_the_fork_server_starts_only_for_a_run_that_may_start_workers(monkeypatch, gpus, cpu_workers, spawns):
    from types import SimpleNamespace

    from virnucpro import cli

    monkeypatch.delenv(settings.SPAWN_ONE, raising=False)
    assert cli._may_spawn(SimpleNamespace(gpus=gpus, cpu_workers=cpu_workers)) is spawns
