"""Consul's Connect CA and auto-encrypt on the stand-in (the certificates are made in connect_ca.py).

Servers with connect { enabled = true }: the raft leader initialises the built-in CA once, every server
answers /v1/connect/ca/roots. With auto_encrypt { allow_tls = true } they sign agent certificates
(AutoEncrypt.Sign, also on connections without a client certificate) and trust the Connect root on
internal RPC besides their ca_file. Clients with auto_encrypt { tls = true } ask a server for a certificate
at start, keep it in memory and use it for RPC (and HTTPS when no certificate file is configured)."""

from __future__ import annotations

import datetime as dt
import threading

from . import acl, autojoin, connect_ca, tls
from .httpapi import HTTPError
from .net import Response, RPCError, call, split_hostport

NOT_ENABLED = "Connect must be enabled in order to use this endpoint"
_GO_BOOLS = {v: True for v in ("1", "t", "T", "TRUE", "true", "True")} | {v: False for v in ("0", "f", "F", "FALSE", "false", "False")}


class ConsulConnect:
    """Mixed into ConsulAgent."""

    auto_cert: tuple[str, str] | None = None

    def connect_settings(self):
        c = self.cfg.get("connect") or {}
        ae = self.cfg.get("auto_encrypt") or {}
        self.connect_enabled = self.server and bool(c.get("enabled"))
        self.ae_allow = self.server and bool(ae.get("allow_tls"))
        self.ae_client = not self.server and bool(ae.get("tls"))
        self.ae_sans = (list(ae.get("dns_san") or []), list(ae.get("ip_san") or []))
        if self.connect_enabled or self.ae_client:
            connect_ca.require()

    def tls_contexts(self):
        ctxs = tls.consul_contexts(self.cfg, self.server, self.auto_cert)
        self.trust_connect_root(ctxs)
        return ctxs

    # ------------------------------------------------------------ servers
    def connect_leader_init(self):
        """initializeCA: a root only when the cluster has none (the state keeps it across leader changes)."""
        if not self.connect_enabled:
            return
        st, _ = self.raft.snapshot()
        if st.get("connect_ca") is None:
            self.raft.apply({"op": "connect_ca_init", "ca": connect_ca.new_root()})
            self.log("INFO", "agent.server.connect: initialized primary datacenter CA with provider: provider=consul")

    def trust_connect_root(self, ctxs=None):
        """With allow_tls, internal RPC accepts certificates of the Connect CA as well as of ca_file (Consul's
        UpdateAutoTLSCA); followers learn the root through raft, so every server keeps it up to date."""
        ctxs = ctxs or getattr(self, "tls", None)
        if not (self.ae_allow and self.raft and ctxs and ctxs.rpc_server):
            return
        st, _ = self.raft.snapshot()
        ca = st.get("connect_ca")
        if ca and getattr(ctxs.rpc_server, "connect_root", None) != ca["Root"]["ID"]:
            ctxs.rpc_server.load_verify_locations(cadata=ca["Root"]["RootCert"])
            ctxs.rpc_server.connect_root = ca["Root"]["ID"]

    def start_connect(self):
        if self.ae_allow:
            def watch():
                while not self.stopping.wait(0.5):
                    self.trust_connect_root()
            threading.Thread(target=watch, daemon=True, name="auto-encrypt-roots").start()

    def rpc_AutoEncrypt_Sign(self, a):
        """Sign an agent's CSR with the active root (on the leader; forwarded there by server_rpc)."""
        if not self.connect_enabled:
            raise RPCError(NOT_ENABLED, 400)
        if not self.ae_allow:
            raise RPCError("AutoEncrypt.AllowTLS must be enabled in order to use this endpoint", 400)
        if a.get("Datacenter") != self.dc:
            raise RPCError(f"mismatched datacenter (client_dc='{a.get('Datacenter')}' server_dc='{self.dc}'); "
                           "check client has same datacenter as server", 400)
        st, _ = self.raft.snapshot()
        ca = st.get("connect_ca")
        if not ca:
            raise RPCError("internal error: CA provider is nil", 500)

        def node_allowed(node):
            if not self.acl_enabled:
                return None
            ident = self.acl_identity(st, a.get("Token") or "")
            if not ident.get("found"):
                return self.ACL_NOT_FOUND
            authz = acl.Authorizer("consul", ident["management"], ident["rules"], self.acl_default_allow)
            return None if authz.allowed("node", "write", node) else self.permission_denied(ident, "node:write", node)

        try:
            cert = connect_ca.sign_agent_csr(ca, a.get("CSR") or "", self.dc, node_allowed)
        except PermissionError as e:
            raise RPCError(str(e), 403) from None
        except ValueError as e:
            raise RPCError(str(e), 400) from None
        self.log("INFO", f"agent.server.connect: signed agent certificate: agent={cert['Agent']} uri={cert['AgentURI']}")
        vsh = bool(((self.cfg.get("tls") or {}).get("internal_rpc") or {}).get("verify_server_hostname"))
        return {"IssuedCert": cert, "ConnectCARoots": connect_ca.roots_view(ca), "VerifyServerHostname": vsh}

    # ------------------------------------------------------------ clients
    def auto_encrypt_start(self):
        """Before the agent starts anything else, as Consul's does: ask the servers of retry_join/start_join (on
        ports.server: gossip has not told the servers' ports yet) for a certificate, until one answers."""
        if not self.ae_client:
            return
        entries = list(self.cfg.get("retry_join") or []) + list(self.cfg.get("start_join") or [])
        if not entries:
            raise ValueError("AutoEncrypt failed: No servers to request AutoEncrypt.Sign (set retry_join)")
        wait = 1.0
        while not self.stopping.is_set():
            if self._auto_encrypt_once(entries):
                return
            self.log("ERROR", "agent.auto_config: No servers successfully responded to the auto-encrypt request")
            self.stopping.wait(wait)
            wait = min(wait * 2, 10.0)

    def _auto_encrypt_once(self, entries) -> bool:
        dns, ips = self.ae_sans
        ips = ["127.0.0.1"] + [a for a in dict.fromkeys([self.advertise, self.bind]) if a not in ("0.0.0.0", "::")] + ips
        key, csr = connect_ca.agent_csr(self.node_name, self.dc, ["localhost"] + dns, ips)
        args = {"Datacenter": self.dc, "CSR": csr, "Token": self.acl_tokens.get("agent") or self.default_token()}
        hosts = []
        for e in entries:
            try:
                hosts += [split_hostport(h, 0)[0] for h in autojoin.resolve(e)]
            except autojoin.DiscoverError as ex:
                self.log("WARN", f"agent.auto_config: {ex}")
        for h in dict.fromkeys(hosts):
            addr = f"[{h}]:{self.server_port}" if ":" in h else f"{h}:{self.server_port}"
            try:
                r = call(addr, "/rpc/AutoEncrypt.Sign", {"args": args}, timeout=5.0, tls=self.tls.rpc)["result"]
            except RPCError as ex:
                self.log("ERROR", f"agent.auto_config: AutoEncrypt.Sign RPC failed: addr={addr} error=\"{ex}\"")
                continue
            cert = r["IssuedCert"]
            self.auto_cert = (cert["CertPEM"], key)
            self.reload_tls()  # the new contexts for RPC and for the HTTPS listener, if it runs already
            self.log("INFO", f"agent.auto_config: auto-encrypt certificate received: uri={cert['AgentURI']} "
                             f"valid_before={cert['ValidBefore']}")
            self._schedule_renewal(cert["ValidAfter"], cert["ValidBefore"])
            return True
        return False

    def _schedule_renewal(self, after: str, before: str):
        """A new certificate when most of its lifetime has passed (Consul renews its leaf ahead of expiry too),
        asked over the mutual-TLS connection the current one allows."""
        start, end = (dt.datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC) for t in (after, before))
        due = (start + (end - start) * 0.8 - dt.datetime.now(dt.UTC)).total_seconds()

        def renew():
            if self.stopping.wait(max(due, 1.0)):
                return
            entries = [m.split(":")[0] for m in self.known_servers()] or \
                list(self.cfg.get("retry_join") or []) + list(self.cfg.get("start_join") or [])
            while not self.stopping.is_set() and not self._auto_encrypt_once(entries):
                self.stopping.wait(10.0)

        threading.Thread(target=renew, daemon=True, name="auto-encrypt-renew").start()


def register(route):
    """/v1/connect/ca/roots and its agent-cached twin (no ACL needed, as documented)."""

    def roots(self, req):
        out, _idx, h = self.query(req, "connect_ca_roots")
        if not out["ActiveRootID"]:
            raise HTTPError(500, NOT_ENABLED)
        flag = req.get("pem") or ""
        if flag and flag not in _GO_BOOLS:
            raise HTTPError(400, "The 'pem' query parameter must be a boolean value")
        if _GO_BOOLS.get(flag):
            pem = "".join(r["RootCert"] if r["RootCert"].endswith("\n") else r["RootCert"] + "\n" for r in out["Roots"])
            return Response(raw=pem.encode(), ctype="application/pem-certificate-chain", headers=h)
        return Response(out, headers=h)

    route("GET", "/v1/connect/ca/roots")(roots)
    route("GET", "/v1/agent/connect/ca/roots")(roots)
