"""GreenGate's own token count, used where an upstream reports no usage and by the demo provider."""

from __future__ import annotations

import re
from typing import Any

_PIECES = re.compile(r"\w+|[^\w\s]")
# The same pieces, each carrying the whitespace before it, so that joining them gives the text back.
_SPACED_PIECES = re.compile(r"\s*(?:\w+|[^\w\s])")
MESSAGE_OVERHEAD = 3  # role and separators, as chat formats add per message


def tokenize(text: str) -> list[str]:
    return _PIECES.findall(text)


def tokenize_spaced(text: str) -> list[str]:
    return _SPACED_PIECES.findall(text)


def count_tokens(text: str) -> int:
    return len(_PIECES.findall(text))


def message_text(content: Any) -> str:
    """The text of a message's content, whether a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def count_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(count_tokens(message_text(m.get("content"))) + MESSAGE_OVERHEAD for m in messages)
