"""Tasks for tests/test_ray.py that Ray workers import (the test folder is on their PYTHONPATH)."""

from __future__ import annotations

import os


def dies_once(marker: str) -> str:
    """Kills its worker process the first time (leaving ``marker``), succeeds when retried."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return "ok"


def always_dies(*args) -> None:
    os._exit(1)


def gpu_ids() -> tuple[list, int]:
    """The GPUs Ray assigned the task running this, and its worker process."""
    import ray

    return [str(i) for i in ray.get_gpu_ids()], os.getpid()
