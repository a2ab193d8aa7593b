"""virnucpro: viral sequence identification with DNABERT-S and ESM-2 embeddings."""

__version__ = "0.1.0"
