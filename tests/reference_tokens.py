"""Reference token counts for assertions: tiktoken's own implementation over OpenAI's official o200k_base ranks.

The ranks file comes from the bpe-openai wheel and is checked against the hash tiktoken itself expects, so the
reference shares no code with GreenGate's counter (bpe-openai's Rust BPE).
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path

import tiktoken
from tiktoken.load import load_tiktoken_bpe
from tiktoken_ext import openai_public

O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
PER_MESSAGE = 4  # OpenAI's counting recipe: 3 framing tokens plus the role's one token
PRIMER = 3


@cache
def o200k() -> tiktoken.Encoding:
    raw = gzip.decompress(resources.files("bpe_openai.data").joinpath("o200k_base.tiktoken.gz").read_bytes())
    assert hashlib.sha256(raw).hexdigest() == O200K_SHA256
    path = Path(tempfile.mkdtemp()) / "o200k_base.tiktoken"
    path.write_bytes(raw)
    return tiktoken.Encoding(
        name="o200k_base_reference",
        pat_str=_o200k_pattern(),
        mergeable_ranks=load_tiktoken_bpe(str(path), expected_hash=O200K_SHA256),
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    )


def _o200k_pattern() -> str:
    # tiktoken builds the pattern inside o200k_base(), which would also download the ranks; rebuild it alike.
    import inspect
    import re

    source = inspect.getsource(openai_public.o200k_base)
    parts = re.findall(r'r"""(.*?)"""', source, re.DOTALL)
    return "|".join(parts)


def tokens(text: str) -> int:
    return len(o200k().encode_ordinary(text))


def prompt_tokens(*texts: str) -> int:
    return sum(tokens(t) + PER_MESSAGE for t in texts) + PRIMER
