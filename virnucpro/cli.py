"""Command line: `virnucpro orfs` and `virnucpro predict`.

Exit codes: 0 success; 2 bad input or usage (nothing written), including an output
folder in use by another run and a --resume whose inputs or options differ; 3 a model
or checkpoint could not be loaded; 1 any other failure (unwritable output, a worker
that died, out of GPU memory); 130 / 143 interrupted by SIGINT / SIGTERM (resumable).
docs/RELIABILITY.md says what --resume promises.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from virnucpro import __version__, trace
from virnucpro.errors import InputError, ModelLoadError, VirnucproError

EXIT_INPUT, EXIT_MODEL, EXIT_FAIL = 2, 3, 1
_spawned_workers = False

EPILOG = """\
examples:
  virnucpro orfs genome.fna -l 500 -o orfs/
  virnucpro predict genome.fna -l 500 -o results/ --classifier 500_model.pth \\
      --dnabert /models/DNABERT-S --esm ~/.cache/torch/hub/checkpoints/esm2_t36_3B_UR50D.pt
  virnucpro predict examples/sample.fna -l 300 -o out/ --random-weights --preset tiny --device cpu
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit code 2, like every other error of the program."""

    def error(self, message):
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_range(low: int, high: int):
    """An argparse type: a whole number in low..high."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}")
        return value
    return parse


# torch's generators take seeds of 64 bits; the token budget and range size are counts no run nears.
SEED = _int_range(0, 2**64 - 1)
COUNT = _int_range(1, 2**31 - 1)
WORKERS = _int_range(1, 256)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="virnucpro",
        description="Identify viral sequences in DNA with DNABERT-S + ESM-2 embeddings and the VirNucPro classifier.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"virnucpro {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    o = sub.add_parser("orfs", help="chunk sequences and write their stop-free frames (no models)",
                       description="Split every sequence into overlapping chunks of exactly L bp and write each "
                                   "stop-free frame of the six-frame translation, as the original VirNucPro does.")
    o.add_argument("input", help="FASTA file (plain or gzip; a pipe, or - for stdin)")
    o.add_argument("-l", "--chunk-length", type=int, choices=(300, 500), required=True, help="chunk length in bp")
    o.add_argument("-o", "--out", required=True, help="output folder: chunks.fa, orfs.fna, orfs.faa")
    o.add_argument("--force", action="store_true", help="write into an existing non-empty folder")

    q = sub.add_parser("predict", help="classify chunks of DNA sequences as viral or not",
                       description="Chunk, translate, embed (DNABERT-S + ESM-2) and classify. Writes, per input, "
                                   "OUT/<input stem>/ with prediction_results.txt, prediction_results_highestscore.csv, "
                                   "contig_summary.tsv, skipped.tsv and run.json.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("inputs", nargs="+", metavar="INPUT", help="FASTA files (plain or gzip)")
    q.add_argument("-l", "--chunk-length", type=int, choices=(300, 500), required=True,
                   help="chunk length in bp; use the classifier trained for it (300_model.pth / 500_model.pth)")
    q.add_argument("-o", "--out", required=True, help="output folder (one subfolder per input)")
    q.add_argument("--classifier", metavar="PATH", help="trained classifier: original .pth or virnucpro .safetensors")
    q.add_argument("--dnabert", metavar="SRC", default="zhihan1996/DNABERT-S",
                   help="DNABERT-S: HF snapshot folder, a name looked up in the HF cache, or random:<preset> "
                        "(default: %(default)s)")
    q.add_argument("--esm", metavar="SRC", default="esm2_t36_3B_UR50D",
                   help="ESM-2: fair-esm .pt file, HF snapshot folder, a name looked up in the torch-hub and HF "
                        "caches, or random:<preset> (default: %(default)s)")
    q.add_argument("--random-weights", action="store_true",
                   help="use seeded random weights of --preset shapes for all models (for testing and "
                        "benchmarking; outputs are marked as such)")
    q.add_argument("--preset", choices=("tiny", "full"), default="full",
                   help="model shapes for --random-weights: full = DNABERT-S + ESM-2 3B, tiny = small CPU shapes")
    q.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda when available")
    q.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto = bf16 on cuda, fp32 on cpu")
    q.add_argument("--batch-tokens", type=COUNT, metavar="N",
                   help="token budget per forward step (default: sized from free GPU memory, 16384 on CPU)")
    q.add_argument("--keep-intermediate", action="store_true",
                   help="also write chunks, ORFs and the 3328-d features under OUT/<stem>/intermediate/")
    q.add_argument("--force", action="store_true",
                   help="write into an existing non-empty output folder (discards the checkpoints of an earlier run)")
    q.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out (same inputs and options): finished ORF ranges are "
                        "kept, the rest is computed; starts a new run when --out holds none")
    q.add_argument("--checkpoint-every", type=COUNT, default=4096, metavar="N",
                   help="save progress at least every N ORFs per process (default: %(default)s)")
    q.add_argument("--no-progress", action="store_true", help="no progress bars, only the summary")
    q.add_argument("--seed", type=SEED, default=0, help="seed for random weights, 0..2**64-1 (default: 0)")
    q.add_argument("--gpus", metavar="SPEC",
                   help="one process per GPU: 'all', a count N (the first N), or a list such as 0,2,5")
    q.add_argument("--cpu-workers", type=WORKERS, metavar="N",
                   help="run N CPU processes the way --gpus runs GPU processes (for testing the multi-process path)")
    q.add_argument("--engine", choices=("fast", "reference"), default="fast",
                   help="reference = the original recipe (fp32, DNABERT-S one sequence per forward, ESM-2 "
                        "batches of 2048 tokens), kept as the baseline for speed comparisons")
    q.add_argument("--compile", action="store_true",
                   help="torch.compile the ESM-2 layers (fuses the small kernels; pays a one-off compile)")
    q.add_argument("--no-persistent-models", action="store_true",
                   help="reload the models for every input file (a measured baseline; slower)")
    return p


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


def _exit_code(e: VirnucproError) -> int:
    if isinstance(e, InputError):
        return EXIT_INPUT
    if isinstance(e, ModelLoadError):
        return EXIT_MODEL
    return getattr(e, "exit_code", EXIT_FAIL)


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
    """Inductor compiles in one thread per rank unless TORCHINDUCTOR_COMPILE_THREADS says otherwise.
    Its default pool of compile subprocesses took about 10 s to shut down when a rank exited
    (H200 host, 16 cores, 10 reads, kernel cache warm: 30 s -> 23 s wall), far more than compiling
    our handful of kernels in parallel saves.  With a cold cache the trade is not measured."""
    if "TORCHINDUCTOR_COMPILE_THREADS" not in os.environ:
        import torch._inductor.config

        torch._inductor.config.compile_threads = 1


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
        print(f"virnucpro: error: worker {os.environ.get('RANK')}: {e}", file=sys.stderr)
        sys.exit(_exit_code(e))
    trace.mark("exit")


def _rank_from_env():
    """parallel.rank_from_env without importing torch."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    from types import SimpleNamespace

    rank = int(os.environ["RANK"])
    return SimpleNamespace(rank=rank, world=int(os.environ["WORLD_SIZE"]), is_main=rank == 0)


def _fingerprint(args, opts, inputs, device) -> dict:
    """What changes the results: a --resume must match all of it.  Not in it: --batch-tokens,
    the number of processes and --checkpoint-every (the range layout is kept from the first run)."""
    from virnucpro import pipeline
    from virnucpro.checkpoint import sha256_file

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
            data.release()  # the temp copies of pipes; each rank removes its own spools


def _predict(args, out: Path, ranked, inputs) -> int:
    from virnucpro.outputs import package_commit

    if ranked is not None and ranked.world > 1:
        piped = [p for p in args.inputs if not Path(p).is_file()]
        if piped:
            raise InputError(f"{piped[0]}: under torchrun every rank reads the inputs itself, and a pipe or stdin "
                             "can be read only once; pass a regular file")

    import torch

    from virnucpro import checkpoint, embed, parallel, pipeline

    trace.mark("torch_imported")

    reference = args.engine == "reference"
    opts = pipeline.Options(
        chunk_len=args.chunk_length, classifier=args.classifier, dnabert=args.dnabert, esm=args.esm,
        random_weights=args.random_weights, preset=args.preset, device=args.device,
        precision="fp32" if reference else args.precision,
        dna_batch_tokens=1 if reference else args.batch_tokens,
        esm_batch_tokens=2048 if reference else args.batch_tokens,
        seed=args.seed, progress=not args.no_progress and sys.stderr.isatty(), compile=args.compile)
    started = args.started_unix
    info = {"virnucpro_version": __version__, "commit": package_commit(), "command": sys.argv,
            "started_unix": started,
            "chunk_length": args.chunk_length, "engine": args.engine,
            "random_weights": args.random_weights, "seed": args.seed if args.random_weights else None}
    job = (inputs, out, opts, info, args.keep_intermediate, not args.no_persistent_models)
    gpus, world = None, ranked.world if ranked is not None else 1
    if ranked is None and args.gpus is not None:
        if args.device == "cpu":
            raise InputError("--gpus needs --device cuda or auto")
        gpus = parallel.parse_gpus(args.gpus, torch.cuda.device_count())
        opts.device, world = "cuda", len(gpus)
    elif ranked is None and args.cpu_workers is not None:
        opts.device, world = "cpu", args.cpu_workers
    if ranked is not None and not ranked.is_main:
        _predict_rank(*job)  # rank 0 holds the session; the launcher stops this rank if rank 0 fails
        return 0
    fields = _fingerprint(args, opts, inputs, embed.resolve_device(opts.device))
    with checkpoint.Store(out).session(fields, {"every": args.checkpoint_every}, args.resume):
        if ranked is not None or (args.gpus is None and args.cpu_workers is None):
            _predict_rank(*job)
        else:
            global _spawned_workers
            _spawned_workers = True
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
            return _exit_code(e)
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
    if _spawned_workers:
        sys.exit(rc)  # multiprocessing's resource tracker would report its semaphores as leaked
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
