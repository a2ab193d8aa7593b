"""Every error the user can fix, with the exit code the command ends with.

The codes are the table in README.md and docs/RELIABILITY.md: 2 bad input or usage (nothing
written), 3 a model or checkpoint could not be loaded, 1 any other failure.  The CLI prints
the message on one line and exits with `exit_code`; 130 / 143 (signals) are not errors here.
"""

EXIT_FAIL, EXIT_INPUT, EXIT_MODEL = 1, 2, 3


class VirnucproError(Exception):
    """An error the user can fix; the CLI prints it on one line and exits with `exit_code`."""

    exit_code = EXIT_FAIL


class InputError(VirnucproError):
    """Bad input data (FASTA file, sequence content), usage or a setting."""

    exit_code = EXIT_INPUT


class SettingError(InputError):
    """An environment variable virnucpro reads holds a value it cannot use."""


class ModelLoadError(VirnucproError):
    """A model or checkpoint could not be found or does not fit."""

    exit_code = EXIT_MODEL


class OutputError(VirnucproError):
    """The output folder could not be written (permissions, disk full)."""


class NonFiniteError(VirnucproError):
    """A model gave NaN or infinite values: no verdict can be trusted, so nothing is written."""


class WorkerError(VirnucproError):
    """A spawned worker failed; it ends the command with the worker's own code (1 when it was killed)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAIL):
        super().__init__(message)
        self.exit_code = exit_code
