"""retry_join cloud auto-join (provider=azure) against a fake IMDS + ARM on loopback."""

from __future__ import annotations

import pytest

from sandbox.agents import autojoin
from sandbox.agents.testing import SUB, FakeAzure
from sandbox.agents.testing import nic as _nic


@pytest.fixture
def azure(monkeypatch):
    nics = [_nic("a", "10.0.0.4", {"consul": "server"}), _nic("b", "10.0.0.5", {"consul": "client"}),
            _nic("c", "10.0.0.6", {"consul": "server"}), _nic("d", "10.0.0.7")]
    fake = FakeAzure(nics, [_nic("vm0", "10.1.0.4"), _nic("vm1", "10.1.0.5")])
    monkeypatch.setenv("HASHISTACK_SANDBOX_IMDS_URL", fake.url)
    monkeypatch.setenv("HASHISTACK_SANDBOX_ARM_URL", fake.url)
    yield fake
    fake.close()


def test_tag_discovery_follows_pages(azure):
    ips = autojoin.resolve(f"provider=azure tag_name=consul tag_value=server subscription_id={SUB}")
    assert ips == ["10.0.0.4", "10.0.0.6"]
    paths = [p for p, _q, _h in azure.requests]
    assert paths[0] == "/metadata/identity/oauth2/token"
    assert paths.count(f"/subscriptions/{SUB}/providers/Microsoft.Network/networkInterfaces") == 2


def test_scale_set_discovery(azure):
    ips = autojoin.resolve(f"provider=azure resource_group=rg1 vm_scale_set=servers subscription_id={SUB}")
    assert ips == ["10.1.0.4", "10.1.0.5"]


def test_plain_addresses_pass_through():
    assert autojoin.resolve("10.0.0.9") == ["10.0.0.9"]
    assert autojoin.resolve("10.0.0.9:8301") == ["10.0.0.9:8301"]


def test_errors(azure, monkeypatch):
    with pytest.raises(autojoin.DiscoverError, match="subscription_id"):
        autojoin.resolve("provider=azure tag_name=a tag_value=b")
    with pytest.raises(autojoin.DiscoverError, match="unknown provider"):
        autojoin.resolve("provider=aws tag_key=a tag_value=b")
    with pytest.raises(autojoin.DiscoverError, match="ResourceNotFound"):
        autojoin.resolve(f"provider=azure resource_group=nope vm_scale_set=x subscription_id={SUB}")
    monkeypatch.setenv("HASHISTACK_SANDBOX_IMDS_URL", "http://127.0.0.1:9")
    with pytest.raises(autojoin.DiscoverError):
        autojoin.resolve(f"provider=azure tag_name=consul tag_value=server subscription_id={SUB}")
