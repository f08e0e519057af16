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


# TLS for the agents' internal RPC and raft traffic: the one place a client context is set
# (BaseAgent.tls_context("rpc") at start and reload); None = plain. Gossip (/serf/) stays plain, as the
# products' gossip is protected by the encrypt key, not TLS.
_RPC_TLS: ssl.SSLContext | None = None
INTERNAL_PREFIXES = ("/rpc/", "/raft/")


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS with the products' peer-name rule (tls.check_peer_name) instead of Python's hostname check."""

    def connect(self):
        http.client.HTTPConnection.connect(self)
        name = getattr(self._context, "server_name", None) or self.host
        self.sock = self._context.wrap_socket(self.sock, server_hostname=name)
        from .tls import check_peer_name
        check_peer_name(self.sock, self._context, self.host)


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
        conn = _HTTPSConnection(host, port, timeout=timeout, context=tls)
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
    except ssl.SSLError as e:
        from .tls import go_error
        verb = (method or ("POST" if body is not None else "GET")).capitalize()
        raise RPCError(f'{verb} "https://{host}:{port}{path}": {go_error(e)}', 0) from e
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

    tls: ssl.SSLContext | None = None
    log = None
    internal = False  # the agents' RPC listener: a refused plain connection is closed, not answered

    def handle_error(self, request, client_address):  # quiet broken pipes
        pass

    def finish_request(self, request, client_address):
        """TLS handshakes happen here, in the connection's thread (a slow or failing peer must not hold up
        accept). A listener with plaintext_ok also serves plain connections (told apart by the first byte)."""
        if self.tls is None:
            return super().finish_request(request, client_address)
        try:
            request.settimeout(10)
            first = request.recv(1, socket.MSG_PEEK)
            if not first:
                return None
            if first != b"\x16":  # not a TLS handshake record
                if getattr(self.tls, "plaintext_ok", False):
                    request.settimeout(None)
                    return super().finish_request(request, client_address)
                if self.internal:
                    if self.log:
                        self.log("WARN", f"agent.server.rpc: Non-TLS connection attempted with VerifyIncoming set: "
                                         f"conn=from={client_address[0]}:{client_address[1]}")
                else:
                    request.sendall(PLAIN_ON_TLS)
                return None
            conn = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except OSError:
            return None
        try:
            conn.do_handshake()
        except (OSError, ssl.SSLError) as e:
            if self.log:
                from .tls import go_error
                why = go_error(e) if isinstance(e, ssl.SSLError) else str(e)
                self.log("WARN", f"http: TLS handshake error from {client_address[0]}:{client_address[1]}: {why}")
            _close_gently(conn)
            return None
        try:
            conn.settimeout(None)
            return super().finish_request(conn, client_address)
        finally:
            try:
                conn.close()
            except OSError:
                pass


def _close_gently(conn):
    """Close after a failed handshake without resetting the connection: the peer still has to read the
    alert (closing with its request unread would send a TCP reset and lose it)."""
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1)
        while conn.recv(65536):
            pass
    except OSError:
        pass
    finally:
        conn.close()


# Go's net/http answer to plain HTTP on a TLS port
PLAIN_ON_TLS = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"


def serve(addr: str, port: int, router, log=None, tls: ssl.SSLContext | None = None, internal: bool = False) -> _Server:
    """Start a threaded HTTP server; router(method, path, query: {name: [values]}, body: bytes, headers) -> Response.
    tls: a server context (HTTPS; tls.server_context) -- the one place listeners get TLS. internal: the agents'
    RPC listener (refuses plain connections by closing them, as the products' RPC does)."""

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
    srv.tls, srv.log, srv.internal = tls, log, internal
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
