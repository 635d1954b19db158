"""The exceptions shared by the command lines, and how an exception becomes one line."""
from __future__ import annotations

SUMMARY_LIMIT = 300
"""Characters of an exception's message kept in a result row, a note or a log line."""


class SetupError(RuntimeError):
    """A command cannot start here (no GPU, no NVML, a bad device...); the message says
    what to do, on one line, and the command exits 2."""


def summarize(exc: BaseException, kind: str | None = None, limit: int = SUMMARY_LIMIT) -> str:
    """``kind: message`` on one line: ``kind`` defaults to the exception's type name; the
    message has its whitespace runs collapsed and is cut at ``limit`` characters; an empty
    message leaves ``kind`` alone."""
    kind = kind or type(exc).__name__
    text = " ".join(str(exc).split())[:limit]
    return f"{kind}: {text}" if text else kind
