"""A progress line on stderr for long work: count, rate and ETA; silent when not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress(total, "frames") as p: p.update(n)`` redraws at most ten times a second."""

    def __init__(self, total: int | None, unit: str = "frames", label: str = "", stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.total, self.unit, self.label = total, unit, label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.done = 0
        self.start = time.perf_counter()
        self._drawn = 0.0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._draw(final=True)
            self.stream.write("\n")
            self.stream.flush()

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.enabled and time.perf_counter() - self._drawn >= 0.1:
            self._draw()

    def _draw(self, final: bool = False) -> None:
        self._drawn = time.perf_counter()
        rate = self.rate
        text = f"{self.label}{self.done}"
        if self.total:
            text += f"/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%)"
            if rate > 0 and not final:
                text += f", ETA {(self.total - self.done) / rate:.0f} s"
        else:
            text += f" {self.unit}"
        text += f", {rate:.1f} {self.unit}/s"
        self.stream.write("\r" + text.ljust(70))
        self.stream.flush()
