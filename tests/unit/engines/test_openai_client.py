"""What both OpenAI engines share: their connection settings and the key check."""

from __future__ import annotations

import inspect

import pytest

from uf_experiments.engines.openai.batch import OpenAIBatchEngine
from uf_experiments.engines.openai.client import DEFAULT_BASE_URL, Endpoint, EndpointEngine
from uf_experiments.engines.openai.engine import OpenAIEngine

SHARED = ("base_url", "timeout_s", "max_retries", "connect_timeout_s")


def test_both_engines_take_the_shared_settings_by_the_same_names():
    for cls in (OpenAIEngine, OpenAIBatchEngine):
        params = inspect.signature(cls.__init__).parameters
        assert set(SHARED) <= set(params), cls  # config.apply_batch reads these names
        assert issubclass(cls, EndpointEngine)


@pytest.mark.parametrize("cls", [OpenAIEngine, OpenAIBatchEngine])
def test_endpoint_from_the_config_or_the_environment(cls, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    eng = cls("m", timeout_s=7.0, max_retries=2, connect_timeout_s=3.0)
    assert eng.endpoint == Endpoint(None, 7.0, 2, 3.0)
    assert (eng.base_url, eng.where, eng.timeout_s, eng.max_retries, eng.connect_timeout_s) == (
        None, DEFAULT_BASE_URL, 7.0, 2, 3.0)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env:1/v1")
    assert cls("m").where == "http://env:1/v1"
    assert cls("m", base_url="http://cfg:2/v1").base_url == "http://cfg:2/v1"  # the config wins
    with pytest.raises(AttributeError):
        eng.endpoint.timeout_s = 1.0  # frozen


@pytest.mark.parametrize("cls", [OpenAIEngine, OpenAIBatchEngine])
def test_the_key_check(cls, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert cls.check_config({}).startswith("OPENAI_API_KEY is not set: export it")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert cls.check_config({}) is None


def test_the_client_carries_the_endpoint(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    client = Endpoint("http://127.0.0.1:9/v1", 30.0, 3, 50.0).client()
    assert str(client.base_url).rstrip("/") == "http://127.0.0.1:9/v1" and client.max_retries == 3
    assert client.timeout.read == 30.0 and client.timeout.connect == 30.0  # connecting never outlasts a reply


def test_class_attributes_kept():
    assert (OpenAIEngine.kind, OpenAIBatchEngine.kind) == ("api", "batch")
    legacy = "uf_experiments.engines.openai_engine.OpenAIEngine"  # cache keys depend on it
    assert OpenAIEngine.cache_name == OpenAIBatchEngine.cache_name == legacy
    assert OpenAIEngine.batch_variant == "uf_experiments.engines.openai.batch.OpenAIBatchEngine"


def test_package_surface_is_cheap():
    import subprocess
    import sys

    code = ("import sys, uf_experiments.engines, uf_experiments.engines.openai as o; "
            "assert o.OpenAIEngine and o.OpenAIBatchEngine and o.format_status and o.BATCH_NOTICE; "
            "print(sorted(m for m in ('openai', 'vllm', 'torch', 'datasets', 'wandb', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
