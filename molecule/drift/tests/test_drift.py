"""After the drift converge every agent is back on the spec."""

import json


def _get(host, port, path):
    return json.loads(host.check_output("curl -sf http://127.0.0.1:%s%s", str(port), path))


def test_consul_back_on_spec(host):
    me = _get(host, 8500, "/v1/agent/self")["Config"]
    assert me["Datacenter"] == "dc1"
    assert me["Version"] == "1.20.1"
    assert host.file("/usr/local/bin/consul").linked_to == "/opt/hashicorp/consul/1.20.1/consul"
    assert 'datacenter = "dc1"' in host.file("/etc/consul.d/consul.hcl").content_string


def test_all_members_alive(host):
    members = _get(host, 8500, "/v1/agent/members")
    assert sorted(m["Name"] for m in members if m["Status"] == 1) == ["client-1", "server-1", "server-2", "server-3"]
    assert _get(host, 8500, "/v1/status/leader")


def test_nomad_back_on_spec(host):
    me = _get(host, 4646, "/v1/agent/self")["config"]
    assert me["Region"] == "global"
    assert me["Datacenter"] == ("web" if host.backend.get_hostname() == "client-1" else "westeurope")
