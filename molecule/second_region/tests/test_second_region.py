"""A client pool on a second, peered network joins with the spec's datacenter/region and its own Nomad datacenter."""

import json

NOMAD_DC = {"server-1": "westeurope", "client-1": "web", "remote-1": "northeurope"}


def _get(host, port, path):
    return json.loads(host.check_output(f"curl -sf http://127.0.0.1:{port}{path}"))


def test_same_consul_datacenter_everywhere(host):
    me = _get(host, 8500, "/v1/agent/self")["Config"]
    assert me["Datacenter"] == "dc1"
    members = _get(host, 8500, "/v1/agent/members")
    assert sorted(m["Name"] for m in members if m["Status"] == 1) == ["client-1", "remote-1", "server-1"]


def test_same_region_own_datacenter(host):
    name = host.backend.get_hostname()
    me = _get(host, 4646, "/v1/agent/self")["config"]
    assert me["Region"] == "global"
    assert me["Datacenter"] == NOMAD_DC[name]
    assert _get(host, 4646, "/v1/status/leader")


def test_nodes_of_both_locations_ready(host):
    if host.backend.get_hostname() != "server-1":
        return
    nodes = _get(host, 4646, "/v1/nodes")
    assert sorted((n["Name"], n["Datacenter"], n["Status"]) for n in nodes) == [
        ("client-1", "web", "ready"), ("remote-1", "northeurope", "ready")]


def test_remote_pool_is_on_its_own_subnet(host):
    if host.backend.get_hostname() == "remote-1":
        assert host.backend.get_variables()["ansible_host"].startswith("10.249.77.")
        # installed by the host itself from the mirror, verified there
        assert host.file("/usr/local/bin/consul").linked_to == "/opt/hashicorp/consul/1.20.1/consul"
