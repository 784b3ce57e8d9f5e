"""POST /v1/embeddings through a running GreenGate, over real HTTP to the mock upstream's wire formats.

The official openai SDK is the client where it can be; every answer is checked against its response type.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import httpx
import openai
import pytest
from openai.types import CreateEmbeddingResponse

from providers.adapters.azure import API_VERSION_OPTION
from providers.models import Deployment
from tests.factories import DeploymentFactory, ProviderFactory
from tests.mock_upstream import MockUpstream, count_tokens, mock_embedding
from tests.reference_tokens import tokens
from tests.test_bootstrap import bootstrap

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "embed-test"
PATH = "/v1/embeddings"
AZURE_KEY = "azure-key-0123456789abcdef"


def sdk(gateway, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=api_key, max_retries=0)


def post(gateway, key: str | None, **body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gateway.url + PATH, json={"model": MODEL, **body}, headers=headers, timeout=30)


def embeddings(response: httpx.Response) -> CreateEmbeddingResponse:
    assert response.status_code == 200, response.text
    return CreateEmbeddingResponse.model_validate(response.json())


def float32s(encoded: str) -> list[float]:
    raw = base64.b64decode(encoded)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def embedding_requests(upstream: MockUpstream) -> list[dict]:
    return [r for r in upstream.requests if r["path"].endswith(("/embeddings", "/embed"))]


def kind_route(kind: str, upstream: MockUpstream, model: str = MODEL, upstream_model: str = "", **knobs: Any):
    """A deployment of `model` on a provider of `kind`, at the mock upstream's root for that kind."""
    base = upstream.base_url(**knobs)
    options: dict[str, str] = {}
    if kind in ("azure", "cohere", "anthropic"):
        base = base.removesuffix("/v1")
    if kind == "azure":
        options = {API_VERSION_OPTION: "2024-10-21"}
    provider = ProviderFactory(kind=kind, base_url=base, api_key=AZURE_KEY if kind == "azure" else "sk-upstream-test")
    provider.options = options
    provider.save()
    return DeploymentFactory(model_name=model, provider=provider, upstream_model=upstream_model or model)


# --- The official SDK ------------------------------------------------------------------------------------------


def test_sdk_embeds_a_string_as_floats_with_the_upstream_vector_and_usage(gateway, api_key, route, upstream):
    route(MODEL)

    result = sdk(gateway, api_key).embeddings.create(model=MODEL, input="hello embeddings", encoding_format="float")

    assert [d.index for d in result.data] == [0]
    assert result.data[0].embedding == mock_embedding("hello embeddings")
    assert result.usage.prompt_tokens == result.usage.total_tokens == count_tokens("hello embeddings")
    assert result.model == MODEL
    sent = embedding_requests(upstream)[0]
    assert sent["path"] == "/v1/embeddings"
    assert sent["body"] == {"model": MODEL, "input": "hello embeddings", "encoding_format": "float"}
    assert sent["headers"]["Authorization"] == "Bearer sk-upstream-test"


def test_sdk_embeds_a_list_in_order_through_base64_which_the_upstream_never_sees(gateway, api_key, route, upstream):
    route(MODEL)
    texts = ["first text", "second", "a third, longer text"]

    # The SDK asks for base64 by default and decodes it: GreenGate made it from the upstream's floats.
    result = sdk(gateway, api_key).embeddings.create(model=MODEL, input=texts)

    assert [d.index for d in result.data] == [0, 1, 2]
    assert [d.embedding for d in result.data] == [mock_embedding(t) for t in texts]
    assert result.usage.prompt_tokens == sum(count_tokens(t) for t in texts)
    assert embedding_requests(upstream)[0]["body"]["encoding_format"] == "float"


def test_base64_is_little_endian_float32_of_the_float_answer(gateway, api_key, route):
    route(MODEL)
    texts = ["alpha", "beta"]

    floats = embeddings(post(gateway, api_key, input=texts, encoding_format="float"))
    packed = post(gateway, api_key, input=texts, encoding_format="base64")

    assert packed.status_code == 200, packed.text
    data = packed.json()["data"]
    assert all(isinstance(d["embedding"], str) for d in data)
    assert [float32s(d["embedding"]) for d in data] == [d.embedding for d in floats.data]
    # Byte for byte what OpenAI would send for these floats.
    expected = base64.b64encode(struct.pack("<8f", *mock_embedding("alpha"))).decode()
    assert data[0]["embedding"] == expected


def test_dimensions_reach_the_upstream_and_size_the_vectors(gateway, api_key, route, upstream):
    route(MODEL)

    result = sdk(gateway, api_key).embeddings.create(model=MODEL, input=["x", "y"], dimensions=3)

    assert [len(d.embedding) for d in result.data] == [3, 3]
    assert embedding_requests(upstream)[0]["body"]["dimensions"] == 3


def test_token_id_inputs_are_forwarded_to_openai_as_given(gateway, api_key, route, upstream):
    route(MODEL)

    flat = embeddings(post(gateway, api_key, input=[1, 2, 3]))
    nested = embeddings(post(gateway, api_key, input=[[1, 2], [3]]))

    assert len(flat.data) == 1 and flat.usage.prompt_tokens == 3
    assert [d.embedding for d in nested.data] == [mock_embedding([1, 2]), mock_embedding([3])]
    assert [r["body"]["input"] for r in embedding_requests(upstream)] == [[1, 2, 3], [[1, 2], [3]]]


def test_unknown_fields_are_passed_through_to_openai(gateway, api_key, route, upstream):
    route(MODEL)

    embeddings(post(gateway, api_key, input="x", user="u-1", custom_field={"a": 1}))

    body = embedding_requests(upstream)[0]["body"]
    assert (body["user"], body["custom_field"]) == ("u-1", {"a": 1})


# --- Provider kinds --------------------------------------------------------------------------------------------


def test_azure_embeds_through_the_deployment_url_with_the_api_key_header(gateway, api_key, upstream):
    kind_route("azure", upstream, upstream_model="my-embedding-deployment", require_key=AZURE_KEY)

    result = embeddings(post(gateway, api_key, input=["azure text"], dimensions=4))

    assert result.data[0].embedding == mock_embedding("azure text", 4)
    sent = embedding_requests(upstream)[0]
    assert sent["path"].endswith("/openai/deployments/my-embedding-deployment/embeddings")
    assert sent["query"] == {"api-version": "2024-10-21"}
    assert sent["headers"]["api-key"] == AZURE_KEY and "Authorization" not in sent["headers"]
    assert sent["body"] == {
        "model": "my-embedding-deployment",
        "input": ["azure text"],
        "dimensions": 4,
        "encoding_format": "float",
    }


def test_cohere_embeds_through_v2_embed_with_its_own_request_shape(gateway, api_key, upstream, ledger_row):
    kind_route("cohere", upstream, upstream_model="embed-v4.0")

    response = post(gateway, api_key, input=["cohere one", "cohere two"], dimensions=256)
    result = embeddings(response)

    assert [d.embedding for d in result.data] == [mock_embedding(t, 256) for t in ("cohere one", "cohere two")]
    assert result.usage.prompt_tokens == count_tokens("cohere one") + count_tokens("cohere two")
    sent = embedding_requests(upstream)[0]
    assert sent["path"] == "/v2/embed"
    assert sent["cohere"] == {"valid": True, "errors": []}
    assert sent["body"] == {
        "model": "embed-v4.0",
        "texts": ["cohere one", "cohere two"],
        "input_type": "search_document",
        "embedding_types": ["float"],
        "output_dimension": 256,
    }
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.prompt_tokens, entry.usage_estimated) == (result.usage.prompt_tokens, False)


def test_cohere_takes_inputs_beyond_96_in_several_calls_kept_in_order(gateway, api_key, upstream):
    kind_route("cohere", upstream, upstream_model="embed-v4.0")
    texts = [f"text number {i}" for i in range(100)]

    result = embeddings(post(gateway, api_key, input=texts))

    assert [d.index for d in result.data] == list(range(100))
    assert [d.embedding for d in result.data] == [mock_embedding(t) for t in texts]
    assert [len(r["body"]["texts"]) for r in embedding_requests(upstream)] == [96, 4]
    assert result.usage.prompt_tokens == sum(count_tokens(t) for t in texts)


def test_cohere_passes_a_client_input_type_and_refuses_token_ids(gateway, api_key, upstream):
    kind_route("cohere", upstream, upstream_model="embed-v4.0")

    embeddings(post(gateway, api_key, input="what is it?", input_type="search_query"))
    assert embedding_requests(upstream)[0]["body"]["input_type"] == "search_query"

    refused = post(gateway, api_key, input=[[1, 2, 3]])
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "unsupported_parameter"
    assert len(embedding_requests(upstream)) == 1


def test_an_upstream_400_reaches_the_client_as_a_400_with_its_words(gateway, api_key, upstream):
    kind_route("cohere", upstream, upstream_model="embed-v4.0")

    response = post(gateway, api_key, input="x", dimensions=3)  # Cohere offers 256, 512, 1024 or 1536

    assert response.status_code == 400
    assert "output_dimension" in response.json()["error"]["message"]


def test_demo_provider_makes_deterministic_unit_vectors_with_real_token_counts(gateway, api_key, upstream, ledger_row):
    kind_route("mock", upstream)
    texts = ["The demo embeds offline.", "Ünïcödé and emoji 🌍"]

    first = embeddings(post(gateway, api_key, input=texts))
    again = embeddings(post(gateway, api_key, input=texts[0]))
    sized = embeddings(post(gateway, api_key, input="x", dimensions=12))

    assert [len(d.embedding) for d in first.data] == [256, 256]
    for d in first.data:
        assert math.isclose(math.fsum(v * v for v in d.embedding), 1.0, rel_tol=1e-9)
    assert first.data[0].embedding != first.data[1].embedding
    assert again.data[0].embedding == first.data[0].embedding
    assert len(sized.data[0].embedding) == 12
    assert first.usage.prompt_tokens == tokens(texts[0]) + tokens(texts[1])
    assert embedding_requests(upstream) == []


def test_demo_provider_refuses_sizes_that_would_stall_it(gateway, api_key, upstream):
    kind_route("mock", upstream)

    response = post(gateway, api_key, input="x", dimensions=100_000)

    assert response.status_code == 400
    assert "demo provider" in response.json()["error"]["message"]


def test_bootstrap_serves_the_demo_embedding_model(upstream):
    assert bootstrap().returncode == 0
    deployment = Deployment.objects.get(model_name="greengate-demo-embedding")
    assert (deployment.provider.kind, deployment.is_enabled) == ("mock", True)


# --- Accounting ------------------------------------------------------------------------------------------------


def test_each_request_leaves_one_ledger_row_for_the_embeddings_endpoint(gateway, api_key, route, ledger_row):
    route(MODEL)

    response = post(gateway, api_key, input=["one two three", "four"])
    result = embeddings(response)

    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.endpoint, entry.status_code, entry.model, entry.stream) == ("embeddings", 200, MODEL, False)
    assert (entry.prompt_tokens, entry.completion_tokens) == (result.usage.prompt_tokens, 0)
    assert entry.tenant_id is not None and entry.providers_tried.endswith(":ok")


def test_an_upstream_without_usage_is_counted_by_gateway(gateway, api_key, route, ledger_row):
    route(MODEL, no_usage=True)

    response = post(gateway, api_key, input="count these tokens myself")
    result = embeddings(response)

    assert result.usage.prompt_tokens == tokens("count these tokens myself")
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.prompt_tokens, entry.usage_estimated, entry.token_encoding) == (
        result.usage.prompt_tokens,
        True,
        "o200k_base",
    )


def test_a_refused_request_is_recorded_as_embeddings_too(gateway, api_key, route, ledger_row):
    route(MODEL)

    response = post(gateway, api_key, input=[])

    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.endpoint, entry.status_code, entry.error_code) == ("embeddings", 400, "empty_array")


# --- Refusals --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": []}, "input", "empty_array"),
        ({"input": ""}, "input", "empty_string"),
        ({"input": ["ok", ""]}, "input[1]", "empty_string"),
        ({"input": 5}, "input", "invalid_type"),
        ({"input": {"text": "x"}}, "input", "invalid_type"),
        ({"input": [1.5]}, "input[0]", "invalid_type"),
        ({"input": [None]}, "input[0]", "invalid_type"),
        ({"input": ["text", 7]}, "input[1]", "invalid_type"),
        ({"input": [[1], 2]}, "input[1]", "invalid_type"),
        ({"input": [[]]}, "input[0]", "empty_array"),
        ({"input": [-1]}, "input[0]", "invalid_value"),
        ({"input": ["x"] * 3000}, "input", "invalid_value"),
        ({"input": [[1, [2]]]}, "input[0][1]", "invalid_type"),
        ({"input": [2**40]}, "input[0]", "invalid_value"),
        ({"input": [True]}, "input[0]", "invalid_type"),
        ({"input": "x", "dimensions": 0}, "dimensions", "invalid_value"),
        ({"input": "x", "dimensions": "8"}, "dimensions", "invalid_type"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format", "invalid_value"),
        ({"model": None, "input": "x"}, "model", "invalid_type"),
        ({"model": MODEL}, "input", "missing_required_parameter"),
    ],
)
def test_bad_bodies_get_a_400_naming_the_param(gateway, api_key, route, upstream, body, param, code):
    route(MODEL)

    response = httpx.post(
        gateway.url + PATH,
        content=json.dumps({"model": MODEL, **body}).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        timeout=30,
    )

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert embedding_requests(upstream) == []


def test_2048_inputs_are_accepted(gateway, api_key, route):
    route(MODEL)

    result = embeddings(post(gateway, api_key, input=[f"t{i}" for i in range(2048)]))

    assert len(result.data) == 2048 and result.data[-1].index == 2047


def test_without_a_key_the_answer_is_401_and_the_body_is_never_read(gateway, route, upstream):
    route(MODEL)

    response = post(gateway, None, input="x")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, "gg-wrong").embeddings.create(model=MODEL, input="x")
    assert embedding_requests(upstream) == []


def test_an_unknown_model_is_404(gateway, api_key):
    response = post(gateway, api_key, model="no-such-embedding-model", input="x")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_a_model_served_only_by_anthropic_cannot_embed(gateway, api_key, upstream):
    kind_route("anthropic", upstream, model="claude-only")

    response = post(gateway, api_key, model="claude-only", input="x")

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("model", "model_not_supported")
    assert "embeddings" in error["message"]
    assert upstream.requests == []


def test_a_model_with_anthropic_and_openai_deployments_embeds_on_openai(gateway, api_key, upstream):
    kind_route("anthropic", upstream, model="mixed")
    kind_route("openai", upstream, model="mixed")

    embeddings(post(gateway, api_key, model="mixed", input="x"))

    assert [r["path"] for r in upstream.requests] == ["/v1/embeddings"]


def test_get_is_405(gateway, api_key):
    response = httpx.get(gateway.url + PATH, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)

    assert response.status_code == 405


# --- The attempt loop ------------------------------------------------------------------------------------------


def test_an_upstream_500_falls_back_to_the_next_deployment(gateway, api_key, route, upstream, ledger_row):
    route(MODEL, priority=0, status=500)
    route(MODEL, priority=1)

    response = post(gateway, api_key, input="fall back")
    result = embeddings(response)

    assert result.data[0].embedding == mock_embedding("fall back")
    assert len(embedding_requests(upstream)) == 2
    entry = ledger_row(response.headers["x-request-id"])
    assert entry.attempts == 2
    assert entry.providers_tried.split()[0].endswith(":upstream_error")
    assert entry.providers_tried.split()[1].endswith(":ok")


def test_a_malformed_answer_everywhere_is_a_502(gateway, api_key, route):
    route(MODEL, malformed=True)

    response = post(gateway, api_key, input="x")

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_malformed"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "emb", "input": "hi", "dimensions": NaN}',
        b'{"model": "emb", "input": "hi", "dimensions": ' + b"9" * 5000 + b"}",
        b'{"model": "emb", "input": "\\ud800"}',
        b'{"model": "emb\\u0000x", "input": "hi"}',
        b'{"model": "emb", "input": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"model": "emb", "input": ["ok", 5, {"a": 1}]}',
        b'{"model": "emb", "input": [[1, 2], "text"]}',
    ],
    ids=["nan", "5000-digits", "lone-surrogate", "nul-in-model", "deep-nesting", "mixed-types", "tokens-and-text"],
)
def test_hostile_embedding_bodies_get_a_400_and_a_ledger_row(gateway, api_key, route, ledger_row, raw):
    route("emb")
    response = httpx.post(
        f"{gateway.url}/v1/embeddings",
        content=raw,
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.status_code, entry.endpoint) == (400, "embeddings")
