"""Text from records and plugins made safe to show on a terminal.

A record's strings (a condenser's name, an error message, a path) are whatever a plugin or a file held: an
ANSI escape sequence in them would recolour or clear the user's terminal, a bidi override (U+202E) would show
text in another order than it is stored. `printable` writes every control and format character as a visible
escape (`\\x1b`, `\\u202e`), keeping newlines and tabs where `multiline` allows them.
"""
from __future__ import annotations

import unicodedata


def printable(text: str, multiline: bool = True) -> str:
    keep = "\n\t" if multiline else ""
    if text.isprintable() or all(ch.isprintable() or ch in keep for ch in text):
        return text
    return "".join(ch if ch.isprintable() or ch in keep or unicodedata.category(ch) == "Zs" else _escape(ch)
                   for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
