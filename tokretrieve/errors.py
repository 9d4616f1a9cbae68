"""Exceptions raised on bad input.

Every public entry point turns bad input into one of these, with a message that names the
input and says what to do, so that CLI users see one clear line instead of a traceback.
"""

import numbers


class TokretrieveError(ValueError):
    """Base class: the input (a file, a model name, an index, a parameter) is not usable."""


class CorpusError(TokretrieveError):
    """A corpus or query file is malformed: the message names the file and line."""


class ModelLoadError(TokretrieveError):
    """A model name could not be resolved or loaded."""


class IndexFormatError(TokretrieveError):
    """An index folder is missing, damaged, or written by another format version or model."""


class IndexBusyError(TokretrieveError):
    """Another process holds the index's writer lock (one writer at a time)."""


class EmptyQueryError(TokretrieveError):
    """A query is empty or tokenizes to no usable token."""


def check_count(value: object, name: str) -> int:
    """Reject a count (hits, bag size, tokens shown, threads) that is not a positive integer,
    naming the parameter, before any work is done with it. numpy integers are integers too
    (numbers.Integral)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise TokretrieveError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
