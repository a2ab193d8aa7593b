"""Memory of reading and translating: peak RSS follows the largest record, not the input."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import ROOT
from test_inputs import cli_peak_mb


def peak_rss_of_reading(path: Path) -> float:
    code = ("import resource, sys\nfrom virnucpro.fasta import FastaReader\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "n = sum(len(r.seq) for r in FastaReader(sys.argv[1]))\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, n)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[0])


def test_reading_costs_about_the_largest_record(tmp_path):
    rng = np.random.default_rng(0)
    one_line = tmp_path / "one_line.fa"
    one_line.write_bytes(b">big\n" + np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, 50_000_000)].tobytes())
    assert peak_rss_of_reading(one_line) < 3 * 50  # MB above the interpreter with its imports
    tiny = tmp_path / "tiny.fa"
    tiny.write_bytes(b"".join(b">r%d\nACGTACGTAC\n" % i for i in range(100_000)))
    assert peak_rss_of_reading(tiny) < 40


def write_random_fasta(path: Path, mbp: int) -> None:
    """Records of 1 Mbp in lines of 100; every twentieth has no T, so all its six frames are
    stop-free and the ORF files are written at length too."""
    rng = np.random.default_rng(mbp)
    with open(path, "wb") as f:
        for r in range(mbp):
            alphabet = np.frombuffer(b"ACG" if r % 20 == 0 else b"ACGT", np.uint8)
            lines = np.full((10_000, 101), ord("\n"), np.uint8)
            lines[:, :100] = alphabet[rng.integers(0, len(alphabet), 1_000_000)].reshape(-1, 100)
            f.write(b">r%d\n" % r + lines.tobytes())


def peaks_at_20_and_200_mbp(tmp_path: Path, measure) -> dict[int, float]:
    """measure(path, mbp) -> peak MB, on generated inputs of 20 and 200 Mbp (each removed after):
    ten times the input, where holding it or its 400,000 chunks would show as hundreds of MB."""
    peaks = {}
    for mbp in (20, 200):
        path = tmp_path / f"random{mbp}.fa"
        write_random_fasta(path, mbp)
        try:
            peaks[mbp] = measure(path, mbp)
        finally:
            path.unlink()
    return peaks


def test_orfs_peak_rss_does_not_grow_with_the_input(tmp_path):
    def measure(path, mbp):
        rc, err, peak = cli_peak_mb("orfs", str(path), "-l", "500", "-o", str(tmp_path / f"o{mbp}"), timeout=600)
        assert rc == 0, err
        assert f"{mbp} sequences, {mbp * 2000} chunks" in err
        return peak

    peaks = peaks_at_20_and_200_mbp(tmp_path, measure)
    assert (tmp_path / "o200" / "orfs.faa").stat().st_size > 8e6
    assert peaks[200] < 1.3 * peaks[20] + 50, peaks


PREPARE = ("import resource, sys\nfrom pathlib import Path\n"
           "from virnucpro.inputs import StageClock, prepare, read_inputs\n"
           "data = prepare(read_inputs([sys.argv[1]])[0], 500, StageClock(), Path(sys.argv[2]), keep_chunk_seqs=False)\n"
           "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, len(data.chunks), len(data.orfs),\n"
           "      sum(1 for _ in data.orfs), len(data.orfs[-3:]))\n")


def test_predict_reading_and_translation_peak_rss_does_not_grow_with_the_input(tmp_path):
    """predict's stages before any model (read, validate, chunk, translate) spool to disk."""
    def measure(path, mbp):
        done = subprocess.run([sys.executable, "-c", PREPARE, str(path), str(tmp_path / f"spool{mbp}")],
                              capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        peak, chunks, orfs, streamed, last = done.stdout.split()
        assert int(chunks) == mbp * 2000 and int(orfs) == int(streamed) > mbp * 600 and last == "3"
        shutil.rmtree(tmp_path / f"spool{mbp}")
        return float(peak)

    peaks = peaks_at_20_and_200_mbp(tmp_path, measure)
    assert peaks[200] < 1.3 * peaks[20] + 50 and peaks[200] < 1500, peaks
