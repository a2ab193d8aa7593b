class VirnucproError(Exception):
    """An error the user can fix; the CLI prints it on one line and exits non-zero."""


class InputError(VirnucproError):
    """Bad input data (FASTA file, sequence content)."""


class ModelLoadError(VirnucproError):
    """A model or checkpoint could not be found or does not fit."""
