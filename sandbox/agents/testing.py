"""Test helpers for the agent stand-ins: a loopback JSON HTTP server, and on it a fake Azure IMDS + ARM
(the two calls go-discover's azure provider makes) for retry_join tests on loopback."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SUB = "00000000-0000-0000-0000-0000000000aa"


def nic(name, ip, tags=None):
    return {"name": name, "tags": tags or {},
            "properties": {"ipConfigurations": [{"properties": {"privateIPAddress": ip}}]}}


class JsonServer:
    """HTTP server on 127.0.0.1 (free port, ``self.url``) answering GETs with JSON:
    ``self.get(url, query, headers)`` returns (status, body); url is the urlsplit request path,
    query its parse_qs."""

    def __init__(self):
        server = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                code, body = server.get(u, urllib.parse.parse_qs(u.query), self.headers)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"

    def get(self, url: urllib.parse.SplitResult, query: dict, headers) -> tuple[int, object]:
        raise NotImplementedError

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


class FakeAzure(JsonServer):
    """IMDS token endpoint + the two ARM list calls go-discover's azure provider makes.
    Scale set "servers" in resource group "rg1" of subscription SUB lists vmss_nics."""

    def __init__(self, nics, vmss_nics):
        self.requests = []
        self.nics, self.vmss_nics = nics, vmss_nics
        super().__init__()

    def get(self, u, q, headers):
        self.requests.append((u.path, dict(q), dict(headers)))
        if u.path == "/metadata/identity/oauth2/token":
            if headers.get("Metadata") != "true" or q.get("resource") != ["https://management.azure.com/"]:
                return 400, {"error": "invalid_request"}
            return 200, {"access_token": "tok-123", "expires_on": "9999999999", "token_type": "Bearer"}
        if headers.get("Authorization") != "Bearer tok-123":
            return 401, {"error": {"code": "AuthenticationFailed"}}
        if u.path == f"/subscriptions/{SUB}/providers/Microsoft.Network/networkInterfaces":
            page = int(q.get("page", ["0"])[0])
            body = {"value": self.nics[page * 2:page * 2 + 2]}
            if page * 2 + 2 < len(self.nics):
                body["nextLink"] = f"http://{headers['Host']}{u.path}?api-version=x&page={page + 1}"
            return 200, body
        if u.path == (f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Compute/"
                      "virtualMachineScaleSets/servers/networkInterfaces"):
            return 200, {"value": self.vmss_nics}
        return 404, {"error": {"code": "ResourceNotFound"}}
