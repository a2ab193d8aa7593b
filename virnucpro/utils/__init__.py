"""Support code that is not part of the prediction pipeline itself (GPU monitoring)."""
