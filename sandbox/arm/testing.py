"""``ArmEmulator``: start ``python -m sandbox.arm serve`` as a subprocess for tests and tools.

    arm = ArmEmulator(provisioning_seconds=0.2).start()
    client = ComputeManagementClient(arm.credential(), arm.subscription_id, **arm.client_kwargs())
    ...
    arm.stop()
"""
from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def check_request_logs(directory: str, agent: str = "hashistack") -> tuple[list[dict], list[str]]:
    """Read every request log (``serve --request-log DIR``) in ``directory`` and compare the api-version
    of each ARM request whose User-Agent contains ``agent`` with the emulator's table. Returns
    (the requests checked, one line per request whose version the table lacks)."""
    from . import api_versions, resources
    resources.load()
    checked, problems = [], []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if not name.endswith(".jsonl"):
            continue
        with open(os.path.join(directory, name), encoding="utf-8") as fh:
            for line in fh:
                entry = json.loads(line)
                if agent not in entry.get("user_agent", "") or not entry["path"].lower().startswith(
                        ("/subscriptions", "/tenants", "/batch", "/providers")):
                    continue
                checked.append(entry)
                namespace, rtype, versions = api_versions.supported(entry["path"])
                if versions is None or entry.get("api_version") not in versions:
                    problems.append(f"{entry['method']} {entry['path']} api-version={entry.get('api_version')}: "
                                    f"{namespace}/{rtype} supports {', '.join(versions or ()) or 'nothing'} "
                                    f"({entry.get('user_agent')})")
    return checked, problems


def endpoint_env(endpoint: dict, ca_path: str | None = None) -> dict:
    """AZURE_* variables that point Ansible and the Azure SDK at an emulator (from its endpoint.json)."""
    ca = ca_path or endpoint["ca_path"]
    return {"AZURE_CLIENT_ID": endpoint["client_id"], "AZURE_SECRET": endpoint["client_secret"],
            "AZURE_CLIENT_SECRET": endpoint["client_secret"], "AZURE_TENANT": endpoint["tenant_id"],
            "AZURE_TENANT_ID": endpoint["tenant_id"], "AZURE_SUBSCRIPTION_ID": endpoint["subscription_id"],
            "AZURE_CLOUD_ENVIRONMENT": endpoint["resource_manager"], "AZURE_AUTHORITY_HOST": endpoint["authority"],
            "REQUESTS_CA_BUNDLE": ca, "AZURE_CA_BUNDLE": ca, "SSL_CERT_FILE": ca}


class ArmEmulator:
    def __init__(self, state_dir: str | None = None, port: int = 0, latency_ms: float = 0,
                 provisioning_seconds: float = 0.2, page_size: int | None = None, extra_args: list | None = None,
                 process_env: dict | None = None, request_log: str | None = None):
        self._own_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="sandbox-arm-")
        self.port = port
        self.latency_ms = latency_ms
        self.provisioning_seconds = provisioning_seconds
        self.page_size = page_size
        self.extra_args = list(extra_args or [])
        self._process_env = process_env
        self.request_log = request_log  # None: $SANDBOX_ARM_REQUEST_LOG of the environment, if any
        self.proc: subprocess.Popen | None = None
        self.endpoint: dict = {}

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 30) -> ArmEmulator:
        os.makedirs(self.state_dir, exist_ok=True)
        ep_path = os.path.join(self.state_dir, "endpoint.json")
        if os.path.exists(ep_path):
            os.remove(ep_path)
        cmd = [sys.executable, "-m", "sandbox.arm", "serve", "--port", str(self.port), "--state", self.state_dir,
               "--latency-ms", str(self.latency_ms), "--provisioning-seconds", str(self.provisioning_seconds)]
        if self.page_size:
            cmd += ["--page-size", str(self.page_size)]
        if self.request_log:
            cmd += ["--request-log", self.request_log]
        cmd += self.extra_args
        self._log = open(os.path.join(self.state_dir, "server.log"), "ab")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(self._process_env or {})})
        deadline = time.time() + timeout
        while not os.path.exists(ep_path):
            if self.proc.poll() is not None:
                raise RuntimeError(f"sandbox.arm exited with {self.proc.returncode}; see {self.state_dir}/server.log")
            if time.time() > deadline:
                raise TimeoutError("sandbox.arm did not start")
            time.sleep(0.05)
        with open(ep_path, encoding="utf-8") as fh:
            self.endpoint = json.load(fh)
        self.port = int(self.endpoint["authority"].rsplit(":", 1)[1])
        while True:
            try:
                self._admin("GET", "/health")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()

    def restart(self) -> ArmEmulator:
        """Stop and start again on the same port with the same state directory."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    # -- connection details ----------------------------------------------------------------------
    @property
    def ca_path(self) -> str:
        return os.path.join(self.state_dir, "ca.pem")

    @property
    def resource_manager(self) -> str:
        return self.endpoint["resource_manager"]

    @property
    def subscription_id(self) -> str:
        return self.endpoint["subscription_id"]

    def credential(self, secret: str | None = None):
        from azure.identity import ClientSecretCredential
        return ClientSecretCredential(self.endpoint["tenant_id"], self.endpoint["client_id"],
                                      secret or self.endpoint["client_secret"], authority=self.endpoint["authority"],
                                      disable_instance_discovery=True, connection_verify=self.ca_path)

    def client_kwargs(self) -> dict:
        """Keyword arguments for any azure-mgmt-* client: endpoint, token scope and CA."""
        return {"base_url": self.resource_manager, "credential_scopes": [self.resource_manager + ".default"],
                "connection_verify": self.ca_path}

    def vault_env(self) -> dict:
        """Proxy variables that take clients to the Key Vault data plane (https://<vault>.vault.azure.net) served
        by this emulator; everything else (127.0.0.1) goes direct."""
        return {"HTTPS_PROXY": self.endpoint["vault_proxy"], "https_proxy": self.endpoint["vault_proxy"],
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def env(self) -> dict:
        """AZURE_* variables for Ansible/azure tooling pointed at this emulator."""
        return endpoint_env(self.endpoint, self.ca_path)

    # -- admin API -------------------------------------------------------------------------------
    def _admin(self, method: str, path: str, body=None):
        ctx = ssl.create_default_context(cafile=self.ca_path)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.endpoint['authority']}/_sandbox{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=120) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def requests(self, since: int = 0) -> list[dict]:
        return self._admin("GET", f"/requests?since={since}")["requests"]

    def mark(self) -> int:
        """Position in the request log, for ``requests(since=...)`` / ``writes(since=...)``."""
        return self._admin("GET", "/requests?since=1000000000")["next"]

    def writes(self, since: int = 0) -> list[dict]:
        """Logged PUT/PATCH/POST/DELETE requests to ARM (not token requests), e.g. to check idempotency."""
        return [r for r in self.requests(since) if r["method"] in ("PUT", "PATCH", "POST", "DELETE")
                and r["path"].lower().startswith("/subscriptions/")]

    def fault(self, status: int, path: str = ".*", method: str | None = None, count: int = 1,
              retry_after: float | None = None, code: str | None = None, message: str | None = None) -> dict:
        return self._admin("POST", "/faults", {"status": status, "path": path, "method": method, "count": count,
                                               "retry_after": retry_after, "code": code, "message": message})

    def clear_faults(self) -> None:
        self._admin("DELETE", "/faults")

    def set_quotas(self, quotas: dict) -> dict:
        return self._admin("PUT", "/quotas", quotas)

    def set_latency(self, ms: float) -> None:
        self._admin("PUT", "/latency", {"ms": ms})

    def reset(self) -> None:
        self._admin("POST", "/reset")

    def identity_token(self, principal_id: str, resource: str | None = None) -> dict:
        """A managed identity's token as IMDS hands it out (``resource``: ARM by default, or https://vault.azure.net)."""
        return self._admin("POST", "/identity-token", {"principal_id": principal_id, "resource": resource})

    def instances(self) -> list[dict]:
        return self._admin("GET", "/instances")["instances"]

    # -- Scheduled Events (as IMDS serves them; see sandbox/arm/scheduled_events.py) ----------------
    def scheduled_events(self, instance_id: str | None = None) -> dict:
        """The document instance ``instance_id`` (ARM id) polls (this enrols its scale set); without an id
        every group's document, keyed by scale set id (no enrolment)."""
        from urllib.parse import quote
        if instance_id is None:
            return self._admin("GET", "/scheduled-events")["documents"]
        return self._admin("GET", f"/scheduled-events?instance={quote(instance_id, safe='')}")

    def approve_events(self, instance_id: str, event_ids: list[str]) -> None:
        """``StartRequests`` for ``event_ids`` sent by instance ``instance_id``."""
        from urllib.parse import quote
        self._admin("POST", f"/scheduled-events?instance={quote(instance_id, safe='')}",
                    {"StartRequests": [{"EventId": e} for e in event_ids]})

    def platform_event(self, instance_ids: list[str], event_type: str, **extra) -> dict:
        """A platform event (Freeze, Reboot, Redeploy, Preempt) on instances of one scale set."""
        return self._admin("POST", "/scheduled-events/platform",
                           {"instances": list(instance_ids), "EventType": event_type, **extra})["event"]

    def set_event_time_scale(self, scale: float) -> None:
        """Every Scheduled Event posted from now on gets ``scale`` times its notice (a test knob)."""
        self._admin("PUT", "/scheduled-events/time-scale", {"scale": scale})

    def wait_idle(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while not self._admin("GET", "/health")["idle"]:
            if time.time() > deadline:
                raise TimeoutError("LROs still running")
            time.sleep(0.05)
