#!/usr/bin/env python
"""Why GreenGate's schemas use msgspec: parse a typical and a 100-message chat request both ways.

Equivalent models (tagged unions on role and content-part type) in msgspec and pydantic v2; best of 5 runs.

    .venv/bin/python scripts/schema_parse_bench.py
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field


class MText(msgspec.Struct, tag_field="type", tag="text"):
    text: str


class MImageURL(msgspec.Struct):
    url: str
    detail: str | None = None


class MImage(msgspec.Struct, tag_field="type", tag="image_url"):
    image_url: MImageURL


class MFunction(msgspec.Struct):
    name: str
    arguments: str


class MToolCall(msgspec.Struct):
    id: str
    function: MFunction
    type: Literal["function"] = "function"


class MSystem(msgspec.Struct, tag_field="role", tag="system"):
    content: str | list[MText]
    name: str | None = None


class MUser(msgspec.Struct, tag_field="role", tag="user"):
    content: str | list[MText | MImage]
    name: str | None = None


class MAssistant(msgspec.Struct, tag_field="role", tag="assistant"):
    content: str | list[MText] | None = None
    tool_calls: list[MToolCall] | None = None


class MTool(msgspec.Struct, tag_field="role", tag="tool"):
    content: str | list[MText]
    tool_call_id: str


class MRequest(msgspec.Struct):
    model: str
    messages: list[MSystem | MUser | MAssistant | MTool]
    temperature: float | None = None
    max_tokens: int | None = None
    stream: bool | None = None
    tools: list[dict[str, Any]] | None = None
    seed: int | None = None


class PText(BaseModel):
    type: Literal["text"]
    text: str


class PImageURL(BaseModel):
    url: str
    detail: str | None = None


class PImage(BaseModel):
    type: Literal["image_url"]
    image_url: PImageURL


PPart = Annotated[PText | PImage, Field(discriminator="type")]


class PFunction(BaseModel):
    name: str
    arguments: str


class PToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: PFunction


class PSystem(BaseModel):
    role: Literal["system"]
    content: str | list[PText]
    name: str | None = None


class PUser(BaseModel):
    role: Literal["user"]
    content: str | list[PPart]
    name: str | None = None


class PAssistant(BaseModel):
    role: Literal["assistant"]
    content: str | list[PText] | None = None
    tool_calls: list[PToolCall] | None = None


class PTool(BaseModel):
    role: Literal["tool"]
    content: str | list[PText]
    tool_call_id: str


PMessage = Annotated[PSystem | PUser | PAssistant | PTool, Field(discriminator="role")]


class PRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[PMessage]
    temperature: float | None = None
    max_tokens: int | None = None
    stream: bool | None = None
    tools: list[dict[str, Any]] | None = None
    seed: int | None = None


def requests() -> dict[str, bytes]:
    typical = {
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France? Answer in one word."},
        ],
    }
    turns: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful assistant."}]
    for i in range(99):
        turns.append({"role": "user" if i % 2 == 0 else "assistant", "content": f"Turn {i}: " + "some words " * 12})
    return {
        "typical": json.dumps(typical).encode(),
        "100-message": json.dumps({"model": "m", "messages": turns}).encode(),
    }


def best_microseconds(fn: Callable[[], object], n: int = 2000) -> float:
    fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def main() -> None:
    decoder = msgspec.json.Decoder(MRequest)
    for name, body in requests().items():
        cases: dict[str, Callable[[], object]] = {
            "msgspec decode to Struct": lambda body=body: decoder.decode(body),
            "msgspec decode + convert": lambda body=body: msgspec.convert(msgspec.json.decode(body), MRequest),
            "pydantic model_validate_json": lambda body=body: PRequest.model_validate_json(body),
            "json.loads + model_validate": lambda body=body: PRequest.model_validate(json.loads(body)),
        }
        print(f"{name} ({len(body)} bytes):")
        for label, fn in cases.items():
            print(f"  {label:30} {best_microseconds(fn):8.1f} us")


if __name__ == "__main__":
    main()
