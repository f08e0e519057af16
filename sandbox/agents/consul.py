"""Consul stand-in: the agent (gossip, raft, catalog, sessions, local services and checks, HTTP API).
The CLI is in consul_cli.py, the replicated state and its views in consul_state.py."""

from __future__ import annotations

import base64
import os
import time
import uuid

from . import consul_state as cs
from . import snapshot, tls
from .agentbase import BaseAgent, dur
from .config import format_duration, parse_duration, resolve_addr
from .consul_acl import ConsulACL
from .consul_acl import register as register_acl_routes
from .consul_local import LocalState, check_definition, public, service_definition
from .httpapi import HTTPError, Routes, canon
from .metrics import Metrics, process_gauges
from .net import Response, RPCError, sd_notify

STATUS = {"alive": 1, "leaving": 2, "left": 3, "failed": 4}
SNAPSHOT_TYPES = [("kv", "KVS", False), ("nodes", "Register", False), ("services", "Register", True),
                  ("checks", "Register", True), ("sessions", "Session", False), ("autopilot", "Autopilot", False),
                  ("tombstones", "Tombstone", False)]

ROUTES = Routes()
route = ROUTES.add


class ConsulAgent(ConsulACL, BaseAgent):
    product = "consul"
    ROUTES = ROUTES
    INDEX_HEADER = "X-Consul-Index"
    VIEWS = cs.VIEWS
    LOCAL_RPCS = BaseAgent.LOCAL_RPCS | {"Txn.Read"}

    def __init__(self, cfg, paths, build, dev=False):
        super().__init__(cfg, paths, build, dev)
        c = cfg
        self.server = bool(c.get("server"))
        self.dc = c.get("datacenter", "dc1")
        self.node_name = c.get("node_name") or os.uname().nodename
        bind = resolve_addr(c.get("bind_addr"), "0.0.0.0")
        self.bind = bind
        self.advertise = resolve_addr(c.get("advertise_addr"), self.default_advertise(bind))
        client_addr = resolve_addr(c.get("client_addr"), "127.0.0.1", multi=True)
        ports = c.get("ports") or {}
        self.http_port = ports.get("http", 8500)  # -1: the HTTP API is disabled (documented; HTTPS-only setups)
        self.serf_port = ports.get("serf_lan", 8301)
        self.server_port = ports.get("server", 8300)
        self.https_port = ports.get("https", -1)
        addrs = c.get("addresses") or {}
        self.http_addr = resolve_addr(addrs.get("http"), client_addr, multi=True)
        self.https_addr = resolve_addr(addrs.get("https"), client_addr, multi=True)
        self.expect = c.get("bootstrap_expect") or (1 if c.get("bootstrap") else 0)
        perf = c.get("performance") or {}
        self.mult = perf.get("raft_multiplier") or 5
        self.MAX_QUERY_TIME = dur(c.get("max_query_time"), "600s")
        self.DEFAULT_QUERY_TIME = dur(c.get("default_query_time"), "300s")
        self.session_ttl_min = dur(c.get("session_ttl_min"), "10s")
        limits = c.get("limits") or {}
        self.kv_max = int(limits.get("kv_max_value_size") or 512 * 1024)
        self.txn_max = max(int(limits.get("txn_max_req_len") or 512 * 1024), self.kv_max)
        tel = c.get("telemetry") or {}
        self.prometheus_retention = dur(tel.get("prometheus_retention_time"), "0s")
        self.metrics = Metrics()
        self.local = LocalState(self)
        self.session_timers: dict[str, float] = {}
        self.acl_settings()
        self._config_definitions()

    def _config_definitions(self):
        """service/services/check/checks blocks of the configuration become local registrations."""
        c = self.cfg
        svcs = _as_list(c.get("service")) + _as_list(c.get("services"))
        for raw in svcs:
            svc, checks = service_definition(raw, self.dc)
            self.local.add_service(svc, checks)
        for raw in _as_list(c.get("check")) + _as_list(c.get("checks")):
            self.local.add_check(check_definition(raw))

    # ------------------------------------------------------------ lifecycle
    def tls_contexts(self):
        return tls.consul_contexts(self.cfg, self.server)

    def reloaded(self, old_cfg):
        """Of the acl block only the tokens are reloadable (Consul's Reloadable Configuration list); a changed
        acl.enabled / default_policy needs a restart, as with Consul."""
        enabled, default_allow = self.acl_enabled, self.acl_default_allow
        self.acl_settings()
        if (enabled, default_allow) != (self.acl_enabled, self.acl_default_allow):
            self.log("WARN", "agent: acl.enabled and acl.default_policy are not reloadable: restart the agent to apply")
            self.acl_enabled, self.acl_default_allow = enabled, default_allow

    def should_leave(self, sig):
        c = self.cfg
        if sig == "SIGTERM":
            return bool(c.get("leave_on_terminate", not self.server))
        return not bool(c.get("skip_leave_on_interrupt", self.server))

    def tags(self):
        t = {"role": "consul" if self.server else "node", "dc": self.dc, "id": self.node_id, "segment": "",
             "vsn": "2", "vsn_min": "2", "vsn_max": "3", "build": f"{self.version}:{self.revision[:8]}"}
        if self.server:
            t.update({"port": str(self.server_port), "expect": str(self.expect), "raft_vsn": "3",
                      "wan_join_port": "8302"})
            if self.expect == 1 and self.cfg.get("bootstrap"):
                t["bootstrap"] = "1"
        return t

    def start(self):
        self.log("INFO", f"agent: Consul agent running! version=v{self.version} node={self.node_name} datacenter={self.dc} server={str(self.server).lower()}")
        self.start_serf(name=self.node_name, addr=self.advertise, bind=self.bind, port=self.serf_port, tags=self.tags(),
                        key=self.gossip_key(self.cfg.get("encrypt"), self.data_dir / "serf" / "local.keyring",
                                            bool(self.cfg.get("disable_keyring_file"))),
                        field="dc", value=self.dc)
        if self.server:
            self.start_raft(self.bind, self.server_port, name=self.node_name, rpc_addr=f"{self.advertise}:{self.server_port}",
                            data_dir=self.data_dir, apply_fn=cs.apply, initial_state=cs.initial_state(),
                            bootstrap_expect=self.expect, multiplier=self.mult)
        if self.http_port == -1:
            self.log("INFO", "agent: HTTP API disabled (ports.http = -1)")
        else:
            for a in self.http_addr.split():
                self.serve_http(a, self.http_port)
            self.log("INFO", f"agent: Started HTTP server: address={self.http_addr}:{self.http_port} network=tcp")
        if self.https_port != -1:
            for a in self.https_addr.split():
                self.serve_http(a, self.https_port, https=True)
            self.log("INFO", f"agent: Started HTTPS server: address={self.https_addr}:{self.https_port} network=tcp")
        rj = self.cfg.get("retry_join") or []
        self.start_retry_join(rj, dur(self.cfg.get("retry_interval"), "30s"), self.cfg.get("retry_max", 0),
                              8301, lambda addrs: self.serf.join(addrs)[0])
        for a in self.cfg.get("start_join") or []:
            self.serf.join([a if ":" in a else f"{a}:8301"])
        self.local.start()
        import threading
        threading.Thread(target=self._anti_entropy, daemon=True, name="anti-entropy").start()

    def ready(self):
        if sd_notify("READY=1"):
            self.log("INFO", "agent: Notified systemd: READY=1")
        self.log("INFO", "agent: started state syncer")

    def shutdown(self):
        self.local.stop()
        super().shutdown()

    def _server_members(self):
        out = []
        for m in self.serf.list():
            t = m["Tags"]
            if t.get("role") == "consul" and t.get("dc") == self.dc:
                out.append({"id": t.get("id"), "name": m["Name"], "addr": f"{m['Addr']}:{t.get('port', 8300)}",
                            "status": m["Status"], "version": t.get("build", "").split(":")[0]})
        return out

    def known_servers(self):
        ms = [m for m in self.serf.list() if m["Tags"].get("role") == "consul" and m["Status"] == "alive"]
        return [f"{m['Addr']}:{m['Tags'].get('port', 8300)}" for m in ms]

    def no_servers_msg(self):
        return "No known Consul servers"

    def clamp_index(self, idx):
        return idx or 1  # setIndex: never 0, or blocking clients would busy-loop

    # ------------------------------------------------------------ leader duties
    def _leadership(self, is_leader):
        if not is_leader:
            return
        self.log("INFO", "agent.server: cluster leadership acquired")
        st, _ = self.raft.snapshot()
        if st.get("autopilot") is None:
            self._try(lambda: self.raft.apply({"op": "autopilot_set", "config": self._autopilot_from_config()}))
        self._try(self.acl_leader_init)
        now = time.monotonic()
        # initializeSessionTimers: every TTL session gets a full 2 x TTL from the new leader
        self.session_timers = {sid: now + 2 * parse_duration(s["TTL"]) for sid, s in st["sessions"].items() if s.get("TTL")}
        self.while_leader(self._leader_tick, 0.5, "agent.server: reconcile")

    def _try(self, fn):
        try:
            fn()
        except RPCError as e:
            self.log("WARN", f"agent.server: {e}")

    def _autopilot_from_config(self):
        ap = self.cfg.get("autopilot") or {}
        return {"CleanupDeadServers": bool(ap.get("cleanup_dead_servers", True)),
                "LastContactThreshold": format_duration(dur(ap.get("last_contact_threshold"), "200ms")),
                "MaxTrailingLogs": int(ap.get("max_trailing_logs", 250)), "MinQuorum": int(ap.get("min_quorum", 0)),
                "ServerStabilizationTime": format_duration(dur(ap.get("server_stabilization_time"), "10s")),
                "RedundancyZoneTag": "", "DisableUpgradeMigration": False, "UpgradeVersionTag": ""}

    def _leader_tick(self):
        st, _ = self.raft.snapshot()
        ap = st.get("autopilot")
        if ap:  # the operator's autopilot configuration drives raft's autopilot
            r = self.raft
            r.cleanup_dead, r.max_trailing, r.min_quorum = ap["CleanupDeadServers"], ap["MaxTrailingLogs"], ap["MinQuorum"]
            r.stabilization = parse_duration(ap["ServerStabilizationTime"])
            r.lct = max(parse_duration(ap["LastContactThreshold"]), 3 * r.hb)
        self._reconcile(st)
        now = time.monotonic()
        for sid, s in st["sessions"].items():
            if s.get("TTL") and sid not in self.session_timers:
                self.session_timers[sid] = now + 2 * parse_duration(s["TTL"])
        for sid, deadline in list(self.session_timers.items()):
            if sid not in st["sessions"]:
                self.session_timers.pop(sid, None)
            elif deadline <= now:
                self.log("INFO", f"agent.server: session TTL expired, invalidating: session={sid}")
                self.session_timers.pop(sid, None)
                self.raft.apply({"op": "session_destroy", "id": sid})
        self.metrics.gauge("consul.consul.session_ttl.active", len(self.session_timers))

    def _reconcile(self, st):
        """The leader keeps the catalog in step with gossip: a node and its serfHealth check per member,
        the consul service for servers, a left member deregistered."""
        members = self.serf.list()
        names = {m["Name"] for m in members}
        for m in members:
            name = m["Name"]
            if m["Status"] == "left":
                if name in st["nodes"]:
                    self.raft.apply({"op": "catalog_deregister", "node": name})
                continue
            cur = st["nodes"].get(name) or {}
            alive = m["Status"] == "alive"
            want_check = {"CheckID": cs.SERF_CHECK, "Name": "Serf Health Status", "Status": "passing" if alive else "critical",
                          "Notes": "", "Output": "Agent alive and reachable" if alive else "Agent not live or unreachable",
                          "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "", "Interval": "", "Timeout": "",
                          "ExposedPort": 0, "Definition": {}, "Namespace": "default"}
            reg = {"Node": name, "ID": m["Tags"].get("id", ""), "Address": m["Addr"], "Datacenter": self.dc,
                   "TaggedAddresses": cur.get("TaggedAddresses") or _tagged(m["Addr"]),
                   "NodeMeta": cur.get("Meta") or {"consul-network-segment": ""}, "Checks": [want_check]}
            is_server = m["Tags"].get("role") == "consul"
            if is_server:
                reg["Service"] = {"ID": "consul", "Service": "consul", "Tags": [], "Address": "", "Meta": {"non_voter": "false",
                                  "raft_version": "3", "read_replica": "false", "serf_protocol_current": "2",
                                  "serf_protocol_max": "5", "serf_protocol_min": "1", "version": m["Tags"].get("build", "").split(":")[0]},
                                  "Port": int(m["Tags"].get("port", 8300)), "Weights": {"Passing": 1, "Warning": 1},
                                  "EnableTagOverride": False, "TaggedAddresses": {}}
            old_check = st["checks"].get(name, {}).get(cs.SERF_CHECK) or {}
            old_svc = st["services"].get(name, {}).get("consul")
            if (cur.get("ID") == reg["ID"] and cur.get("Address") == reg["Address"] and old_check.get("Status") == want_check["Status"]
                    and old_check.get("Output") == want_check["Output"]
                    and (not is_server or (old_svc and old_svc["Meta"] == reg["Service"]["Meta"] and old_svc["Port"] == reg["Service"]["Port"]))):
                continue
            self.raft.apply({"op": "catalog_register", "reg": reg})
        # a node no longer in gossip (pruned by force-leave) leaves the catalog too
        for name in st["nodes"]:
            if name not in names and st["checks"].get(name, {}).get(cs.SERF_CHECK):
                self.raft.apply({"op": "catalog_deregister", "node": name})

    # ------------------------------------------------------------ anti-entropy
    def _anti_entropy(self):
        """Sync the agent's services and checks to the catalog: at once on a change, and every 10 s."""
        while not self.stopping.is_set():
            self.local.changed.wait(10.0)
            self.local.changed.clear()
            if self.stopping.is_set() or self.left:
                return
            try:
                self.sync_catalog()
            except RPCError as e:
                self.log("WARN", f"agent: Syncing node info failed: {e}")
                self.stopping.wait(1.0)
                self.local.changed.set()
            except Exception as e:  # noqa: BLE001 - anti-entropy must go on
                self.log("ERROR", f"agent: anti-entropy failed: {e!r}")

    def sync_catalog(self):
        node_view = self.rpc("State.Query", {"view": "node", "params": {"name": self.node_name}})["Result"]
        if node_view is None:
            return  # the leader registers the node from gossip first
        checks_view = self.rpc("State.Query", {"view": "health_node", "params": {"node": self.node_name}})["Result"]
        cat_svcs = node_view["Services"]
        cat_checks = {c["CheckID"]: c for c in checks_view}
        node = node_view["Node"]
        meta = {"consul-network-segment": ""} | dict(self.cfg.get("node_meta") or {})
        base = {"Node": self.node_name, "ID": self.node_id, "Address": self.advertise, "Datacenter": self.dc,
                "TaggedAddresses": _tagged(self.advertise), "NodeMeta": meta}
        with self.local.lock:
            services = {k: dict(v) for k, v in self.local.services.items()}
            checks = {k: public(v) for k, v in self.local.checks.items()}
        may, who = self.sync_permission()
        node_ok = may("node", self.node_name)
        if node.get("Meta") != meta or node.get("TaggedAddresses") != base["TaggedAddresses"]:
            if node_ok:
                self.apply({"op": "catalog_register", "reg": base})
            else:
                self.log("WARN", f"agent: Node info update blocked by ACLs: node={self.node_id} accessorID={who}")
        for sid, svc in services.items():
            want = {k: v for k, v in svc.items() if k != "Datacenter"}
            have = cat_svcs.get(sid)
            schecks = [c for c in checks.values() if c["ServiceID"] == sid]
            if have is None or {k: have.get(k) for k in want} != want or \
                    any(_check_differs(cat_checks.get(c["CheckID"]), c) for c in schecks):
                if not (node_ok and may("service", svc["Service"])):
                    self.log("WARN", f"agent: Service registration blocked by ACLs: service={sid} accessorID={who}")
                    continue
                self.apply({"op": "catalog_register", "reg": dict(base, Service=want, Checks=schecks)})
        for cid, c in checks.items():
            if not c["ServiceID"] and _check_differs(cat_checks.get(cid), c):
                if not node_ok:
                    self.log("WARN", f"agent: Check registration blocked by ACLs: check={cid} accessorID={who}")
                    continue
                self.apply({"op": "catalog_register", "reg": dict(base, Checks=[c])})
        if not node_ok:
            return
        for sid in cat_svcs:
            if sid not in services and not (self.server and sid == "consul"):
                self.apply({"op": "catalog_deregister", "node": self.node_name, "service_id": sid})
        for cid, c in cat_checks.items():
            if cid not in checks and cid != cs.SERF_CHECK and (not c.get("ServiceID") or c["ServiceID"] in services):
                self.apply({"op": "catalog_deregister", "node": self.node_name, "check_id": cid})

    # ------------------------------------------------------------ RPC handlers (server side)
    def rpc_Operator_AutopilotState(self, a):
        return self.raft.autopilot_state()

    def rpc_Session_Apply(self, a):
        st, _ = self.raft.snapshot()
        if a["op"] == "destroy":
            self.session_timers.pop(a["id"], None)
            return self.raft.apply({"op": "session_destroy", "id": a["id"]})
        sess = cs.session_validate(st, a["session"], self.session_ttl_min)
        self.raft.apply({"op": "session_create", "session": sess})
        if sess["TTL"]:
            self.session_timers[sess["ID"]] = time.monotonic() + 2 * parse_duration(sess["TTL"])
        return sess["ID"]

    def rpc_Session_Renew(self, a):
        st, _ = self.raft.snapshot()
        s = st["sessions"].get(a["id"])
        if s is None:
            return None
        if s.get("TTL"):
            self.session_timers[a["id"]] = time.monotonic() + 2 * parse_duration(s["TTL"])
        return s

    def rpc_Txn_Read(self, a):
        st, _ = self.raft.snapshot()
        return cs.txn_apply(st, a["ops"], 0, time.time(), read_only=True)

    def rpc_Snapshot_Save(self, a):
        with self.raft.lock:
            return {"archive": base64.b64encode(snapshot.archive(self.raft.state, self.raft.index, self.raft.last_term,
                                                                  self.raft.configuration()["Servers"],
                                                                  self.raft.config_index)).decode(),
                    "index": self.raft.index}

    def rpc_Operator_RemovePeer(self, a):
        return self.raft.remove_peer(a.get("id") or None, a.get("address") or None)

    # ------------------------------------------------------------ HTTP API
    def member_status(self, status):
        return STATUS.get(status, 0)

    def http_not_found(self, req):
        if req.path == "/" or req.path.startswith("/ui"):
            return self._ui(req)
        if "/v1/" in req.path:
            return Response(raw=b"Invalid URL path: not a recognized HTTP API endpoint\n", status=404, ctype="text/plain; charset=utf-8")
        return Response(raw=b"Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n",
                        status=404, ctype="text/plain; charset=utf-8")

    def _ui(self, req):
        if not (self.cfg.get("ui_config") or {}).get("enabled", self.cfg.get("ui", self.dev)):
            return Response(raw=b"404 page not found\n", status=404, ctype="text/plain; charset=utf-8")
        if req.path == "/":
            return Response(raw=b"", status=301, headers={"Location": "/ui/"}, ctype="text/html")
        return Response(raw=f"<!doctype html><title>Consul by HashiCorp</title><p>Consul {self.version} UI (sandbox stand-in)".encode(),
                        ctype="text/html; charset=utf-8")

    def method_not_allowed(self, req, allowed):
        return HTTPError(405, f"method {req.method} not allowed", {"Allow": ",".join(["OPTIONS"] + allowed)})

    def dispatch(self, req):
        t0 = time.monotonic()
        try:
            return super().dispatch(req)
        finally:
            if req.route is not None:
                self.metrics.sample("consul.api.http", (time.monotonic() - t0) * 1000,
                                    {"method": req.method, "path": req.route.pattern.strip("/").replace("/", "_")})

    def agent_self(self):
        me = self.serf.local()
        with self.local.lock:
            n_svc, n_chk = len(self.local.services), len(self.local.checks)
            n_ttl = sum(1 for c in self.local.checks.values() if c["Type"] == "ttl")
        stats = {"agent": {"check_monitors": "0", "check_ttls": str(n_ttl), "checks": str(n_chk), "services": str(n_svc)},
                 "build": {"prerelease": "", "revision": self.revision[:8], "version": self.version},
                 "consul": self._consul_stats(),
                 "serf_lan": {"members": str(len(self.serf.list())), "encrypted": str(bool(self.serf.key)).lower(),
                              "failed": str(sum(1 for m in self.serf.list() if m["Status"] == "failed")),
                              "left": str(sum(1 for m in self.serf.list() if m["Status"] == "left"))},
                 "runtime": {"arch": "amd64", "os": "linux", "version": "go1.22.7", "cpu_count": str(os.cpu_count())}}
        if self.raft:
            stats["raft"] = self.raft.stats()
        c = self.cfg
        debug = {"Datacenter": self.dc, "NodeName": self.node_name, "NodeID": self.node_id, "ServerMode": self.server,
                 "BootstrapExpect": self.expect, "DataDir": str(self.data_dir), "BindAddr": self.bind,
                 "AdvertiseAddrLAN": self.advertise, "ClientAddrs": self.http_addr.split(), "HTTPPort": self.http_port,
                 "SerfPortLAN": self.serf_port, "ServerPort": self.server_port, "RetryJoinLAN": c.get("retry_join") or [],
                 "LeaveOnTerm": self.should_leave("SIGTERM"), "SkipLeaveOnInt": not self.should_leave("SIGINT"),
                 "EncryptKey": "hidden" if c.get("encrypt") else "", "RaftProtocol": 3,
                 "AutopilotServerStabilizationTime": f"{self.ap['stabilization']}s", "NodeMeta": c.get("node_meta") or {},
                 "Version": self.version, "Revision": self.revision[:8]}
        return {"Config": {"Datacenter": self.dc, "PrimaryDatacenter": c.get("primary_datacenter", self.dc),
                           "NodeName": self.node_name, "NodeID": self.node_id, "Revision": self.revision[:8],
                           "Server": self.server, "Version": self.version, "BuildDate": "2024-01-01T00:00:00Z"},
                "DebugConfig": debug,
                "Coord": {"Adjustment": 0, "Error": 1.5, "Height": 1e-05, "Vec": [0.0] * 8},
                "Member": self.member_json(me), "Stats": stats,
                "Meta": {"consul-network-segment": ""} | dict(c.get("node_meta") or {}),
                "xDS": {"SupportedProxies": {"envoy": ["1.31.2"]}, "Port": -1, "Ports": {"Plaintext": -1, "TLS": -1}}}

    def _consul_stats(self):
        if not self.server:
            return {"known_servers": str(len(self.known_servers())), "server": "false"}
        lid, laddr = self.raft.leader()
        return {"bootstrap": "false", "known_datacenters": "1", "leader": str(self.raft.is_leader()).lower(),
                "leader_addr": laddr or "", "server": "true"}

    def _collect_metrics(self):
        process_gauges(self.metrics, "consul")
        members = self.serf.list()
        self.metrics.gauge("consul.serf.lan.members", len(members))
        if self.raft and self.raft.is_leader():
            h = self.raft.autopilot_health()
            self.metrics.gauge("consul.autopilot.healthy", 1 if h["Healthy"] else 0)
            self.metrics.gauge("consul.autopilot.failure_tolerance", h["FailureTolerance"])
        if self.raft:
            self.metrics.gauge("consul.raft.commitNumLogs", 0)
            self.metrics.gauge("consul.raft.applied_index", self.raft.index)
            self.metrics.gauge("consul.raft.last_index", self.raft.index)


# ---------------------------------------------------------------- handlers

def _tagged(addr):
    return {"lan": addr, "lan_ipv4": addr, "wan": addr, "wan_ipv4": addr}


def _as_list(v):
    if v is None:
        return []
    return list(v) if isinstance(v, list) else [v]


def _check_differs(have, want) -> bool:
    if have is None:
        return True
    return any(have.get(k) != want.get(k) for k in ("Name", "Status", "Output", "Notes", "ServiceID", "Type", "Definition"))


def _ok(body=None, headers=None):
    return Response(body, headers=headers)


def _node_out(n: dict) -> dict:
    return {"ID": n["ID"], "Node": n["Node"], "Address": n["Address"], "Datacenter": n["Datacenter"],
            "TaggedAddresses": n.get("TaggedAddresses") or {}, "Meta": n.get("Meta") or {},
            "CreateIndex": n.get("CreateIndex", 0), "ModifyIndex": n.get("ModifyIndex", 0)}


def _service_out(s: dict) -> dict:
    out = {"ID": s["ID"], "Service": s["Service"], "Tags": s.get("Tags") or [], "Address": s.get("Address", ""),
           "Meta": s.get("Meta") or {}, "Port": s.get("Port", 0), "Weights": s.get("Weights") or {"Passing": 1, "Warning": 1},
           "EnableTagOverride": bool(s.get("EnableTagOverride")), "CreateIndex": s.get("CreateIndex", 0),
           "ModifyIndex": s.get("ModifyIndex", 0)}
    if s.get("TaggedAddresses"):
        out["TaggedAddresses"] = s["TaggedAddresses"]
    return out


def _check_out(c: dict) -> dict:
    keys = ("Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName", "ServiceTags", "Type",
            "Interval", "Timeout", "ExposedPort", "Definition", "CreateIndex", "ModifyIndex")
    out = {k: c.get(k, "" if k not in ("ServiceTags", "Definition", "ExposedPort", "CreateIndex", "ModifyIndex") else None) for k in keys}
    out["ServiceTags"] = out["ServiceTags"] or []
    out["Definition"] = out["Definition"] or {}
    out["ExposedPort"] = out["ExposedPort"] or 0
    out["CreateIndex"], out["ModifyIndex"] = c.get("CreateIndex", 0), c.get("ModifyIndex", 0)
    out["Namespace"] = "default"
    return out


def _not_found(headers):
    return Response(raw=b"", status=404, ctype="text/plain; charset=utf-8", headers=headers)


# --- status and operator (the endpoints both products share, with Consul's ACLs)

@route("GET", "/v1/status/leader")
def status_leader(self: ConsulAgent, req):
    return _ok(self.rpc("Status.Leader"))


@route("GET", "/v1/status/peers")
def status_peers(self: ConsulAgent, req):
    return _ok(self.rpc("Status.Peers"))


@route("GET", "/v1/operator/raft/configuration", acl="operator:read")
def raft_configuration(self: ConsulAgent, req):
    return _ok(self.rpc("Operator.RaftConfiguration", stale=req.has("stale")))


@route("POST", "/v1/operator/raft/transfer-leader", acl="operator:write")
def raft_transfer(self: ConsulAgent, req):
    self.rpc("Operator.TransferLeader", {"id": req.get("id", "")})
    return _ok({"Success": True})


@route("DELETE", "/v1/operator/raft/peer", acl="operator:write")
def raft_remove_peer(self: ConsulAgent, req):
    has_id, has_addr = req.has("id"), req.has("address")
    if not has_id and not has_addr:
        raise HTTPError(400, "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove")
    if has_id and has_addr:
        raise HTTPError(400, "Must specify only one of ?id or ?address")
    self.rpc("Operator.RemovePeer", {"id": req.get("id", ""), "address": req.get("address", "")})
    return _ok(None)


@route("GET", "/v1/operator/autopilot/health", acl="operator:read")
def autopilot_health(self: ConsulAgent, req):
    h = self.rpc("Operator.AutopilotHealth")
    return Response(h, status=200 if h["Healthy"] else 429)


@route("GET", "/v1/operator/autopilot/state", acl="operator:read")
def autopilot_state(self: ConsulAgent, req):
    return _ok(self.rpc("Operator.AutopilotState"))


@route("GET", "/v1/operator/autopilot/configuration", acl="operator:read")
def autopilot_config_get(self: ConsulAgent, req):
    cfg, _idx, _h = self.query(req, "autopilot")
    if cfg is None:
        raise HTTPError(500, "autopilot config not initialized yet")
    return _ok(cfg)


@route("PUT", "/v1/operator/autopilot/configuration", acl="operator:write")
def autopilot_config_set(self: ConsulAgent, req):
    body = canon(req.json({}) or {}, ["CleanupDeadServers", "LastContactThreshold", "MaxTrailingLogs", "MinQuorum",
                                      "ServerStabilizationTime", "RedundancyZoneTag", "DisableUpgradeMigration",
                                      "UpgradeVersionTag", "CreateIndex", "ModifyIndex"])
    cur, _i, _h = self.query(req, "autopilot")
    cur = dict(cur or self._autopilot_from_config())
    known = {"CleanupDeadServers": bool, "LastContactThreshold": str, "MaxTrailingLogs": int, "MinQuorum": int,
             "ServerStabilizationTime": str, "RedundancyZoneTag": str, "DisableUpgradeMigration": bool,
             "UpgradeVersionTag": str, "CreateIndex": int, "ModifyIndex": int}
    for k, v in body.items():
        if k not in known:
            raise HTTPError(400, f'Error parsing autopilot config: json: unknown field "{k}"')
        if k in ("LastContactThreshold", "ServerStabilizationTime"):
            try:
                v = format_duration(parse_duration(v))
            except ValueError as e:
                raise HTTPError(400, f"Error parsing autopilot config: {e}") from None
        cur[k] = v
    for k in ("CreateIndex", "ModifyIndex"):
        cur.pop(k, None)
    op = {"op": "autopilot_set", "config": cur}
    if req.has("cas"):
        op["cas"] = req.uint("cas")
    ok = self.apply(op)
    return _ok(bool(ok) if req.has("cas") else True)


@route("GET", "/v1/operator/keyring", acl="keyring:read")
def keyring(self: ConsulAgent, req):
    keys = {self.serf.key: len(self.serf.list())} if self.serf.key else {}
    n = len([m for m in self.serf.list() if m["Status"] == "alive"])
    return _ok([{"WAN": w, "Datacenter": self.dc, "Segment": "", "Keys": keys, "PrimaryKeys": dict(keys),
                 "NumNodes": n} for w in (True, False)])


# --- agent

@route("GET", "/v1/agent/self", acl="agent:read")
def agent_self(self: ConsulAgent, req):
    return _ok(self.agent_self())


@route("GET", "/v1/agent/members", acl="node:read")
def agent_members(self: ConsulAgent, req):
    if req.has("wan"):
        raise HTTPError(400, "WAN members: WAN federation is not implemented by the sandbox stand-in")
    return _acl_filtered(req, "node", [self.member_json(m) for m in self.serf.list()], "Name")


@route("PUT", "/v1/agent/join/<address>", acl="agent:write")
def agent_join(self: ConsulAgent, req):
    if req.has("wan"):
        raise HTTPError(400, "WAN join: WAN federation is not implemented by the sandbox stand-in")
    addr = req.params["address"]
    n, errs = self.serf.join([addr if ":" in addr else f"{addr}:8301"])
    if not n:
        raise HTTPError(500, "; ".join(errs))
    return _ok(None)


@route("PUT", "/v1/agent/leave", acl="agent:write")
def agent_leave(self: ConsulAgent, req):
    self.leave()
    self.stopping.set()
    return _ok(None)


@route("PUT", "/v1/agent/force-leave/<node>", acl="operator:write")
def agent_force_leave(self: ConsulAgent, req):
    if req.has("wan"):
        raise HTTPError(500, "Must be a server to force-leave a node from the WAN cluster" if not self.server
                        else "WAN force-leave: WAN federation is not implemented by the sandbox stand-in")
    node = req.params["node"]
    self.log("INFO", f"agent: Force leaving node: node={node}")
    self.serf.force_leave(node, prune=req.has("prune"))
    return _ok(None)


@route("PUT", "/v1/agent/reload", acl="agent:write")
def agent_reload(self: ConsulAgent, req):
    self.reload()
    return _ok(None)


@route("PUT", "/v1/agent/maintenance", acl="node:write")
def agent_maintenance(self: ConsulAgent, req):
    if not req.has("enable"):
        raise HTTPError(400, "Missing value for enable")
    try:
        from .httpapi import parse_bool
        enable = parse_bool(req.get("enable", ""))
    except ValueError:
        raise HTTPError(400, f"Invalid value for enable: {req.get('enable')!r}") from None
    self.local.node_maintenance(enable, req.get("reason", ""))
    return _ok(None)


@route("GET", "/v1/agent/metrics", acl="agent:read")
def agent_metrics(self: ConsulAgent, req):
    self._collect_metrics()
    if req.get("format") == "prometheus" or "text/plain" in (req.headers.get("Accept") or "") and "json" not in (req.headers.get("Accept") or ""):
        if self.prometheus_retention < 1:
            raise HTTPError(415, "Prometheus is not enabled since its retention time is not positive")
        return Response(raw=self.metrics.prometheus().encode(), ctype="text/plain; version=0.0.4; charset=utf-8")
    return _ok(self.metrics.display())


@route("GET", "/v1/agent/services", acl="service:read")
def agent_services(self: ConsulAgent, req):
    with self.local.lock:
        return _ok({sid: _agent_service(s) for sid, s in sorted(self.local.services.items())})


def _agent_service(s):
    import hashlib
    import json
    out = {k: s[k] for k in ("ID", "Service", "Tags", "Meta", "Port", "Address", "Weights", "EnableTagOverride", "Datacenter")}
    if s.get("TaggedAddresses"):
        out["TaggedAddresses"] = s["TaggedAddresses"]
    out["ContentHash"] = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()[:16]
    return out


@route("GET", "/v1/agent/service/<service_id>", acl="service:read", acl_name="service_id")
def agent_service(self: ConsulAgent, req):
    with self.local.lock:
        s = self.local.services.get(req.params["service_id"])
    if s is None:
        raise HTTPError(404, f"unknown service ID: {req.params['service_id']}")
    return _ok(_agent_service(s))


@route("PUT", "/v1/agent/service/register", acl="service:write")
def agent_service_register(self: ConsulAgent, req):
    svc, checks = service_definition(req.json({}) or {}, self.dc)
    self.local.add_service(svc, checks, replace_checks=req.flag("replace-existing-checks"))
    self._sync_now()
    return _ok(None)


@route("PUT", "/v1/agent/service/deregister/<service_id>", acl="service:write", acl_name="service_id")
def agent_service_deregister(self: ConsulAgent, req):
    if not self.local.remove_service(req.params["service_id"]):
        raise HTTPError(404, f'Unknown service ID "{req.params["service_id"]}". Ensure that the service ID is passed, not the service name.')
    self._sync_now()
    return _ok(None)


@route("PUT", "/v1/agent/service/maintenance/<service_id>", acl="service:write", acl_name="service_id")
def agent_service_maintenance(self: ConsulAgent, req):
    from .httpapi import parse_bool
    if not req.has("enable"):
        raise HTTPError(400, "Missing value for enable")
    try:
        enable = parse_bool(req.get("enable", ""))
    except ValueError:
        raise HTTPError(400, f"Invalid value for enable: {req.get('enable')!r}") from None
    self.local.service_maintenance(req.params["service_id"], enable, req.get("reason", ""))
    self._sync_now()
    return _ok(None)


@route("GET", "/v1/agent/checks", acl="node:read,service:read")
def agent_checks(self: ConsulAgent, req):
    with self.local.lock:
        return _ok({cid: _check_out(public(c)) for cid, c in sorted(self.local.checks.items())})


@route("PUT", "/v1/agent/check/register", acl="node:write,service:write")
def agent_check_register(self: ConsulAgent, req):
    self.local.add_check(check_definition(req.json({}) or {}))
    self._sync_now()
    return _ok(None)


@route("PUT", "/v1/agent/check/deregister/<check_id>", acl="node:write,service:write")
def agent_check_deregister(self: ConsulAgent, req):
    if not self.local.remove_check(req.params["check_id"]):
        raise HTTPError(404, f'Unknown check ID "{req.params["check_id"]}". Ensure that the check ID is passed, not the check name.')
    self._sync_now()
    return _ok(None)


def _ttl_update(status):
    def handler(self: ConsulAgent, req):
        self.local.update_ttl(req.params["check_id"], status, req.get("note", ""))
        self._sync_now()
        return _ok(None)
    return handler


for _st, _verb in (("passing", "pass"), ("warning", "warn"), ("critical", "fail")):
    ROUTES.add("PUT", f"/v1/agent/check/{_verb}/<check_id>", acl="node:write,service:write")(_ttl_update(_st))


@route("PUT", "/v1/agent/check/update/<check_id>", acl="node:write,service:write")
def agent_check_update(self: ConsulAgent, req):
    body = canon(req.json({}) or {}, ["Status", "Output"])
    status = body.get("Status", "")
    if status not in ("passing", "warning", "critical"):
        raise HTTPError(400, "Invalid check status: '" + str(status) + "'")
    self.local.update_ttl(req.params["check_id"], status, str(body.get("Output", ""))[:4096])
    self._sync_now()
    return _ok(None)


def _sync_now(self: ConsulAgent):
    """Like the API handlers' syncChanges: push local changes to the catalog before answering."""
    try:
        self.sync_catalog()
    except RPCError as e:
        self.log("WARN", f"agent: failed to sync changes: {e}")
        self.local.changed.set()


ConsulAgent._sync_now = _sync_now


# --- catalog

@route("GET", "/v1/catalog/datacenters")
def catalog_datacenters(self: ConsulAgent, req):
    return _ok([self.dc])


@route("GET", "/v1/catalog/nodes", acl="node:read")
def catalog_nodes(self: ConsulAgent, req):
    nodes, _idx, h = self.query(req, "nodes")
    meta = _meta_filter(req)
    return _acl_filtered(req, "node", [_node_out(n) for n in nodes
                                       if all((n.get("Meta") or {}).get(k) == v for k, v in meta.items())], "Node", h)


def _acl_filtered(req, resource, items, field, headers=None):
    """List endpoints show what the token may read and say when something was left out (Consul's ACL
    filter and its X-Consul-Results-Filtered-By-ACLs header)."""
    h = dict(headers or {})
    if req.authz is None:
        return _ok(items, h)
    if isinstance(items, dict):
        out = {k: v for k, v in items.items() if req.authz.allowed(resource, "read", k)}
    else:
        out = [x for x in items if req.authz.allowed(resource, "read", x[field])]
    if len(out) != len(items):
        h["X-Consul-Results-Filtered-By-ACLs"] = "true"
    return _ok(out, h)


def _meta_filter(req):
    out = {}
    for kv in req.all("node-meta"):
        k, _, v = kv.partition(":")
        out[k] = v
    return out


@route("GET", "/v1/catalog/services", acl="service:read")
def catalog_services(self: ConsulAgent, req):
    svcs, _idx, h = self.query(req, "services")
    return _acl_filtered(req, "service", svcs, None, h)


@route("GET", "/v1/catalog/service/<service>", acl="node:read,service:read", acl_name="service")
def catalog_service(self: ConsulAgent, req):
    rows, _idx, h = self.query(req, "service_nodes", name=req.params["service"], tags=req.all("tag"))
    out = []
    for n, s in rows:
        out.append({"ID": n["ID"], "Node": n["Node"], "Address": n["Address"], "Datacenter": n["Datacenter"],
                    "TaggedAddresses": n.get("TaggedAddresses") or {}, "NodeMeta": n.get("Meta") or {},
                    "ServiceKind": "", "ServiceID": s["ID"], "ServiceName": s["Service"], "ServiceTags": s.get("Tags") or [],
                    "ServiceAddress": s.get("Address", ""), "ServiceTaggedAddresses": s.get("TaggedAddresses") or {},
                    "ServiceWeights": s.get("Weights") or {"Passing": 1, "Warning": 1}, "ServiceMeta": s.get("Meta") or {},
                    "ServicePort": s.get("Port", 0), "ServiceSocketPath": "",
                    "ServiceEnableTagOverride": bool(s.get("EnableTagOverride")),
                    "ServiceProxy": {"DestinationServiceName": "", "DestinationServiceID": "", "LocalServiceAddress": "",
                                     "LocalServicePort": 0, "Config": None, "Upstreams": None, "MeshGateway": {},
                                     "Expose": {}},
                    "ServiceConnect": {"Native": False, "Proxy": None},
                    "CreateIndex": s.get("CreateIndex", 0), "ModifyIndex": s.get("ModifyIndex", 0)})
    return _ok(out, h)


@route("GET", "/v1/catalog/node/<node>", acl="node:read,service:read", acl_name="node")
def catalog_node(self: ConsulAgent, req):
    res, _idx, h = self.query(req, "node", name=req.params["node"])
    if res is None:
        return _ok(None, h)
    return _ok({"Node": _node_out(res["Node"]), "Services": {sid: _service_out(s) for sid, s in sorted(res["Services"].items())}}, h)


@route("PUT", "/v1/catalog/register", acl="node:write,service:write")
def catalog_register(self: ConsulAgent, req):
    body = canon(req.json({}) or {}, ["ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta", "Service",
                                      "Check", "Checks", "SkipNodeUpdate"])
    if not body.get("Node"):
        raise HTTPError(400, "Missing node name")
    if not body.get("Address") and not body.get("SkipNodeUpdate"):
        raise HTTPError(400, "Missing node address")
    reg = {"Node": body["Node"], "ID": body.get("ID", ""), "Address": body.get("Address", ""), "Datacenter": self.dc,
           "TaggedAddresses": body.get("TaggedAddresses") or {}, "NodeMeta": body.get("NodeMeta") or {}}
    if body.get("Service"):
        svc, _checks = service_definition(body["Service"], self.dc)
        reg["Service"] = {k: v for k, v in svc.items() if k != "Datacenter"}
    checks = _as_list(body.get("Check")) + _as_list(body.get("Checks"))
    reg["Checks"] = [dict(_check_out(c), Node=body["Node"], CheckID=c.get("CheckID") or c.get("Name", ""),
                          Status=c.get("Status") or "critical") for c in checks]
    self.apply({"op": "catalog_register", "reg": reg})
    return _ok(True)


@route("PUT", "/v1/catalog/deregister", acl="node:write,service:write")
def catalog_deregister(self: ConsulAgent, req):
    body = canon(req.json({}) or {}, ["Node", "Datacenter", "CheckID", "ServiceID"])
    if not body.get("Node"):
        raise HTTPError(400, "Missing node name")
    self.apply({"op": "catalog_deregister", "node": body["Node"], "service_id": body.get("ServiceID"),
                "check_id": body.get("CheckID")})
    return _ok(True)


# --- health

@route("GET", "/v1/health/node/<node>", acl="node:read,service:read", acl_name="node")
def health_node(self: ConsulAgent, req):
    checks, _idx, h = self.query(req, "health_node", node=req.params["node"])
    return _ok([_check_out(c) for c in checks], h)


@route("GET", "/v1/health/checks/<service>", acl="node:read,service:read", acl_name="service")
def health_checks(self: ConsulAgent, req):
    checks, _idx, h = self.query(req, "health_checks", service=req.params["service"])
    return _ok([_check_out(c) for c in checks], h)


@route("GET", "/v1/health/service/<service>", acl="node:read,service:read", acl_name="service")
def health_service(self: ConsulAgent, req):
    passing = req.flag("passing")
    rows, _idx, h = self.query(req, "health_service", name=req.params["service"], tags=req.all("tag"))
    out = []
    for r in rows:
        checks = [_check_out(c) for c in r["Checks"]]
        if passing and any(c["Status"] != "passing" for c in checks):
            continue
        n = _node_out(r["Node"])
        out.append({"Node": n, "Service": _service_out(r["Service"]), "Checks": checks})
    return _ok(out, h)


@route("GET", "/v1/health/state/<state>", acl="node:read,service:read")
def health_state(self: ConsulAgent, req):
    st = req.params["state"]
    if st not in ("any", "passing", "warning", "critical"):
        raise HTTPError(400, "Bad state")
    checks, _idx, h = self.query(req, "health_state", status=st)
    return _ok([_check_out(c) for c in checks], h)


# --- KV

@route("GET", "/v1/kv/<key...>", acl="key:read", acl_name="key")
def kv_get(self: ConsulAgent, req):
    key = req.params["key"]
    if req.has("keys"):
        sep = req.get("separator", req.get("seperator", "")) or ""
        keys, _idx, h = self.query(req, "kv_keys", prefix=key, sep=sep)
        if not keys and key:
            return _not_found(h)
        return _ok(keys, h)
    if req.has("recurse"):
        items, _idx, h = self.query(req, "kv_list", prefix=key)
    else:
        if not key:
            raise HTTPError(400, "Missing key name")
        item, _idx, h = self.query(req, "kv_get", key=key)
        items = [item] if item else []
    if not items:
        return _not_found(h)
    if req.has("raw") and not req.has("recurse"):
        return Response(raw=base64.b64decode(items[0]["Value"] or ""), ctype="text/plain",
                        headers=h | {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})
    return _ok(items, h)


def _conflicting(req, *flags):
    if sum(1 for f in flags if req.has(f)) > 1:
        from urllib.parse import urlencode
        raise HTTPError(400, "Conflicting flags: " + urlencode(sorted((k, v) for k, vs in req.query.items() for v in vs)))


@route("PUT", "/v1/kv/<key...>", acl="key:write", acl_name="key")
def kv_put(self: ConsulAgent, req):
    key = req.params["key"]
    if not key:
        raise HTTPError(400, "Missing key name")
    _conflicting(req, "cas", "acquire", "release")
    if len(req.body) > self.kv_max:
        raise HTTPError(413, f"Request body({len(req.body)} bytes) too large, max size: {self.kv_max} bytes. See "
                             "https://www.consul.io/docs/agent/config/config-files#kv_max_value_size.")
    op = {"op": "kv", "verb": "set", "key": key, "value": cs.b64(req.body), "flags": req.uint("flags")}
    if req.has("cas"):
        op.update(verb="cas", index=req.uint("cas"))
    elif req.has("acquire"):
        op.update(verb="lock", session=req.get("acquire", ""))
    elif req.has("release"):
        op.update(verb="unlock", session=req.get("release", ""))
    ok = self.apply(op)
    return _ok(True if op["verb"] == "set" else bool(ok))


@route("DELETE", "/v1/kv/<key...>", acl="key:write", acl_name="key")
def kv_delete(self: ConsulAgent, req):
    key = req.params["key"]
    _conflicting(req, "recurse", "cas")
    if req.has("recurse"):
        op = {"op": "kv", "verb": "delete-tree", "key": key}
    elif not key:
        raise HTTPError(400, "Missing key name")
    else:
        op = {"op": "kv", "verb": "delete", "key": key}
    if req.has("cas"):
        op.update(verb="delete-cas", index=req.uint("cas"))
    ok = self.apply(op)
    return _ok(bool(ok) if op["verb"] == "delete-cas" else True)


# --- transactions

MAX_TXN_OPS = 128
_TXN_WRITES = {"set", "delete", "delete-cas", "delete-tree", "cas", "lock", "unlock"}
_TXN_READS = {"get", "get-or-empty", "get-tree", "check-session", "check-index", "check-not-exists"}


@route("PUT", "/v1/txn", acl="key:write")
def txn(self: ConsulAgent, req):
    import json
    doc = "https://www.consul.io/docs/agent/config/config-files#txn_max_req_len"
    if len(req.body) > self.txn_max:
        raise HTTPError(413, f"Request body({len(req.body)} bytes) too large, max size: {self.txn_max} bytes. See {doc}.")
    try:
        ops = json.loads(req.body or b"null")
    except ValueError as e:
        raise HTTPError(400, f"Failed to parse body: {e}") from None
    if not isinstance(ops, list):
        raise HTTPError(400, "Failed to parse body: json: cannot unmarshal object into Go value of type api.TxnOps")
    if len(ops) > MAX_TXN_OPS:
        raise HTTPError(413, f"Transaction contains too many operations ({len(ops)} > {MAX_TXN_OPS})")
    writes, norm = 0, []
    for op in ops:
        if not isinstance(op, dict):
            raise HTTPError(400, "Failed to parse body: each operation must be an object")
        op = canon(op, ["KV", "Node", "Service", "Check", "Session"])
        other = [k for k in op if k != "KV"]
        if other:
            raise HTTPError(400, f"{other[0]} operations in transactions are not implemented by the sandbox stand-in (KV only)")
        kv = canon(op.get("KV") or {}, ["Verb", "Key", "Value", "Flags", "Index", "Session", "Namespace", "Partition"])
        verb = kv.get("Verb", "")
        if verb in _TXN_WRITES:
            writes += 1
        if kv.get("Value") is not None:
            try:
                raw = base64.b64decode(kv["Value"], validate=True)
            except (ValueError, TypeError):
                raise HTTPError(400, "Failed to parse body: failed to decode value: illegal base64 data") from None
            if len(raw) > self.kv_max:
                raise HTTPError(413, f'Value for key "{kv.get("Key", "")}" is too large ({len(raw)} > {self.kv_max} bytes)')
        norm.append({"KV": kv})
    if writes == 0:
        res = self.rpc("Txn.Read", {"ops": norm}, stale=req.has("stale"))
    else:
        res = self.apply({"op": "txn", "ops": norm})
    return Response(res, status=409 if res["Errors"] else 200)


# --- sessions

@route("PUT", "/v1/session/create", acl="session:write")
def session_create(self: ConsulAgent, req):
    body = canon(req.json({}) or {}, ["ID", "Name", "Node", "Checks", "NodeChecks", "ServiceChecks", "LockDelay",
                                        "Behavior", "TTL", "Namespace"])
    delay = body.get("LockDelay", 15 * 10**9)
    if isinstance(delay, (int, float)) and not isinstance(delay, bool) and delay < 1000:
        delay = int(delay * 1e9)  # FixupLockDelay: a number under 1000 is seconds
    elif isinstance(delay, str):
        try:
            delay = int(parse_duration(delay) * 1e9)
        except ValueError as e:
            raise HTTPError(400, f"Request decode failed: {e}") from None
    sess = dict(body, ID=str(uuid.uuid4()), Node=body.get("Node") or self.node_name, LockDelay=delay)
    sid = self.rpc("Session.Apply", {"op": "create", "session": sess})
    return _ok({"ID": sid})


@route("PUT", "/v1/session/destroy/<uuid>", acl="session:write")
def session_destroy(self: ConsulAgent, req):
    self.rpc("Session.Apply", {"op": "destroy", "id": req.params["uuid"]})
    return _ok(True)


@route("PUT", "/v1/session/renew/<uuid>", acl="session:write")
def session_renew(self: ConsulAgent, req):
    s = self.rpc("Session.Renew", {"id": req.params["uuid"]})
    if s is None:
        raise HTTPError(404, f"Session id '{req.params['uuid']}' not found")
    return _ok([_session_out(s)])


def _session_out(s):
    return {k: s.get(k) for k in ("ID", "Name", "Node", "LockDelay", "Behavior", "TTL", "NodeChecks", "ServiceChecks",
                                   "CreateIndex", "ModifyIndex")}


@route("GET", "/v1/session/info/<uuid>", acl="session:read")
def session_info(self: ConsulAgent, req):
    items, _idx, h = self.query(req, "sessions", sid=req.params["uuid"])
    return _ok([_session_out(s) for s in items], h)


@route("GET", "/v1/session/node/<node>", acl="session:read")
def session_node(self: ConsulAgent, req):
    items, _idx, h = self.query(req, "sessions", node=req.params["node"])
    return _ok([_session_out(s) for s in items], h)


@route("GET", "/v1/session/list", acl="session:read")
def session_list(self: ConsulAgent, req):
    items, _idx, h = self.query(req, "sessions")
    return _ok([_session_out(s) for s in items], h)


# --- snapshots

@route("GET", "/v1/snapshot", acl="management")
def snapshot_save(self: ConsulAgent, req):
    r = self.rpc("Snapshot.Save", stale=req.has("stale"))
    return Response(raw=base64.b64decode(r["archive"]), ctype="application/x-gzip",
                    headers={"X-Consul-Index": str(r["index"]), "X-Consul-KnownLeader": "true", "X-Consul-LastContact": "0"})


@route("PUT", "/v1/snapshot", acl="management")
def snapshot_restore(self: ConsulAgent, req):
    _meta, state = snapshot.read(req.body)
    self.apply({"op": "restore", "state": state})
    return Response(raw=b"", ctype="text/plain; charset=utf-8")


register_acl_routes(route)
