"""Helpers for the end-to-end tests on the shared sandbox cluster (the `sandbox` fixture of conftest.py):
reading the ARM emulator's request log, Ansible's play recap, the products' CLI tables, and running
commands on the cluster's machines."""

from __future__ import annotations

import json
import os
import re
import shlex
import ssl
import subprocess
import threading
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv/bin/python")
WRITES = {"PUT", "PATCH", "POST", "DELETE"}
SPEC = ["-e", "@sandbox/main/spec.yml", "-e", "@sandbox/main/sandbox.yml"]


def arm_get(env, path: str, method: str = "GET"):
    ctx = ssl.create_default_context(cafile=env["AZURE_CA_BUNDLE"])
    req = urllib.request.Request(env["AZURE_CLOUD_ENVIRONMENT"].rstrip("/") + path, method=method)
    with urllib.request.urlopen(req, context=ctx) as resp:
        return json.load(resp)


def mark(env) -> int:
    """The emulator's request-log position now (pass it to azure_writes later)."""
    return arm_get(env, "/_sandbox/requests?since=1000000000")["next"]


def azure_writes(env, since: int) -> list[tuple[str, str]]:
    """Writes to Azure resources (not token or IMDS calls) since a mark()."""
    requests = arm_get(env, f"/_sandbox/requests?since={since}")["requests"]
    return [(r["method"], r["path"]) for r in requests
            if r["method"] in WRITES and r["path"].lower().startswith("/subscriptions/")]


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """The last PLAY RECAP of ansible-playbook's output: host -> {ok, changed, failed, ...}."""
    counts_by_host = {}
    for line in stdout.split("PLAY RECAP")[-1].splitlines():
        if ":" in line and "ok=" in line:
            host, _, counts = line.partition(":")
            counts_by_host[host.strip()] = {k: int(v) for k, v in (c.split("=") for c in counts.split())}
    return counts_by_host


def table(text: str, first_column: str) -> list[dict[str, str]]:
    """A CLI table (columns split on 2+ spaces) as dicts, from the line starting with its first header."""
    lines = [line for line in text.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith(first_column))
    header = re.split(r"\s{2,}", lines[start].strip())
    return [dict(zip(header, re.split(r"\s{2,}", line.strip()), strict=False)) for line in lines[start + 1:]]


def sandbox_hosts(sandbox, *argv: str, timeout: int = 60) -> subprocess.CompletedProcess:
    """`python -m sandbox.hosts ARGV` for the sandbox cluster's machines."""
    return subprocess.run([PYTHON, "-m", "sandbox.hosts", *argv], env=sandbox["hosts_env"], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def machines(sandbox) -> dict[str, str]:
    """Each Consul node (the instance's host name) -> its sandbox machine (found by address). Members that left
    (instances scaled in, their machines gone) are not listed."""
    listed = sandbox_hosts(sandbox, "list")
    assert listed.returncode == 0, listed.stderr
    by_ip = {h["ip"]: h["name"] for h in json.loads(listed.stdout)}
    members = table(sandbox["run"]("consul", "members").stdout, "Node")
    return {m["Node"]: by_ip[m["Address"].split(":")[0]] for m in members
            if m["Status"] != "left" and m["Address"].split(":")[0] in by_ip}


def exec_on(sandbox, host: str, *argv: str) -> str:
    """Run ARGV on the machine of a cluster member (by its Consul node name); its stdout."""
    proc = sandbox_hosts(sandbox, "exec", machines(sandbox)[host], "--", *argv)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def agent_self(sandbox, host: str, port: int) -> dict:
    code = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/v1/agent/self').read().decode())"
    return json.loads(exec_on(sandbox, host, "python3", "-c", code))


def playbook(sandbox, path: str, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    """ansible-playbook PATH against the sandbox cluster (its inventory, spec, emulator sign-in and release mirror)."""
    state = sandbox["state"]
    env = dict(sandbox["env"], HASHISTACK_SANDBOX_STATE=str(state), HASHISTACK_SANDBOX_MIRROR_DIR=str(state / "releases"),
               HASHISTACK_SANDBOX_MIRROR_URL="http://127.0.0.1:" + (state / "mirror.port").read_text().strip())
    return subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), path, "-i", "sandbox/main/vmss.yml", *SPEC, *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def server_api(sandbox, port: int, path, method="GET", body=None):
    """The HTTP API on a server's loopback (Consul 8500, Nomad 4646, as the roles configure them)."""
    listed = sandbox_hosts(sandbox, "list")
    assert listed.returncode == 0, listed.stderr
    server = sorted(h["name"] for h in json.loads(listed.stdout) if "servers" in h["name"] and h.get("state") == "running")[0]
    code = ("import json, sys, urllib.request; body = sys.argv[3].encode() if sys.argv[3] else None; "
            "req = urllib.request.Request('http://127.0.0.1:' + sys.argv[4] + sys.argv[1], data=body, method=sys.argv[2], "
            "headers={'Content-Type': 'application/json'}); print(urllib.request.urlopen(req, timeout=30).read().decode())")
    proc = sandbox_hosts(sandbox, "exec", server, "--", "python3", "-c", code, path, method,
                         json.dumps(body) if body is not None else "", str(port))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def nomad_api(sandbox, path, method="GET", body=None):
    """The Nomad HTTP API of a server."""
    return server_api(sandbox, 4646, path, method, body)


def compute_client(env):
    """The plain Azure SDK compute client on the emulator (as a user's script or the portal would act)."""
    from azure.identity import ClientSecretCredential
    from azure.mgmt.compute import ComputeManagementClient
    credential = ClientSecretCredential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
                                        authority=env["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True,
                                        connection_verify=env["AZURE_CA_BUNDLE"])
    base = env["AZURE_CLOUD_ENVIRONMENT"]
    return ComputeManagementClient(credential, env["AZURE_SUBSCRIPTION_ID"], base_url=base, polling_interval=1,
                                   credential_scopes=[base + ".default"], connection_verify=env["AZURE_CA_BUNDLE"])


class KvWriter:
    """molecule/upgrade's KV writer on a cluster member: a key every 0.25 s through the member's own Consul agent,
    each failed write retried for up to 2 s (as a client library would), until stop(); record() is its result:
    acknowledged and failed sequence numbers, retries, the longest gap between two acknowledged writes."""

    SOURCE = (ROOT / "molecule/upgrade/files/kv_writer.py").read_text()
    STOP, OUT = "/tmp/kv_writer.stop", "/tmp/kv_writer.json"

    def __init__(self, sandbox, host: str):
        self.sandbox, self.machine = sandbox, machines(sandbox)[host]
        sandbox_hosts(sandbox, "exec", self.machine, "--", "rm", "-f", self.STOP, self.OUT)
        self.proc = subprocess.Popen([PYTHON, "-m", "sandbox.hosts", "exec", self.machine, "--", "python3", "-c",
                                      self.SOURCE, self.STOP, self.OUT],
                                     env=sandbox["hosts_env"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def stop(self) -> None:
        sandbox_hosts(self.sandbox, "exec", self.machine, "--", "touch", self.STOP)
        self.proc.wait(timeout=60)

    def record(self) -> dict:
        return json.loads(sandbox_hosts(self.sandbox, "exec", self.machine, "--", "cat", self.OUT).stdout)

    def lost(self) -> list[int]:
        """Acknowledged writes the cluster does not hold."""
        out = self.sandbox["run"]("consul", "kv", "get", "-recurse", "upgrade-writer/").stdout
        keys = {line.split(":", 1)[0] for line in out.splitlines() if line}
        return [seq for seq in self.record()["acked"] if f"upgrade-writer/{seq:06d}" not in keys]


class AllocSampler:
    """Counts a Nomad job's running allocations every second from a server's API (in a thread) until stop()."""

    def __init__(self, sandbox, job: str):
        self.sandbox, self.job, self.samples = sandbox, job, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                allocs = nomad_api(self.sandbox, f"/v1/job/{self.job}/allocations")
                self.samples.append(sum(a["ClientStatus"] == "running" and a["DesiredStatus"] == "run" for a in allocs))
            except (AssertionError, ValueError, subprocess.TimeoutExpired):
                pass  # the server asked was restarting; the next sample asks again
            self._stop.wait(1)

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(timeout=90)
        return self.samples


def own_sandbox(state: Path) -> dict:
    """A sandbox of its own under STATE (for a benchmark), shaped like the session fixture's: run("up") boots it,
    load_env() then reads its environment, run("down") removes it."""
    env = dict(os.environ, HASHISTACK_SANDBOX_STATE=str(state), ANSIBLE_NOCOLOR="1")
    env.pop("HASHISTACK_SANDBOX_RUN", None)

    def run(*args, check=True, timeout=1800):
        proc = subprocess.run([str(ROOT / "scripts/sandbox.sh"), *args], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode:
            raise SystemExit(f"sandbox.sh {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
        return proc
    return {"state": state, "run": run, "hosts_env": dict(env, HASHISTACK_SANDBOX_RUN=str(state / "arm" / "hosts-run")),
            "env": dict(env, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache/collections"))}


def load_env(box: dict) -> None:
    """Adds what `sandbox.sh env` exports (the emulator's sign-in, SSH key, mirror) to box["env"]."""
    for line in box["run"]("env").stdout.splitlines():
        for assignment in shlex.split(line)[1:]:  # export K=V [K=V ...]
            key, _, value = assignment.partition("=")
            box["env"][key] = value


def stamp(value) -> float | None:
    """Nomad's RFC 3339 times (up to nanoseconds, Z or an offset) as epoch seconds."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", str(value or ""))
    if not m or m.group(1).startswith("0001-"):
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}.{(m.group(2) or '0')[:6].ljust(6, '0')}{zone}").timestamp()
