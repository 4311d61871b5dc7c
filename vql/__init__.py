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

__all__ += ["Connection", "Result", "connect"]


def __getattr__(name: str):
    """``vql.connect`` and friends, imported on first use: ``vql --version`` and the shell's
    start do not pay for DuckDB, Arrow and the models."""
    if name in ("Connection", "Result", "connect"):
        from vql import api

        return getattr(api, name)
    raise AttributeError(f"module 'vql' has no attribute {name!r}")
