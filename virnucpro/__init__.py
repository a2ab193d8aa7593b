"""virnucpro: viral sequence identification with DNABERT-S and ESM-2 embeddings."""
from virnucpro import settings

__version__ = "0.1.0"

settings.apply_process_defaults()  # before any matrix product: see settings.MKL_DEFAULTS
