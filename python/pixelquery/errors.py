"""Exceptions raised by PixelQuery.

Every error carries the one-line message the ``pixelquery`` command line prints after
``error:`` (what failed, then why). The classes tell the kind of failure apart and also derive
from the matching built-in exception, so ``except ValueError`` catches bad arguments.
"""

from __future__ import annotations

__all__ = [
    "PixelQueryError",
    "NotFoundError",
    "NoDataError",
    "InvalidInputError",
    "ConflictError",
    "TooLargeError",
]


class PixelQueryError(Exception):
    """Base class of every PixelQuery error (corrupt files and I/O errors are this class)."""


class NotFoundError(PixelQueryError, LookupError):
    """A warehouse, file, snapshot version, product or scene that is not there."""


class NoDataError(NotFoundError):
    """A query found nothing: no fragment covers the place and time asked for."""


class InvalidInputError(PixelQueryError, ValueError):
    """A bad argument: an option, name, date, CRS, expression or geometry PixelQuery cannot use."""


class ConflictError(PixelQueryError):
    """Another writer or existing data disagrees (a scene committed meanwhile, a different grid)."""


class TooLargeError(PixelQueryError, MemoryError):
    """The cube would not fit the size limit; narrow the query or pass ``chunks=`` for Dask."""
