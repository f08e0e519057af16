"""A Consul agent's own services and checks: definitions (from the HTTP API or the config file's
service/check blocks, decoded like the agent does: case-insensitive, snake_case accepted), the
check runners (TTL, HTTP, TCP), maintenance mode, persistence in the data dir, and the anti-entropy
sync that keeps the catalog equal to them.

Check types the stand-in does not run (script, gRPC, Docker, alias, H2 ping, UDP, OS service) are
refused with a 400 naming the field, instead of being registered and never run.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from .config import format_duration, parse_duration
from .httpapi import HTTPError

NODE_MAINT = "_node_maintenance"
SERVICE_MAINT = "_service_maintenance:"
NODE_MAINT_REASON = ("Maintenance mode is enabled for this node, but no reason was provided. This is a default message.")
SERVICE_MAINT_REASON = ("Maintenance mode is enabled for this service, but no reason was provided. "
                        "This is a default message.")

_SERVICE_FIELDS = ["ID", "Name", "Tags", "Address", "Meta", "Port", "EnableTagOverride", "Weights", "TaggedAddresses",
                   "Check", "Checks", "Kind", "Proxy", "Connect", "Token", "Namespace", "Partition", "SocketPath",
                   "Locality"]
_CHECK_FIELDS = ["ID", "CheckID", "Name", "Notes", "ServiceID", "Token", "Status", "ScriptArgs", "Args", "HTTP",
                 "Header", "Method", "Body", "DisableRedirects", "TCP", "UDP", "Interval", "DockerContainerID",
                 "Shell", "GRPC", "GRPCUseTLS", "OSService", "TLSServerName", "TLSSkipVerify", "AliasNode",
                 "AliasService", "Timeout", "TTL", "SuccessBeforePassing", "FailuresBeforeWarning",
                 "FailuresBeforeCritical", "DeregisterCriticalServiceAfter", "OutputMaxSize", "H2PING",
                 "H2PingUseTLS", "Definition", "Namespace", "Partition", "Type", "ExposedPort", "Output", "Node",
                 "ServiceName", "ServiceTags", "CreateIndex", "ModifyIndex"]
# fields of a definition the stand-in cannot honour: refused (field -> why)
_UNSUPPORTED_CHECK = {"ScriptArgs": "script checks", "Args": "script checks", "DockerContainerID": "Docker checks",
                      "GRPC": "gRPC checks", "OSService": "OS service checks", "AliasNode": "alias checks",
                      "AliasService": "alias checks", "H2PING": "H2 ping checks", "UDP": "UDP checks",
                      "SuccessBeforePassing": "check thresholds", "FailuresBeforeWarning": "check thresholds",
                      "FailuresBeforeCritical": "check thresholds", "TLSServerName": "TLS checks",
                      "GRPCUseTLS": "TLS checks", "H2PingUseTLS": "TLS checks"}
_UNSUPPORTED_SERVICE = {"Kind": "service kinds (mesh gateways, proxies)", "Proxy": "service mesh proxies",
                        "Connect": "service mesh (Connect)", "SocketPath": "Unix socket services",
                        "Locality": "service locality"}


def _canon(fields):
    return {f.lower(): f for f in fields}


_SVC, _CHK = _canon(_SERVICE_FIELDS), _canon(_CHECK_FIELDS)
_ALIASES = {"serviceid": "ServiceID", "checkid": "CheckID", "scriptargs": "ScriptArgs",
            "deregistercriticalserviceafter": "DeregisterCriticalServiceAfter", "enabletagoverride": "EnableTagOverride",
            "taggedaddresses": "TaggedAddresses", "tlsskipverify": "TLSSkipVerify"}


def _normalize(d: dict, canon: dict, what: str) -> dict:
    if not isinstance(d, dict):
        raise HTTPError(400, f"Request decode failed: {what} must be an object")
    out = {}
    for k, v in d.items():
        key = k.lower().replace("_", "")
        name = canon.get(key) or _ALIASES.get(key)
        if name is None:
            raise HTTPError(400, f'Request decode failed: {what}: invalid field "{k}"')
        out[name] = v
    return out


def _dur(v, field: str) -> float:
    if v in (None, "", 0):
        return 0.0
    try:
        return parse_duration(v)
    except ValueError:
        raise HTTPError(400, f'Request decode failed: {field}: invalid duration "{v}"') from None


def check_definition(raw: dict, service: dict | None = None) -> dict:
    """A check as the agent stores it (also what /v1/agent/checks shows), from an API or config definition."""
    d = _normalize(raw, _CHK, "check")
    for f, why in _UNSUPPORTED_CHECK.items():
        if d.get(f):
            raise HTTPError(400, f"{f}: {why} are not implemented by the sandbox stand-in")
    ttl, interval = _dur(d.get("TTL"), "TTL"), _dur(d.get("Interval"), "Interval")
    timeout = _dur(d.get("Timeout"), "Timeout")
    if ttl:
        ctype = "ttl"
    elif d.get("HTTP"):
        ctype = "http"
    elif d.get("TCP"):
        ctype = "tcp"
    else:
        raise HTTPError(400, "Must provide TTL or Script/DockerContainerID/HTTP/TCP/UDP/GRPC/H2PING/AliasNode/"
                             "AliasService and Interval (the stand-in runs TTL, HTTP and TCP checks)")
    if ctype in ("http", "tcp") and interval <= 0:
        raise HTTPError(400, "Interval must be > 0 for Script, HTTP, H2PING, or TCP checks")
    sid = d.get("ServiceID") or (service["ID"] if service else "")
    cid = d.get("CheckID") or d.get("ID") or (f"service:{sid}" if service else d.get("Name", ""))
    if not cid:
        raise HTTPError(400, "Missing check name")
    name = d.get("Name") or (f"Service '{service['Service']}' check" if service else "")
    if not name:
        raise HTTPError(400, "Missing check name")
    status = d.get("Status") or "critical"
    if status not in ("passing", "warning", "critical"):
        raise HTTPError(400, f'Request decode failed: invalid check status "{status}"')
    definition = {}
    if ctype == "http":
        definition = {"HTTP": d["HTTP"], "Method": d.get("Method") or "", "Header": d.get("Header") or {},
                      "Body": d.get("Body") or "", "TLSSkipVerify": bool(d.get("TLSSkipVerify")),
                      "Interval": format_duration(interval), "Timeout": format_duration(timeout or 10.0)}
    elif ctype == "tcp":
        definition = {"TCP": d["TCP"], "Interval": format_duration(interval), "Timeout": format_duration(timeout or 10.0)}
    dereg = _dur(d.get("DeregisterCriticalServiceAfter"), "DeregisterCriticalServiceAfter")
    if dereg:
        definition["DeregisterCriticalServiceAfter"] = format_duration(dereg)
    return {"Node": "", "CheckID": cid, "Name": name, "Status": status, "Notes": d.get("Notes") or "", "Output": "",
            "ServiceID": sid, "ServiceName": service["Service"] if service else "",
            "ServiceTags": list(service.get("Tags") or []) if service else [], "Type": ctype,
            "Interval": format_duration(interval) if interval else "", "Timeout": format_duration(timeout) if timeout else "",
            "ExposedPort": 0, "Definition": definition, "CreateIndex": 0, "ModifyIndex": 0, "Namespace": "default",
            "_ttl": ttl, "_interval": interval, "_timeout": timeout or 10.0, "_dereg": dereg}


def service_definition(raw: dict, dc: str) -> tuple[dict, list[dict]]:
    d = _normalize(raw, _SVC, "service")
    for f, why in _UNSUPPORTED_SERVICE.items():
        if d.get(f):
            raise HTTPError(400, f"{f}: {why} are not implemented by the sandbox stand-in")
    name = d.get("Name") or ""
    if not isinstance(name, str):
        name = str(name)
    if not name:
        raise HTTPError(400, "Missing service name")
    port = d.get("Port") or 0
    if isinstance(port, str) and port.isdigit():
        port = int(port)  # weakly typed decode, as the agent's config and API decoders do
    if not isinstance(port, int) or isinstance(port, bool) or port < 0:
        raise HTTPError(400, f"Request decode failed: Port: invalid port {port!r}")
    weights = d.get("Weights") or {"Passing": 1, "Warning": 1}
    svc = {"ID": d.get("ID") or name, "Service": name, "Tags": list(d.get("Tags") or []), "Meta": dict(d.get("Meta") or {}),
           "Port": port, "Address": d.get("Address") or "", "TaggedAddresses": d.get("TaggedAddresses") or {},
           "Weights": {"Passing": int(weights.get("Passing", 1)), "Warning": int(weights.get("Warning", 1))},
           "EnableTagOverride": bool(d.get("EnableTagOverride")), "Datacenter": dc}
    raw_checks = list(d.get("Checks") or [])
    if d.get("Check"):
        raw_checks.insert(0, d["Check"])
    checks = []
    for i, c in enumerate(raw_checks):
        chk = check_definition(c, svc)
        if len(raw_checks) > 1 and not (_normalize(c, _CHK, "check").get("CheckID") or _normalize(c, _CHK, "check").get("ID")):
            chk["CheckID"] = f"service:{svc['ID']}:{i + 1}"
        checks.append(chk)
    return svc, checks


def public(check: dict) -> dict:
    return {k: v for k, v in check.items() if not k.startswith("_")}


def catalog_service(svc: dict) -> dict:
    return {k: v for k, v in svc.items() if k not in ("Datacenter",)}


class LocalState:
    """The agent's services and checks (persisted in <data_dir>/local.json) and their runners."""

    def __init__(self, agent):
        self.agent = agent
        self.lock = threading.RLock()
        self.services: dict[str, dict] = {}
        self.checks: dict[str, dict] = {}
        self.path = Path(agent.data_dir) / "local.json"
        self.changed = threading.Event()
        self.stopped = threading.Event()
        self._next_run: dict[str, float] = {}
        self._ttl_deadline: dict[str, float] = {}
        self._critical_since: dict[str, float] = {}
        self._load()

    # ------------------------------------------------------------ persistence
    def _load(self):
        if self.path.is_file():
            try:
                d = json.loads(self.path.read_text())
                self.services, self.checks = d.get("services", {}), d.get("checks", {})
            except ValueError:
                pass
        now = time.monotonic()
        for cid, c in self.checks.items():
            if c.get("_ttl"):
                self._ttl_deadline[cid] = now + c["_ttl"]

    def _save(self):
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"services": self.services, "checks": self.checks}))
        os.replace(tmp, self.path)

    def _changed(self):
        self._save()
        self.changed.set()

    # ------------------------------------------------------------ services and checks
    def add_service(self, svc: dict, checks: list[dict], replace_checks: bool = False):
        with self.lock:
            self.services[svc["ID"]] = svc
            if replace_checks:
                for cid in [cid for cid, c in self.checks.items() if c["ServiceID"] == svc["ID"] and not cid.startswith(SERVICE_MAINT)]:
                    self._drop_check(cid)
            for c in checks:
                self._put_check(c)
            self._changed()

    def remove_service(self, sid: str) -> bool:
        with self.lock:
            if self.services.pop(sid, None) is None:
                return False
            for cid in [cid for cid, c in self.checks.items() if c["ServiceID"] == sid]:
                self._drop_check(cid)
            self._changed()
            return True

    def add_check(self, chk: dict):
        with self.lock:
            if chk["ServiceID"]:
                svc = self.services.get(chk["ServiceID"])
                if svc is None:
                    raise HTTPError(400, f'ServiceID "{chk["ServiceID"]}" does not exist')
                chk["ServiceName"], chk["ServiceTags"] = svc["Service"], list(svc["Tags"])
            self._put_check(chk)
            self._changed()

    def _put_check(self, chk: dict):
        chk = dict(chk, Node=self.agent.node_name)
        old = self.checks.get(chk["CheckID"])
        if old and old["Type"] == chk["Type"] and old["Definition"] == chk["Definition"]:
            chk["Status"], chk["Output"] = old["Status"], old["Output"]  # re-registered unchanged: keeps its state
        self.checks[chk["CheckID"]] = chk
        now = time.monotonic()
        if chk.get("_ttl"):
            self._ttl_deadline[chk["CheckID"]] = now + chk["_ttl"]
        if chk.get("_interval"):
            self._next_run[chk["CheckID"]] = now

    def _drop_check(self, cid):
        self.checks.pop(cid, None)
        for d in (self._next_run, self._ttl_deadline, self._critical_since):
            d.pop(cid, None)

    def remove_check(self, cid: str) -> bool:
        with self.lock:
            if cid not in self.checks:
                return False
            self._drop_check(cid)
            self._changed()
            return True

    def update_ttl(self, cid: str, status: str, output: str):
        with self.lock:
            c = self.checks.get(cid)
            if c is None:
                raise HTTPError(404, f'Unknown check ID "{cid}". Ensure that the check ID is passed, not the check name.')
            if c["Type"] != "ttl":
                raise HTTPError(500, f'CheckID "{cid}" does not have associated TTL')
            self._ttl_deadline[cid] = time.monotonic() + c["_ttl"]
            self._set_status(c, status, output)

    def _set_status(self, c: dict, status: str, output: str):
        if c["Status"] == status and c["Output"] == output:
            return
        c["Status"], c["Output"] = status, output
        if status == "critical":
            self._critical_since.setdefault(c["CheckID"], time.monotonic())
        else:
            self._critical_since.pop(c["CheckID"], None)
        self._changed()

    # ------------------------------------------------------------ maintenance
    def node_maintenance(self, enable: bool, reason: str):
        with self.lock:
            if enable:
                self._put_check({"Node": "", "CheckID": NODE_MAINT, "Name": "Node Maintenance Mode", "Status": "critical",
                                 "Notes": reason or NODE_MAINT_REASON, "Output": "", "ServiceID": "", "ServiceName": "",
                                 "ServiceTags": [], "Type": "maintenance", "Interval": "", "Timeout": "", "ExposedPort": 0,
                                 "Definition": {}, "CreateIndex": 0, "ModifyIndex": 0, "Namespace": "default"})
                self.agent.log("INFO", "agent: Node entered maintenance mode")
            elif NODE_MAINT in self.checks:
                self._drop_check(NODE_MAINT)
                self.agent.log("INFO", "agent: Node left maintenance mode")
            self._changed()

    def service_maintenance(self, sid: str, enable: bool, reason: str):
        with self.lock:
            svc = self.services.get(sid)
            if svc is None:
                raise HTTPError(404, f'Unknown service ID "{sid}"')
            cid = SERVICE_MAINT + sid
            if enable:
                self._put_check({"Node": "", "CheckID": cid, "Name": "Service Maintenance Mode", "Status": "critical",
                                 "Notes": reason or SERVICE_MAINT_REASON, "Output": "", "ServiceID": sid,
                                 "ServiceName": svc["Service"], "ServiceTags": list(svc["Tags"]), "Type": "maintenance",
                                 "Interval": "", "Timeout": "", "ExposedPort": 0, "Definition": {}, "CreateIndex": 0,
                                 "ModifyIndex": 0, "Namespace": "default"})
                self.agent.log("INFO", f"agent: Service entered maintenance mode: service={sid}")
            elif cid in self.checks:
                self._drop_check(cid)
                self.agent.log("INFO", f"agent: Service left maintenance mode: service={sid}")
            self._changed()

    # ------------------------------------------------------------ runners
    def start(self):
        threading.Thread(target=self._run_loop, daemon=True, name="consul-checks").start()

    def stop(self):
        self.stopped.set()

    def _run_loop(self):
        while not self.stopped.wait(0.2):
            now = time.monotonic()
            with self.lock:
                due = [dict(c) for cid, c in self.checks.items() if c.get("_interval") and self._next_run.get(cid, 0) <= now]
                for c in due:
                    self._next_run[c["CheckID"]] = now + c["_interval"]
                for cid, dl in list(self._ttl_deadline.items()):
                    c = self.checks.get(cid)
                    if c and dl <= now and c["Status"] != "critical":
                        self.agent.log("WARN", f"agent: Check missed TTL, is now critical: check={cid}")
                        self._set_status(c, "critical", "TTL expired")
                for cid, since in list(self._critical_since.items()):
                    c = self.checks.get(cid)
                    if c and c.get("_dereg") and c["ServiceID"] and now - since > c["_dereg"]:
                        self.agent.log("INFO", f"agent: removed service as its check is critical for too long: service={c['ServiceID']}")
                        self.services.pop(c["ServiceID"], None)
                        for x in [x for x, cc in self.checks.items() if cc["ServiceID"] == c["ServiceID"]]:
                            self._drop_check(x)
                        self._changed()
            for c in due:
                threading.Thread(target=self._run_check, args=(c,), daemon=True).start()

    def _run_check(self, c: dict):
        status, output = probe(c)
        with self.lock:
            cur = self.checks.get(c["CheckID"])
            if cur is not None:
                self._set_status(cur, status, output)


def probe(c: dict) -> tuple[str, str]:
    """Run one HTTP or TCP check like Consul's CheckHTTP / CheckTCP."""
    d, timeout = c["Definition"], c.get("_timeout") or 10.0
    if c["Type"] == "tcp":
        host, _, port = d["TCP"].rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return "passing", f"TCP connect {d['TCP']}: Success"
        except (OSError, ValueError) as e:
            return "critical", f"dial tcp {d['TCP']}: {e}"
    method = d.get("Method") or "GET"
    req = urllib.request.Request(d["HTTP"], data=(d.get("Body") or "").encode() or None, method=method)
    for k, vs in (d.get("Header") or {}).items():
        for v in vs if isinstance(vs, list) else [vs]:
            req.add_header(k, v)
    req.add_header("User-Agent", "Consul Health Check")
    ctx = None
    if d["HTTP"].startswith("https://") and d.get("TLSSkipVerify"):
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            body = r.read(4096).decode(errors="replace")
            return "passing", f"HTTP {method} {d['HTTP']}: {r.status} {r.reason} Output: {body}"
    except urllib.error.HTTPError as e:
        body = e.read(4096).decode(errors="replace")
        status = "warning" if e.code == 429 else "critical"
        return status, f"HTTP {method} {d['HTTP']}: {e.code} {e.reason} Output: {body}"
    except (OSError, ValueError) as e:
        return "critical", f'Get "{d["HTTP"]}": {e}'
