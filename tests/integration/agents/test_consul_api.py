"""Consul stand-in against the HTTP API and CLI documentation, endpoint by endpoint (shape, status, headers),
on one shared cluster (a server, two clients): KV incl. the fixed CAS delete and keys index, blocking queries
on a server and on a client, sessions and locks, transactions, catalog and health, the agent's services and
checks, maintenance, force-leave, autopilot configuration, metrics, snapshots; and through py-consul."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest

from sandbox.agents.shapes import conforms, samples

from .conftest import http, map_sample, run, wait_for

S = samples("consul")


def _cfg(net, i, server, extra=""):
    return "\n".join([
        f'node_name = "n{i}"', 'data_dir = "data"', f"server = {str(server).lower()}", f'bind_addr = "{net(i)}"',
        f'client_addr = "{net(i)}"', f'retry_join = ["{net(1)}"]' if i != 1 else "", 'retry_interval = "1s"',
        "performance { raft_multiplier = 1 }", 'session_ttl_min = "1s"', "limits { kv_max_value_size = 4096 }",
        'autopilot { server_stabilization_time = "2s" }', "ui_config { enabled = true }",
        "bootstrap_expect = 1" if server else "", extra]) + "\n"


@pytest.fixture(scope="module")
def cluster(consul, module_agents, module_net):
    net = module_net
    srv = module_agents(consul, _cfg(net, 1, True), "s1")
    c2 = module_agents(consul, _cfg(net, 2, False, 'telemetry { prometheus_retention_time = "60s" }'), "c2")
    c3 = module_agents(consul, _cfg(net, 3, False), "c3")
    s, c = f"{net(1)}:8500", f"{net(2)}:8500"
    wait_for(lambda: http(s, "/v1/status/leader", timeout=2)[1], 30, what="leader")
    wait_for(lambda: len(http(s, "/v1/catalog/nodes")[1]) == 3, 30, what="3 nodes in the catalog")
    return {"server": s, "client": c, "net": net, "agents": {"s1": srv, "c2": c2, "c3": c3}}


def kv_put(addr, key, value, q=""):
    return http(addr, f"/v1/kv/{key}{q}", method="PUT", body=value.encode() if isinstance(value, str) else value)


# ---------------------------------------------------------------- KV

def test_kv_contract_and_fixed_bugs(cluster):
    s, c = cluster["server"], cluster["client"]
    assert kv_put(c, "kv/a", "one") == (200, True)
    st, body, h = http(c, "/v1/kv/kv/a", headers=True)
    assert st == 200 and conforms(S["GET /v1/kv/:key"], body) == [] and int(h["X-Consul-Index"]) == body[0]["ModifyIndex"]
    assert h["X-Consul-KnownLeader"] == "true" and "X-Consul-LastContact" in h
    idx = body[0]["ModifyIndex"]
    # regression: DELETE ?cas=<wrong> answers false and keeps the key; the right index deletes it
    assert http(c, f"/v1/kv/kv/a?cas={idx + 100}", method="DELETE") == (200, False)
    assert http(s, "/v1/kv/kv/a?raw") == (200, "one")
    assert http(c, "/v1/kv/kv/a?cas=0", method="DELETE") == (200, False)
    assert http(c, f"/v1/kv/kv/a?cas={idx}", method="DELETE") == (200, True)
    assert http(s, "/v1/kv/kv/a")[0] == 404
    # PUT cas: 0 creates only if absent, a stale index is refused
    assert kv_put(c, "kv/b", "x", "?cas=0") == (200, True)
    assert kv_put(c, "kv/b", "y", "?cas=0") == (200, False)
    # regression: ?keys&separator=/ carries X-Consul-Index like every blocking endpoint
    kv_put(c, "kv/dir/x", "1")
    kv_put(c, "kv/dir/y/z", "1")
    st, keys, h = http(c, "/v1/kv/kv/?keys&separator=/", headers=True)
    assert st == 200 and keys == ["kv/b", "kv/dir/"] and int(h["X-Consul-Index"]) > 1
    st, _b, h = http(c, "/v1/kv/nothing/here", headers=True)
    assert st == 404 and int(h["X-Consul-Index"]) >= 1
    assert http(c, "/v1/kv/kv/b?cas=1&acquire=x", method="PUT", body=b"") == \
        (400, "Conflicting flags: acquire=x&cas=1")
    assert http(c, "/v1/kv/big", method="PUT", body=b"x" * 5000)[0] == 413
    assert kv_put(c, "kv/flags", "v", "?flags=42") == (200, True)
    assert http(c, "/v1/kv/kv/flags")[1][0]["Flags"] == 42
    st, body, h = http(c, "/v1/kv/kv/flags", method="POST", body=b"", headers=True)
    assert st == 405 and body == "method POST not allowed" and h["Allow"] == "OPTIONS,DELETE,GET,PUT"
    assert http(c, "/v1/no/such/endpoint") == (404, "Invalid URL path: not a recognized HTTP API endpoint\n")


def _blocking(addr, path, min_index, wait, write):
    t = threading.Timer(0.5, write)
    t.start()
    t0 = time.monotonic()
    st, body, h = http(addr, f"{path}{'&' if '?' in path else '?'}index={min_index}&wait={wait}", headers=True, timeout=30)
    t.join()
    return st, body, h, time.monotonic() - t0


@pytest.mark.parametrize("where", ["server", "client"])
def test_blocking_queries(cluster, where):
    """A blocking query waits until its data changes (or ?wait elapses), on a server and on a client agent
    (which forwards it); the index moves with the change."""
    addr = cluster[where]
    key = f"block/{where}"
    kv_put(addr, key, "v0")
    st, body, h = http(addr, f"/v1/kv/{key}", headers=True)
    idx = int(h["X-Consul-Index"])
    # an unrelated write does not wake it; the watched key does
    st, body, h, took = _blocking(addr, f"/v1/kv/{key}", idx, "20s",
                                  lambda: (kv_put(addr, "block/other", "x"), time.sleep(0.5), kv_put(addr, key, "v1")))
    assert st == 200 and base64.b64decode(body[0]["Value"]) == b"v1"
    assert int(h["X-Consul-Index"]) > idx and took >= 0.9
    # nothing changes: the query returns after ?wait (with jitter up to wait/16), with the same index
    idx = int(h["X-Consul-Index"])
    t0 = time.monotonic()
    st, body, h = http(addr, f"/v1/kv/{key}?index={idx}&wait=400ms", headers=True)
    assert st == 200 and int(h["X-Consul-Index"]) == idx and time.monotonic() - t0 >= 0.4
    # list, keys, catalog and health views block too
    st, _b, h = http(addr, "/v1/catalog/services", headers=True)
    sidx = int(h["X-Consul-Index"])
    svc = {"Name": f"blk-{where}", "Port": 1}
    st, services, h, took = _blocking(addr, "/v1/catalog/services", sidx, "20s",
                                      lambda: http(addr, "/v1/agent/service/register", "PUT", svc))
    assert f"blk-{where}" in services and int(h["X-Consul-Index"]) > sidx
    assert http(addr, f"/v1/kv/{key}?index=1&wait=soon") == (400, "Invalid wait time")
    assert http(addr, f"/v1/kv/{key}?index=abc") == (400, "Invalid index")


# ---------------------------------------------------------------- sessions, locks

def test_sessions_locks_and_lock_delay(cluster):
    c = cluster["client"]
    st, body = http(c, "/v1/session/create", "PUT", {"Name": "s", "TTL": "1s", "LockDelay": "1s"})
    assert st == 200 and conforms(S["PUT /v1/session/create"], body) == []
    sid = body["ID"]
    for key, path in (("GET /v1/session/info/:uuid", f"/v1/session/info/{sid}"), ("GET /v1/session/list", "/v1/session/list"),
                      ("GET /v1/session/node/:node", "/v1/session/node/n2"), ("PUT /v1/session/renew/:uuid", f"/v1/session/renew/{sid}")):
        st, body = http(c, path, "PUT" if "renew" in path else "GET")
        assert st == 200 and conforms(S[key], body) == [] and any(x["ID"] == sid for x in body), key
    info = http(c, f"/v1/session/info/{sid}")[1][0]
    assert info["Node"] == "n2" and info["NodeChecks"] == ["serfHealth"] and info["Behavior"] == "release"
    assert info["LockDelay"] == 1_000_000_000 and info["TTL"] == "1s"
    assert kv_put(c, "lock/k", "held", f"?acquire={sid}") == (200, True)
    e = http(c, "/v1/kv/lock/k")[1][0]
    assert e["Session"] == sid and e["LockIndex"] == 1
    st, other = http(c, "/v1/session/create", "PUT", {"Behavior": "delete"})
    assert kv_put(c, "lock/k", "mine", f"?acquire={other['ID']}") == (200, False)
    assert kv_put(c, "lock/k", "x", f"?release={other['ID']}") == (200, False)
    # a TTL session that is not renewed is invalidated (within 2 x TTL); its lock is released, the lock-delay holds
    wait_for(lambda: http(c, f"/v1/session/info/{sid}")[1] == [], 10, 0.1, what="TTL session invalidated")
    e = http(c, "/v1/kv/lock/k")[1][0]
    assert e["Session"] == "" and e["LockIndex"] == 1
    assert http(c, f"/v1/session/renew/{sid}") [0] in (404, 405)
    assert http(c, f"/v1/session/renew/{sid}", "PUT") == (404, f"Session id '{sid}' not found")
    wait_for(lambda: kv_put(c, "lock/k", "mine", f"?acquire={other['ID']}") == (200, True), 10, 0.2,
             what="acquisition after the lock-delay")
    # destroying a delete-behaviour session deletes the keys it holds
    assert http(c, f"/v1/session/destroy/{other['ID']}", "PUT") == (200, True)
    assert http(c, "/v1/kv/lock/k")[0] == 404
    st, body = http(c, "/v1/session/create", "PUT", {"TTL": "100h"})
    assert st == 500 and "Invalid Session TTL" in body
    st, body = http(c, "/v1/session/create", "PUT", {"Node": "nope"})
    assert st == 500 and "Missing node registration" in body


def test_consul_lock_cli(cluster, consul, tmp_path):
    """`consul lock` holds the lock (a session on <prefix>/.lock) while the child runs; a second holder waits."""
    c = cluster["client"]
    env = {"CONSUL_HTTP_ADDR": c}
    marker = tmp_path / "inside"
    first = __import__("subprocess").Popen(["/usr/bin/python3", str(consul), "lock", "-verbose", "svc/leader",
                                            f"touch {marker}; sleep 3"], env={**__import__("os").environ, **env},
                                           stdout=-1, stderr=-1, text=True)
    wait_for(lambda: marker.exists(), 20, what="first child running")
    held = http(c, "/v1/kv/svc/leader/.lock")[1][0]
    assert held["Session"] and held["Flags"] == 0x2DDCCBC058A50C18
    r = run(consul, "lock", "-timeout=1s", "svc/leader", "true", env=env)
    assert r.returncode == 1 and "Shutdown triggered or timeout during lock acquisition" in r.stderr
    out, err = first.communicate(timeout=30)
    assert first.returncode == 0, err
    assert "Setting up lock at path: svc/leader/.lock" in out and "Cleanup succeeded" in out
    assert http(c, "/v1/kv/svc/leader/.lock")[0] == 404
    r = run(consul, "lock", "-child-exit-code", "svc/leader", "exit 3", env=env)
    assert r.returncode == 2
    assert run(consul, "lock", "-n=2", "svc/sem", "true", env=env).returncode == 1  # semaphores: refused, not faked


# ---------------------------------------------------------------- transactions

def test_txn(cluster):
    c = cluster["client"]
    v = base64.b64encode(b"hello").decode()
    ops = [{"KV": {"Verb": "set", "Key": "txn/a", "Value": v}}, {"KV": {"Verb": "get", "Key": "txn/a"}}]
    st, body = http(c, "/v1/txn", "PUT", ops)
    result_sample = {"KV": dict(S["PUT /v1/txn"]["Results"][0]["KV"], Value=None)}  # docs: "Base64 ..., or null"
    assert st == 200 and body["Errors"] is None and conforms(result_sample, body["Results"][0]) == []
    assert body["Results"][0]["KV"]["Value"] is None and body["Results"][1]["KV"]["Value"] == v
    idx = body["Results"][0]["KV"]["ModifyIndex"]
    st, body = http(c, "/v1/txn", "PUT", [{"KV": {"Verb": "set", "Key": "txn/b", "Value": v}},
                                          {"KV": {"Verb": "cas", "Key": "txn/a", "Index": idx + 99, "Value": v}}])
    assert st == 409 and body["Results"] is None
    assert body["Errors"] == [{"OpIndex": 1, "What": 'failed to set key "txn/a", index is stale'}]
    assert http(c, "/v1/kv/txn/b")[0] == 404  # rolled back
    st, body = http(c, "/v1/txn", "PUT", [{"KV": {"Verb": "get-tree", "Key": "txn/"}}, {"KV": {"Verb": "check-index", "Key": "txn/a", "Index": idx}}])
    assert st == 200 and [r["KV"]["Key"] for r in body["Results"]] == ["txn/a", "txn/a"]
    st, body = http(c, "/v1/txn", "PUT", [{"KV": {"Verb": "get", "Key": "x"}}] * 129)
    assert st == 413 and body == "Transaction contains too many operations (129 > 128)"
    st, body = http(c, "/v1/txn", "PUT", [{"Node": {"Verb": "get", "Node": {"Node": "n1"}}}])
    assert st == 400 and "not implemented by the sandbox stand-in" in body


# ---------------------------------------------------------------- catalog, health, agent services and checks

def test_catalog_health_services_checks_maintenance(cluster):
    s, c = cluster["server"], cluster["client"]
    reg = {"Name": "web", "ID": "web-1", "Port": 8080, "Tags": ["v1"], "Meta": {"m": "1"},
           "Check": {"CheckID": "web-ttl", "Name": "web ttl", "TTL": "30s"}}
    assert http(c, "/v1/agent/service/register", "PUT", reg) == (200, None)
    st, svcs = http(c, "/v1/agent/services")
    assert st == 200 and conforms(map_sample(S["GET /v1/agent/services"]), svcs) == [] and svcs["web-1"]["Port"] == 8080
    st, one = http(c, "/v1/agent/service/web-1")
    assert st == 200 and conforms(S["GET /v1/agent/service/:service_id"], one) == []
    st, checks = http(c, "/v1/agent/checks")
    assert conforms(map_sample(S["GET /v1/agent/checks"]), checks) == [] and checks["web-ttl"]["Status"] == "critical"
    assert wait_for(lambda: http(s, "/v1/health/service/web")[1], 10, what="service in the catalog")
    assert http(s, "/v1/health/service/web?passing")[1] == []
    assert http(c, "/v1/agent/check/pass/web-ttl?note=ok", "PUT") == (200, None)
    rows = wait_for(lambda: http(s, "/v1/health/service/web?passing")[1], 10, what="passing instance")
    assert conforms(S["GET /v1/health/service/:service"], rows) == [] and rows[0]["Service"]["ID"] == "web-1"
    assert {ch["CheckID"]: ch["Status"] for ch in rows[0]["Checks"]} == {"serfHealth": "passing", "web-ttl": "passing"}
    assert http(s, "/v1/health/service/web?passing=banana") == (400, "Invalid value for ?passing")
    # the check API and the documented responses of the catalog and health endpoints
    for key, path in (("GET /v1/catalog/services", "/v1/catalog/services"), ("GET /v1/catalog/datacenters", "/v1/catalog/datacenters"),
                      ("GET /v1/catalog/service/:service_name", "/v1/catalog/service/web?tag=v1"),
                      ("GET /v1/catalog/node/:node_name", "/v1/catalog/node/n2"), ("GET /v1/health/node/:node", "/v1/health/node/n2"),
                      ("GET /v1/health/checks/:service", "/v1/health/checks/web"), ("GET /v1/health/state/:state", "/v1/health/state/passing"),
                      ("GET /v1/catalog/nodes", "/v1/catalog/nodes")):
        st, body, h = http(c, path, headers=True)
        ref = map_sample(S[key]) if key == "GET /v1/catalog/services" else S[key]
        assert st == 200 and conforms(ref, body) == [], key
        if key != "GET /v1/catalog/datacenters":
            assert int(h["X-Consul-Index"]) > 1, key
    assert http(c, "/v1/catalog/services")[1]["web"] == ["v1"]
    assert http(c, "/v1/catalog/service/web?tag=v2")[1] == []
    # the servers' consul service: the usual server health check
    consul_rows = http(c, "/v1/health/service/consul?passing")[1]
    assert [r["Node"]["Node"] for r in consul_rows] == ["n1"] and consul_rows[0]["Service"]["Port"] == 8300
    # TTL expiry, TCP and HTTP checks
    assert http(c, "/v1/agent/check/register", "PUT", {"Name": "short", "TTL": "1s", "Status": "passing"}) == (200, None)
    wait_for(lambda: http(c, "/v1/agent/checks")[1]["short"]["Output"] == "TTL expired", 10, what="TTL expired")
    host, port = s.split(":")
    http(c, "/v1/agent/check/register", "PUT", {"Name": "tcp", "TCP": s, "Interval": "1s"})
    http(c, "/v1/agent/check/register", "PUT", {"Name": "http", "HTTP": f"http://{s}/v1/status/leader", "Interval": "1s"})
    http(c, "/v1/agent/check/register", "PUT", {"Name": "down", "TCP": f"{host}:1", "Interval": "1s"})
    wait_for(lambda: [http(c, "/v1/agent/checks")[1][k]["Status"] for k in ("tcp", "http", "down")] ==
             ["passing", "passing", "critical"], 15, what="TCP and HTTP checks run")
    assert http(c, "/v1/agent/checks")[1]["http"]["Output"].startswith(f"HTTP GET http://{s}/v1/status/leader: 200 OK")
    st, body = http(c, "/v1/agent/check/register", "PUT", {"Name": "script", "Args": ["true"], "Interval": "1s"})
    assert st == 400 and "script checks are not implemented by the sandbox stand-in" in body
    assert http(c, "/v1/agent/check/update/short", "PUT", {"Status": "warning", "Output": "hm"}) == (200, None)
    assert http(c, "/v1/agent/check/update/short", "PUT", {"Status": "bad"})[0] == 400
    assert http(c, "/v1/agent/check/fail/nope", "PUT")[0] == 404
    for cid in ("short", "tcp", "http", "down"):
        assert http(c, f"/v1/agent/check/deregister/{cid}", "PUT") == (200, None)
    # maintenance: a critical check on the node / the service, removed when disabled
    assert http(c, "/v1/agent/maintenance?enable=true&reason=patching", "PUT") == (200, None)
    chk = http(c, "/v1/agent/checks")[1]["_node_maintenance"]
    assert chk["Status"] == "critical" and chk["Notes"] == "patching"
    wait_for(lambda: http(s, "/v1/health/service/web?passing")[1] == [], 10, what="node in maintenance leaves passing")
    assert http(c, "/v1/agent/maintenance?enable=false", "PUT") == (200, None)
    assert http(c, "/v1/agent/service/maintenance/web-1?enable=true", "PUT") == (200, None)
    chk = http(c, "/v1/agent/checks")[1]["_service_maintenance:web-1"]
    assert chk["ServiceID"] == "web-1" and chk["Notes"].startswith("Maintenance mode is enabled for this service")
    assert http(c, "/v1/agent/maintenance", "PUT") == (400, "Missing value for enable")
    assert http(c, "/v1/agent/service/maintenance/web-1?enable=false", "PUT") == (200, None)
    wait_for(lambda: http(s, "/v1/health/service/web?passing")[1], 10, what="passing again")
    assert http(c, "/v1/agent/service/deregister/web-1", "PUT") == (200, None)
    wait_for(lambda: http(s, "/v1/catalog/service/web")[1] == [], 10, what="deregistered from the catalog")
    assert http(c, "/v1/agent/service/deregister/web-1", "PUT")[0] == 404


def test_catalog_and_maint_cli(cluster, consul):
    env = {"CONSUL_HTTP_ADDR": cluster["client"]}
    assert run(consul, "catalog", "datacenters", env=env).stdout == "dc1\n"
    r = run(consul, "catalog", "nodes", env=env)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["Node", "ID", "Address", "DC"] and sorted(ln.split()[0] for ln in lines[1:])[:2] == ["n1", "n2"]
    assert "consul" in run(consul, "catalog", "services", env=env).stdout.split()
    r = run(consul, "maint", "-enable", "-reason", "cli", env=env)
    assert r.returncode == 0 and r.stdout.strip() == "Node maintenance is now enabled"
    assert "Reason: cli" in run(consul, "maint", env=env).stdout
    assert run(consul, "maint", "-disable", env=env).stdout.strip() == "Node maintenance is now disabled"


# ---------------------------------------------------------------- force-leave

def test_force_leave_removes_only_the_dead_node(cluster, consul):
    """Regression: force-leave of a failed member makes it left (prune: forgotten) everywhere; the agent that
    received the request stays a healthy member."""
    s, c = cluster["server"], cluster["client"]
    env = {"CONSUL_HTTP_ADDR": c}
    cluster["agents"]["c3"].kill()
    wait_for(lambda: {m["Name"]: m["Status"] for m in http(s, "/v1/agent/members")[1]}.get("n3") == 4, 20, what="n3 failed")
    r = run(consul, "force-leave", "n3", env=env)
    assert r.returncode == 0 and r.stdout == ""
    wait_for(lambda: {m["Name"]: m["Status"] for m in http(s, "/v1/agent/members")[1]}["n3"] == 3, 10, what="n3 left")
    wait_for(lambda: "n3" not in [n["Node"] for n in http(s, "/v1/catalog/nodes")[1]], 10, what="n3 out of the catalog")
    assert cluster["agents"]["c2"].alive() and http(c, "/v1/agent/self")[0] == 200
    assert http(c, "/v1/agent/force-leave/n3?prune", "PUT") == (200, None)
    wait_for(lambda: "n3" not in [m["Name"] for m in http(s, "/v1/agent/members")[1]], 10, what="n3 pruned")
    # an alive member refutes a force-leave
    assert http(s, "/v1/agent/force-leave/n2", "PUT") == (200, None)
    time.sleep(1)
    assert {m["Name"]: m["Status"] for m in http(s, "/v1/agent/members")[1]}["n2"] == 1
    assert cluster["agents"]["s1"].alive() and cluster["agents"]["c2"].alive()
    assert run(consul, "force-leave", env=env).stderr.startswith("A single node name must be specified")


# ---------------------------------------------------------------- operator, metrics, snapshots, info

def test_autopilot_configuration_and_state(cluster, consul):
    s = cluster["server"]
    env = {"CONSUL_HTTP_ADDR": s}
    st, cfg = http(s, "/v1/operator/autopilot/configuration")
    assert st == 200 and conforms(S["GET /v1/operator/autopilot/configuration"], cfg) == []
    assert cfg["ServerStabilizationTime"] == "2s" and cfg["CleanupDeadServers"] is True
    new = dict(cfg, MaxTrailingLogs=300)
    assert http(s, f"/v1/operator/autopilot/configuration?cas={cfg['ModifyIndex'] + 7}", "PUT", new) == (200, False)
    assert http(s, f"/v1/operator/autopilot/configuration?cas={cfg['ModifyIndex']}", "PUT", new) == (200, True)
    assert http(s, "/v1/operator/autopilot/configuration")[1]["MaxTrailingLogs"] == 300
    r = run(consul, "operator", "autopilot", "set-config", "-max-trailing-logs=250", env=env)
    assert r.returncode == 0 and r.stdout.strip() == "Configuration updated!"
    out = run(consul, "operator", "autopilot", "get-config", env=env).stdout.splitlines()
    assert out[0] == "CleanupDeadServers = true" and "MaxTrailingLogs = 250" in out
    r = run(consul, "operator", "autopilot", "state", env=env)
    assert r.returncode == 0 and r.stdout.startswith("Healthy:                      true\n")
    assert "      Status:          leader" in r.stdout and "Voters:" in r.stdout
    state = json.loads(run(consul, "operator", "autopilot", "state", "-format=json", env=env).stdout)
    assert state["Healthy"] is True and len(state["Servers"]) == 1
    assert http(s, "/v1/operator/raft/peer", "DELETE")[0] == 400
    assert http(s, "/v1/operator/raft/peer?id=nope", "DELETE") == (500, 'id "nope" was not found in the Raft configuration\n')


def test_metrics(cluster):
    s, c = cluster["server"], cluster["client"]
    st, body = http(s, "/v1/agent/metrics")
    assert st == 200 and conforms(S["GET /v1/agent/metrics"], body) == []
    names = {g["Name"] for g in body["Gauges"]}
    assert {"consul.autopilot.healthy", "consul.runtime.alloc_bytes", "consul.consul.session_ttl.active"} <= names
    # request timings of the current 10 s interval (each metrics call is one; an interval may just have begun)
    wait_for(lambda: any(x["Name"] == "consul.api.http" for x in http(s, "/v1/agent/metrics")[1]["Samples"]), 5,
             what="HTTP request samples")
    assert http(s, "/v1/agent/metrics?format=prometheus") == \
        (415, "Prometheus is not enabled since its retention time is not positive")
    st, text = http(c, "/v1/agent/metrics?format=prometheus")
    assert st == 200 and "# TYPE consul_runtime_alloc_bytes gauge" in text


def test_snapshot_save_inspect_restore(cluster, consul, tmp_path):
    s = cluster["server"]
    env = {"CONSUL_HTTP_ADDR": s}
    kv_put(s, "snap/k", "before")
    f = tmp_path / "s.snap"
    r = run(consul, "snapshot", "save", str(f), env=env)
    assert r.returncode == 0 and r.stdout.startswith("Saved and verified snapshot to index ")
    r = run(consul, "snapshot", "inspect", str(f), env=env)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and [ln.split()[0] for ln in lines[:5]] == ["ID", "Size", "Index", "Term", "Version"]
    assert lines[6].split() == ["Type", "Count", "Size"] and any(ln.split()[:1] == ["KVS"] for ln in lines)
    kv_put(s, "snap/k", "after")
    kv_put(s, "snap/new", "x")
    r = run(consul, "snapshot", "restore", str(f), env=env)
    assert r.returncode == 0 and r.stdout.strip() == "Restored snapshot"
    assert http(s, "/v1/kv/snap/k?raw") == (200, "before") and http(s, "/v1/kv/snap/new")[0] == 404
    bad = tmp_path / "bad.snap"
    bad.write_bytes(f.read_bytes()[:-40])
    assert run(consul, "snapshot", "inspect", str(bad)).returncode == 1
    assert http(s, "/v1/snapshot", "PUT", b"not a snapshot")[0] == 400


def test_info_raft_indexes_and_ui(cluster, consul):
    s = cluster["server"]
    out = run(consul, "info", "-http-addr", s).stdout
    for k in ("commit_index", "last_log_index", "applied_index", "last_contact", "last_log_term", "term"):
        assert f"\t{k} = " in out, k
    raft = http(s, "/v1/agent/self")[1]["Stats"]["raft"]
    assert int(raft["applied_index"]) >= int(raft["commit_index"]) > 0 and raft["state"] == "Leader"
    st, page = http(s, "/ui/")
    assert st == 200 and "Consul" in page


# ---------------------------------------------------------------- a widely used client, from outside

def test_py_consul_client(cluster):
    consul_client = pytest.importorskip("consul")
    host, port = cluster["client"].split(":")
    c = consul_client.Consul(host=host, port=int(port))
    assert c.kv.put("py/key", "v1") is True
    index, data = c.kv.get("py/key")
    assert data["Value"] == b"v1" and index == str(data["ModifyIndex"])
    threading.Timer(0.5, lambda: c.kv.put("py/key", "v2")).start()
    index2, data = c.kv.get("py/key", index=index, wait="10s")
    assert data["Value"] == b"v2" and int(index2) > int(index)
    sid = c.session.create(name="py", ttl=10, behavior="delete")
    assert c.kv.put("py/lock", "x", acquire=sid) is True
    assert c.session.info(sid)[1]["ID"] == sid
    assert c.session.destroy(sid) is True
    assert c.kv.get("py/lock")[1] is None
    assert c.agent.service.register("pysvc", service_id="pysvc-1", port=9, check=consul_client.Check.ttl("30s")) is True
    c.agent.check.ttl_pass("service:pysvc-1")
    wait_for(lambda: c.health.service("pysvc", passing=True)[1], 10, what="py-consul sees a passing instance")
    assert "n1" in [n["Node"] for n in c.catalog.nodes()[1]]
    assert c.status.leader().endswith(":8300")
    assert c.agent.service.deregister("pysvc-1") is True
