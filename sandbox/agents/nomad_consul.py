"""Nomad's `consul {}` block: the agent registers its own services in the local Consul agent, as Nomad
does (servers: "nomad" with the rpc, serf and http tags; clients: "nomad-client" with http; each with its
check), keeps them registered, removes them on shutdown, and (server_auto_join / client_auto_join)
finds servers through Consul when no join target is configured."""

from __future__ import annotations

import base64
import hashlib
import threading

from .agentbase import dur
from .net import RPCError, call

SERVER_PREFIX, CLIENT_PREFIX, CHECK_PREFIX = "_nomad-server-", "_nomad-client-", "_nomad-check-"


def _b32sha1(text: str) -> str:
    return base64.b32encode(hashlib.sha1(text.encode()).digest()).decode().lower().rstrip("=")


class ConsulRegistration:
    def __init__(self, agent):
        self.agent = agent
        c = agent.cfg.get("consul") or {}
        self.address = c.get("address", "127.0.0.1:8500").replace("http://", "")
        self.auto_advertise = c.get("auto_advertise", True)
        self.server_name = c.get("server_service_name", "nomad")
        self.client_name = c.get("client_service_name", "nomad-client")
        self.tags = list(c.get("tags") or [])
        self.checks_use_advertise = bool(c.get("checks_use_advertise", False))
        self.names = {"server_http": c.get("server_http_check_name", "Nomad Server HTTP Check"),
                      "server_serf": c.get("server_serf_check_name", "Nomad Server Serf Check"),
                      "server_rpc": c.get("server_rpc_check_name", "Nomad Server RPC Check"),
                      "client_http": c.get("client_http_check_name", "Nomad Client HTTP Check")}
        self.server_auto_join = c.get("server_auto_join", True)
        self.client_auto_join = c.get("client_auto_join", True)
        self.timeout = dur(c.get("timeout"), "5s")
        self.stopped = threading.Event()
        self.registered: set[str] = set()

    # ------------------------------------------------------------ what Nomad registers
    def services(self) -> list[dict]:
        a = self.agent
        out = []
        http_check_addr = a.adv["http"] if self.checks_use_advertise else f"{a.addrs['http']}:{a.ports['http']}"
        # with tls.http Nomad's HTTP checks are https and skip verification (the certificate names server.<region>.nomad)
        https = bool((a.cfg.get("tls") or {}).get("http"))
        scheme, tls_extra = ("https", {"TLSSkipVerify": True}) if https else ("http", {})
        if a.is_server:
            rpc_check = a.adv["rpc"] if self.checks_use_advertise else f"{a.addrs['rpc']}:{a.ports['rpc']}"
            serf_check = a.adv["serf"] if self.checks_use_advertise else f"{a.addrs['serf']}:{a.ports['serf']}"
            out += [self._service("server", self.server_name, "rpc", a.adv["rpc"],
                                  {"Name": self.names["server_rpc"], "TCP": rpc_check, "Interval": "10s", "Timeout": "3s"}),
                    self._service("server", self.server_name, "serf", a.adv["serf"],
                                  {"Name": self.names["server_serf"], "TCP": serf_check, "Interval": "10s", "Timeout": "3s"}),
                    self._service("server", self.server_name, "http", a.adv["http"],
                                  {"Name": self.names["server_http"], "Method": "GET", "Interval": "10s", "Timeout": "5s",
                                   "HTTP": f"{scheme}://{http_check_addr}/v1/agent/health?type=server", **tls_extra})]
        if a.is_client:
            out.append(self._service("client", self.client_name, "http", a.adv["http"],
                                     {"Name": self.names["client_http"], "Method": "GET", "Interval": "10s", "Timeout": "5s",
                                      "HTTP": f"{scheme}://{http_check_addr}/v1/agent/health?type=client",
                                      **tls_extra}))
        return out

    def _service(self, role, name, tag, hostport, check):
        host, port = hostport.rsplit(":", 1)
        tags = [tag] + self.tags
        sid = (SERVER_PREFIX if role == "server" else CLIENT_PREFIX) + _b32sha1(f"{role}-{name}-{','.join(tags)}")
        check = dict(check, CheckID=CHECK_PREFIX + hashlib.sha1(f"{sid}-{check['Name']}".encode()).hexdigest())
        return {"ID": sid, "Name": name, "Tags": tags, "Address": host, "Port": int(port),
                "Meta": {"external-source": "nomad"}, "Checks": [check]}

    # ------------------------------------------------------------ sync loop
    def start(self):
        if self.auto_advertise:
            threading.Thread(target=self._loop, daemon=True, name="consul-sync").start()
        if self.agent.is_server and self.server_auto_join:
            threading.Thread(target=self._server_join_loop, daemon=True, name="consul-server-join").start()

    def _api(self, path, method=None, body=None):
        return call(self.address, "/v1" + path, body=body, method=method, timeout=self.timeout)

    def _loop(self):
        backoff = 1.0
        while not self.stopped.is_set():
            try:
                self.sync()
                backoff = 30.0  # periodic reconcile, as Nomad's service client
            except RPCError as e:
                self.agent.log("WARN", f"consul.sync: failed to update services in Consul: error={e}")
                backoff = min(30.0, backoff * 2) if backoff < 30 else 1.0
            self.stopped.wait(backoff)

    def sync(self):
        have = self._api("/agent/services") or {}
        want = {s["ID"]: s for s in self.services()}
        for sid, svc in want.items():
            cur = have.get(sid)
            if cur is None or cur.get("Port") != svc["Port"] or cur.get("Address") != svc["Address"] or \
                    sorted(cur.get("Tags") or []) != sorted(svc["Tags"]):
                self._api("/agent/service/register", method="PUT", body=svc)
                self.agent.log("INFO", f"consul.sync: registered service: id={sid} name={svc['Name']}")
        # agent registrations this agent does not know are left alone (isNomadService: a server and a client
        # agent may share one Consul agent); its own are removed on shutdown
        self.registered = set(want)

    def stop(self):
        self.stopped.set()
        for sid in list(self.registered):
            try:
                self._api(f"/agent/service/deregister/{sid}", method="PUT")
            except RPCError:
                pass

    # ------------------------------------------------------------ discovery through Consul
    def discover(self, tag: str) -> list[str]:
        """Addresses of healthy Nomad servers with this tag (rpc for clients, serf for servers)."""
        if self.agent.is_server and not self.server_auto_join or not self.agent.is_server and not self.client_auto_join:
            return []
        try:
            rows = self._api(f"/health/service/{self.server_name}?passing&tag={tag}") or []
        except RPCError as e:
            self.agent.log("DEBUG", f"consul: server discovery failed: {e}")
            return []
        return [f"{r['Service']['Address'] or r['Node']['Address']}:{r['Service']['Port']}" for r in rows]

    def _server_join_loop(self):
        a = self.agent
        while not self.stopped.wait(10.0):
            expect = a.srv_cfg.get("bootstrap_expect", 0)
            alive = [m for m in a.serf.list() if m["Status"] == "alive"] if a.serf else []
            if expect and len(alive) >= expect:
                continue
            own = a.adv["serf"]
            addrs = [x for x in self.discover("serf") if x != own]
            if addrs:
                n, _errs = a.serf.join(addrs)
                if n:
                    a.log("INFO", f"agent: server auto-join through Consul: num_joined={n}")
