"""Azure Instance Metadata Service for all hosts of one sandbox.

One process per sandbox listens on 127.0.0.1:<port>; nftables DNATs 169.254.169.254:80 from
every sandbox bridge to it (see net.py), so the caller is identified by its source address.
Behaves like the real IMDS on the wire:

- ``GET /metadata/instance[/<path>]?api-version=...[&format=text]`` with header
  ``Metadata: true`` (anything else: 400 ``Required metadata header not specified``);
  requests carrying ``X-Forwarded-For`` are rejected (400); missing api-version: 400 with
  ``newest-versions``; leaf nodes with ``format=text``.
- ``GET /metadata/versions`` (no api-version needed).
- ``GET /metadata/identity/oauth2/token?api-version=...&resource=...``: token of the
  instance's system-assigned identity, issued by the ARM emulator
  (``POST /_sandbox/identity-token``); no identity: 400 ``Identity not found``.
- ``GET``/``POST /metadata/scheduledevents?api-version=...``: the instance's Scheduled Events from
  the ARM emulator, and their approval (``imds_events.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from . import imds_events
from .procs import pids_with_cmdline

API_VERSIONS = ["2017-03-01", "2017-04-02", "2017-08-01", "2017-10-01", "2017-12-01", "2018-02-01",
                "2018-04-02", "2018-10-01", "2019-02-01", "2019-03-11", "2019-04-30", "2019-06-01",
                "2019-06-04", "2019-08-01", "2019-08-15", "2019-11-01", "2020-06-01", "2020-07-15",
                "2020-09-01", "2020-10-01", "2020-12-01", "2021-01-01", "2021-02-01", "2021-03-01",
                "2021-05-01", "2021-10-01", "2021-11-01", "2021-11-15", "2021-12-13", "2023-07-01"]
NEWEST_VERSIONS = API_VERSIONS[:-4:-1]


class _State:
    def __init__(self, run: Path):
        self.file = run / "state.json"
        self.mtime = None
        self.data: dict = {}
        self.lock = threading.Lock()

    def get(self) -> dict:
        with self.lock:
            try:
                m = self.file.stat().st_mtime_ns
            except FileNotFoundError:
                return {}
            if m != self.mtime:
                try:
                    self.data = json.loads(self.file.read_text())
                    self.mtime = m
                except (json.JSONDecodeError, FileNotFoundError):
                    pass
            return self.data

    def live_doc(self, host: dict) -> dict:
        """The instance's IMDS document as the emulator sees it now (tags change, ...)."""
        arm = self.get().get("arm") or {}
        if not (host.get("arm_id") and arm.get("url")):
            return host.get("imds") or {}
        now = time.monotonic()
        with self.lock:
            cached = getattr(self, "_live", None)
        if cached is None or now - cached[0] > 1.0:
            try:
                ctx = ssl.create_default_context(cafile=arm.get("ca")) if arm.get("ca") else None
                with urllib.request.urlopen(arm["url"] + "/_sandbox/instances", context=ctx, timeout=5) as r:
                    docs = {i.get("id", "").lower(): i.get("imds") for i in json.loads(r.read()).get("instances", [])}
                cached = (now, docs)
                with self.lock:
                    self._live = cached
            except (OSError, ValueError):
                return host.get("imds") or {}
        return cached[1].get(host["arm_id"].lower()) or host.get("imds") or {}

    def host_by_ip(self, ip: str) -> dict | None:
        for h in (self.get().get("hosts") or {}).values():
            if h.get("ip") == ip:
                return h
        return None


def _text(value) -> str:
    if isinstance(value, dict):
        return "\n".join(k + ("/" if isinstance(v, (dict, list)) else "") for k, v in value.items())
    if isinstance(value, list):
        return "\n".join(str(i) + ("/" if isinstance(v, (dict, list)) else "") for i, v in enumerate(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class Handler(BaseHTTPRequestHandler):
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write(f"{self.client_address[0]} {fmt % args}\n")

    def _send(self, status: int, body, content_type: str = "application/json; charset=utf-8"):
        data = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        url = urlsplit(self.path)
        if url.path.rstrip("/") == imds_events.PATH and self.command == "POST":
            return self._scheduled_events(url, self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self._send(405, {"error": "Method not allowed. Only GET is supported."})

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _header_error(self, path: str) -> dict | None:
        """The 400 body for a request IMDS refuses by its headers, None when they are fine."""
        identity = path.startswith("/metadata/identity")
        if self.headers.get("X-Forwarded-For") is not None:
            return {"error": "invalid_request", "error_description": "Request contains X-Forwarded-For header"} \
                if identity else {"error": "Bad request. Request contains X-Forwarded-For header"}
        if (self.headers.get("Metadata") or "").lower() != "true":
            return {"error": "invalid_request", "error_description": "Required metadata header not specified"} \
                if identity else {"error": "Bad request. Required metadata header not specified"}
        return None

    def _scheduled_events(self, url, raw: bytes | None = None):
        """GET (raw None) or POST of /metadata/scheduledevents (imds_events.py)."""
        refused = self._header_error(url.path)
        if refused:
            return self._send(400, refused)
        version = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}.get("api-version")
        bad = imds_events.version_error(version)
        if bad:
            return self._send(400, bad)
        host = self.server.state.host_by_ip(self.client_address[0])
        if host is None:
            return self._send(404, {"error": "Not found"})
        arm = self.server.state.get().get("arm") or {}
        if raw is None:
            return self._send(*imds_events.get(arm, host, version))
        status, body = imds_events.post(arm, host, raw)
        return self._send(status, body if body is not None else b"")

    def do_GET(self):  # noqa: N802
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = url.path.rstrip("/")
        if path == imds_events.PATH:
            return self._scheduled_events(url)
        refused = self._header_error(path)
        if refused:
            return self._send(400, refused)
        if path == "/metadata/versions":
            return self._send(200, {"apiVersions": API_VERSIONS})
        if not q.get("api-version"):
            return self._send(400, {"error": "Bad request. api-version was not specified in the request. "
                                    "For more information refer to aka.ms/azureimds",
                                    "newest-versions": NEWEST_VERSIONS})
        host = self.server.state.host_by_ip(self.client_address[0])
        if host is None:
            return self._send(404, {"error": "Not found"})
        if path == "/metadata/identity/oauth2/token":
            return self._token(host, q)
        if path == "/metadata/instance" or path.startswith("/metadata/instance/"):
            return self._instance(host, path, q)
        return self._send(404, {"error": "Not found"})

    def _instance(self, host: dict, path: str, q: dict):
        node = self.server.state.live_doc(host)
        for part in [p for p in path[len("/metadata/instance"):].split("/") if p]:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return self._send(404, {"error": "Not found"})
        fmt = q.get("format", "json")
        if fmt == "text":
            return self._send(200, _text(node), "text/plain; charset=utf-8")
        if fmt != "json":
            return self._send(400, {"error": "Bad request. Invalid format. Supported formats: json, text"})
        if not isinstance(node, (dict, list)):
            return self._send(400, {"error": "Bad request. Querying a leaf node requires format=text"})
        return self._send(200, node)

    def _token(self, host: dict, q: dict):
        resource = q.get("resource")
        if not resource:
            return self._send(400, {"error": "invalid_request",
                                    "error_description": "Required query variable 'resource' is missing"})
        pid = host.get("principal_id")
        wanted = q.get("client_id") or q.get("object_id") or q.get("mi_res_id") or q.get("msi_res_id")
        if not pid or (wanted and wanted != pid and wanted != host.get("client_id")):
            return self._send(400, {"error": "invalid_request", "error_description": "Identity not found"})
        arm = self.server.state.get().get("arm") or {}
        if not arm.get("url"):
            return self._send(500, {"error": "unknown_error",
                                    "error_description": "sandbox: no ARM emulator configured for IMDS tokens"})
        ctx = ssl.create_default_context(cafile=arm.get("ca")) if arm.get("ca") else ssl.create_default_context()
        req = urllib.request.Request(
            arm["url"] + "/_sandbox/identity-token", method="POST",
            data=json.dumps({"principal_id": pid, "resource": resource}).encode(),
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=15) as r:
                tok = json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            if e.code == 400 and '"invalid_resource"' in body:  # Entra ID's answer, as IMDS relays it
                return self._send(400, {"error": "invalid_resource", "error_description": json.loads(body)[
                    "error_description"]})
            if e.code in (400, 404):
                return self._send(400, {"error": "invalid_request", "error_description": "Identity not found"})
            return self._send(500, {"error": "unknown_error", "error_description": body[:500]})
        except OSError as e:
            return self._send(500, {"error": "unknown_error", "error_description": str(e)})
        now = int(time.time())
        expires_on = int(tok.get("expires_on") or now + 86399)
        expires_in = int(tok.get("expires_in") or max(expires_on - now, 0))
        return self._send(200, {
            "access_token": tok["access_token"],
            "client_id": str(tok.get("client_id") or host.get("client_id") or pid),
            "expires_in": str(expires_in),
            "expires_on": str(expires_on),
            "ext_expires_in": str(tok.get("ext_expires_in") or expires_in),
            "not_before": str(tok.get("not_before") or now),
            "resource": resource,
            "token_type": "Bearer",
        })


def serve(run: Path, port_file: Path | None, port: int = 0) -> None:
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    srv.state = _State(run)
    if port_file:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(srv.server_address[1]))
        os.replace(tmp, port_file)
    srv.serve_forever()


def spawn(run: Path) -> tuple[int, int]:
    """Start the server detached for sandbox ``run``; returns (pid, port)."""
    run.mkdir(parents=True, exist_ok=True)
    port_file = run / "imds.port"
    port_file.unlink(missing_ok=True)
    log = open(run / "imds.log", "ab")
    root = Path(__file__).resolve().parents[2]
    p = subprocess.Popen([sys.executable, "-m", "sandbox.hosts.imds_server", "--run", str(run),
                          "--port-file", str(port_file)], cwd=root, stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, start_new_session=True, close_fds=True)
    log.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if port_file.exists():
            return p.pid, int(port_file.read_text())
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.kill()
    raise RuntimeError(f"IMDS server did not start; see {run / 'imds.log'}")


def find_servers(run: Path) -> list[int]:
    return pids_with_cmdline(f"sandbox.hosts.imds_server\0--run\0{run}\0".encode())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sandbox.hosts.imds_server")
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--port-file", type=Path)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args(argv)
    serve(a.run, a.port_file, a.port)


if __name__ == "__main__":
    main()
