"""Consul stand-in: cluster formation, leader loss, quorum loss, join refusal, API shapes, CLI formats."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from sandbox.agents.shapes import conforms

from .conftest import http, run, wait_for

KEY1 = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
KEY2 = "ZWTL+bgjHyQPhJRKcFe3ccirc2SFHmc/Nw67l8NQfdk="


def cfg(net, i, *, server, expect=3, dc="dc1", encrypt=None, join=(1, 2, 3), extra=""):
    lines = [
        f'node_name = "n{i}"',
        f'datacenter = "{dc}"',
        'data_dir = "data"',
        f"server = {str(server).lower()}",
        f'bind_addr = "{net(i)}"',
        f'client_addr = "{net(i)}"',
        "retry_join = [" + ", ".join(f'"{net(j)}"' for j in join if j != i) + "]",
        'retry_interval = "1s"',
        "performance { raft_multiplier = 1 }",
        'autopilot { server_stabilization_time = "3s" }',
    ]
    if server and expect:
        lines.append(f"bootstrap_expect = {expect}")
    if encrypt:
        lines.append(f'encrypt = "{encrypt}"')
    return "\n".join(lines) + "\n" + extra


def leader_of(addr):
    st, body = http(addr, "/v1/status/leader", timeout=2)
    return body if st == 200 and body else None


def raft_servers(addr):
    st, body = http(addr, "/v1/operator/raft/configuration", timeout=2)
    return body["Servers"] if st == 200 else None


def kv_put(addr, key, value, timeout=5):
    return http(addr, f"/v1/kv/{key}", method="PUT", body=value.encode(), timeout=timeout)


@pytest.mark.slow
def test_consul_cluster_lifecycle(consul, agents, net, api_samples, cli_ref):
    servers = [agents(consul, cfg(net, i, server=True), f"s{i}") for i in (1, 2, 3)]
    clients = {i: agents(consul, cfg(net, i, server=False), f"c{i}") for i in (4, 5)}
    a4, a5 = f"{net(4)}:8500", f"{net(5)}:8500"

    # --- cluster forms: 5 alive members, one leader, 3 voters
    wait_for(lambda: len([m for m in http(a5, "/v1/agent/members")[1] if m["Status"] == 1]) == 5, 30, what="5 alive members")
    leader = wait_for(lambda: leader_of(a4), 20, what="a leader")
    assert leader in {f"{net(i)}:8300" for i in (1, 2, 3)}
    for i in (1, 2, 3):
        assert wait_for(lambda i=i: leader_of(f"{net(i)}:8500"), 10) == leader
    peers = wait_for(lambda: raft_servers(a4), 10)
    assert sorted(s["Address"] for s in peers) == sorted(f"{net(i)}:8300" for i in (1, 2, 3))
    assert [s["Voter"] for s in peers] == [True] * 3 and sum(s["Leader"] for s in peers) == 1

    # --- KV through clients (forwarded to the leader, replicated)
    env = {"CONSUL_HTTP_ADDR": f"http://{a4}"}
    r = run(consul, "kv", "put", "app/config", "v1", env=env)
    assert r.returncode == 0 and r.stdout.strip() == "Success! Data written to: app/config"
    r = run(consul, "kv", "get", "-http-addr", a5, "app/config")
    assert r.returncode == 0 and r.stdout == "v1\n"
    assert run(consul, "kv", "get", "-http-addr", a5, "missing/key").returncode == 1

    # --- CLI formats (cli.json)
    r = run(consul, "members", env=env)
    lines = r.stdout.splitlines()
    assert lines[0].split() == cli_ref["consul"]["members"]["source_headers"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
    assert set(rows) == {"n1", "n2", "n3", "n4", "n5"}
    assert rows["n1"][1:5] == [f"{net(1)}:8301", "alive", "server", "1.20.1"]
    assert rows["n4"][3] == "client"
    assert run(consul, "members", "-status=failed", env=env).returncode == 2
    r = run(consul, "operator", "raft", "list-peers", env=env)
    lines = r.stdout.splitlines()
    assert lines[0].split() == cli_ref["consul"]["operator raft list-peers"]["headers"]
    assert sorted(ln.split()[3] for ln in lines[1:]) == ["follower", "follower", "leader"]
    info = run(consul, "info", "-http-addr", f"{net(1)}:8500").stdout
    assert "consul:" in info and "raft:" in info and "\tserver = true" in info

    # --- every response has the documented keys and types
    sample = api_samples["consul"]
    checks = {
        "GET /v1/status/leader": http(a4, "/v1/status/leader"),
        "GET /v1/status/peers": http(a4, "/v1/status/peers"),
        "GET /v1/agent/self": http(a4, "/v1/agent/self"),
        "GET /v1/agent/members": http(a4, "/v1/agent/members"),
        "GET /v1/operator/raft/configuration": http(a4, "/v1/operator/raft/configuration"),
        "GET /v1/operator/autopilot/health": http(a4, "/v1/operator/autopilot/health"),
        "GET /v1/catalog/nodes": wait_for(lambda: (lambda r: r if len(r[1]) == 5 else None)(http(a4, "/v1/catalog/nodes")), 10),
        "GET /v1/kv/:key": http(a4, "/v1/kv/app/config"),
        "PUT /v1/kv/:key": kv_put(a4, "app/other", "x"),
        "GET /v1/health/state/:state": http(a4, "/v1/health/state/any"),
        "GET /v1/operator/keyring": http(a4, "/v1/operator/keyring"),
    }
    for key, (status, body) in checks.items():
        assert status == 200, (key, status, body)
        assert conforms(sample[key], body) == [], key
    # autopilot state: the docs give the per-server object as a separate block
    state_sample = dict(sample["GET /v1/operator/autopilot/state"])
    server_block = sample["_meta"]["GET /v1/operator/autopilot/state"]["other_json_blocks"]["Server Response Format"]
    state_sample["Servers"] = {"00000000-0000-0000-0000-000000000000": server_block}
    status, state = http(a4, "/v1/operator/autopilot/state")
    assert status == 200 and conforms(state_sample, state) == []
    assert sorted(sv["Status"] for sv in state["Servers"].values()) == ["leader", "voter", "voter"]
    self_ = checks["GET /v1/agent/self"][1]
    assert self_["Config"]["Version"] == "1.20.1" and self_["Config"]["Server"] is False
    assert checks["GET /v1/agent/members"][1][0]["Tags"]["build"].startswith("1.20.1:")
    assert checks["GET /v1/kv/:key"][1][0]["Value"] == "djE="  # base64("v1")
    assert http(a4, "/v1/kv/app/config?raw") == (200, "v1")
    assert http(a4, "/v1/kv/app/?keys")[1] == ["app/config", "app/other"]
    health = checks["GET /v1/operator/autopilot/health"][1]
    assert health["Healthy"] is True and health["FailureTolerance"] == 1 and len(health["Servers"]) == 3

    # --- stop the leader: another is elected within 10 s and writes keep working
    old = next(s for s, i in zip(servers, (1, 2, 3), strict=True) if f"{net(i)}:8300" == leader)
    old.kill()
    t0 = time.monotonic()
    new = wait_for(lambda: (lambda x: x if x and x != leader else None)(leader_of(a5)), 10, 0.1, what="new leader")
    assert time.monotonic() - t0 < 10
    assert new != leader
    wait_for(lambda: kv_put(a5, "app/config", "v2") == (200, True), 10, what="KV write after failover")
    assert http(a4, "/v1/kv/app/config?raw") == (200, "v2")

    # --- the old leader restarts: rejoins, non-voter first, voter after server_stabilization_time
    old_idx = int(old.name[1:])
    # autopilot removes the dead server (cleanup_dead_servers) while a majority remains
    wait_for(lambda: (lambda ss: ss is not None and len(ss) == 2 and f"n{old_idx}" not in [s["Node"] for s in ss])(raft_servers(a5)),
             20, what="dead server cleaned up")
    old.start()
    seen_nonvoter = wait_for(lambda: any(s["Node"] == f"n{old_idx}" and not s["Voter"] for s in raft_servers(a5) or []),
                             20, 0.05, what="restarted server as non-voter")
    assert seen_nonvoter
    wait_for(lambda: any(s["Node"] == f"n{old_idx}" and s["Voter"] for s in raft_servers(a5) or []), 20, what="promotion")
    assert wait_for(lambda: http(f"{net(old_idx)}:8500", "/v1/kv/app/config?raw")[1] == "v2", 10)
    # autopilot health returns to healthy with a full failure tolerance
    wait_for(lambda: http(a4, "/v1/operator/autopilot/health")[1]["FailureTolerance"] == 1, 15, what="healthy again")

    # --- a client stopped with SIGTERM leaves (leave_on_terminate defaults to true on clients)
    clients[5].stop(signal.SIGTERM)
    wait_for(lambda: [m["Status"] for m in http(a4, "/v1/agent/members")[1] if m["Name"] == "n5"] == [3], 15, what="n5 left")

    # --- stop two of three servers: writes fail cleanly (error, no hang)
    cur_leader = leader_of(a4)
    victims = [s for s, i in zip(servers, (1, 2, 3), strict=True) if f"{net(i)}:8300" != cur_leader][:1]
    victims.append(next(s for s, i in zip(servers, (1, 2, 3), strict=True) if f"{net(i)}:8300" == cur_leader))
    for v in victims:
        v.kill()
    survivor = next(i for s, i in zip(servers, (1, 2, 3), strict=True) if s not in victims)
    t0 = time.monotonic()
    status, body = kv_put(f"{net(survivor)}:8500", "app/config", "v3", timeout=15)
    assert status == 500
    assert time.monotonic() - t0 < 15
    r = run(consul, "kv", "put", "-http-addr", a4, "app/config", "v3", timeout=30)
    assert r.returncode == 1 and "Error" in r.stderr
    wait_for(lambda: leader_of(a4) is None, 15, what="leader lost")
    assert http(a4, "/v1/operator/autopilot/health")[0] in (429, 500)


def test_join_refused_wrong_datacenter_and_key(consul, agents, net, tmp_path):
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(20)
    try:
        a = agents(consul, cfg(net, 1, server=True, expect=1, encrypt=KEY1, join=()), "a", env={"NOTIFY_SOCKET": str(notify)})
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()
    wait_for(lambda: leader_of(f"{net(1)}:8500"), 15, what="single-server leader")
    b = agents(consul, cfg(net, 2, server=False, dc="dc2", encrypt=KEY1, join=(1,)), "b")
    c = agents(consul, cfg(net, 3, server=False, encrypt=KEY2, join=(1,)), "c")
    d = agents(consul, cfg(net, 4, server=False, encrypt=KEY1, join=(1,)), "d")
    wait_for(lambda: "n4" in [m["Name"] for m in http(f"{net(1)}:8500", "/v1/agent/members")[1]], 15, what="good client joined")
    wait_for(lambda: "wrong datacenter" in b.log, 15, what="dc refusal logged")
    wait_for(lambda: "No installed keys could decrypt" in c.log, 15, what="key refusal logged")
    assert "wrong datacenter 'dc2'" in a.log
    names = [m["Name"] for m in http(f"{net(1)}:8500", "/v1/agent/members")[1]]
    assert "n2" not in names and "n3" not in names
    assert [m["Name"] for m in http(f"{net(2)}:8500", "/v1/agent/members")[1]] == ["n2"]
    # join over the HTTP API / CLI reports the failure too
    r = run(consul, "join", "-http-addr", f"{net(3)}:8500", f"{net(1)}")
    assert r.returncode == 1 and "No installed keys could decrypt" in r.stderr
    assert d.alive()


def test_single_server_snapshot_and_transfer(consul, agents, net, tmp_path):
    agents(consul, cfg(net, 1, server=True, expect=1, join=()), "a")
    addr = f"{net(1)}:8500"
    wait_for(lambda: leader_of(addr), 15)
    wait_for(lambda: kv_put(addr, "k", "v") == (200, True), 10)
    snap = tmp_path / "backup.snap"
    r = run(consul, "snapshot", "save", "-http-addr", addr, str(snap))
    assert r.returncode == 0 and r.stdout.startswith("Saved and verified snapshot to index ")
    assert snap.stat().st_size > 0
    st, _ = http(addr, "/v1/operator/raft/transfer-leader", method="POST", body=b"")
    assert st == 500  # no other voter to transfer to
    assert http(addr, "/v1/operator/raft/transfer-leader")[0] == 405


def test_retry_join_azure_cloud_auto_join(consul, agents, net):
    """Agents find the servers through IMDS + ARM (scale set NICs and tagged NICs), like go-discover."""
    from sandbox.agents.testing import SUB, FakeAzure, nic

    fake = FakeAzure([nic("s", net(1), {"consul-role": "server"}), nic("x", net(9), {"consul-role": "other"})],
                     [nic("vm0", net(1))])
    env = {"HASHISTACK_SANDBOX_IMDS_URL": fake.url, "HASHISTACK_SANDBOX_ARM_URL": fake.url}
    try:
        agents(consul, cfg(net, 1, server=True, expect=1, join=()), "s")
        tag_join = f'retry_join = ["provider=azure tag_name=consul-role tag_value=server subscription_id={SUB}"]\n'
        vmss_join = f'retry_join = ["provider=azure resource_group=rg1 vm_scale_set=servers subscription_id={SUB}"]\n'
        agents(consul, cfg(net, 2, server=False, join=()) + tag_join, "c2", env=env)
        agents(consul, cfg(net, 3, server=False, join=()) + vmss_join, "c3", env=env)
        wait_for(lambda: sorted(m["Name"] for m in http(f"{net(1)}:8500", "/v1/agent/members")[1] if m["Status"] == 1)
                 == ["n1", "n2", "n3"], 20, what="auto-joined clients")
        assert any(p == "/metadata/identity/oauth2/token" and h.get("Metadata") == "true" for p, _q, h in fake.requests)
    finally:
        fake.close()


@pytest.mark.slow
def test_rolling_upgrade_is_observable(bins, agents, net):
    """Servers replaced one at a time by a newer build keep their node ids and data; versions show in the API."""
    old, new = bins[("consul", "1.20.1")], bins[("consul", "1.20.2")]
    servers = {i: agents(old, cfg(net, i, server=True), f"s{i}") for i in (1, 2, 3)}
    a1 = f"{net(1)}:8500"
    wait_for(lambda: leader_of(a1), 30, what="leader")
    wait_for(lambda: kv_put(a1, "before", "upgrade") == (200, True), 10)
    ids = {m["Name"]: m["Tags"]["id"] for m in http(a1, "/v1/agent/members")[1]}
    # operator raft transfer-leader moves leadership to the chosen voter
    cur = leader_of(a1)
    target = next(sv for sv in raft_servers(a1) if not sv["Leader"])
    r = run(old, "operator", "raft", "transfer-leader", "-http-addr", a1, f"-id={target['ID']}")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: leader_of(a1) == target["Address"], 10, what="leadership transferred")
    assert cur != target["Address"]
    for i in (1, 2, 3):
        addr = f"{net(i)}:8500"
        if i == 2:
            # graceful path: `consul leave` removes the server from the raft configuration first
            r = run(old, "leave", "-http-addr", addr)
            assert r.returncode == 0 and r.stdout.strip() == "Graceful leave complete"
            servers[i].proc.wait(15)
            wait_for(lambda i=i: f"n{i}" not in [s["Node"] for s in raft_servers(f"{net(1 if i != 1 else 3)}:8500") or [{"Node": f"n{i}"}]],
                     15, what="left server removed from raft")
        else:
            servers[i].stop(signal.SIGTERM)
        servers[i].exe = new
        servers[i].start()
        wait_for(lambda addr=addr: http(addr, "/v1/agent/self")[1]["Config"]["Version"] == "1.20.2", 20, what="new version up")
        other = f"{net(3 if i != 3 else 1)}:8500"
        wait_for(lambda i=i, other=other: any(s["Node"] == f"n{i}" and s["Voter"] for s in raft_servers(other) or []), 30,
                 what=f"n{i} voter again")
        wait_for(lambda other=other: (lambda h: h[0] == 200 and h[1]["Healthy"] and h[1]["FailureTolerance"] == 1)(
            http(other, "/v1/operator/autopilot/health")), 30, what="cluster healthy")
        builds = {m["Name"]: m["Tags"]["build"].split(":")[0] for m in http(other, "/v1/agent/members")[1]}
        assert builds[f"n{i}"] == "1.20.2"
    health = http(a1, "/v1/operator/autopilot/health")[1]
    assert {s["Version"] for s in health["Servers"]} == {"1.20.2"}
    assert {m["Name"]: m["Tags"]["id"] for m in http(a1, "/v1/agent/members")[1]} == ids  # node ids persisted
    assert http(a1, "/v1/kv/before?raw") == (200, "upgrade")
    # SIGHUP reloads configuration without restarting
    servers[1].proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "Reloaded configuration" in servers[1].log, 10, what="reload")
    assert servers[1].alive()


def test_gossip_key_persists_in_keyring(consul, agents, net):
    a = agents(consul, cfg(net, 1, server=True, expect=1, encrypt=KEY1, join=()), "a")
    addr = f"{net(1)}:8500"
    wait_for(lambda: leader_of(addr), 15)
    keyring = a.workdir / "data" / "serf" / "local.keyring"
    assert keyring.is_file()
    a.stop()
    (a.workdir / "config" / "agent.hcl").write_text(cfg(net, 1, server=True, expect=1, encrypt=KEY2, join=()))
    a.start()
    wait_for(lambda: leader_of(addr), 15)
    assert "ignoring the encrypt key" in a.log
    st, rings = http(addr, "/v1/operator/keyring")
    assert st == 200 and list(rings[0]["Keys"]) == [KEY1]
