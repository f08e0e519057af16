"""The shared HTTP plumbing: Go's ParseBool, query options, the blocking-query time rule, routes, Go-style
field matching, snapshot archives, the refused-settings table."""

from __future__ import annotations

import pytest

from sandbox.agents import snapshot
from sandbox.agents.config import check, unsupported
from sandbox.agents.httpapi import HTTPError, Request, Routes, block_time, canon, parse_bool, query_options
from sandbox.agents.net import RPCError


@pytest.mark.parametrize("s,want", [("1", True), ("t", True), ("T", True), ("TRUE", True), ("true", True), ("True", True),
                                    ("0", False), ("f", False), ("F", False), ("FALSE", False), ("false", False),
                                    ("False", False)])
def test_parse_bool_like_strconv(s, want):
    assert parse_bool(s) is want


@pytest.mark.parametrize("s", ["yes", "tRUE", "", "2", "on"])
def test_parse_bool_rejects(s):
    with pytest.raises(ValueError, match=r'strconv.ParseBool: parsing ".*": invalid syntax'):
        parse_bool(s)


def _req(q):
    import urllib.parse
    return Request("GET", "/v1/x", urllib.parse.parse_qs(q, keep_blank_values=True), b"", {})


def test_query_params():
    r = _req("purge=True&passing&stale&x=1&x=2")
    assert r.opt_bool("purge") is True and r.flag("passing") is True and r.get("x") == "1" and r.all("x") == ["1", "2"]
    assert _req("purge=").opt_bool("purge") is False  # Nomad: an empty value is the default
    with pytest.raises(HTTPError) as e:
        _req("purge=maybe").opt_bool("purge")
    assert e.value.status == 500 and 'Failed to parse value of "purge" (maybe) as a bool' in str(e.value)
    with pytest.raises(HTTPError):
        _req("passing=perhaps").flag("passing")
    qo = query_options(_req("index=42&wait=1m30s&stale"), "consul")
    assert (qo.min_index, qo.wait, qo.stale) == (42, 90.0, True)
    for q, msg in (("wait=10", "Invalid wait time"), ("index=-1", "Invalid index")):
        with pytest.raises(HTTPError, match=msg):
            query_options(_req(q), "consul")
    with pytest.raises(HTTPError, match="conflicting"):
        query_options(_req("stale&consistent"), "consul")
    assert query_options(_req("stale=false"), "nomad").stale is False


def test_block_time_jitter_and_caps():
    for _ in range(200):
        t = block_time(16.0, 300.0, 600.0)
        assert 16.0 <= t <= 17.0  # up to wait/16 more
        assert 600.0 <= block_time(3600.0, 300.0, 600.0) <= 637.5  # capped at the maximum (10 min for Consul)
        assert 300.0 <= block_time(0, 300.0, 600.0) <= 318.75  # no ?wait: the default (5 min)


def test_routes_and_canon():
    routes = Routes()
    routes.add("GET", "/v1/kv/<key...>", acl="key:read", acl_name="key")(lambda s, r: None)
    routes.add("PUT", "/v1/session/destroy/<uuid>", acl="session:write")(lambda s, r: None)
    ((r, p),) = routes.match("/v1/kv/a/b/c")
    assert p == {"key": "a/b/c"} and r.acl == "key:read" and r.acl_name == "key"
    assert routes.match("/v1/session/destroy/a/b") == []
    assert canon({"behavior": "delete", "TTL": "10s", "ttl": "x", "junk": 1}, ["Behavior", "TTL"]) == \
        {"Behavior": "delete", "TTL": "10s"}


def test_every_route_declares_its_acl():
    """The hook for ACL enforcement: every endpoint that needs an ACL says which (status endpoints need none)."""
    from sandbox.agents.consul import ConsulAgent
    from sandbox.agents.nomad import NomadAgent
    for agent in (ConsulAgent, NomadAgent):
        for r in agent.ROUTES.table:
            if "/status/" in r.pattern or r.pattern in ("/v1/catalog/datacenters", "/v1/regions", "/v1/agent/health",
                                                        "/v1/metrics", "/v1/agent/join",
                                                        # the docs: none (bootstrap), the token itself (self)
                                                        "/v1/acl/bootstrap", "/v1/acl/token/self"):
                continue
            assert r.acl, (agent.product, r.pattern)


def test_snapshot_archive_roundtrip_and_tamper():
    data = snapshot.archive({"kv": {"a": 1}}, 7, 2, [{"ID": "x", "Address": "1.2.3.4:8300"}], 1)
    meta, state = snapshot.read(data)
    assert state == {"kv": {"a": 1}} and meta["Index"] == 7 and meta["Term"] == 2 and meta["ID"].startswith("2-7-")
    import gzip
    import io
    import tarfile
    raw = gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        files = {m.name: t.extractfile(m).read() for m in t.getmembers()}
    files["state.bin"] = files["state.bin"].replace(b"1", b"2")
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as t:
        for name, b in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(b)
            t.addfile(ti, io.BytesIO(b))
    with pytest.raises(RPCError, match="sha256 hash mismatch for state.bin"):
        snapshot.read(buf.getvalue())
    with pytest.raises(RPCError):
        snapshot.read(b"garbage")
    assert snapshot.byte_size(1536) == "1.5KB" and snapshot.byte_size(0) == "0"


def test_unsupported_table():
    c, errs = check("consul", {"datacenter": "dc1", "ports": {"http": -1, "https": -1, "dns": -1}, "ui_config": {},
                               "autopilot": {}, "node_meta": {"any": "thing"}, "primary_datacenter": "dc1"})
    assert errs == [] and unsupported("consul", c) == []
    c, _ = check("consul", {"datacenter": "dc1", "primary_datacenter": "dc2", "tls": {"grpc": {"ca_file": "x"}},
                            "verify_incoming": True, "ports": {"grpc": 8502}})
    msgs = unsupported("consul", c)
    assert any(m.startswith("primary_datacenter: ") for m in msgs) and any(m.startswith("tls.grpc: ") for m in msgs)
    assert any(m.startswith("verify_incoming: ") for m in msgs)  # the pre-1.12 top-level TLS keys are not implemented
    assert any(m.startswith("ports.grpc: the value 8502 is not implemented") for m in msgs)
    c, _ = check("nomad", {"plugin": {"raw_exec": {"config": {"enabled": True}}}, "consul": {"address": "x:1", "ssl": True}})
    assert unsupported("nomad", c) == ["consul.ssl: the value true is not implemented by the sandbox nomad stand-in: "
                                       "only false is implemented (no TLS yet)"]


def test_route_acls_match_the_api_docs():
    """Each route's declared ACL is the one its API docs page lists (acl_required of the documented samples)."""
    import re

    from sandbox.agents.consul import ConsulAgent
    from sandbox.agents.nomad import NomadAgent
    from sandbox.agents.shapes import samples
    checked = 0
    for agent in (ConsulAgent, NomadAgent):
        meta = samples(agent.product)["_meta"]
        for key, m in meta.items():
            acl = (m.get("acl_required") or "").split(" ")[0]
            if not acl or "/acl/" in key or "keyring/keys" in key:
                continue  # ACL endpoints belong to the ACL work; the keyring key list is not served
            method, path = key.split(" ", 1)
            concrete = re.sub(r":\w+", "x", path)
            routes = [r for r, _p in agent.ROUTES.match(concrete) if method in r.methods]
            assert routes, (agent.product, key)
            want = None if acl == "none" else acl
            assert routes[0].acl == want, (agent.product, key, routes[0].acl, want)
            checked += 1
    assert checked > 50
