"""Small JSON-over-HTTP plumbing shared by the stand-in agents."""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse


class RPCError(Exception):
    def __init__(self, msg: str, status: int = 500):
        super().__init__(msg)
        self.status = status


def split_hostport(addr: str, default_port: int) -> tuple[str, int]:
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if addr.count(":") == 1:
        h, p = addr.split(":")
        return h, int(p)
    return addr, default_port


# TLS for the agents' internal traffic (gossip, raft, RPC): the one place a client context is set
# (BaseAgent.tls_context("rpc") at start); None = plain HTTP, as long as the stand-ins implement no TLS.
_RPC_TLS: ssl.SSLContext | None = None
INTERNAL_PREFIXES = ("/rpc/", "/raft/", "/serf/")


def set_rpc_tls(ctx: ssl.SSLContext | None):
    global _RPC_TLS
    _RPC_TLS = ctx


def call(addr: str, path: str, body=None, method: str | None = None, timeout: float = 2.0,
         headers: dict | None = None, raw: bool = False, tls: ssl.SSLContext | None = None):
    """POST/GET JSON to http(s)://addr/path. Raises RPCError (status 0 = unreachable).
    tls: a client context (HTTPS); internal paths use the agent's RPC context when none is given."""
    host, port = split_hostport(addr, 80)
    if tls is None and path.startswith(INTERNAL_PREFIXES):
        tls = _RPC_TLS
    if tls is not None:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=tls)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    try:
        conn.request(method or ("POST" if body is not None else "GET"), path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise RPCError(f"dial tcp {host}:{port}: {e}", 0) from e
    finally:
        conn.close()
    if resp.status >= 400:
        try:
            msg = json.loads(payload).get("error", payload.decode(errors="replace"))
        except (ValueError, AttributeError):
            msg = payload.decode(errors="replace").strip()
        raise RPCError(msg, resp.status)
    if raw:
        return payload, dict(resp.getheaders())
    if not payload:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace")


class Response:
    def __init__(self, body=None, status: int = 200, headers: dict | None = None, raw: bytes | None = None,
                 ctype: str = "application/json"):
        self.body, self.status, self.headers, self.raw, self.ctype = body, status, headers or {}, raw, ctype


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):  # quiet broken pipes
        pass


def serve(addr: str, port: int, router, log=None, tls: ssl.SSLContext | None = None) -> _Server:
    """Start a threaded HTTP server; router(method, path, query: {name: [values]}, body: bytes, headers) -> Response.
    tls: a server context (HTTPS) -- the one place listeners get TLS."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _do(self):
            u = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            try:
                r = router(self.command, urllib.parse.unquote(u.path), q, body, self.headers)
            except RPCError as e:
                r = Response(raw=(str(e) + "\n").encode(), status=e.status or 500, ctype="text/plain")
            except Exception as e:  # noqa: BLE001 - report, keep serving
                if log:
                    log("ERROR", f"http: request {self.command} {self.path} failed: {e!r}")
                r = Response(raw=f"Internal error: {e}\n".encode(), status=500, ctype="text/plain")
            if r.raw is not None:
                data = r.raw
            else:
                data = json.dumps(r.body).encode()
            self.send_response(r.status)
            self.send_header("Content-Type", r.ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in r.headers.items():
                self.send_header(k, str(v))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _do

        def log_message(self, *a):
            pass

    srv = _Server((addr, port), Handler)
    if tls is not None:
        srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True, name=f"http-{addr}:{port}")
    t.start()
    return srv


class Logger:
    """'2024-01-01T00:00:00.000Z [INFO]  agent: message' lines on stdout (journald-friendly)."""

    LEVELS = {"TRACE": 0, "DEBUG": 1, "INFO": 2, "WARN": 3, "ERROR": 4}

    def __init__(self, level: str = "INFO", path: str | None = None):
        self.level = self.LEVELS.get(level.upper(), 2)
        self.fh = open(path, "a") if path else None
        self.lock = threading.Lock()

    def __call__(self, level: str, msg: str):
        if self.LEVELS.get(level, 2) < self.level:
            return
        t = time.time()
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
        line = f"{ts} [{level}] {' ' if len(level) == 4 else ''}{msg}\n"
        with self.lock:
            sys.stdout.write(line)
            sys.stdout.flush()
            if self.fh:
                self.fh.write(line)
                self.fh.flush()


def sd_notify(msg: str) -> bool:
    import os
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(path)
        s.sendall(msg.encode())
        return True
    except OSError:
        return False
    finally:
        s.close()
