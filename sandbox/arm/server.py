"""HTTPS server of the ARM emulator: TLS, request parsing, auth, latency, faults, request log.

One ``App`` holds the state (store, auth, LROs, backend) and dispatches every request through
the single router (``router.py``); resource providers live in ``resources/``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import socketserver
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from . import admin, api_versions, batch, resources, router  # noqa: F401  (admin and batch register routes)
from .auth import OWNER, Auth, authorize
from .backend import InstanceBackend
from .certs import ensure_certs
from .errors import ArmError
from .lro import Lro
from .resources import authorization, keyvault
from .router import Request, Response
from .scheduled_events import ScheduledEvents
from .store import Store

LOG = logging.getLogger("sandbox.arm")
resources.load()  # every provider in resources/ registers its routes, types and hooks


@dataclass
class Config:
    port: int = 0
    state_dir: str = ""
    latency_ms: float = 0.0
    provisioning_seconds: float = 1.5
    network_seconds: float = 0.0
    retry_after: float = 1.0
    page_size: int = 100
    backend_parallelism: int = 8
    request_log: str = ""  # directory: every ARM request is appended to <dir>/arm-<port>-<pid>.jsonl
    event_time_scale: float = 1.0  # Scheduled Events notice multiplier (a test knob; 1 = the documented times)


class App:
    def __init__(self, config: Config, backend: InstanceBackend | None = None):
        self.config = config
        self.initial_latency = config.latency_ms
        self.initial_event_time_scale = config.event_time_scale
        os.makedirs(config.state_dir, exist_ok=True)
        self.ca_path, self.cert_path, self.key_path = ensure_certs(config.state_dir)
        self.backend = backend or InstanceBackend()
        self.store = Store(os.path.join(config.state_dir, "state.json"))
        self.faults: list[dict] = []
        self.log: list[dict] = []
        self.log_lock = threading.Lock()
        self.fault_lock = threading.Lock()
        self.lro = Lro(self)
        self.events = ScheduledEvents(self)
        self.base = ""
        self.auth: Auth | None = None

    # set once the port is known
    def bind(self, port: int) -> None:
        self.config.port = port
        if self.config.request_log:
            os.makedirs(self.config.request_log, exist_ok=True)
            self._log_file = os.path.join(self.config.request_log, f"arm-{port}-{os.getpid()}.jsonl")
        self.base = f"https://127.0.0.1:{port}"
        self.auth = Auth.load(self.config.state_dir, self.base, self.base + "/")
        self.identity = self.auth.identity
        self.ensure_owner_assignment()
        endpoint = {"resource_manager": self.base + "/", "authority": self.base,
                    "tenant_id": self.identity["tenant_id"], "subscription_id": self.identity["subscription_id"],
                    "client_id": self.identity["client_id"], "client_secret": self.identity["client_secret"],
                    "principal_id": self.identity["principal_id"], "ca_path": self.ca_path,
                    "admin": self.base + "/_sandbox",
                    # HTTPS_PROXY for clients of the Key Vault data plane (https://<vault>.vault.azure.net)
                    "vault_proxy": getattr(self, "vault_proxy", "")}
        tmp = os.path.join(self.config.state_dir, "endpoint.json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(endpoint, fh, indent=2)
        os.replace(tmp, os.path.join(self.config.state_dir, "endpoint.json"))
        self.lro.resume()
        if hasattr(self.backend, "bind"):  # backends that talk back to us (tokens for IMDS) learn where we are
            self.backend.bind(self.base, self.ca_path, self.config.state_dir)
        if self.store.of_type(keyvault.VAULT):
            keyvault.announce(self)  # a restarted emulator tells the backend its vaults again

    def ensure_owner_assignment(self) -> None:
        """The service principal owns the subscription through a real role assignment."""
        sub = self.identity["subscription_id"]
        rid = f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/" \
              f"{uuid.uuid5(uuid.NAMESPACE_URL, sub + self.identity['principal_id'])}"
        if not self.store.get(rid):
            authorization.create_assignment(self, rid, f"/subscriptions/{sub}", OWNER,
                                            self.identity["principal_id"], "ServicePrincipal")

    @property
    def sub(self) -> str:
        return self.identity["subscription_id"]

    # -- request pipeline ---------------------------------------------------------------------------
    def handle(self, req: Request, principal: dict | None = None) -> Response:
        """Answer one request. ``principal``: the caller of a ``POST /batch`` the request is part of
        (already authenticated, no latency of its own: it rides on the batch's round trip)."""
        is_admin = req.path.lower().startswith("/_sandbox")
        if not is_admin:
            if self.config.latency_ms and principal is None:
                time.sleep(self.config.latency_ms / 1000.0)
            fault = self._take_fault(req)
            if fault:
                return fault
        try:
            try:
                fn, groups, needs_auth = router.match(req.method, req.path)
            except ValueError:
                raise ArmError(405, "MethodNotAllowed" if not is_admin else "BadRequest",
                               f"The requested resource does not support http method '{req.method}'.") from None
            except LookupError:
                raise self._no_route(req) from None
            if needs_auth:
                if not req.api_version:
                    raise ArmError(400, "MissingApiVersionParameter",
                                   "The api-version query parameter (?api-version=) is required for all requests.")
                req.principal = principal or self.auth.validate(req.headers.get("authorization"))
                sub = groups.get("sub")
                if sub and sub.lower() != self.sub.lower():
                    raise ArmError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
                api_versions.check(req, lambda: self._request_location(req, groups))
                if needs_auth != "tenant":  # tenant-level reads (subscriptions, tenants, batch) filter instead
                    assignments = [r["body"] for r in self.store.of_type("Microsoft.Authorization/roleAssignments")]
                    authorize(assignments, req.principal["oid"], req.method, req.path, authorization.custom_roles(self))
                if req.method in ("PUT", "PATCH", "POST") and req.extra.get("bad_json"):
                    raise ArmError(400, "InvalidRequestContent",
                                   "The request content was invalid and could not be deserialized: "
                                   f"'{req.extra['bad_json']}'.")
            if req.method in ("GET", "HEAD"):
                # Reads see a consistent snapshot: writers and LRO jobs mutate under the same lock.
                with self.store.lock:
                    resp = fn(self, req, **groups)
            else:
                resp = fn(self, req, **groups)
            if isinstance(resp, tuple):
                resp = Response(*resp)
            return resp
        except ArmError as exc:
            return Response(exc.status, exc.body(), dict(exc.headers))

    def handle_vault(self, req: Request, vault: str) -> Response:
        """A request for https://<vault>.vault.azure.net (the Key Vault data plane, same port, by Host name)."""
        try:
            return keyvault.data_plane(self, req, vault)
        except ArmError as exc:
            return Response(exc.status, exc.body(), dict(exc.headers))

    def _request_location(self, req: Request, groups: dict) -> str:
        """The location ARM routes a request by: the body's (a PUT), a locations/{loc} segment, the
        resource group's, else 'global' (tenant and subscription level)."""
        body_loc = (req.body or {}).get("location") if isinstance(req.body, dict) else None
        if isinstance(body_loc, str) and body_loc:
            return body_loc.replace(" ", "").lower()
        m = re.search(r"/locations/([^/]+)", req.path, re.I)
        if m:
            return m.group(1).lower()
        if groups.get("rg"):
            rec = self.store.get(f"/subscriptions/{self.sub}/resourceGroups/{groups['rg']}")
            if rec:
                return rec["body"]["location"]
        return "global"

    def _no_route(self, req: Request) -> ArmError:
        m = re.search(r"/providers/([^/]+)/([^/]+)", req.path)
        if m and req.path.lower().startswith("/subscriptions/"):
            return ArmError(404, "InvalidResourceType" if m.group(1).lower() in (
                "microsoft.compute", "microsoft.network", "microsoft.resources", "microsoft.authorization",
                "microsoft.keyvault")
                else "NoRegisteredProviderFound",
                f"The resource type '{m.group(2)}' could not be found in the namespace '{m.group(1)}' for api "
                f"version '{req.api_version}'.")
        return ArmError(404, "NotFound", f"No HTTP resource was found that matches the request URI "
                                         f"'{self.base}{req.path}'.")

    def _take_fault(self, req: Request) -> Response | None:
        with self.fault_lock:
            for fault in self.faults:
                if fault["count"] <= 0:
                    continue
                if fault.get("method") and fault["method"].upper() not in (req.method, "*"):
                    continue
                if fault.get("path") and not re.search(fault["path"], req.path, re.I):
                    continue
                fault["count"] -= 1
                fault["hits"] = fault.get("hits", 0) + 1
                break
            else:
                return None
        return admin.fault_response(self, fault, req)

    def record(self, req: Request, status: int, started: float, batch_item: str | None = None) -> None:
        entry = {"seq": 0, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                 "method": req.method, "path": req.path, "query": req.query, "api_version": req.api_version,
                 "status": status, "principal": (req.principal or {}).get("oid"),
                 "duration_ms": round((time.time() - started) * 1000, 1)}
        if req.extra.get("vault"):
            entry["vault"] = req.extra["vault"]  # a Key Vault data-plane request (https://<vault>.vault.azure.net)
        if batch_item is not None:
            entry["batch"] = batch_item  # a request sent inside POST /batch (the item's name)
        with self.log_lock:
            entry["seq"] = len(self.log)
            self.log.append(entry)
            if self.config.request_log and not req.path.lower().startswith("/_sandbox"):
                # the file log outlives /_sandbox/reset and the process: the tests check every api-version
                # the collection sent against the table (tests/conftest.py)
                line = dict(entry, user_agent=req.headers.get("user-agent", ""))
                with open(self._log_file, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(line) + "\n")

    def close(self) -> None:
        self.events.close()
        self.lro.drain(timeout=30)
        self.store.close()
        self.backend.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    app: App = None  # set by make_server

    def log_message(self, fmt, *args):  # keep stderr quiet; the request log is the record
        LOG.debug("%s - %s", self.address_string(), fmt % args)

    def _dispatch(self):
        started = time.time()
        app = self.app
        split = urlsplit(self.path)
        path = re.sub(r"/{2,}", "/", split.path) or "/"
        if len(path) > 1:
            path = path.rstrip("/")
        query = {k.lower(): v for k, v in parse_qsl(split.query, keep_blank_values=True)}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        # Links we hand out (nextLink, operation URLs) use the name the client used to reach us, so a
        # sandbox host that reaches the emulator as management.azure.com can follow them.
        host = headers.get("host", "")
        base = f"https://{host}" if re.fullmatch(r"[A-Za-z0-9.\-]+(:\d+)?", host) else app.base
        req = Request(self.command, path, query, headers, raw_body=raw, base=base)
        if raw and "json" in headers.get("content-type", "application/json"):
            try:
                req.body = json.loads(raw)
            except ValueError as exc:
                req.extra["bad_json"] = str(exc)
        try:
            vault = keyvault.vault_from_host(host)
            if vault:
                req.extra["vault"] = vault
            resp = app.handle_vault(req, vault) if vault else app.handle(req)
        except Exception as exc:  # noqa: BLE001 - never answer with an HTML traceback
            LOG.exception("internal error")
            resp = Response(500, {"error": {"code": "InternalServerError",
                                            "message": f"Encountered internal server error. {exc}"}})
        self._send(req, resp)
        app.record(req, resp.status, started)

    def _send(self, req: Request, resp: Response):
        payload = b""
        hdrs = {"Cache-Control": "no-cache", "Pragma": "no-cache", "Expires": "-1",
                "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
                "X-Content-Type-Options": "nosniff", "x-ms-request-id": str(uuid.uuid4()),
                "x-ms-correlation-request-id": req.headers.get("x-ms-correlation-request-id", str(uuid.uuid4())),
                "x-ms-routing-request-id": "SANDBOX:" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + ":" +
                str(uuid.uuid4())[:8], "Date": formatdate(usegmt=True)}
        if "x-ms-client-request-id" in req.headers:
            hdrs["x-ms-client-request-id"] = req.headers["x-ms-client-request-id"]
        if req.method in ("PUT", "PATCH", "POST"):
            hdrs["x-ms-ratelimit-remaining-subscription-writes"] = "1199"
        elif req.method == "DELETE":
            hdrs["x-ms-ratelimit-remaining-subscription-deletes"] = "14999"
        else:
            hdrs["x-ms-ratelimit-remaining-subscription-reads"] = "11999"
        if resp.body is not None:
            payload = resp.body if isinstance(resp.body, bytes) else json.dumps(resp.body).encode()
            hdrs["Content-Type"] = "application/json; charset=utf-8"
        hdrs.update(resp.headers)
        hdrs["Content-Length"] = str(len(payload))
        self.send_response(resp.status)
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.end_headers()
        if req.method != "HEAD" and payload:
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _dispatch


class TlsThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, addr, handler, context: ssl.SSLContext):
        self.context = context
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        # TLS handshake in the per-connection thread, so a slow client never blocks accept().
        request.settimeout(120)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class VaultProxy(socketserver.ThreadingTCPServer):
    """An HTTP proxy (CONNECT only) that delivers https://<vault>.vault.azure.net to the emulator's port, so an
    unchanged client on the controller reaches the Key Vault data plane under its real name: ``HTTPS_PROXY`` =
    this proxy, ``NO_PROXY`` = 127.0.0.1 (what a client behind a corporate proxy has too). Any other target: 403."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target_port: int):
        self.target_port = target_port
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline(8192).decode("latin-1")
        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
            pass
        parts = line.split()
        if len(parts) < 2 or parts[0].upper() != "CONNECT" or not keyvault.vault_from_host(parts[1]) \
                or not parts[1].endswith(":443"):
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        upstream = socket.create_connection(("127.0.0.1", self.server.target_port), timeout=120)
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        client = self.connection

        def pump(src, dst):
            try:
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                for sock in (src, dst):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        t = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        t.start()
        pump(client, upstream)
        t.join(timeout=120)
        upstream.close()


def make_server(app: App, port: int) -> TlsThreadingServer:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(app.cert_path, app.key_path)
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = TlsThreadingServer(("127.0.0.1", port), handler, ctx)
    proxy = VaultProxy(server.server_address[1])
    threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True).start()
    app.vault_proxy = f"http://127.0.0.1:{proxy.server_address[1]}"
    app.bind(server.server_address[1])
    return server
