"""Verify playbooks/upgrade.yml on 3 servers + 1 client (testinfra over SSH, Molecule's inventory).

side_effect.yml upgraded Consul 1.20.0 -> 1.20.1 and Nomad 1.9.2 -> 1.9.3 while a KV writer ran on client-1, then
restored the snapshots the upgrade took. The tests without a host run once and drive upgrade.yml again."""

import json
import os
import re
import stat
import subprocess
import sys

import testinfra

SERVERS = ["server-1", "server-2", "server-3"]
TARGET = {"consul": "1.20.1", "nomad": "1.9.3"}
EPHEMERAL = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "")
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def _get(host, port, path):
    return json.loads(host.check_output("curl -sf http://127.0.0.1:%s%s", str(port), path))


def _upgrade(*extra):
    """Runs upgrade.yml against the scenario's inventory; returns (rc, output)."""
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, os.path.join(REPO, "playbooks", "upgrade.yml"), *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.join(REPO, "molecule", "upgrade"), check=False)
    return p.returncode, p.stdout + p.stderr


def _recap(out):
    """PLAY RECAP counters per host; every host of the scenario must be there."""
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)
    recap = {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
             for m in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", out, re.M)}
    assert set(recap) >= set(SERVERS + ["client-1"]), out[-3000:]
    return recap


def test_agents_run_the_new_build(host):
    me = _get(host, 8500, "/v1/agent/self")
    assert me["Config"]["Version"] == TARGET["consul"]
    nomad = _get(host, 4646, "/v1/agent/self")["config"]["Version"]
    assert (nomad["Version"] if isinstance(nomad, dict) else nomad) == TARGET["nomad"]
    for product, version in TARGET.items():
        assert host.file(f"/usr/local/bin/{product}").linked_to == f"/opt/hashicorp/{product}/{version}/{product}"


def test_every_member_on_the_new_build_and_leadership_intact(host):
    members = _get(host, 8500, "/v1/agent/members")
    assert {m["Tags"]["build"].split(":")[0] for m in members} == {TARGET["consul"]}
    assert all(m["Status"] == 1 for m in members) and len(members) == 4
    if host.backend.get_hostname() in SERVERS:
        raft = _get(host, 8500, "/v1/operator/raft/configuration")
        assert len(raft["Servers"]) == 3 and sum(s["Leader"] for s in raft["Servers"]) == 1
        health = _get(host, 8500, "/v1/operator/autopilot/health")
        assert health["Healthy"] and health["FailureTolerance"] == 1
        nomad = _get(host, 4646, "/v1/operator/autopilot/health")
        assert nomad["Healthy"] and nomad["FailureTolerance"] == 1
        assert {s["Version"] for s in nomad["Servers"]} == {TARGET["nomad"]}
        nodes = _get(host, 4646, "/v1/nodes")
        assert [(n["Name"], n["Status"], n["SchedulingEligibility"]) for n in nodes] == [("client-1", "ready", "eligible")]


def test_snapshots_kept_private_on_the_controller():
    d = os.path.join(EPHEMERAL, "secrets", "snapshots")
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    names = sorted(os.listdir(d))
    assert [re.sub(r"\d{8}T\d{6}Z", "TS", n) for n in names] == ["molecule-consul-TS.snap", "molecule-nomad-TS.snap"]
    for n in names:
        st = os.stat(os.path.join(d, n))
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_size > 0


def test_no_acknowledged_write_lost_and_none_failed():
    evidence = os.path.join(EPHEMERAL, "upgrade-evidence")
    with open(os.path.join(evidence, "writer.json")) as f:
        writer = json.load(f)
    with open(os.path.join(evidence, "keys.json")) as f:
        keys = {int(k.rsplit("/", 1)[1]) for k in json.load(f)}
    assert writer["failed"] == []
    assert len(writer["acked"]) >= 40  # the writer ran through the whole upgrade (0.25 s per write)
    assert set(writer["acked"]) <= keys


def test_check_mode_and_rerun_change_nothing():
    rc, out = _upgrade("--check")
    assert rc == 0, out
    assert "Nothing to do" in out
    assert all(r["changed"] == 0 for r in _recap(out).values()), out
    rc, out = _upgrade()
    assert rc == 0, out
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in _recap(out).values()), out


def test_downgrade_refused_before_anything_changes():
    rc, out = _upgrade("-e", "consul_version=1.20.0")
    assert rc != 0
    assert "Refusing to downgrade Consul on client-1, server-1, server-2, server-3 from 1.20.1 to 1.20.0" in out
    assert all(r["changed"] == 0 for r in _recap(out).values()), out
    rc, out = _upgrade("-e", "consul_version=1.20.0", "-e", "hashistack_upgrade_allow_downgrade=true", "--check")
    assert rc == 0, out
    assert "Consul -> 1.20.0, servers one at a time" in out
    assert all(r["changed"] == 0 for r in _recap(out).values()), out


def test_check_mode_before_the_upgrade_printed_the_plan_and_changed_nothing():
    with open(os.path.join(EPHEMERAL, "upgrade-evidence", "check.txt")) as f:
        out = f.read()
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in _recap(out).values()), out
    for product, target in TARGET.items():
        line = next(x for x in out.splitlines() if f"{product.capitalize()} -> {target}, servers one at a time" in x)
        order = re.search(r"one at a time: ([\w, -]+?)( \(the leader ([\w-]+) last|;)", line)
        assert sorted(order.group(1).split(", ")) == SERVERS
        assert order.group(3) == order.group(1).split(", ")[-1]  # the leader is last
        assert "raft applied index" in line and "autopilot healthy" in line and "failure tolerance back to 1" in line
    assert "Clients in batches of 1: client-1" in out and "drained" in out
    assert "Snapshots first" in out


def test_a_server_down_stops_the_run_before_anything_changes():
    server = testinfra.get_host(f"ansible://server-3?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}", sudo=True)
    server.check_output("systemctl stop consul")
    try:
        rc, out = _upgrade()
        assert rc != 0
        assert "Consul version of server-3 is unknown" in " ".join(out.split())
        assert all(r["changed"] == 0 for r in _recap(out).values()), out
    finally:
        server.check_output("systemctl start consul")
