"""virnucpro: viral sequence identification with DNABERT-S and ESM-2 embeddings."""
import os

__version__ = "0.1.0"

# A resumed run recomputes ranges and must match an uninterrupted run to the last bit
# (docs/RELIABILITY.md), so CPU results may not depend on the number of threads.  MKL's
# default GEMMs do on some code paths (its AVX2 branch, measured: sgemm with 1, 3, 4 or 8
# threads differs from 2 in the last bit), and MKL_DYNAMIC lets it change that number at run
# time.  Strict CNR mode makes ?gemm bitwise reproducible for any thread count.  MKL reads
# both at its first call, hence here, before any matrix product; a user's own settings win.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
