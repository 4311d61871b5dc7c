"""File names from statements, checked before the operating system sees them.

A path in ``CREATE VIDEO ... FROM '...'`` or ``CREATE FUNCTION ... MODEL '...'`` is user text:
a NUL byte, a lone surrogate, an over-long name would otherwise surface as ``ValueError``,
``UnicodeEncodeError`` or ``OSError`` from deep inside a library. :func:`checked_path` turns each
into the caller's own :class:`~vql.errors.VqlError` naming the problem.

>>> checked_path("clips/street.mp4", "video file", VideoError)
PosixPath('clips/street.mp4')
>>> checked_path("a\\x00b.mp4", "video file", VideoError)
Traceback (most recent call last):
vql.errors.VideoError: video file path contains a NUL byte (at character 2): 'a\\x00b.mp4'
"""

from __future__ import annotations

from pathlib import Path

from vql.errors import VideoError, VqlError

NAME_MAX = 255  # bytes in one path component (Linux, macOS, Windows alike)
PATH_MAX = 4095  # bytes in a whole path (Linux's 4096 with its terminating NUL)

__all__ = ["NAME_MAX", "PATH_MAX", "checked_path"]


def _shown(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def checked_path(text: str, what: str, error: type[VqlError]) -> Path:
    """``text`` as a :class:`~pathlib.Path`, or ``error`` saying why the
    operating system could not take it: empty, a NUL byte, not encodable as UTF-8 (a lone
    surrogate), a component over :data:`NAME_MAX` bytes or the whole over :data:`PATH_MAX`, a
    ``~user`` with no home folder."""
    if not text:
        raise error(f"{what} path is empty")
    if "\x00" in text:
        raise error(f"{what} path contains a NUL byte (at character {text.index(chr(0)) + 1}): {_shown(text)}")
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise error(f"{what} path is not valid text: a lone surrogate {text[e.start]!r} at character "
                    f"{e.start + 1}: {_shown(text)}") from e
    if len(encoded) > PATH_MAX:
        raise error(f"{what} path is too long: {len(encoded)} bytes, at most {PATH_MAX}: {_shown(text)}")
    for part in text.split("/"):
        if len(part.encode("utf-8")) > NAME_MAX:
            raise error(f"{what} path has a name too long: {len(part.encode('utf-8'))} bytes, at most "
                        f"{NAME_MAX} per file or folder name: {_shown(part)}")
    if text.startswith("~"):
        try:
            Path(text).expanduser()
        except RuntimeError as e:  # '~nosuchuser/...', or no home folder at all
            raise error(f"{what} path {_shown(text)}: no home folder for {text.split('/')[0]!r}") from e
    return Path(text)


def is_pattern(text: str) -> bool:
    """Whether a video path is a pattern naming a video set (``*``, ``?`` or ``[...]``).

    >>> is_pattern("footage/*.mp4"), is_pattern("street.mp4")
    (True, False)
    """
    return any(c in text for c in "*?[")


def member_name(set_name: str, path: str, taken: set[str]) -> str:
    """A member video's name in a set: the set's name and the file's name without its
    extension, as an identifier (lower case, other characters ``_``), numbered when taken.

    >>> member_name("cams", "/footage/Gate 1.mp4", set())
    'cams_gate_1'
    >>> member_name("cams", "/other/gate-1.avi", {"cams_gate_1"})
    'cams_gate_1_2'
    """
    name = "".join(c if c.isascii() and c.isalnum() else "_" for c in f"{set_name}_{Path(path).stem}".lower())
    i = 1
    while (candidate := name if i == 1 else f"{name}_{i}") in taken:
        i += 1
    return candidate
