"""hashicorp_agent on the controller itself (connection local): gossip keys kept once, cluster spec
validation and join targets."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localplay import _failure, _play, _result  # noqa: E402

pytestmark = pytest.mark.slow


GOSSIP = """\
- name: Key
  ansible.builtin.include_role:
    name: hashistack.azure.hashicorp_agent
    tasks_from: gossip_key
  vars:
    hashicorp_agent_product: consul
    hashicorp_agent_gossip_key: ""
    hashicorp_agent_gossip_fact: the_key
- name: Show
  ansible.builtin.debug:
    msg: "{{ the_key | length }}"
"""


def test_gossip_key_generated_once_private_never_logged(tmp_path):
    secrets = tmp_path / "secrets"
    p1 = _play(tmp_path, GOSSIP, {"hashistack_secrets_dir": str(secrets)})
    assert p1.returncode == 0, p1.stdout[-3000:]
    keyfile = secrets / "consul-gossip.key"
    key = keyfile.read_text().strip()
    assert len(key) == 44
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert key not in p1.stdout and key not in p1.stderr
    p2 = _play(tmp_path, GOSSIP, {"hashistack_secrets_dir": str(secrets)})
    assert p2.returncode == 0
    assert keyfile.read_text().strip() == key
    assert key not in p2.stdout


SPEC = """\
- name: Spec
  ansible.builtin.include_role:
    name: hashistack.azure.hashicorp_agent
    tasks_from: cluster_spec
- name: Show
  ansible.builtin.debug:
    msg: "{{ hashistack_host_pool }} {{ hashistack_host_nomad_datacenter }}"
"""

GOOD_SPEC = {"cluster": "prod", "azure": {"location": "westeurope"}, "servers": {"count": 3},
             "pools": [{"name": "batch", "location": "northeurope"}, {"name": "web", "nomad_datacenter": "edge"}]}


# The whole list of refusals is unit-tested with module_utils/_cluster_spec; here: the roles stop on them.
@pytest.mark.parametrize("change, fragment", [
    ({"consul_datacenter": "DC 1"}, "hashistack_spec.consul_datacenter 'DC 1' is not a valid Consul datacenter"),
    ({"servers": {"count": 4}}, "hashistack_spec.servers.count is 4, an even number"),
    ({"pools": [{"name": "batch", "location": "northeurope", "nomad_region": "other"}]},
     "hashistack_spec.pools[0] (batch).nomad_region is set ('other'): a pool cannot have its own Nomad region"),
    ({"server_count": 3}, "server_count"),
])
def test_cluster_spec_rejects(tmp_path, change, fragment):
    spec = dict(GOOD_SPEC, **change)
    msg = _failure(_play(tmp_path, SPEC, {"hashistack_spec": spec, "hashistack_pool": "batch"}))
    assert fragment in msg


@pytest.mark.parametrize("pool, expected", [("batch", "batch northeurope"), ("web", "web edge"),
                                            ("servers", "servers westeurope")])
def test_cluster_spec_host_pool_and_datacenter(tmp_path, pool, expected):
    ok = _play(tmp_path, SPEC, {"hashistack_spec": GOOD_SPEC, "hashistack_pool": pool})
    assert ok.returncode == 0, ok.stdout[-3000:]
    assert expected in ok.stdout


def test_cluster_spec_host_not_in_the_spec_or_tags_disagree(tmp_path):
    msg = _failure(_play(tmp_path, SPEC, {"hashistack_spec": GOOD_SPEC, "hashistack_pool": "gpu"}))
    assert "pool 'gpu' (known pools: ['servers', 'batch', 'web'])" in msg
    msg = _failure(_play(tmp_path, SPEC, {"hashistack_spec": GOOD_SPEC, "hashistack_pool": "batch",
                                          "nomad_region": "northeurope"}))
    assert "tags disagree with the cluster spec" in msg


JOIN = """\
- name: Two servers in the inventory
  ansible.builtin.add_host:
    name: "{{ item.name }}"
    groups: consul_servers
    azure_private_ip: "{{ item.ip }}"
  loop: [{name: s2, ip: 10.0.0.12}, {name: s1, ip: 10.0.0.11}]
- name: Join
  ansible.builtin.include_role:
    name: hashistack.azure.hashicorp_agent
    tasks_from: join
  vars:
    hashicorp_agent_product: consul
    hashicorp_agent_join_fact: the_join
    hashicorp_agent_servers_group: consul_servers
- name: Show
  ansible.builtin.copy:
    content: "{{ the_join | to_json }}"
    dest: result.json
    mode: "0600"
"""

BY_TAG = {"tag_name": "hashistack_cluster", "tag_value": "prod", "resource_group": "", "scale_set": ""}


@pytest.mark.parametrize("extra, expected", [
    ({"hashicorp_agent_join_method": "azure"},
     ["provider=azure tag_name=hashistack_cluster tag_value=prod subscription_id=sub-1"]),
    ({"hashicorp_agent_join_method": "azure", "hashicorp_agent_azure_join": dict(BY_TAG, resource_group="rg", scale_set="srv")},
     ["provider=azure resource_group=rg vm_scale_set=srv subscription_id=sub-1"]),
    ({"hashicorp_agent_join_method": "inventory"}, ["10.0.0.11", "10.0.0.12"]),
    ({"hashicorp_agent_join_method": "azure", "hashicorp_agent_retry_join": ["10.9.9.9"]}, ["10.9.9.9"]),
])
def test_join_targets(tmp_path, extra, expected):
    v = {"hashistack_cluster": {"azure": {"subscription_id": "sub-1"}}, "hashicorp_agent_azure_join": BY_TAG}
    v.update(extra)
    assert _result(_play(tmp_path, JOIN, v)) == expected


def test_join_azure_needs_a_subscription(tmp_path):
    msg = _failure(_play(tmp_path, JOIN, {"hashistack_cluster": {"azure": {"subscription_id": None}},
                                          "hashicorp_agent_azure_join": BY_TAG,
                                          "hashicorp_agent_join_method": "azure"}))
    assert "azure needs hashistack_spec.azure.subscription_id" in msg
