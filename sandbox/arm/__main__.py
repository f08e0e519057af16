"""``python -m sandbox.arm serve --port PORT --state DIR [options]`` — run the ARM emulator in the foreground.

``python -m sandbox.arm env --state DIR`` prints shell ``export`` lines pointing Ansible at it.
``python -m sandbox.arm api-versions`` prints the api-version table the emulator enforces, with sources."""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import threading

from .backend import InstanceBackend, load_backend
from .server import App, Config, make_server


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.arm")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="serve the emulator on https://127.0.0.1:PORT")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port (see DIR/endpoint.json)")
    serve.add_argument("--state", required=True, help="state directory (ca.pem, endpoint.json, state.json)")
    serve.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every ARM request")
    serve.add_argument("--provisioning-seconds", type=float, default=1.5,
                       help="time a scale set create/update takes before instances are handed to the backend")
    serve.add_argument("--network-seconds", type=float, default=0.0, help="time network writes take")
    serve.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds sent on LROs (>=1)")
    serve.add_argument("--page-size", type=int, default=100, help="items per page of list operations")
    serve.add_argument("--backend-parallelism", type=int, default=8,
                       help="instances handed to the backend concurrently")
    serve.add_argument("--hosts", action="store_true",
                       help="make instances real machines (sandbox.hosts.arm_backend:HostsBackend)")
    serve.add_argument("--backend", default=None, help="custom backend as module:Class")
    serve.add_argument("--hosts-opt", action="append", default=[], metavar="KEY=VALUE",
                       help="keyword argument for the backend (repeatable)")
    serve.add_argument("--request-log", default=os.environ.get("SANDBOX_ARM_REQUEST_LOG", ""), metavar="DIR",
                       help="append every ARM request as a JSON line to DIR/arm-<port>-<pid>.jsonl "
                            "(default: $SANDBOX_ARM_REQUEST_LOG)")
    serve.add_argument("--event-time-scale", type=float, default=1.0, metavar="F",
                       help="multiply every Scheduled Events notice (terminate notification, Reboot, ...) by F; "
                            "a test knob (default 1: the documented times)")
    serve.add_argument("--log-level", default="WARNING")
    env = sub.add_parser("env", help="print export lines for the AZURE_* variables of a running emulator")
    env.add_argument("--state", required=True, help="the emulator's state directory")
    sub.add_parser("api-versions", help="print the api-versions enforced per resource type, with their sources")
    args = parser.parse_args(argv)
    if args.cmd == "api-versions":
        from . import registry, resources
        resources.load()
        for namespace, rtype, versions, source in registry.table():
            print(f"{namespace}/{rtype}\t{', '.join(versions)}\t# {source}")
        return 0
    if args.cmd == "env":
        from .testing import endpoint_env
        with open(os.path.join(args.state, "endpoint.json"), encoding="utf-8") as fh:
            endpoint = json.load(fh)
            if endpoint.get("vault_proxy"):
                # not exported: the proxy only tunnels *.vault.azure.net, other tools in the shell would break
                print(f"# Key Vault data plane clients: HTTPS_PROXY={endpoint['vault_proxy']} NO_PROXY=127.0.0.1,localhost")
            for key, value in endpoint_env(endpoint).items():
                # AZURE_CA_BUNDLE is all the collection needs; exporting REQUESTS_CA_BUNDLE or
                # SSL_CERT_FILE would make every other tool in the shell (pip, curl) distrust the internet
                if key.startswith("AZURE_"):
                    print(f"export {key}={shlex.quote(value)}")
        return 0
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")

    options = dict(o.split("=", 1) for o in args.hosts_opt)
    spec = args.backend or ("sandbox.hosts.arm_backend:HostsBackend" if args.hosts else None)
    backend = load_backend(spec, options) if spec else InstanceBackend()
    config = Config(state_dir=args.state, latency_ms=args.latency_ms, provisioning_seconds=args.provisioning_seconds,
                    network_seconds=args.network_seconds, retry_after=max(1.0, args.retry_after),
                    page_size=args.page_size, backend_parallelism=args.backend_parallelism,
                    request_log=args.request_log, event_time_scale=args.event_time_scale)
    app = App(config, backend)
    server = make_server(app, args.port)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"sandbox.arm serving {app.base}/ state={args.state}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
