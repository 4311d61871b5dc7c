"""A progress bar on stderr for long work (tqdm): what is being done, count, frames/s and ETA.

Shown only when the stream is a terminal, unless forced (``vql.connect(progress=True)``); off
with ``progress=False`` (the CLI's ``--no-progress``). The bar is cleared when the work ends,
normally or not (an error, Ctrl-C), so nothing of it stays above the result. While it is shown,
the terminal does not echo what is typed (keys typed ahead still reach the next prompt), so
neither they nor Ctrl-C's ``^C`` are drawn after the bar, where its clearing would miss them.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

try:
    import termios
except ImportError:  # Windows: echo is left as it is
    termios = None

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit} [{elapsed}<{remaining}, {rate_fmt}]"


def is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class NoEcho:
    """Terminal echo off on stdin, while stdin is a terminal in this process's foreground (a
    background job changing it would be stopped by SIGTTOU); ``restore()`` puts it back."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.saved: list | None = None
        if termios is None:
            return
        try:
            fd = sys.stdin.fileno()
            if not os.isatty(fd):
                return
            try:
                if os.tcgetpgrp(fd) != os.getpgrp():
                    return
            except OSError:  # not this process's controlling terminal: no job control to upset
                pass
            saved = termios.tcgetattr(fd)
            quiet = list(saved)
            quiet[3] &= ~termios.ECHO  # the local modes
            termios.tcsetattr(fd, termios.TCSANOW, quiet)  # TCSANOW: keys typed ahead are kept
            self.fd, self.saved = fd, saved
        except (AttributeError, ValueError, OSError, termios.error):  # no stdin, or not a real one
            return

    def restore(self) -> None:
        if self.saved is not None:
            fd, saved, self.saved = self.fd, self.saved, None
            try:
                termios.tcsetattr(fd, termios.TCSANOW, saved)
            except (termios.error, OSError):  # stdin closed meanwhile
                pass


class Progress:
    """``with Progress(total, "frames", "labelling ...") as p: p.update(n)``.

    ``enabled``: None shows the bar when ``stream`` (default: stderr) is a terminal; True
    always; False never. A disabled bar writes nothing and imports nothing.
    """

    def __init__(self, total: int | None, unit: str = "frames", label: str = "", stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.total, self.unit, self.label = total, unit, label.rstrip(": ")
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = is_terminal(self.stream) if enabled is None else bool(enabled)
        self.done = 0
        self._bar = None
        self._echo: NoEcho | None = None
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self.label or None, unit=f" {unit}", file=self.stream, leave=False,
                             dynamic_ncols=True, mininterval=0.1,
                             bar_format=BAR_FORMAT if total and self.label else None)
            if is_terminal(self.stream):
                self._echo = NoEcho()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        """Clear the bar from the screen (tqdm's ``leave=False``) and let the terminal echo again;
        idempotent."""
        try:
            if self._bar is not None:
                bar, self._bar = self._bar, None
                bar.close()
                self.stream.flush()
        finally:
            if self._echo is not None:
                self._echo.restore()
