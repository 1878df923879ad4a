"""One way to say what is wrong with data that failed pydantic validation (requests, configs, artifacts, traffic files).

No tierroute imports: anything in ``app`` may use it.
"""

from __future__ import annotations

from pydantic import ValidationError


def first_error(e: ValidationError) -> tuple[str, str]:
    """(location, message) of the first error; the location is dotted (``messages.0.role``), "" at the top level."""
    err = e.errors()[0]
    return ".".join(str(p) for p in err["loc"]), err["msg"]


def describe(e: ValidationError) -> str:
    """The first error as ``loc: msg`` (just ``msg`` at the top level)."""
    loc, msg = first_error(e)
    return f"{loc}: {msg}" if loc else msg
