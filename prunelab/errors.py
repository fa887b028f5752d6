"""Errors that mean "the user asked for something we cannot do".

The CLI turns any `PrunelabError` into a one-paragraph message and exit code 2; everything else is a bug and keeps
its traceback.
"""


class PrunelabError(Exception):
    """Bad input: the message says what was wrong, where, and what is allowed."""


class ConfigError(PrunelabError):
    """A config file or override that does not validate."""


class ModelError(PrunelabError):
    """A model that cannot be found, loaded or pruned."""


class DataError(PrunelabError):
    """Benchmark data that is missing, malformed or empty."""


class ResultsError(PrunelabError):
    """A results directory that cannot be used for this experiment."""
