"""Consul stand-in: agent (HTTP API, gossip, raft) and CLI."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import re
import secrets
import sys
import tarfile

from .agentbase import BaseAgent, cli_client, cli_err, columnize, dur, parse_cli_flags, run_client_cmd
from .config import load_and_check, resolve_addr
from .net import Response, RPCError, sd_notify, serve

STATUS = {"alive": 1, "leaving": 2, "left": 3, "failed": 4}


def _initial_state():
    return {"kv": {}, "nodes": {}}


def _apply(state, op, index):
    kind = op["op"]
    if kind == "noop":
        return True
    if kind == "kv_set":
        kv = state["kv"]
        cur = kv.get(op["key"])
        if "cas" in op and op["cas"] is not None:
            cas = int(op["cas"])
            if (cas == 0 and cur is not None) or (cas != 0 and (cur is None or cur["ModifyIndex"] != cas)):
                return False
        kv[op["key"]] = {"Key": op["key"], "Value": op["value"], "Flags": int(op.get("flags") or 0),
                         "CreateIndex": cur["CreateIndex"] if cur else index, "ModifyIndex": index,
                         "LockIndex": cur["LockIndex"] if cur else 0}
        return True
    if kind == "kv_delete":
        if op.get("recurse"):
            for k in [k for k in state["kv"] if k.startswith(op["key"])]:
                del state["kv"][k]
        else:
            state["kv"].pop(op["key"], None)
        return True
    if kind == "node_set":
        state["nodes"][op["node"]["Node"]] = op["node"]
        return True
    if kind == "node_delete":
        state["nodes"].pop(op["name"], None)
        return True
    if kind == "restore":
        state.clear()
        state.update(op["state"])
        return True
    raise RPCError(f"unknown operation {kind}", 400)


class ConsulAgent(BaseAgent):
    product = "consul"

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
        self.http_port = ports.get("http", 8500)
        self.serf_port = ports.get("serf_lan", 8301)
        self.server_port = ports.get("server", 8300)
        addrs = c.get("addresses") or {}
        self.http_addr = resolve_addr(addrs.get("http"), client_addr, multi=True)
        self.expect = c.get("bootstrap_expect") or (1 if c.get("bootstrap") else 0)
        perf = c.get("performance") or {}
        self.mult = perf.get("raft_multiplier") or 5

    # ------------------------------------------------------------ lifecycle
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
                            data_dir=self.data_dir, apply_fn=_apply, initial_state=_initial_state(),
                            bootstrap_expect=self.expect, multiplier=self.mult)
        for a in self.http_addr.split():
            self.servers_http.append(serve(a, self.http_port, self.http_router, self.log))
        self.log("INFO", f"agent: Started HTTP server: address={self.http_addr}:{self.http_port} network=tcp")
        rj = self.cfg.get("retry_join") or []
        self.start_retry_join(rj, dur(self.cfg.get("retry_interval"), "30s"), self.cfg.get("retry_max", 0),
                              8301, lambda addrs: self.serf.join(addrs)[0])
        for a in self.cfg.get("start_join") or []:
            self.serf.join([a if ":" in a else f"{a}:8301"])

    def ready(self):
        if sd_notify("READY=1"):
            self.log("INFO", "agent: Notified systemd: READY=1")
        self.log("INFO", "agent: started state syncer")

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

    def _leadership(self, is_leader):
        if not is_leader:
            return
        self.log("INFO", "agent.server: cluster leadership acquired")
        self.while_leader(self._reconcile, 0.5, "agent.server: reconcile")

    def _reconcile(self):
        nodes = self.raft.read()["nodes"]
        for m in self.serf.list():
            if m["Status"] == "left":
                if m["Name"] in nodes:
                    self.raft.apply({"op": "node_delete", "name": m["Name"]})
                continue
            want = {"ID": m["Tags"].get("id", ""), "Node": m["Name"], "Address": m["Addr"], "Datacenter": self.dc,
                    "TaggedAddresses": {"lan": m["Addr"], "lan_ipv4": m["Addr"], "wan": m["Addr"], "wan_ipv4": m["Addr"]},
                    "Meta": {"consul-network-segment": ""},
                    "Status": "passing" if m["Status"] == "alive" else "critical"}
            if nodes.get(m["Name"]) != want:
                self.raft.apply({"op": "node_set", "node": want})

    # ------------------------------------------------------------ RPC handlers (server side)
    def rpc_Operator_AutopilotState(self, a):
        return self.raft.autopilot_state()

    def rpc_KV_Get(self, a):
        return self.raft.read()["kv"]

    def rpc_Catalog_Nodes(self, a):
        return self.raft.read()["nodes"]

    # ------------------------------------------------------------ HTTP API
    def member_status(self, status):
        return STATUS.get(status, 0)

    def http_not_found(self):
        return Response({"error": "not found"}, status=404)

    def _route(self, method, p, q, body):
        stale = "stale" in q
        common = self.common_route(p, q)
        if common is not None:
            return common
        if p == "/agent/members":
            return Response([self.member_json(m) for m in self.serf.list()])
        if p.startswith("/agent/join/"):
            if method != "PUT":
                return Response(raw=b"method not allowed\n", status=405, ctype="text/plain")
            addr = p[len("/agent/join/"):]
            n, errs = self.serf.join([addr if ":" in addr else f"{addr}:8301"])
            if not n:
                return Response(raw=("; ".join(errs) + "\n").encode(), status=500, ctype="text/plain")
            return Response(None)
        if p == "/agent/leave":
            if method != "PUT":
                return Response(raw=b"method not allowed\n", status=405, ctype="text/plain")
            self.leave()
            self.stopping.set()
            return Response(None)
        if p == "/agent/reload":
            self.reload()
            return Response(None)
        if p == "/operator/raft/transfer-leader":
            if method != "POST":
                return Response(raw=b"method not allowed\n", status=405, ctype="text/plain")
            self.rpc("Operator.TransferLeader", {"id": q.get("id", "")})
            return Response({"Success": True})
        if p == "/operator/autopilot/state":
            return Response(self.rpc("Operator.AutopilotState"))
        if p == "/operator/keyring":
            keys = {self.serf.key: len(self.serf.list())} if self.serf.key else {}
            n = len([m for m in self.serf.list() if m["Status"] == "alive"])
            return Response([{"WAN": w, "Datacenter": self.dc, "Segment": "", "Keys": keys, "PrimaryKeys": dict(keys),
                              "NumNodes": n} for w in (True, False)])
        if p == "/catalog/nodes":
            nodes = self.rpc("Catalog.Nodes", stale=stale)
            return Response([{k: v for k, v in n.items() if k != "Status"} | {"CreateIndex": 1, "ModifyIndex": 1}
                             for _, n in sorted(nodes.items())], headers=self.index_headers())
        if p.startswith("/health/state/"):
            st = p.rsplit("/", 1)[1]
            if st not in ("any", "passing", "warning", "critical"):
                return Response(raw=b"Bad state\n", status=400, ctype="text/plain")
            nodes = self.rpc("Catalog.Nodes", stale=stale)
            out = []
            for name, n in sorted(nodes.items()):
                if st in ("any", n["Status"]):
                    out.append({"Node": name, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": n["Status"],
                                "Notes": "", "Output": "Agent alive and reachable" if n["Status"] == "passing" else "Agent not live or unreachable",
                                "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "", "Namespace": "default",
                                "Definition": {}, "CreateIndex": 1, "ModifyIndex": 1})
            return Response(out, headers=self.index_headers())
        if p.startswith("/kv/") or p == "/kv":
            return self._kv(method, p[4:], q, body)
        if p == "/snapshot":
            if method == "GET":
                snap = self.rpc("Snapshot.Save")
                return Response(raw=_snapshot_bytes(snap), ctype="application/x-gzip",
                                headers={"X-Consul-Index": str(snap["index"])})
            if method == "PUT":
                state = _snapshot_read(body)
                self.apply({"op": "restore", "state": state})
                return Response(raw=b"", ctype="text/plain")
        return Response(raw=b"404 page not found\n", status=404, ctype="text/plain")

    def _kv(self, method, key, q, body):
        if method == "PUT":
            if len(body) > 512 * 1024:
                return Response(raw=b"Request body too large\n", status=413, ctype="text/plain")
            op = {"op": "kv_set", "key": key, "value": base64.b64encode(body).decode(), "flags": q.get("flags", 0)}
            if "cas" in q:
                op["cas"] = q["cas"]
            return Response(bool(self.apply(op)))
        if method == "DELETE":
            self.apply({"op": "kv_delete", "key": key, "recurse": "recurse" in q})
            return Response(True)
        kv = self.rpc("KV.Get", stale="stale" in q)
        if "keys" in q:
            sep = q.get("separator", "")
            keys = set()
            for k in kv:
                if k.startswith(key):
                    rest = k[len(key):]
                    if sep and sep in rest:
                        keys.add(key + rest.split(sep)[0] + sep)
                    else:
                        keys.add(k)
            if not keys:
                return Response(raw=b"", status=404, ctype="text/plain")
            return Response(sorted(keys))
        if "recurse" in q:
            items = [kv[k] for k in sorted(kv) if k.startswith(key)]
        else:
            items = [kv[key]] if key in kv else []
        if not items:
            return Response(raw=b"", status=404, ctype="text/plain", headers=self.index_headers())
        if "raw" in q:
            return Response(raw=base64.b64decode(items[0]["Value"] or ""), ctype="text/plain; charset=utf-8")
        out = []
        for it in items:
            d = dict(it)
            d["Session"] = ""
            if d["Value"] == "":
                d["Value"] = None
            out.append(d)
        return Response(out, headers=self.index_headers())

    def agent_self(self):
        me = self.serf.local()
        stats = {"agent": {"check_monitors": "0", "check_ttls": "0", "checks": "0", "services": "0"},
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
                "Member": self.member_json(me), "Stats": stats, "Meta": c.get("node_meta") or {"consul-network-segment": ""},
                "xDS": {"SupportedProxies": {"envoy": ["1.31.2"]}, "Port": -1, "Ports": {"Plaintext": -1, "TLS": -1}}}

    def _consul_stats(self):
        if not self.server:
            return {"known_servers": str(len(self.known_servers())), "server": "false"}
        lid, laddr = self.raft.leader()
        return {"bootstrap": "false", "known_datacenters": "1", "leader": str(self.raft.is_leader()).lower(),
                "leader_addr": laddr or "", "server": "true"}


# ---------------------------------------------------------------- snapshots

def _snapshot_bytes(snap: dict) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w") as tar:
            for name, obj in (("meta.json", {"Index": snap["index"], "Term": snap["term"], "Version": 1}),
                              ("state.bin", snap["state"])):
                data = json.dumps(obj).encode()
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            sums = tarfile.TarInfo("SHA256SUMS")
            sums.size = 0
            tar.addfile(sums, io.BytesIO(b""))
    return buf.getvalue()


def _snapshot_read(data: bytes) -> dict:
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r") as tar:
            return json.loads(tar.extractfile("state.bin").read())
    except (OSError, KeyError, tarfile.TarError, ValueError) as e:
        raise RPCError(f"failed to read snapshot: {e}", 400) from e


# ---------------------------------------------------------------- CLI

_, _api = cli_client("http-addr", "CONSUL_HTTP_ADDR", "127.0.0.1:8500")
_parse = parse_cli_flags
_err = cli_err


def cli(argv, build) -> int:
    version = build["version"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("Usage: consul [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n    agent  join  keygen  kv  leave  members  operator  snapshot  validate  version  info  reload")
        return 0 if argv else 1
    cmd, args = argv[0], argv[1:]
    if cmd in ("version", "-version", "--version", "-v"):
        o, _, _ = _parse(args)
        if o.get("format") == "json":
            print(json.dumps({"Version": version, "Revision": build["revision"][:8], "Prerelease": "",
                              "BuildDate": "2024-01-01T00:00:00Z", "RPC": {"Default": 2, "Min": 2, "Max": 3}}, indent=2))
        elif o.get("format") not in (None, "pretty"):
            return _err(f"Invalid format: {o['format']}")
        else:
            print(f"Consul v{version}\nRevision {build['revision'][:8]}\nBuild Date 2024-01-01T00:00:00Z\n"
                  "Protocol 2 spoken by default, understands 2 to 3 (agent will automatically use protocol >2 when speaking to compatible agents)")
        return 0
    if cmd == "keygen":
        print(base64.b64encode(secrets.token_bytes(32)).decode())
        return 0
    if cmd == "validate":
        o, _, rest = _parse(args, ("config-format",))
        if not rest:
            return _err("Must specify at least one config file or directory")
        _cfg, errs = load_and_check("consul", rest, o.get("config-format"), for_agent=False)
        if errs:
            return _err("Config validation failed: " + "\n".join(errs))
        if "quiet" not in o:
            print("Configuration is valid!")
        return 0
    if cmd == "agent":
        o, multi, rest = _parse(args, ("config-dir", "config-file", "config-format", "data-dir", "node", "bind",
                                       "client", "datacenter", "retry-join", "bootstrap-expect", "advertise", "encrypt"))
        paths = multi.get("config-file", []) + multi.get("config-dir", [])
        # keep the command-line order of -config-file/-config-dir
        ordered = []
        i = 0
        while i < len(args):
            a = args[i].lstrip("-")
            if a.split("=")[0] in ("config-file", "config-dir"):
                ordered.append(a.split("=", 1)[1] if "=" in a else args[i + 1])
                i += 1 if "=" in a else 2
                continue
            i += 1
        paths = ordered or paths
        cfg, errs = load_and_check("consul", paths, o.get("config-format"), for_agent=True) if paths else ({}, [])
        flagmap = {"data-dir": "data_dir", "node": "node_name", "bind": "bind_addr", "client": "client_addr",
                   "datacenter": "datacenter", "advertise": "advertise_addr", "encrypt": "encrypt"}
        for f, k in flagmap.items():
            if f in o:
                cfg[k] = o[f]
        if "server" in o:
            cfg["server"] = True
        if "bootstrap-expect" in o:
            cfg["bootstrap_expect"] = int(o["bootstrap-expect"])
        if "retry-join" in multi:
            cfg["retry_join"] = (cfg.get("retry_join") or []) + multi["retry-join"]
        if "dev" in o:
            cfg.setdefault("server", True)
            cfg.setdefault("bootstrap_expect", 1)
            cfg.setdefault("data_dir", "/tmp/consul-dev")
            cfg.setdefault("bind_addr", "127.0.0.1")
            cfg.setdefault("performance", {}).setdefault("raft_multiplier", 1)
        if errs and paths:
            print("==> " + "\n".join(errs), file=sys.stderr)
            return 1
        from .config import consul_rules
        rerr = consul_rules(cfg, True)
        if rerr:
            print("==> " + "\n".join(rerr), file=sys.stderr)
            return 1
        return ConsulAgent(cfg, paths, build, dev="dev" in o).run()
    return run_client_cmd(_client_cmd, cmd, args, ("http-addr", "status", "address", "id", "flags", "modify-index", "token"),
                          "Error connecting to Consul agent")


def _client_cmd(cmd, o, multi, rest) -> int:
    if cmd == "members":
        members = _api(o, "/agent/members")
        rx = re.compile(o["status"]) if "status" in o else None
        rows = [["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"]]
        if "detailed" in o:
            rows = [["Node", "Address", "Status", "Tags"]]
        names = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}
        matched = 0
        for m in sorted(members, key=lambda m: m["Name"]):
            st = names.get(m["Status"], "none")
            if rx and not rx.search(st):
                continue
            matched += 1
            t = m["Tags"]
            if "detailed" in o:
                rows.append([m["Name"], f"{m['Addr']}:{m['Port']}", st, ",".join(f"{k}={v}" for k, v in sorted(t.items()))])
            else:
                typ = {"consul": "server", "node": "client"}.get(t.get("role"), "unknown")
                rows.append([m["Name"], f"{m['Addr']}:{m['Port']}", st, typ, t.get("build", "").split(":")[0],
                             t.get("vsn", ""), t.get("dc", ""), "default", "<all>" if typ == "server" else "<default>"])
        if rx and not matched:
            return 2
        print(columnize(rows))
        return 0
    if cmd == "join":
        if not rest:
            return _err("At least one address to join must be specified.")
        n = 0
        for a in rest:
            try:
                _api(o, f"/agent/join/{a}", method="PUT")
                n += 1
            except RPCError as e:
                print(f"Error joining address '{a}': {e}", file=sys.stderr)
        if not n:
            return _err("Failed to join any nodes.")
        print(f"Successfully joined cluster by contacting {n} nodes.")
        return 0
    if cmd == "leave":
        if rest:
            return _err(f"Error found unexpected args: {rest}")
        try:
            _api(o, "/agent/leave", method="PUT")
        except RPCError as e:
            if e.status == 0:
                return _err(f"Error connecting to Consul agent: {e}")
            return _err(f"Error leaving: {e}")
        print("Graceful leave complete")
        return 0
    if cmd == "reload":
        _api(o, "/agent/reload", method="PUT")
        print("Configuration reload triggered")
        return 0
    if cmd == "info":
        s = _api(o, "/agent/self")["Stats"]
        out = []
        for sec in sorted(s):
            out.append(f"{sec}:")
            for k in sorted(s[sec]):
                out.append(f"\t{k} = {s[sec][k]}")
        print("\n".join(out))
        return 0
    if cmd == "kv":
        if not rest:
            return _err("Usage: consul kv <subcommand>")
        sub, rest = rest[0], rest[1:]
        if sub == "put":
            if not rest:
                return _err("Error! Missing KEY argument")
            key = rest[0]
            val = rest[1] if len(rest) > 1 else ""
            if val.startswith("@"):
                val = open(val[1:]).read()
            elif val == "-":
                val = sys.stdin.read()
            q = []
            if "flags" in o:
                q.append(f"flags={o['flags']}")
            if "cas" in o:
                q.append(f"cas={o.get('modify-index', 0)}")
            ok = _api(o, f"/kv/{key}" + ("?" + "&".join(q) if q else ""), method="PUT", body=val.encode())
            if not ok:
                return _err(f"Error! Did not write to {key}: CAS failed")
            print(f"Success! Data written to: {key}")
            return 0
        if sub == "get":
            if not rest:
                return _err("Error! Missing KEY argument")
            key = rest[0]
            try:
                if "recurse" in o:
                    items = _api(o, f"/kv/{key}?recurse")
                    for it in items:
                        print(f"{it['Key']}:{base64.b64decode(it['Value'] or '').decode(errors='replace')}")
                    return 0
                items = _api(o, f"/kv/{key}")
            except RPCError as e:
                if e.status == 404:
                    return _err(f"Error! No key exists at: {key}")
                raise
            if "detailed" in o:
                it = items[0]
                rows = [[k, str(it[k])] for k in ("CreateIndex", "Flags", "Key", "LockIndex", "ModifyIndex", "Session")]
                rows.append(["Value", base64.b64decode(it["Value"] or "").decode(errors="replace")])
                print(columnize(rows))
            else:
                print(base64.b64decode(items[0]["Value"] or "").decode(errors="replace"))
            return 0
        if sub == "delete":
            _api(o, f"/kv/{rest[0]}" + ("?recurse" if "recurse" in o else ""), method="DELETE")
            print(f"Success! Deleted key: {rest[0]}")
            return 0
        return _err(f"Unknown kv subcommand {sub}")
    if cmd == "operator" and rest[:1] == ["raft"]:
        sub = rest[1] if len(rest) > 1 else ""
        if sub == "list-peers":
            try:
                cfgj = _api(o, "/operator/raft/configuration" + ("?stale" if o.get("stale") == "true" else ""))
            except RPCError as e:
                if e.status == 0:
                    raise
                return _err(f"Error getting peers: Failed to retrieve raft configuration: Unexpected response code: {e.status} ({e})")
            rows = [["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]]
            for s in cfgj["Servers"]:
                rows.append([s["Node"], s["ID"], s["Address"], "leader" if s["Leader"] else "follower",
                             str(s["Voter"]).lower(), "3"])
            print(columnize(rows))
            return 0
        if sub == "transfer-leader":
            q = f"?id={o['id']}" if "id" in o else ""
            _api(o, "/operator/raft/transfer-leader" + q, method="POST")
            print("Success")
            return 0
        return _err(f"Unknown operator raft subcommand {sub}")
    if cmd == "snapshot" and rest[:1] == ["save"]:
        if len(rest) < 2:
            return _err("Missing FILE argument")
        data, hdrs = _api(o, "/snapshot", raw=True)
        with open(rest[1], "wb") as f:
            f.write(data)
        _snapshot_read(data)
        print(f"Saved and verified snapshot to index {hdrs.get('X-Consul-Index', '0')}")
        return 0
    if cmd == "snapshot" and rest[:1] == ["restore"]:
        with open(rest[1], "rb") as f:
            _api(o, "/snapshot", method="PUT", body=f.read())
        print("Restored snapshot")
        return 0
    return _err(f"Unknown command: {cmd}", 127)
