"""vql: a declarative query engine for video.

The package is one namespace: ``vql`` (language, API, CLI), ``vql.planner``, ``vql.engine`` and
``vql.udfs``; each lives in its own top-level folder of the source tree.
"""

from __future__ import annotations

from vql.errors import (
    BindError,
    ExecutionError,
    ModelError,
    ParseError,
    PlanError,
    UnsupportedOpError,
    VideoError,
    VqlError,
)

__version__ = "0.1.0"

__all__ = [
    "BindError",
    "ExecutionError",
    "ModelError",
    "ParseError",
    "PlanError",
    "UnsupportedOpError",
    "VideoError",
    "VqlError",
    "__version__",
]

from vql.api import Connection, Result, connect  # noqa: E402  (after the errors it uses)

__all__ += ["Connection", "Result", "connect"]
