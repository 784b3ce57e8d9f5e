"""Provider configuration from the environment, as the adapter registry declares it."""

from __future__ import annotations

import pytest

from greengate_site.env import ConfigError
from providers.adapters.registry import SPECS
from providers.env_config import provider_configs


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    for name in ("LLM_PROVIDER_SEQUENCE", "LLM_PROVIDER_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    for spec in SPECS.values():
        if spec.env:
            for name in (spec.env.api_key, spec.env.base_url, spec.env.models, *spec.env.options):
                monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_sequence_sets_priorities_and_the_weights_spread_load(env):
    env.setenv("LLM_PROVIDER_SEQUENCE", "azure,openai,mock")
    env.setenv("LLM_PROVIDER_WEIGHTS", "openai=3,azure=1")
    env.setenv("OPENAI_API_KEY", "sk-x")
    env.setenv("OPENAI_MODELS", "gpt-4o,fast=gpt-4o-mini")
    sequence, configs = provider_configs()
    assert sequence == ["azure", "openai", "mock"]
    assert [configs[k].priority for k in sequence] == [0, 10, 20]
    assert (configs["openai"].weight, configs["azure"].weight, configs["mock"].weight) == (3, 1, 1)
    assert configs["openai"].configured and not configs["azure"].configured and configs["mock"].configured
    assert configs["openai"].models == (("gpt-4o", "gpt-4o"), ("fast", "gpt-4o-mini"))


def test_every_kind_is_in_the_default_sequence(env):
    sequence, _ = provider_configs()
    assert set(sequence) == set(SPECS)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"LLM_PROVIDER_SEQUENCE": "openai,nope"}, "unknown provider kinds"),
        ({"LLM_PROVIDER_SEQUENCE": "openai,openai"}, "twice"),
        ({"LLM_PROVIDER_WEIGHTS": "openai=heavy"}, "must look like"),
        ({"LLM_PROVIDER_WEIGHTS": "openai=0"}, "between 1 and 1000"),
        ({"LLM_PROVIDER_SEQUENCE": "openai,mock", "LLM_PROVIDER_WEIGHTS": "cohere=2"}, "not in LLM_PROVIDER_SEQUENCE"),
        ({"OPENAI_MODELS": "gpt-4o,=x"}, "public=upstream"),
        ({"OPENAI_BASE_URL": "ftp://x"}, "OPENAI_BASE_URL"),
    ],
)
def test_bad_provider_settings_stop_start_up_with_a_clear_message(env, variables, message):
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        provider_configs()
