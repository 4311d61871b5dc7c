"""Scripts -> statements: split on ``;`` where DuckDB's tokenizer would, outside quotes
(``'...'``, ``E'...'``, ``"..."``, ``$tag$...$tag$``) and comments (``--``, nested ``/* */``)."""

from __future__ import annotations

import re


def split_statements(script: str) -> list[str]:
    """Split on ``;`` outside quotes and comments; drop empty statements.

    >>> split_statements("SELECT ';' ; -- a; comment\\nSHOW VIDEOS;")
    ["SELECT ';'", '-- a; comment\\nSHOW VIDEOS']
    """
    return [s.strip() for s in split_raw(script) if strip_comments(s).strip()]


def ends_statement(text: str) -> bool:
    """Whether the text ends with a complete statement: a ';' followed only by comments or blanks.

    >>> ends_statement("select 1; -- done"), ends_statement("select 1 -- ;"), ends_statement("select ';'")
    (True, False, False)
    """
    pieces = split_raw(text)
    return len(pieces) > 1 and not strip_comments(pieces[-1]).strip() and bool(strip_comments(text).strip())


_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")


def _word_char(c: str) -> bool:
    """Whether ``c`` continues an identifier or a number (then ``$`` or ``E'`` start no string)."""
    return c.isalnum() or c in "_$" or c >= "\x80"


def _segments(script: str):
    """``(kind, start, end)`` for each piece of the script, as DuckDB's tokenizer sees it:
    ``"quoted"`` ('...', E'...' with backslash escapes, "...", $tag$...$tag$), ``"comment"``
    (``--`` to the end of the line, ``/* */`` nested), ``";"``, and ``"code"`` (the rest, one
    character at a time). Unterminated quotes and comments run to the end."""
    i, n = 0, len(script)
    while i < n:
        c = script[i]
        start = i
        after_word = i > 0 and _word_char(script[i - 1])
        if c in "'\"" or (c in "eE" and script.startswith("'", i + 1) and not after_word):
            backslash = c in "eE"
            j = i + 2 if backslash else i + 1
            quote = "'" if backslash else c
            while j < n:
                if backslash and script[j] == "\\":
                    j += 2
                elif script[j] == quote:
                    if j + 1 < n and script[j + 1] == quote:
                        j += 2
                        continue
                    break
                else:
                    j += 1
            i = min(j + 1, n)
            yield "quoted", start, i
        elif c == "$" and not after_word and (m := _DOLLAR_TAG.match(script, i)):
            j = script.find(m.group(), m.end())
            i = n if j < 0 else j + len(m.group())
            yield "quoted", start, i
        elif script.startswith("--", i):
            j = script.find("\n", i)
            i = n if j < 0 else j + 1
            yield "comment", start, i
        elif script.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if script.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif script.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            yield "comment", start, i
        else:
            i += 1
            yield (";" if c == ";" else "code"), start, i


def split_raw(script: str) -> list[str]:
    """The pieces between top-level ``;`` (the last one is what follows the last ``;``); quotes
    and comments as DuckDB reads them (:func:`_segments`).

    >>> split_raw("SELECT $$a;b$$; SELECT E'it\\\\'s; fine'")
    ['SELECT $$a;b$$', " SELECT E'it\\\\'s; fine'"]
    """
    out, start = [], 0
    for kind, i, end in _segments(script):
        if kind == ";":
            out.append(script[start:i])
            start = end
    out.append(script[start:])
    return out


def strip_comments(text: str) -> str:
    """The text with its comments replaced by a blank (quotes kept: ``'--'`` is no comment)."""
    return "".join(" " if kind == "comment" else text[i:end] for kind, i, end in _segments(text))


def names_in(text: str) -> set[str]:
    """The words of a statement that can name something, lowercased: outside comments and
    strings; a quoted identifier counts as one word.

    >>> sorted(names_in("SELECT 'cam' FROM \\"My Cam\\" -- cam2\\nWHERE x"))
    ['from', 'my cam', 'select', 'where', 'x']
    """
    words: set[str] = set()
    code: list[str] = []
    for kind, i, end in _segments(text):
        piece = text[i:end]
        if kind == "quoted" and piece.startswith('"'):
            words.add(piece[1:-1].replace('""', '"').lower())
            code.append(" ")
        else:
            code.append(piece if kind in ("code", ";") else " ")
    return words | {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", "".join(code))}
