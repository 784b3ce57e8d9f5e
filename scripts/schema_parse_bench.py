"""Parse a typical and a 100-message chat request with msgspec and pydantic v2 (equivalent models)."""
import json, time
from typing import Any, Literal, Union, Annotated
import msgspec
import pydantic
from pydantic import BaseModel, ConfigDict, Field

# ---- msgspec
class MText(msgspec.Struct, tag_field="type", tag="text", forbid_unknown_fields=True): text: str
class MImgUrl(msgspec.Struct): url: str; detail: str | None = None
class MImage(msgspec.Struct, tag_field="type", tag="image_url"): image_url: MImgUrl
class MFn(msgspec.Struct): name: str; arguments: str
class MToolCall(msgspec.Struct): id: str; function: MFn; type: Literal["function"] = "function"
class MSystem(msgspec.Struct, tag_field="role", tag="system"): content: str | list[MText]; name: str | None = None
class MUser(msgspec.Struct, tag_field="role", tag="user"): content: str | list[MText | MImage]; name: str | None = None
class MAssistant(msgspec.Struct, tag_field="role", tag="assistant"): content: str | list[MText] | None = None; tool_calls: list[MToolCall] | None = None
class MTool(msgspec.Struct, tag_field="role", tag="tool"): content: str | list[MText]; tool_call_id: str
class MReq(msgspec.Struct):
    model: str; messages: list[MSystem | MUser | MAssistant | MTool]
    temperature: float | None = None; max_tokens: int | None = None; stream: bool | None = None
    tools: list[dict[str, Any]] | None = None; seed: int | None = None

# ---- pydantic
class PText(BaseModel): type: Literal["text"]; text: str
class PImgUrl(BaseModel): url: str; detail: str | None = None
class PImage(BaseModel): type: Literal["image_url"]; image_url: PImgUrl
Part = Annotated[Union[PText, PImage], Field(discriminator="type")]
class PFn(BaseModel): name: str; arguments: str
class PToolCall(BaseModel): id: str; type: Literal["function"] = "function"; function: PFn
class PSystem(BaseModel): role: Literal["system"]; content: str | list[PText]; name: str | None = None
class PUser(BaseModel): role: Literal["user"]; content: str | list[Part]; name: str | None = None
class PAssistant(BaseModel): role: Literal["assistant"]; content: str | list[PText] | None = None; tool_calls: list[PToolCall] | None = None
class PTool(BaseModel): role: Literal["tool"]; content: str | list[PText]; tool_call_id: str
Msg = Annotated[Union[PSystem, PUser, PAssistant, PTool], Field(discriminator="role")]
class PReq(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str; messages: list[Msg]
    temperature: float | None = None; max_tokens: int | None = None; stream: bool | None = None
    tools: list[dict[str, Any]] | None = None; seed: int | None = None

typical = {"model": "gpt-4o-mini", "temperature": 0.2, "messages": [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France? Answer in one word."}]}
turns = [{"role": "system", "content": "You are a helpful assistant."}]
for i in range(99):
    turns.append({"role": "user" if i % 2 == 0 else "assistant", "content": f"Turn {i}: " + "some words here " * 12})
long = {"model": "gpt-4o-mini", "messages": turns}

def bench(fn, n):
    fn()
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n): fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6

mdec = msgspec.json.Decoder(MReq)
for name, doc in (("typical", typical), ("100-message", long)):
    body = json.dumps(doc).encode()
    print(f"{name} ({len(body)} bytes):")
    print(f"  msgspec decode to Struct      {bench(lambda: mdec.decode(body), 2000):8.1f} us")
    print(f"  msgspec decode + convert      {bench(lambda: msgspec.convert(msgspec.json.decode(body), MReq), 2000):8.1f} us")
    print(f"  pydantic model_validate_json  {bench(lambda: PReq.model_validate_json(body), 2000):8.1f} us")
    print(f"  json.loads + model_validate   {bench(lambda: PReq.model_validate(json.loads(body)), 2000):8.1f} us")
