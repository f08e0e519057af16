"""Shared agent process machinery: config, node id, logging, gossip, raft, RPC forwarding, signals."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

from . import autojoin
from .config import parse_duration, resolve_addr
from .httpapi import HTTPError, Request, Routes, block_time, query_options
from .net import Logger, Response, RPCError, call, serve, set_rpc_tls
from .raft import NotLeader, Raft
from .serf import Serf


def columnize(rows: list[list[str]]) -> str:
    """Like ryanuber/columnize with the default config: columns separated by two spaces."""
    if not rows:
        return ""
    widths = [0] * max(len(r) for r in rows)
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(str(c)))
    lines = []
    for r in rows:
        cells = [str(c).ljust(widths[i]) if i < len(r) - 1 else str(c) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


class BaseAgent:
    product = ""

    def __init__(self, cfg: dict, config_paths: list[str], build: dict, dev: bool = False):
        self.cfg = cfg
        self.config_paths = config_paths
        self.version = build["version"]
        self.revision = build["revision"]
        self.dev = dev
        self.data_dir = Path(cfg.get("data_dir") or "/tmp/sandbox-agent").resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = Logger(str(cfg.get("log_level", "INFO")), self._log_path(cfg.get("log_file")))
        self.node_id = self._node_id()
        self.stopping = threading.Event()
        self.left = False
        self.serf: Serf | None = None
        self.raft: Raft | None = None
        self.servers_http = []
        self.started = time.time()
        self.ap = autopilot_settings(cfg)

    @staticmethod
    def default_advertise(bind: str) -> str:
        """The address to advertise when none is configured: the bind address, or the private IP for 0.0.0.0."""
        return bind if bind != "0.0.0.0" else resolve_addr("{{ GetPrivateIP }}", "127.0.0.1")

    def _log_path(self, v):
        """log_file: a file, or a directory (ends with / or exists) that gets <product>.log."""
        if not v:
            return None
        p = Path(v)
        if v.endswith("/") or p.is_dir():
            p.mkdir(parents=True, exist_ok=True)
            return str(p / f"{self.product}.log")
        p.parent.mkdir(parents=True, exist_ok=True)
        return str(p)

    # ------------------------------------------------------------ identity
    def _node_id(self) -> str:
        p = self.data_dir / "node-id"
        configured = self.cfg.get("node_id")
        if configured:
            return configured
        if p.is_file():
            return p.read_text().strip()
        nid = str(uuid.uuid4())
        p.write_text(nid)
        return nid

    # ------------------------------------------------------------ run loop
    def run(self) -> int:
        try:
            self.tls = self.tls_contexts()
            set_rpc_tls(self.tls_context("rpc"))
            self.start()
        except (OSError, RPCError, ValueError) as e:
            self.log("ERROR", f"agent: startup error: {e}")
            print(f"==> Error starting agent: {e}", flush=True)
            return 1
        signal.signal(signal.SIGTERM, lambda *_: self._on_signal("SIGTERM"))
        signal.signal(signal.SIGINT, lambda *_: self._on_signal("SIGINT"))
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=self.reload, daemon=True).start())
        pid_file = self.cfg.get("pid_file")
        if pid_file:
            Path(pid_file).write_text(str(os.getpid()))
        self.ready()
        while not self.stopping.wait(0.5):
            pass
        self.shutdown()
        if pid_file:
            try:
                Path(pid_file).unlink()
            except OSError:
                pass
        return 0

    def ready(self):
        pass

    def _on_signal(self, name: str):
        self.log("INFO", f"agent: Caught signal: {name}")
        threading.Thread(target=self._graceful, args=(name,), daemon=True).start()

    def _graceful(self, sig: str):
        if self.should_leave(sig) and not self.left:
            self.log("INFO", "agent: Gracefully shutting down agent...")
            self.leave()
        self.stopping.set()

    def should_leave(self, sig: str) -> bool:
        raise NotImplementedError

    def leave(self):
        if self.left:
            return
        self.left = True
        if self.raft:
            self.raft.remove_self_gracefully()
        if self.serf:
            self.serf.leave()
        self.log("INFO", "agent: Graceful leave complete")

    def shutdown(self):
        self.log("INFO", "agent: Requesting shutdown")
        if self.raft:
            self.raft.stop()
        if self.serf:
            self.serf.stop()
        for s in self.servers_http:
            s.shutdown()
            s.server_close()
        self.log("INFO", "agent: shutdown complete")

    def reload(self):
        from .config import load_and_check
        self.log("INFO", "agent: Caught signal: hangup; reloading configuration")
        cfg, errs = load_and_check(self.product, self.config_paths)
        if errs:
            self.log("ERROR", "agent: Failed to reload configs: " + "; ".join(errs))
            return
        old = self.cfg
        self.cfg = cfg
        try:
            self.reload_tls()
        except ValueError as e:
            self.cfg = old
            self.log("ERROR", f"agent: Failed to reload configs: {e}")
            return
        self.log.level = Logger.LEVELS.get(str(cfg.get("log_level", "INFO")).upper(), 2)
        self.reloaded(old)
        self.log("INFO", "agent: Reloaded configuration")

    def reload_tls(self):
        """SIGHUP re-reads the certificate files, as both products do: new connections get the new contexts
        (the listeners read theirs per connection). Which listeners exist does not change on reload."""
        new = self.tls_contexts()
        for srv in self.servers_http:
            for kind in ("http", "rpc-server"):
                if srv.tls is not None and srv.tls is self.tls.get(kind):
                    srv.tls = new.get(kind)
        self.tls = new
        set_rpc_tls(new.rpc)

    def reloaded(self, old_cfg: dict):
        """Product settings that a reload changes (ACL default policy, ...)."""

    # ------------------------------------------------------------ gossip / join
    def gossip_key(self, configured: str | None, keyring: Path, disabled: bool = False) -> str | None:
        """Like the real agents: the first configured key is persisted in a keyring file in the data dir;
        once it exists, a different key in the configuration is ignored (with a warning)."""
        if disabled:
            return configured
        if keyring.is_file():
            try:
                keys = json.loads(keyring.read_text())
            except ValueError:
                keys = []
            if keys:
                if configured and configured != keys[0]:
                    self.log("WARN", f"agent: ignoring the encrypt key from the configuration because a keyring "
                                     f"file already exists: {keyring}")
                return keys[0]
        if configured:
            keyring.parent.mkdir(parents=True, exist_ok=True)
            keyring.write_text(json.dumps([configured]))
        return configured

    def start_serf(self, *, name, addr, bind, port, tags, key, field, value):
        self.serf = Serf(name=name, addr=addr, port=port, tags=tags, key=key, cluster_field=field,
                         cluster_value=value, log=self.log, product=self.product)
        self.serve_internal(bind, port, gossip=True)
        self.serf.start()

    def start_retry_join(self, entries: list[str], interval: float, max_attempts: int, default_port: int, join_fn):
        if not entries:
            return

        def loop():
            attempt = 0
            while not self.stopping.is_set():
                attempt += 1
                addrs = []
                for e in entries:
                    try:
                        addrs += autojoin.resolve(e)
                    except autojoin.DiscoverError as ex:
                        self.log("WARN", f"agent: Join cluster failed, will retry: {ex}")
                    except Exception as ex:  # noqa: BLE001 - keep retrying like the real agent
                        self.log("ERROR", f"agent: retry_join entry {e!r} failed: {ex!r}")
                addrs = [a if ":" in a else f"{a}:{default_port}" for a in addrs]
                self.log("INFO", f"agent: Joining cluster...: cluster=LAN addresses={addrs}")
                n = join_fn(addrs) if addrs else 0
                if n:
                    self.log("INFO", f"agent: Join cluster completed. Synced with initial agents: cluster=LAN num_agents={n}")
                    return
                if max_attempts and attempt >= max_attempts:
                    self.log("ERROR", "agent: Join cluster failed, no more retries")
                    return
                self.log("WARN", f"agent: Join cluster failed, will retry: cluster=LAN retry_interval={interval}s")
                self.stopping.wait(interval)

        threading.Thread(target=loop, daemon=True, name="retry-join").start()

    # ------------------------------------------------------------ raft
    def start_raft(self, bind: str, port: int, **kw):
        """Serve the internal (gossip/raft/RPC) API on bind:port, start raft, lead with _leadership."""
        self.serve_internal(bind, port)
        self.raft = Raft(log=self.log, node_id=self.node_id, version=self.version, members_fn=self._server_members,
                         **self.ap, **kw)
        self.raft.start()
        self.raft.on_leader.append(self._leadership)

    def _server_members(self) -> list[dict]:
        raise NotImplementedError

    def _leadership(self, is_leader: bool):
        raise NotImplementedError

    def while_leader(self, tick, interval: float, what: str, catch_all: bool = False):
        """Call tick() every interval seconds while this server leads; RPC errors are logged and retried
        (any other error too with catch_all)."""
        while self.raft.is_leader() and not self.stopping.is_set():
            try:
                tick()
            except RPCError as e:
                self.log("DEBUG", f"{what}: {e}")
            except Exception as e:  # noqa: BLE001 - the leader loop must go on
                if not catch_all:
                    raise
                self.log("ERROR", f"{what} failed: {e!r}")
            time.sleep(interval)

    def internal_router(self, method, path, q, body, headers):
        data = json.loads(body) if body else {}
        if path.startswith("/serf/") and self.serf:
            return self.serf.handle(path, data)
        if path.startswith("/raft/") and self.raft:
            if path == "/raft/vote":
                return Response(self.raft.handle_vote(data))
            if path == "/raft/append":
                return Response(self.raft.handle_append(data))
            if path == "/raft/timeout_now":
                return Response(self.raft.handle_timeout_now(data))
        if path.startswith("/rpc/"):
            try:
                return Response({"result": self.server_rpc(path[5:], data.get("args") or {}, data.get("stale", False),
                                                           timeout=float(data.get("timeout") or 8.0))})
            except RPCError as e:
                return Response({"error": str(e)}, status=e.status or 500)
        return Response({"error": f"unknown internal path {path}"}, status=404)

    # server-side RPC dispatch: rpc_<Name> handlers; LOCAL_RPCS answer without the leader
    LOCAL_RPCS: frozenset[str] = frozenset({"Status.Leader", "Status.Peers", "Operator.RaftConfiguration", "ACL.Resolve"})

    def server_rpc(self, name: str, args: dict, stale: bool = False, timeout: float = 8.0):
        if self.raft is None:
            raise RPCError("this agent is not a server", 500)
        fn = getattr(self, "rpc_" + name.replace(".", "_"), None)
        if fn is None:
            raise RPCError(f"rpc: can't find method {name}", 404)
        if name in self.LOCAL_RPCS or (stale and name.split(".")[-1] in ("Get", "List", "Read", "Query")) or self.raft.is_leader():
            return fn(args)
        lid, laddr = self.raft.leader()
        if not laddr or lid == self.node_id:
            raise NotLeader()
        try:
            r = call(laddr, f"/rpc/{name}", {"args": args}, timeout=timeout)
        except RPCError as e:
            if e.status == 0:
                raise NotLeader() from e
            raise
        return r["result"]

    def rpc(self, name: str, args: dict | None = None, stale: bool = False, timeout: float = 8.0):
        """Call an RPC: locally when we are a server, else through a known server."""
        if self.raft is not None:
            return self.server_rpc(name, args or {}, stale, timeout)
        errs = []
        for addr in self.known_servers():
            try:
                r = call(addr, f"/rpc/{name}", {"args": args or {}, "stale": stale, "timeout": timeout}, timeout=timeout)
                return r["result"]
            except RPCError as e:
                if e.status == 0:
                    errs.append(str(e))
                    continue
                raise
        raise RPCError(self.no_servers_msg() + (f" ({'; '.join(errs)})" if errs else ""), 500)

    def known_servers(self) -> list[str]:
        return []

    def no_servers_msg(self) -> str:
        return "No known servers"

    def apply(self, op: dict):
        """Write through raft (on the leader, forwarded otherwise)."""
        return self.rpc("Raft.Apply", {"op": op})

    def rpc_Raft_Apply(self, args):
        return self.raft.apply(args["op"])

    def rpc_Status_Leader(self, a):
        _lid, laddr = self.raft.leader()
        return laddr or ""

    def rpc_Status_Peers(self, a):
        return [self.raft.config[i]["addr"] for i in self.raft.voters()]

    def rpc_Operator_RaftConfiguration(self, a):
        return self.raft.configuration()

    def rpc_Operator_AutopilotHealth(self, a):
        return self.raft.autopilot_health()

    def rpc_Operator_TransferLeader(self, a):
        return self.raft.transfer_leadership(a.get("id") or None)

    def rpc_Snapshot_Save(self, a):
        return {"state": self.raft.read(), "index": self.raft.index, "term": self.raft.last_term}

    # ------------------------------------------------------------ HTTP API (shared part)
    ROUTES: Routes = Routes()
    INDEX_HEADER = ""          # X-Consul-Index / X-Nomad-Index
    MAX_QUERY_TIME = 300.0      # the blocking-query cap (Consul: max_query_time, 10m; Nomad: 5m in its source)
    DEFAULT_QUERY_TIME = 300.0

    def tls_contexts(self):
        """The product's TLS settings as tls.Contexts (read at start and on SIGHUP)."""
        from .tls import Contexts
        return Contexts()

    def tls_context(self, kind: str):
        """An ssl.SSLContext for "http" (the HTTPS API listener), "rpc-server" (the internal RPC/raft listener)
        or "rpc" (outgoing internal calls), or None for plain HTTP."""
        return self.tls.get(kind) if getattr(self, "tls", None) else None

    def serve_http(self, addr: str, port: int, https: bool = False):
        self.servers_http.append(serve(addr, port, self.http_router, self.log,
                                       tls=self.tls_context("http") if https else None))

    def serve_internal(self, addr: str, port: int, gossip: bool = False):
        """The internal listener: raft and RPC (TLS per the product's settings), or gossip (never TLS)."""
        self.servers_http.append(serve(addr, port, self.internal_router, self.log,
                                       tls=None if gossip else self.tls_context("rpc-server"), internal=True))

    def http_router(self, method, path, query, body, headers):
        req = Request(method, path, query, body, headers)
        try:
            return self.dispatch(req)
        except HTTPError as e:
            return Response(raw=(str(e) + ("" if str(e).endswith("\n") else "")).encode(), status=e.status,
                            ctype="text/plain; charset=utf-8", headers=e.headers)
        except RPCError as e:
            return Response(raw=(str(e) + "\n").encode(), status=e.status or 500, ctype="text/plain; charset=utf-8")

    def dispatch(self, req: Request) -> Response:
        """The one way into the HTTP API: route (404), method (405), authorize (ACL), handler."""
        matches = self.ROUTES.match(req.path)
        if not matches:
            return self.http_not_found(req)
        for route, params in matches:
            if req.method in route.methods:
                req.route, req.params = route, params
                break
        else:
            allowed = sorted({m for r, _p in matches for m in r.methods})
            raise self.method_not_allowed(req, allowed)
        self.authorize(req)
        return req.route.handler(self, req)

    # ACLs (acl.py): set by the product from its acl block
    acl_enabled = False
    acl_default_allow = True
    TOKEN_HEADER = ""
    ACL_NOT_FOUND = "ACL not found"
    ACL_FILTERED: frozenset[str] = frozenset()  # list endpoints whose handler filters by the token's rules

    def authorize(self, req: Request):
        """The ACL check before every handler: req.route.acl is "<resource>:<access>[,...]" (None: no ACL
        needed), the object named by req.route.acl_name (or acl_object). The token's identity is resolved on
        a server (ACL.Resolve) and kept on the request (req.authz) for handlers that filter lists."""
        req.authz = None
        if not self.acl_enabled or req.route.acl is None:
            return
        from .acl import Authorizer
        ident = self.rpc("ACL.Resolve", {"secret": req.token(self.TOKEN_HEADER) or self.default_token()}, stale=True)
        if not ident["found"]:
            raise HTTPError(403, self.ACL_NOT_FOUND)
        req.authz = authz = Authorizer(self.product, ident["management"], ident["rules"], self.acl_default_allow)
        req.ident = ident
        for part in req.route.acl.split(","):
            res, _, access = part.partition(":")
            name = self.acl_object(req, res)
            if name is None and access == "read" and req.route.pattern in self.ACL_FILTERED:
                ok = True  # a listing: filtered by the handler, not denied
            elif name is None and access == "read" and self.product == "consul" and res != "management":
                ok = authz.allowed(res, "read") or authz.can_read_any(res)
            else:
                ok = authz.allowed(res, access, name)
            if not ok:
                raise HTTPError(403, self.permission_denied(ident, part, name))

    def acl_object(self, req: Request, resource: str) -> str | None:
        """The name an ACL rule on resource is checked against for this request (None: no single object)."""
        return req.params.get(req.route.acl_name) if req.route.acl_name else None

    def default_token(self) -> str:
        return ""

    def permission_denied(self, ident: dict, perm: str, name: str | None) -> str:
        return "Permission denied"

    def rpc_ACL_Resolve(self, a):
        """A token's identity on this server's state: found, management, the parsed rules of its policies."""
        st, _ = self.raft.snapshot()
        return self.acl_identity(st, a.get("secret") or "")

    def acl_identity(self, state, secret: str) -> dict:
        raise NotImplementedError

    def http_not_found(self, req: Request) -> Response:
        raise NotImplementedError

    def method_not_allowed(self, req: Request, allowed: list[str]) -> HTTPError:
        raise NotImplementedError

    def agent_self(self) -> dict:
        raise NotImplementedError

    # ------------------------------------------------------------ reads and blocking queries
    VIEWS: dict = {}

    def query(self, req: Request, view: str, **params):
        """Read a view of the replicated state as the products do: on the leader (or any server with
        ?stale), blocking while ?index= is not passed (up to ?wait plus jitter).
        Returns (result, index, headers)."""
        qo = query_options(req, self.product)
        args = {"view": view, "params": params, "min_index": qo.min_index, "wait": qo.wait}
        timeout = (min(qo.wait or self.DEFAULT_QUERY_TIME, self.MAX_QUERY_TIME) * 17 / 16 + 8) if qo.min_index else 8.0
        r = self.rpc("State.Query", args, stale=qo.stale, timeout=timeout)
        return r["Result"], r["Index"], self.meta_headers(r["Index"], r["KnownLeader"], r["LastContact"])

    def meta_headers(self, index: int, known_leader: bool = True, last_contact_ms: int = 0) -> dict:
        pre = "X-" + self.product.capitalize()
        return {self.INDEX_HEADER: str(index), f"{pre}-KnownLeader": str(bool(known_leader)).lower(),
                f"{pre}-LastContact": str(int(last_contact_ms))}

    def rpc_State_Query(self, a):
        """Run a view on this server's state; block while its index is not past min_index (the blocking-query
        loop of the products' RPC layer: re-run on every change, return once the result moved, or on timeout)."""
        fn = self.VIEWS.get(a["view"])
        if fn is None:
            raise RPCError(f"unknown view {a['view']}", 400)
        params = a.get("params") or {}

        def run():
            st, seen = self.raft.snapshot()
            idx, res = fn(st, **params)
            return idx, res, seen

        idx, res, seen = run()
        min_index = int(a.get("min_index") or 0)
        if min_index and idx <= min_index:
            deadline = time.monotonic() + block_time(float(a.get("wait") or 0), self.DEFAULT_QUERY_TIME, self.MAX_QUERY_TIME)
            first = json.dumps(res, sort_keys=True)
            while not self.stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.raft.wait_change(seen, left)
                idx, res, seen = run()
                if idx > min_index and json.dumps(res, sort_keys=True) != first:
                    break
        lid, _ = self.raft.leader()
        return {"Index": self.clamp_index(idx), "Result": res, "KnownLeader": lid is not None,
                "LastContact": int(self.raft.last_contact() * 1000)}

    def clamp_index(self, idx: int) -> int:
        return idx

    def member_status(self, status: str):
        return status

    def member_json(self, m):
        return {"Name": m["Name"], "Addr": m["Addr"], "Port": m["Port"], "Tags": m["Tags"],
                "Status": self.member_status(m["Status"]), "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
                "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4}


def dur(cfg_val, default: str) -> float:
    return parse_duration(cfg_val if cfg_val not in (None, "") else default)


def autopilot_settings(cfg: dict) -> dict:
    """The autopilot block (same keys and defaults for Consul and Nomad) as Raft keyword arguments."""
    ap = cfg.get("autopilot") or {}
    return {"stabilization": dur(ap.get("server_stabilization_time"), "10s"),
            "last_contact_threshold": dur(ap.get("last_contact_threshold"), "200ms"),
            "max_trailing": ap.get("max_trailing_logs", 250), "cleanup_dead": ap.get("cleanup_dead_servers", True),
            "min_quorum": ap.get("min_quorum", 0)}


# ---------------------------------------------------------------- CLI helpers

def parse_cli_flags(args, with_value=()):
    """Go-flag style arguments (-k=v, -k v for flags in with_value, bare -k = "true").

    Returns (last value per flag, every value per flag, positional arguments); a lone "-"
    is positional (it means stdin, as in `consul kv put key -`).
    """
    opts, rest = {}, []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-") and len(a) > 1:
            k = a.lstrip("-")
            if "=" in k:
                k, v = k.split("=", 1)
                opts.setdefault(k, []).append(v)
            elif k in with_value and i + 1 < len(args):
                opts.setdefault(k, []).append(args[i + 1])
                i += 1
            else:
                opts.setdefault(k, []).append("true")
        else:
            rest.append(a)
        i += 1
    return {k: v[-1] for k, v in opts.items()}, opts, rest


def cli_client(flag: str, env: str, default: str, *, tls_flags: dict, token: tuple[str, str, str]):
    """The CLI's view of the agent's HTTP API: (address(opts), api(opts, "/path", method=, body=, raw=)).
    The address is -<flag>, else $<env>, else default; https:// (or the product's SSL switch) means TLS with
    the product's CA/client-certificate flags and variables (tls_flags: setting -> (flag, variable)).
    token = (flag, variable, header): the ACL token sent with every request."""
    def address(opts: dict) -> str:
        a = opts.get(flag) or os.environ.get(env) or default
        return re.sub(r"^https?://", "", a)

    def setting(opts, name):
        f, var = tls_flags.get(name, (None, None))
        return (opts.get(f) if f else None) or (os.environ.get(var) if var else None) or None

    def context(opts):
        a = opts.get(flag) or os.environ.get(env) or default
        ssl_on = setting(opts, "ssl")
        if not (a.startswith("https://") or (ssl_on and ssl_on.lower() in ("1", "t", "true"))):
            return None
        from .tls import client_context
        verify = setting(opts, "verify")
        skip = setting(opts, "skip_verify")
        on = not ((verify and verify.lower() in ("0", "f", "false")) or (skip and skip.lower() in ("1", "t", "true")))
        return client_context(setting(opts, "ca"), setting(opts, "cert"), setting(opts, "key"), verify=on,
                              server_name=setting(opts, "server_name"), what="the CLI's TLS settings")

    def api(opts, path, method=None, body=None, raw=False):
        tok = opts.get(token[0]) or os.environ.get(token[1]) or ""
        return call(address(opts), "/v1" + path, body=body, method=method, timeout=15, raw=raw,
                    headers={token[2]: tok} if tok else None, tls=context(opts))
    return address, api


def cli_err(msg, code=1):
    print(msg, file=sys.stderr)
    return code


def run_client_cmd(client_cmd, cmd: str, args: list[str], with_value, unreachable: str) -> int:
    """A CLI command that talks to the agent: client_cmd(cmd, opts, multi, rest) with the parsed flags.
    An RPCError exits 1 with the message: agent not reachable (status 0, prefixed with unreachable),
    a usage error the CLI raised itself (status 1), or the API's answer."""
    o, multi, rest = parse_cli_flags(args, with_value)
    try:
        return client_cmd(cmd, o, multi, rest)
    except ValueError as e:  # the CLI's own TLS settings (tls.TLSConfigError)
        return cli_err(f"Error: {e}")
    except RPCError as e:
        if e.status == 0:
            return cli_err(f"{unreachable}: {e}")
        if e.status == 1:
            return cli_err(f"Error: {e}")
        return cli_err(f"Error: Unexpected response code: {e.status} ({e})")
