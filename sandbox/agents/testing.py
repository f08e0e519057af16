"""Test helpers for the agent stand-ins: a fake Azure IMDS + ARM (the two calls go-discover's azure
provider makes) for retry_join tests on loopback."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SUB = "00000000-0000-0000-0000-0000000000aa"


def nic(name, ip, tags=None):
    return {"name": name, "tags": tags or {},
            "properties": {"ipConfigurations": [{"properties": {"privateIPAddress": ip}}]}}


class FakeAzure:
    """IMDS token endpoint + the two ARM list calls go-discover's azure provider makes.
    Scale set "servers" in resource group "rg1" of subscription SUB lists vmss_nics."""

    def __init__(self, nics, vmss_nics):
        self.requests = []
        fake = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query)
                fake.requests.append((u.path, dict(q), dict(self.headers)))
                if u.path == "/metadata/identity/oauth2/token":
                    if self.headers.get("Metadata") != "true" or q.get("resource") != ["https://management.azure.com/"]:
                        return self._send(400, {"error": "invalid_request"})
                    return self._send(200, {"access_token": "tok-123", "expires_on": "9999999999", "token_type": "Bearer"})
                if self.headers.get("Authorization") != "Bearer tok-123":
                    return self._send(401, {"error": {"code": "AuthenticationFailed"}})
                if u.path == f"/subscriptions/{SUB}/providers/Microsoft.Network/networkInterfaces":
                    page = int(q.get("page", ["0"])[0])
                    body = {"value": nics[page * 2:page * 2 + 2]}
                    if page * 2 + 2 < len(nics):
                        body["nextLink"] = f"http://{self.headers['Host']}{u.path}?api-version=x&page={page + 1}"
                    return self._send(200, body)
                if u.path == (f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Compute/"
                              "virtualMachineScaleSets/servers/networkInterfaces"):
                    return self._send(200, {"value": vmss_nics})
                return self._send(404, {"error": {"code": "ResourceNotFound"}})

            def _send(self, code, body):
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

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()
