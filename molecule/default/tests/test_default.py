"""Verify the 3 servers + 2 clients cluster (testinfra over SSH, Molecule's inventory)."""

import json
import os
import stat

import pytest
import testinfra

SERVERS = ["server-1", "server-2", "server-3"]
CLIENTS = ["client-1", "client-2"]
SPEC = {"consul_datacenter": "dc1", "nomad_region": "global",
        "nomad_datacenter": {"servers": "westeurope", "web": "web"}}


def _name(host):
    return host.backend.get_hostname()


def _is_server(host):
    return _name(host) in SERVERS


def _get(host, port, path):
    out = host.check_output("curl -sf http://127.0.0.1:%s%s", str(port), path)
    return json.loads(out)


@pytest.mark.parametrize("svc", ["consul", "nomad", "hashistack-scheduled-events"])
def test_services_active_and_enabled(host, svc):
    s = host.service(svc)
    assert s.is_running
    assert s.is_enabled


def test_consul_members_and_leader(host):
    members = _get(host, 8500, "/v1/agent/members")
    alive = sorted(m["Name"] for m in members if m["Status"] == 1)
    assert alive == sorted(SERVERS + CLIENTS)
    leader = _get(host, 8500, "/v1/status/leader")
    assert leader
    if _is_server(host):
        raft = _get(host, 8500, "/v1/operator/raft/configuration")
        assert len(raft["Servers"]) == 3
        assert sum(1 for s in raft["Servers"] if s["Leader"]) == 1


def test_consul_reports_spec(host):
    me = _get(host, 8500, "/v1/agent/self")
    assert me["Config"]["Datacenter"] == SPEC["consul_datacenter"]
    assert me["Config"]["Server"] is _is_server(host)
    assert me["Config"]["Version"] == "1.20.1"


def test_nomad_servers_and_nodes(host):
    assert _get(host, 4646, "/v1/status/leader")
    if _is_server(host):
        members = _get(host, 4646, "/v1/agent/members")
        alive = [m for m in members["Members"] if m["Status"] == "alive"]
        assert len(alive) == 3
        nodes = _get(host, 4646, "/v1/nodes")
        ready = sorted(n["Name"] for n in nodes if n["Status"] == "ready")
        assert ready == CLIENTS
        assert {n["Datacenter"] for n in nodes} == {"web"}


def test_nomad_reports_spec(host):
    me = _get(host, 4646, "/v1/agent/self")["config"]
    assert me["Region"] == SPEC["nomad_region"]
    pool = "servers" if _is_server(host) else "web"
    assert me["Datacenter"] == SPEC["nomad_datacenter"][pool]
    assert bool(me["Server"]["Enabled"]) is _is_server(host)


def test_versioned_install_and_links(host):
    for product, version in (("consul", "1.20.1"), ("nomad", "1.9.3")):
        link = host.file(f"/usr/local/bin/{product}")
        assert link.is_symlink
        assert link.linked_to == f"/opt/hashicorp/{product}/{version}/{product}"
        binary = host.file(link.linked_to)
        assert binary.user == "root" and binary.mode == 0o755


def test_config_and_key_material_permissions(host):
    d = host.file("/etc/consul.d")
    assert (d.user, d.group, d.mode) == ("root", "consul", 0o750)
    f = host.file("/etc/consul.d/consul.hcl")
    assert (f.user, f.group, f.mode) == ("root", "consul", 0o640)
    assert "encrypt" not in f.content_string  # secrets only in secrets.hcl (the boot path fills it from Key Vault)
    assert "{{ GetPrivateIP }}" in f.content_string
    s = host.file("/etc/consul.d/secrets.hcl")
    assert (s.user, s.group, s.mode) == ("root", "consul", 0o640)
    assert 'encrypt = "' in s.content_string
    data = host.file("/opt/consul/data")
    assert (data.user, data.mode) == ("consul", 0o750)
    n = host.file("/etc/nomad.d/nomad.hcl")
    if _is_server(host):
        assert (n.user, n.group, n.mode) == ("root", "nomad", 0o640)
        assert "encrypt" not in n.content_string
        s = host.file("/etc/nomad.d/secrets.hcl")
        assert (s.user, s.group, s.mode) == ("root", "nomad", 0o640)
        assert 'encrypt = "' in s.content_string
        assert host.file("/opt/nomad/data").user == "nomad"
    else:
        assert (n.user, n.group, n.mode) == ("root", "root", 0o640)
        assert "encrypt" not in n.content_string
        assert not host.file("/etc/nomad.d/secrets.hcl").exists
        assert host.file("/opt/nomad/data").user == "root"


def test_units(host):
    consul = host.file("/etc/systemd/system/consul.service").content_string
    for line in ("Type=notify", "User=consul", "KillSignal=SIGINT", "Restart=on-failure", "LimitNOFILE=65536"):
        assert line in consul
    nomad = host.file("/etc/systemd/system/nomad.service").content_string
    assert ("User=nomad" if _is_server(host) else "User=root") in nomad
    pid = host.check_output("systemctl show -p MainPID --value consul")
    assert host.check_output("ps -o user= -p %s", pid) == "consul"
    pid = host.check_output("systemctl show -p MainPID --value nomad")
    assert host.check_output("ps -o user= -p %s", pid) == ("nomad" if _is_server(host) else "root")


def test_same_config_bytes_in_a_pool(host):
    """Every instance of a pool has byte-identical config (so VMSS custom data can write it)."""
    peers = SERVERS if _is_server(host) else CLIENTS
    other = [p for p in peers if p != _name(host)][0]
    peer = testinfra.get_host("ansible://{}?ansible_inventory={}".format(other, os.environ["MOLECULE_INVENTORY_FILE"]),
                              sudo=True)
    cmd = "sha256sum /etc/consul.d/consul.hcl /etc/nomad.d/nomad.hcl"
    assert host.check_output(cmd).split() == peer.check_output(cmd).split()


def test_controller_keys_are_private():
    secrets = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "secrets")
    assert stat.S_IMODE(os.stat(secrets).st_mode) == 0o700
    for product in ("consul", "nomad"):
        st = os.stat(os.path.join(secrets, f"{product}-gossip.key"))
        assert stat.S_IMODE(st.st_mode) == 0o600
