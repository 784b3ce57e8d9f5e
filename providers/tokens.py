"""GreenGate's own token counts, for when an upstream reports none or a client leaves mid-stream.

A real BPE tokenizer, offline: the `bpe-openai` wheel ships OpenAI's o200k_base and cl100k_base ranks (and
matches tiktoken token for token on cl100k_base). Every count says which encoding made it, since a model
outside OpenAI's family is only approximated by them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

import bpe_openai

DEFAULT_ENCODING = "o200k_base"
# Models tokenized with cl100k_base; everything newer (gpt-4o, gpt-4.1, o-series) and unknown uses o200k_base.
_CL100K_PREFIXES = ("gpt-4-", "gpt-4:", "gpt-3.5", "text-embedding-3", "text-embedding-ada")
# OpenAI's counting recipe: 3 framing tokens per message plus its role (one token in both encodings),
# and 3 that prime the reply.
MESSAGE_OVERHEAD = 4
REPLY_PRIMER = 3


class TokenCount(NamedTuple):
    tokens: int
    encoding: str


def encoding_for(model: str) -> str:
    name = model.lower().rsplit("/", 1)[-1]
    if name == "gpt-4" or name.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return DEFAULT_ENCODING


@lru_cache(maxsize=2)
def _encoding(name: str) -> bpe_openai.Encoding:
    return bpe_openai.get_encoding(name)


def count_text(text: str, model: str) -> TokenCount:
    encoding = encoding_for(model)
    tokens = len(_encoding(encoding).encode_ordinary(text)) if text else 0
    return TokenCount(tokens, encoding)


def count_messages(texts: Iterable[str], model: str) -> TokenCount:
    """Prompt tokens of a chat: each message's text plus its framing."""
    encoding = encoding_for(model)
    codec = _encoding(encoding)
    total = REPLY_PRIMER
    for text in texts:
        total += MESSAGE_OVERHEAD + (len(codec.encode_ordinary(text)) if text else 0)
    return TokenCount(total, encoding)


def embedding_input_tokens(inputs: Sequence[str] | Sequence[Sequence[int]], model: str) -> TokenCount:
    """Tokens of embedding inputs: each text counted, token-id lists by their length; no framing."""
    encoding = encoding_for(model)
    codec = _encoding(encoding)
    total = 0
    for item in inputs:
        total += len(codec.encode_ordinary(item)) if isinstance(item, str) else len(item)
    return TokenCount(total, encoding)


def split_tokens(text: str, model: str) -> list[str]:
    """The text cut at token boundaries (the demo provider streams these); joined, they give the text back."""
    codec = _encoding(encoding_for(model))
    pieces, pending = [], b""
    for token in codec.encode_ordinary(text):
        pending += codec.decode_single_token_bytes(token)
        try:
            pieces.append(pending.decode("utf-8"))
        except UnicodeDecodeError:
            continue  # a multi-byte character spans tokens: keep it whole
        pending = b""
    if pending:
        pieces.append(pending.decode("utf-8", "replace"))
    return pieces


def warm_up() -> None:
    """Load the ranks at start-up rather than inside the first request that needs them (about 0.4 s)."""
    _encoding(DEFAULT_ENCODING).encode_ordinary("warm")
