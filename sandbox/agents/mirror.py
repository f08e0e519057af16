"""Serve a release tree over HTTP (like releases.hashicorp.com)."""

from __future__ import annotations

import functools
import http.server
import sys


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".zip": "application/zip", ".sig": "application/octet-stream",
                      ".json": "application/json", ".asc": "text/plain", "": "text/plain"}

    def log_message(self, fmt, *args):
        sys.stderr.write(f"{self.address_string()} - {fmt % args}\n")


def serve(directory: str, port: int, bind: str = "127.0.0.1") -> None:
    handler = functools.partial(_Handler, directory=directory)
    srv = http.server.ThreadingHTTPServer((bind, port), handler)
    print(f"mirror: serving {directory} on http://{bind}:{srv.server_address[1]}/", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
