"""Hostile input over real HTTP: each finding of trying GreenGate as an attacker would, kept as a regression test.

Every bad request gets an OpenAI-shaped error with the right status (never a 500, an HTML page or a hang), and
every request, bad ones included, leaves exactly one ledger row that costs no other request its own.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import pytest

from ledger.models import LedgerEntry

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"
MESSAGES = '[{"role": "user", "content": "hi"}]'
GOOD = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


def post(gateway, key: str, *, content: bytes, timeout: float = 30) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return httpx.post(gateway.url + CHAT, content=content, headers=headers, timeout=timeout)


def raw_body(model: str = '"gpt-test"', *, messages: str = MESSAGES, stream: bool = False, **fields: str) -> bytes:
    """A request body written by hand, so that it can hold what json.dumps would never write."""
    parts = [f'"model": {model}', f'"messages": {messages}']
    parts += [f'"{name}": {value}' for name, value in fields.items()]
    if stream:
        parts.append('"stream": true')
    return ("{" + ", ".join(parts) + "}").encode()


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def assert_bad_request(response: httpx.Response, ledger_row) -> dict:
    """A 400 in OpenAI's shape, with a request id, recorded in the ledger as a 400."""
    error = assert_openai_error(response, 400)
    assert error["type"] == "invalid_request_error"
    request_id = response.headers["x-request-id"]
    assert ledger_row(request_id).status_code == 400
    return error


# --- 1. Names that PostgreSQL or a JSON parser would choke on ---------------------------------------------------

BAD_MODEL_NAMES = {
    "nul": raw_body('"gpt\\u0000x"'),
    "control_char": raw_body('"gpt\\u001bx"'),
    "lone_high_surrogate": raw_body('"\\ud800"'),
    "lone_low_surrogate": raw_body('"gpt\\udfff"'),
    "surrogate_as_raw_bytes": b'{"model": "gpt\xed\xa0\x80x", "messages": ' + MESSAGES.encode() + b"}",
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("name", sorted(BAD_MODEL_NAMES))
def test_a_model_name_with_nul_or_a_lone_surrogate_gets_a_400_and_its_own_ledger_row(
    gateway, api_key, route, ledger_row, name, stream
):
    route("gpt-test")
    body = BAD_MODEL_NAMES[name]
    if stream:
        body = body[:-1] + b', "stream": true}'
    assert_bad_request(post(gateway, api_key, content=body), ledger_row)


def test_bad_model_names_among_good_requests_cost_no_good_request_its_ledger_row(gateway, api_key, route):
    route("gpt-test")
    bad = [BAD_MODEL_NAMES["nul"], BAD_MODEL_NAMES["lone_high_surrogate"]] * 5
    good = [json.dumps({**GOOD, "messages": [{"role": "user", "content": f"hi {i}"}]}).encode() for i in range(200)]
    bodies = good[:100] + bad + good[100:]  # the bad ones in the middle of the burst, so they share batches

    async def send_all() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            return await asyncio.gather(*(client.post(gateway.url + CHAT, content=b, headers=headers) for b in bodies))

    responses = asyncio.run(send_all())
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 200, 400: 10}, statuses
    ids = [r.headers["x-request-id"] for r in responses]
    assert len(set(ids)) == len(ids)

    # Every request, bad ones included, has exactly one row under the id its response carried.
    rows = wait_for_rows(ids)
    assert Counter(request_id for request_id, _ in rows) == Counter(ids)
    row_status = dict(rows)
    assert all(row_status[r.headers["x-request-id"]] == r.status_code for r in responses)


def wait_for_rows(ids: list[str], timeout: float = 60.0) -> list[tuple[str, int]]:
    """(request id, status) of the ledger rows of these requests, once all are written (just after responses)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = list(LedgerEntry.objects.filter(request_id__in=ids).values_list("request_id", "status_code"))
        if len(rows) >= len(ids) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


# --- 2. Wrong types inside lists; a client leaving mid-stream --------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_wrongly_typed_content_part_gets_a_400_naming_its_path(gateway, api_key, route, ledger_row, stream):
    route("gpt-test")
    messages = json.dumps([{"role": "user", "content": [{"type": "image_url", "text": 5}]}])
    # A stream request refused before it starts must be a prompt JSON 400, never a hang: the 30 s client
    # timeout turns a hang into a failure.
    response = post(gateway, api_key, content=raw_body(messages=messages, stream=stream))
    error = assert_bad_request(response, ledger_row)
    assert error["param"] == "messages[0].content[0].image_url"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (
            '[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": 7}]}]',
            "messages[0].content[1].text",
        ),
        ('[{"role": "user", "content": "a"}, {"role": "user", "content": [5]}]', "messages[1].content[0]"),
        (
            '[{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": 1}}]}]',
            "messages[0].tool_calls[0].function.name",
        ),
        ('[{"role": "user", "content": [{"type": "video", "video": {}}]}]', "messages[0].content[0].type"),
    ],
)
def test_wrong_types_deep_in_lists_get_a_400_naming_the_path(
    gateway, api_key, route, ledger_row, messages, param, stream
):
    route("gpt-test")
    response = post(gateway, api_key, content=raw_body(messages=messages, stream=stream))
    assert assert_bad_request(response, ledger_row)["param"] == param


def test_a_client_leaving_mid_stream_is_recorded_as_499_and_billed(gateway, api_key, route, upstream, ledger_row):
    route("gpt-test", chunk_delay=0.1, words=100)
    body = {**GOOD, "stream": True}
    headers = {"Authorization": f"Bearer {api_key}"}
    seen = 0
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", gateway.url + CHAT, json=body, headers=headers) as response:
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            for line in response.iter_lines():
                if line.startswith("data: ") and '"content":"word' in line.replace(" ", ""):
                    seen += 1
                    if seen >= 3:
                        break  # leaving the block closes the connection mid-stream
    upstream.wait_for("client_disconnected", timeout=15)
    entry = ledger_row(request_id)
    assert entry.status_code == 499
    assert entry.completion_tokens > 0
    assert not any(e["kind"] == "last_chunk" for e in upstream.events)


# --- 3. Deep nesting -------------------------------------------------------------------------------------------

DEEP = 1000
NESTED_BODIES = {
    "list_body": b"[" * DEEP + b"]" * DEEP,
    "object_body": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "list_in_unknown_field": raw_body(future="[" * DEEP + "]" * DEEP),
    "object_in_known_field": raw_body(metadata='{"a":' * DEEP + "1" + "}" * DEEP),
    "object_in_message_content": raw_body(
        messages='[{"role": "user", "content": ' + '{"a":' * DEEP + "1" + "}" * DEEP + "}]"
    ),
}


@pytest.mark.parametrize("name", sorted(NESTED_BODIES))
def test_a_body_nested_a_thousand_deep_gets_a_400_a_request_id_a_ledger_row_and_no_traceback(
    gateway, api_key, route, ledger_row, name
):
    route("gpt-test")
    log_before = len(gateway.log())
    response = post(gateway, api_key, content=NESTED_BODIES[name])
    assert response.headers.get("x-request-id")
    assert_bad_request(response, ledger_row)  # waits for the row, which is written after any error log line
    assert "Traceback" not in gateway.log()[log_before:]


# --- 4. Numbers and strings JSON does not allow, or that fit no column -----------------------------------------

BIG = "9" * 5000
HOSTILE_VALUES = {
    "5000_digit_seed": raw_body(seed=BIG),
    "5000_digit_negative_max_tokens": raw_body(max_tokens="-" + BIG),
    "5000_digit_unknown_field": raw_body(future_knob=BIG),
    "5000_digit_in_metadata_list": raw_body(future_knob=f"[1, {BIG}]"),
    "5000_digit_float_temperature": raw_body(temperature=BIG + ".0"),
    "5000_digit_int_in_a_text_part": raw_body(
        messages=f'[{{"role": "user", "content": [{{"type": "text", "text": {BIG}}}]}}]'
    ),
    "1e400_max_tokens": raw_body(max_tokens="1e400"),
    "nan_seed": raw_body(seed="NaN"),
    "infinity_temperature": raw_body(temperature="Infinity"),
    "minus_infinity_top_p": raw_body(top_p="-Infinity"),
    "1e999_temperature": raw_body(temperature="1e999"),
    "minus_1e999_presence_penalty": raw_body(presence_penalty="-1e999"),
    "nan_unknown_field": raw_body(future_knob="NaN"),
    "infinity_unknown_field": raw_body(future_knob="Infinity"),
    "minus_infinity_unknown_field": raw_body(future_knob="-Infinity"),
    "1e999_unknown_field": raw_body(future_knob="1e999"),
    "1e999_nested_unknown_field": raw_body(future_knob='{"x": [1e999]}'),
    "lone_surrogate_in_content": raw_body(messages='[{"role": "user", "content": "a\\udc00b"}]'),
    "lone_surrogate_pair_reversed": raw_body(messages='[{"role": "user", "content": "\\udc00\\ud800"}]'),
    "lone_surrogate_in_text_part": raw_body(
        messages='[{"role": "user", "content": [{"type": "text", "text": "\\ud83d"}]}]'
    ),
    "lone_surrogate_in_system": raw_body(
        messages='[{"role": "system", "content": "\\ud800"}, {"role": "user", "content": "hi"}]'
    ),
    "lone_surrogate_in_tool_arguments": raw_body(
        messages='[{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", '
        '"function": {"name": "f", "arguments": "\\udfff"}}]}, {"role": "user", "content": "hi"}]'
    ),
    "nul_in_content": raw_body(messages='[{"role": "user", "content": "a\\u0000b"}]'),
}
# A NUL inside content is valid JSON and valid text for an upstream: GreenGate may forward it, but must not 500.
MAY_SUCCEED = {"nul_in_content"}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("name", sorted(HOSTILE_VALUES))
def test_hostile_numbers_and_strings_get_a_400_never_a_500(gateway, api_key, route, ledger_row, name, stream):
    route("gpt-test")
    body = HOSTILE_VALUES[name]
    if stream:
        body = body[:-1] + b', "stream": true}'
    response = post(gateway, api_key, content=body)
    if name in MAY_SUCCEED and response.status_code == 200:
        assert ledger_row(response.headers["x-request-id"]).status_code == 200
        return
    assert_bad_request(response, ledger_row)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (raw_body(seed=BIG), "seed"),
        (raw_body(temperature="1e999"), "temperature"),
        (
            raw_body(messages=f'[{{"role": "user", "content": [{{"type": "text", "text": {BIG}}}]}}]'),
            "messages[0].content[0].text",
        ),
    ],
    ids=["seed", "temperature", "text_part"],
)
def test_an_out_of_range_number_names_its_parameter_or_none(gateway, api_key, route, ledger_row, body, param):
    # Found while decoding, before any field is known: no param rather than a path naming nothing.
    route("gpt-test")
    error = assert_bad_request(post(gateway, api_key, content=body), ledger_row)
    assert error["param"] in (param, None)


# --- 5. Timeouts per deployment --------------------------------------------------------------------------------


def test_a_stream_past_its_total_timeout_ends_with_an_error_event_and_no_done(
    gateway, api_key, route, upstream, ledger_row
):
    # ~10 s of words from the upstream; the deployment allows 1 s in all.
    route("gpt-test", timeout=1, words=100, chunk_delay=0.1)
    headers = {"Authorization": f"Bearer {api_key}"}
    payloads = []
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", gateway.url + CHAT, json={**GOOD, "stream": True}, headers=headers) as response:
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            for line in response.iter_lines():
                if line.startswith("data: "):
                    payloads.append(line[6:])
    assert "[DONE]" not in payloads
    last = json.loads(payloads[-1])
    assert set(last) == {"error"}
    assert last["error"]["code"] == "upstream_timeout"
    assert set(last["error"]) == {"message", "type", "param", "code"}
    # The gateway hung up on the upstream before it could finish: it never sent its last word.
    upstream.wait_for("client_disconnected", timeout=15)
    assert not any(e["kind"] == "last_chunk" for e in upstream.events)
    content_chunks = [p for p in payloads[:-1] if '"content":"word' in p.replace(" ", "")]
    assert len(content_chunks) < 100
    entry = ledger_row(request_id)
    assert (entry.status_code, entry.error_code) == (504, "upstream_timeout")


def test_a_json_request_past_its_first_byte_timeout_falls_through_to_the_next_deployment(
    gateway, api_key, route, upstream, ledger_row
):
    slow = route("gpt-test", latency=3, timeout=10, first_byte_timeout=0.5)
    fast = route("gpt-test", priority=1)
    response = post(gateway, api_key, content=json.dumps(GOOD).encode())
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Mock reply to: hi"
    entry = ledger_row(response.headers["x-request-id"])
    assert entry.attempts == 2
    assert entry.providers_tried == f"{slow.provider.name}:upstream_timeout {fast.provider.name}:ok"
    assert entry.provider == fast.provider.name


def test_a_json_request_past_its_first_byte_timeout_with_nowhere_to_go_gets_a_504(gateway, api_key, route, ledger_row):
    route("gpt-test", latency=3, timeout=10, first_byte_timeout=0.5)
    response = post(gateway, api_key, content=json.dumps(GOOD).encode())
    error = assert_openai_error(response, 504, "upstream_timeout")
    assert error["type"] == "upstream_error"
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.status_code, entry.error_code) == (504, "upstream_timeout")
    assert entry.attempts >= 1  # a retry of the one deployment may be allowed; a success may not


def test_a_stream_past_its_first_byte_timeout_falls_through_to_the_next_deployment(
    gateway, api_key, route, upstream, ledger_row
):
    slow = route("gpt-test", latency=3, timeout=10, first_byte_timeout=0.5)
    fast = route("gpt-test", priority=1)
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", gateway.url + CHAT, json={**GOOD, "stream": True}, headers=headers) as response:
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            payloads = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    text = "".join(json.loads(p)["choices"][0]["delta"].get("content") or "" for p in payloads[:-1])
    assert text == "Mock reply to: hi"
    entry = ledger_row(request_id)
    assert entry.attempts == 2
    assert entry.providers_tried == f"{slow.provider.name}:upstream_timeout {fast.provider.name}:ok"


def test_a_stream_past_its_first_byte_timeout_with_nowhere_to_go_gets_a_json_504_not_a_stream(
    gateway, api_key, route, ledger_row
):
    route("gpt-test", latency=3, timeout=10, first_byte_timeout=0.5)
    response = post(gateway, api_key, content=json.dumps({**GOOD, "stream": True}).encode())
    assert_openai_error(response, 504, "upstream_timeout")
    entry = ledger_row(response.headers["x-request-id"])
    assert (entry.status_code, entry.stream) == (504, True)


# --- 6. Unknown paths and wrong methods ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nope"),
        ("POST", "/v1/chat/completion"),
        ("POST", "/v1/chat/completions/"),
        ("POST", "/v1/completions"),
        ("GET", "/v1/engines/gpt-test"),
        ("GET", "/v1"),
        ("GET", "/v1/"),
        ("POST", "/v1/chat/completions/%00"),
        ("GET", "/v1/%ED%A0%80"),
        ("DELETE", "/v1/files"),
    ],
)
def test_unknown_paths_under_v1_get_openai_shaped_404s(gateway, api_key, method, path):
    headers = {"Authorization": f"Bearer {api_key}"}
    response = httpx.request(method, gateway.url + path, headers=headers, json=GOOD, timeout=30)
    assert_openai_error(response, 404, "unknown_url")
    assert "<html" not in response.text.lower()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/chat/completions"),
        ("PUT", "/v1/chat/completions"),
        ("DELETE", "/v1/chat/completions"),
        ("PATCH", "/v1/chat/completions"),
        ("POST", "/v1/models"),
        ("DELETE", "/v1/models"),
        ("PUT", "/v1/models/gpt-test"),
        ("DELETE", "/v1/embeddings"),
        ("GET", "/v1/embeddings"),
    ],
)
def test_wrong_methods_get_openai_shaped_405s(gateway, api_key, route, method, path):
    route("gpt-test")
    headers = {"Authorization": f"Bearer {api_key}"}
    response = httpx.request(method, gateway.url + path, headers=headers, json=GOOD, timeout=30)
    assert_openai_error(response, 405)
    assert response.headers.get("allow")
    assert "<html" not in response.text.lower()
