"""No request field chooses where provider credentials go, and base URLs reaching inward need explicit consent."""

from __future__ import annotations

import httpx
import pytest
from django.core.exceptions import ValidationError

from providers.models import Provider
from providers.network import check_base_url
from tests.factories import DeploymentFactory, ProviderFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/computeMetadata/v1",
        "http://100.100.100.200/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_cloud_metadata_addresses_are_refused_even_when_internal_ones_are_allowed(url):
    with pytest.raises(ValueError, match="metadata"):
        check_base_url(url, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1",
        "http://localhost:11434/v1",
        "http://10.1.2.3/v1",
        "http://192.168.1.10/v1",
        "http://[::1]:8000/v1",
        "http://0.0.0.0/v1",
        "http://169.254.10.10/v1",
    ],
)
def test_internal_addresses_need_the_providers_consent(url):
    with pytest.raises(ValueError, match="internal"):
        check_base_url(url, allow_private=False)
    check_base_url(url, allow_private=True)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/v1", "http"),
        ("file:///etc/passwd", "http"),
        ("http://user:secret@api.example.com/v1", "user info"),
        ("https:///v1", "host"),
    ],
)
def test_malformed_base_urls_are_refused(url, reason):
    with pytest.raises(ValueError, match=reason):
        check_base_url(url, allow_private=True)


def test_saving_a_provider_validates_its_base_url():
    provider = Provider(name="sneaky", kind="openai", base_url="http://169.254.169.254/v1", allow_private_network=True)
    with pytest.raises(ValidationError, match="metadata"):
        provider.full_clean()
    provider = Provider(name="local", kind="openai", base_url="http://127.0.0.1:8000/v1")
    with pytest.raises(ValidationError, match="internal"):
        provider.full_clean()
    provider.allow_private_network = True
    provider.full_clean()


def test_a_provider_not_allowed_inward_is_not_called_even_if_saved_that_way(gateway, api_key, upstream):
    """Set behind the admin's back (a raw update), the connect-time check still refuses, and nothing is sent."""
    provider = ProviderFactory(base_url=upstream.base_url(), allow_private_network=False)
    DeploymentFactory(model_name="gpt-inward", provider=provider)
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "gpt-inward", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_address_refused"
    assert upstream.requests == []
    assert "sk-upstream-test" not in response.text


def test_request_fields_cannot_redirect_the_call(gateway, api_key, route, upstream):
    """base_url, api_base or headers in the body are forwarded as data at most, never used as a destination."""
    route("gpt-test")
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={
            "model": "gpt-test",
            "messages": [{"role": "user", "content": "hi"}],
            "base_url": "http://169.254.169.254/",
            "api_base": "http://127.0.0.1:1/",
            "extra_headers": {"Host": "evil.example"},
        },
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    assert response.status_code == 200
    assert len(upstream.requests) == 1 and upstream.requests[0]["path"] == "/v1/chat/completions"
