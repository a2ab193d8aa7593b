"""Command line: `virnucpro orfs` and `virnucpro predict`.

Exit codes: 0 success; 2 bad input or usage (nothing written), including an output
folder in use by another run and a --resume whose inputs or options differ; 3 a model
or checkpoint could not be loaded; 1 any other failure (unwritable output, a worker
that died, out of GPU memory); 130 / 143 interrupted by SIGINT / SIGTERM (resumable).
docs/RELIABILITY.md says what --resume promises.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from virnucpro import __version__, settings, trace
from virnucpro.cli_args import build_parser
from virnucpro.errors import InputError, VirnucproError


def _check_out(out: Path, force: bool, resume: bool = False) -> None:
    from virnucpro.checkpoint import DIR

    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()) or force:
        return
    interrupted = (out / DIR / "manifest.json").is_file()
    if resume and not interrupted:
        raise InputError(f"{out}: --resume: this folder holds no virnucpro run to continue "
                         "(use --force to write into it)")
    if not resume:
        hint = "use --resume to continue the run it holds, or --force" if interrupted else "use --force"
        raise InputError(f"{out}: output folder exists and is not empty ({hint} to write into it)")


def cmd_orfs(args) -> int:
    from virnucpro import owned
    from virnucpro.fasta import FastaReader
    from virnucpro.orf_files import write_orf_files

    out = Path(args.out)
    _check_out(out, args.force)
    if args.force and (why := owned.orf_files_in_the_way(out)):
        raise InputError(f"{why}; --force replaces only the files of an earlier `virnucpro orfs`: move it away")
    reader = FastaReader(args.input)
    n = write_orf_files(out, reader, args.chunk_length)
    owned.stamp_orf_files(out)
    rna = f" ({reader.rna_bases} U read as T)" if reader.rna_bases else ""
    print(f"{reader.label}: {n.sequences} sequences{rna}, {n.chunks} chunks, {n.orfs} ORFs -> {out}", file=sys.stderr)
    return 0


def _single_compile_thread() -> None:
    """Inductor compiles in one thread per rank unless TORCHINDUCTOR_COMPILE_THREADS says otherwise:
    its default pool of compile subprocesses takes seconds to shut down when a rank exits, more
    than compiling our handful of kernels in parallel saves (docs/PERFORMANCE.md)."""
    if settings.compile_threads_given():
        return
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:  # imported already (in-process callers): the variable is read no more
        inductor.compile_threads = 1
    else:
        settings.default_compile_threads(1)


def _predict_rank(paths, out, opts, info, keep, persistent):
    """Entry point of one rank (spawned by --gpus, or started by torchrun)."""
    from virnucpro import parallel, pipeline

    _single_compile_thread()
    r = parallel.rank_from_env() or parallel.Rank()
    try:
        for line in pipeline.run(paths, out, opts, info, keep, persistent, r):
            print(line, file=sys.stderr)
    finally:
        parallel.close_group()


def _predict_worker(*job):
    """A spawned rank: a user error becomes one line and the exit code the command would give."""
    try:
        _predict_rank(*job)
    except VirnucproError as e:
        print(f"virnucpro: error: worker {settings.rank_name()}: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    trace.mark("exit")
    # Its ranges are saved as complete files and its group is closed: the interpreter's teardown
    # (torch's finalisers, a CUDA context) would only hold the launcher's join.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _rank_from_env():
    """parallel.rank_from_env without importing torch."""
    found = settings.rank_env()
    if found is None:
        return None
    from types import SimpleNamespace

    return SimpleNamespace(rank=found[0], world=found[1], is_main=found[0] == 0)


def _fingerprint(args, opts, inputs, device) -> dict:
    """What changes the results: a --resume must match all of it.  Not in it: --batch-tokens,
    the number of processes and --checkpoint-every (the range layout is kept from the first run)."""
    from virnucpro import pipeline
    from virnucpro.durable import sha256_file

    classifier = None
    if args.classifier:
        path = Path(args.classifier)
        classifier = {"path": str(path.resolve()), "sha256": sha256_file(path) if path.is_file() else None}
    rnd = f"random:{args.preset}" if args.random_weights else None
    return {"virnucpro": __version__, "chunk_length": args.chunk_length, "engine": args.engine,
            "dnabert": rnd or args.dnabert, "esm": rnd or args.esm, "classifier": classifier,
            "seed": args.seed if args.random_weights else None, "device": device.type,
            "precision": pipeline.resolve_precision(opts.precision, device),
            "compile": args.compile, "keep_intermediate": args.keep_intermediate,
            "inputs": [{"name": d.stem, "sha256": d.sha256} for d in inputs]}


def cmd_predict(args) -> int:
    from virnucpro.inputs import read_inputs

    out = Path(args.out)
    ranked = _rank_from_env()
    if ranked is None or ranked.is_main:
        _check_out(out, args.force, args.resume)
    # Every input is validated before torch is imported (seconds) and before anything is written.
    inputs = read_inputs(args.inputs)
    trace.mark("inputs_read")
    try:
        return _predict(args, out, ranked, inputs)
    finally:
        for data in inputs:
            data.release()  # the temp copies of the inputs, once every rank is done; each rank removes its spools


def _may_spawn(args) -> bool:
    """Whether the run may start workers, told before torch is imported: CPU workers, one spawned
    worker on request, or --gpus naming more than one GPU ('all' may)."""
    if args.cpu_workers is not None or settings.spawn_one():
        return True
    spec = (args.gpus or "").strip().lower()
    return spec == "all" or len([x for x in spec.split(",") if x.strip()]) > 1 or (spec.isdigit() and int(spec) > 1)


def _predict(args, out: Path, ranked, inputs) -> int:
    from virnucpro.outputs import package_commit

    if ranked is not None and ranked.world > 1:
        piped = [p for p in args.inputs if not Path(p).is_file()]
        if piped:
            raise InputError(f"{piped[0]}: under torchrun every rank reads the inputs itself, and a pipe or stdin "
                             "can be read only once; pass a regular file")

    if ranked is None and settings.early_workers() and _may_spawn(args):
        from virnucpro import forkserver

        forkserver.start()  # its workers import torch while this process does
    import torch

    from virnucpro import checkpoint, embed, parallel, pipeline

    trace.mark("torch_imported")

    reference = args.engine == "reference"
    opts = pipeline.Options(
        chunk_len=args.chunk_length, classifier=args.classifier, dnabert=args.dnabert, esm=args.esm,
        random_weights=args.random_weights, preset=args.preset, device=args.device,
        precision="fp32" if reference else args.precision,
        dna_batch_tokens=1 if reference else args.batch_tokens,
        esm_batch_tokens=2048 if reference else args.batch_tokens, row_blocks=not reference,
        seed=args.seed, progress=not args.no_progress and sys.stderr.isatty(), compile=args.compile)
    started = args.started_unix
    info = {"virnucpro_version": __version__, "commit": package_commit(), "command": sys.argv,
            "started_unix": started,
            "chunk_length": args.chunk_length, "engine": args.engine,
            "random_weights": args.random_weights, "seed": args.seed if args.random_weights else None}
    job = (inputs, out, opts, info, args.keep_intermediate, not args.no_persistent_models)
    gpus, world = None, ranked.world if ranked is not None else 1
    spawn_one = settings.spawn_one()
    if ranked is None and args.gpus is not None:
        if args.device == "cpu":
            raise InputError("--gpus needs --device cuda or auto")
        gpus = parallel.parse_gpus(args.gpus, torch.cuda.device_count())
        opts.device, world = "cuda", len(gpus)
        if world == 1 and not spawn_one:
            # One GPU needs no second process: this one is its rank.  A spawned worker would
            # start Python and import torch again, seconds before its first batch.
            torch.cuda.set_device(gpus[0])
    elif ranked is None and args.cpu_workers is not None:
        opts.device, world = "cpu", args.cpu_workers
    if ranked is not None and not ranked.is_main:
        _predict_rank(*job)  # rank 0 holds the session; the launcher stops this rank if rank 0 fails
        return 0
    fields = _fingerprint(args, opts, inputs, embed.resolve_device(opts.device))
    with checkpoint.Store(out).session(fields, {"every": args.checkpoint_every}, args.resume):
        if ranked is not None or (world == 1 and args.cpu_workers is None and not spawn_one):
            _predict_rank(*job)
        else:
            parallel.spawn(_predict_worker, job, world, gpus)
    if args.random_weights:
        print("warning: random weights were used; the scores are meaningless", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """argv None: the program itself (console script, `python -m virnucpro`), whose start-up
    counts from the process start; a list: called from Python, counted from this call."""
    started = trace.process_started_unix() if argv is None else time.time()
    trace.mark("process_start", started)
    args = build_parser().parse_args(argv)
    args.started_unix = started
    line = INTERRUPTED if args.command == "predict" else "interrupted"
    with _interruptible(line):
        try:
            return {"orfs": cmd_orfs, "predict": cmd_predict}[args.command](args)
        except VirnucproError as e:
            print(f"virnucpro: error: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt as e:
            # Saved ranges are complete files, and unwinding removed the temp files of the step in flight.
            print(line, file=sys.stderr)
            return 128 + getattr(e, "signum", signal.SIGINT)


def entry() -> None:
    """The program (console script, `python -m virnucpro`): once the outputs are flushed, exit
    without the interpreter's teardown (CUDA context, compile workers, module finalisers), which
    only costs the user seconds after the work is done."""
    rc = main()
    trace.mark("exit")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


INTERRUPTED = "interrupted: run the same command with --resume to continue"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM (what a batch scheduler sends at its time limit), raised in the main thread."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _interruptible(line: str):
    """Turn SIGINT and SIGTERM into Interrupted, so that the run unwinds: the lock is released and
    temp files are removed.  A second signal while it unwinds ends the process at once; what is saved
    stays valid, as after a kill."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit = []

    def handler(signum, frame):
        if hit:
            os.write(2, f"{line}\n".encode())
            os._exit(128 + signum)
        hit.append(signum)
        raise Interrupted(signum)

    before = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in before.items():
            if h is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(sig, h)
