"""Azure OpenAI: OpenAI's wire format behind per-deployment URLs, an `api-key` header and content filters.

Differences from OpenAI, each a hook override of `OpenAIAdapter`:
- URL: {endpoint}/openai/deployments/{deployment}/chat/completions?api-version={version} (…/embeddings for
  embeddings). A deployment's `upstream_model` is the Azure deployment name; the API version comes from
  Target.options.
- Auth: `api-key: <key>`; never an Authorization header (Azure reads a bearer token as Entra ID, not a key).
- Body: OpenAI's, `model` kept (set to the deployment name): Azure routes by the URL and ignores it.
- Streaming usage: `stream_options` exists from api-version 2024-09-01-preview (and GA 2024-10-21); older
  versions refuse the field, so it is not sent to them and the pipeline counts the tokens itself.
- Content filters: `prompt_filter_results`/`content_filter_results` fields are dropped by the typed schemas;
  the filter's annotation-only chunks (empty `object`, no `delta`) are skipped; a prompt the filter blocks
  (400, code `content_filter`) is a clear 400 to the client, never retried elsewhere: another provider
  answering it would sidestep the organisation's content policy.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from gateway.schemas import ChatChunk, ChatRequest
from providers.adapters.base import EnvConfig, ProviderSpec
from providers.adapters.openai import OpenAIAdapter
from providers.types import ProviderError, Target

API_VERSION_OPTION = "AZURE_OPENAI_API_VERSION"
DEFAULT_API_VERSION = "2024-10-21"  # the GA version current when this adapter was written
# The first API version that accepts stream_options (include_usage).
STREAM_USAGE_SINCE = "2024-09-01"
_DATED = re.compile(r"^(\d{4}-\d{2}-\d{2})(-preview)?$")


def api_version(target: Target) -> str:
    return target.options.get(API_VERSION_OPTION) or DEFAULT_API_VERSION


def streams_usage(version: str) -> bool:
    """Whether this API version accepts stream_options; versions not dated ("preview", "latest") are newer."""
    dated = _DATED.match(version)
    return dated is None or dated.group(1) >= STREAM_USAGE_SINCE


class _Annotation(msgspec.Struct):
    """What tells a content-filter annotation chunk apart: Azure sends them with an empty `object`.

    Required, so an error event (which has none) is never mistaken for one.
    """

    object: str


class _FilterError(msgspec.Struct):
    code: str | None = None
    message: str = ""


class _FilterErrorBody(msgspec.Struct):
    error: _FilterError


_annotation = msgspec.json.Decoder(_Annotation)
_filter_error = msgspec.json.Decoder(_FilterErrorBody)


class AzureOpenAIAdapter(OpenAIAdapter):
    kind = "azure"

    def url(self, target: Target) -> str:
        return self._deployment_url(target, "chat/completions")

    def embeddings_url(self, target: Target) -> str:
        return self._deployment_url(target, "embeddings")

    def _deployment_url(self, target: Target, operation: str) -> str:
        # Tolerate an endpoint pasted with Azure's /openai path already on it.
        endpoint = target.base_url.rstrip("/").removesuffix("/openai")
        deployment = quote(target.upstream_model, safe="")
        version = quote(api_version(target), safe="")
        return f"{endpoint}/openai/deployments/{deployment}/{operation}?api-version={version}"

    def headers(self, target: Target) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if target.api_key:
            headers["api-key"] = target.api_key
        return headers

    def payload(self, request: ChatRequest, target: Target, *, stream: bool) -> dict[str, Any]:
        payload = super().payload(request, target, stream=stream)
        if stream and not streams_usage(api_version(target)):
            # Older versions answer 400 "Unrecognized request argument" to it; usage may still come, else the
            # pipeline counts.
            payload.pop("stream_options", None)
        return payload

    def error(self, status: int, body: bytes, headers: httpx.Headers, target: Target) -> ProviderError:
        if status == 400:
            try:
                detail = _filter_error.decode(body).error
            except msgspec.DecodeError:
                detail = None
            if detail is not None and detail.code == "content_filter":
                return ProviderError(
                    400,
                    "The prompt was blocked by the content filter of the Azure OpenAI provider "
                    f"'{target.provider_name}': {detail.message[:300] or 'no detail given.'}",
                    retryable=False,
                    code="content_filter",
                )
        return super().error(status, body, headers, target)

    def parse_chunk(self, data: bytes, target: Target) -> ChatChunk | None:
        try:
            return super().parse_chunk(data, target)
        except ProviderError:
            # Only on a failure, so a normal chunk is decoded once: an annotation chunk is not relayed.
            try:
                if _annotation.decode(data).object == "":
                    return None
            except msgspec.DecodeError:
                pass
            raise


SPEC: ProviderSpec = ProviderSpec(
    kind="azure",
    label="Azure OpenAI",
    adapter=AzureOpenAIAdapter,
    env=EnvConfig(
        api_key="AZURE_OPENAI_API_KEY",
        # https://<resource>.openai.azure.com; required: there is no default endpoint.
        base_url="AZURE_OPENAI_ENDPOINT",
        default_base_url="",
        # model=deployment pairs: Azure serves only the deployments named.
        models="AZURE_OPENAI_DEPLOYMENTS",
        default_models=(),
        options={API_VERSION_OPTION: DEFAULT_API_VERSION},
    ),
    # ecologits lists Azure's OpenAI models (gpt-35-turbo too) under OpenAI; genai-prices has Azure's own table.
    ecologits_provider="openai",
    price_provider="azure",
)
