"""The error hierarchy: one root, one subclass per stage.

Every error a user can cause is a :class:`VqlError`; library exceptions are wrapped at the
boundary with ``raise ... from e`` so the message is ours and the cause is kept.
"""

from __future__ import annotations


class VqlError(Exception):
    """Root of every error vql raises on purpose."""


class ParseError(VqlError):
    """The text is not valid VQL."""


class BindError(VqlError):
    """The query names something that does not exist or has the wrong type."""


class PlanError(VqlError):
    """The planner cannot build a plan for the query."""


class PlanFormatError(PlanError):
    """A stored plan is not a well-formed plan of this format (``planner/plan_format.py``)."""


class ExecutionError(VqlError):
    """Running a plan failed (decoding, storage, interruption)."""


class VideoError(ExecutionError):
    """A video file is missing, unreadable or corrupt."""


class ModelError(VqlError):
    """A reference model is missing, malformed, unsupported or misused."""


class UnsupportedOpError(ModelError):
    """A model graph uses an operation the executor does not implement."""


def internal_error(e: BaseException) -> str:
    """One line for an exception that is not a :class:`VqlError` (a bug in vql): what the shell
    and the command line print instead of a traceback.

    >>> internal_error(KeyError("x"))
    "internal error: KeyError: 'x' (a bug in vql; please report it with the statement)"
    """
    text = " ".join(str(e).split()) or "(no message)"
    return f"internal error: {type(e).__name__}: {text} (a bug in vql; please report it with the statement)"
