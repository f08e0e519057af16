"""Helpers for the sandbox/hosts tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
# What `leftovers` reports for a sandbox that is completely gone.
CLEAN = {"cgroups": [], "links": [], "mounts": [], "netns": [], "nft": False, "processes": []}
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]


def can_boot_hosts() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("systemd-nspawn", "debootstrap", "nft", "ip"):
        if not shutil.which(tool):
            return f"needs {tool}"
    return None


class Sandbox:
    """A sandbox with its own run dir; CLI via subprocess, like a user runs it."""

    def __init__(self, run: Path):
        self.run = run
        self.env = dict(os.environ, HASHISTACK_SANDBOX_RUN=str(run))

    def cli(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "sandbox.hosts", *args], cwd=REPO, env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"sandbox.hosts {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def cli_json(self, *args: str):
        return json.loads(self.cli(*args).stdout)

    def sh(self, name: str, script: str, check: bool = False) -> subprocess.CompletedProcess:
        """Run a shell script inside host ``name`` as root (nsenter)."""
        return self.cli("exec", name, "--", "sh", "-c", script, check=check)

    def reaches(self, name: str, ip: str, tries: int = 5) -> bool:
        """True when host ``name`` gets an ICMP echo reply from ``ip`` (retried: boxes are busy)."""
        for _ in range(tries):
            if self.sh(name, f"ping -c1 -W2 {ip} >/dev/null").returncode == 0:
                return True
        return False

    def ssh(self, ip: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        key = self.cli("ssh-key").stdout.strip()
        return subprocess.run(["ssh", "-i", key, *SSH_OPTS, f"azureuser@{ip}", command],
                              capture_output=True, text=True, timeout=timeout)

    def leftovers(self) -> dict:
        return self.cli_json("leftovers")


def make_sandbox(tmp_root: Path | None = None) -> Sandbox:
    run = Path("/run") / f"hsb-test-{uuid.uuid4().hex[:8]}"
    return Sandbox(run)


def grant(auth, sub, scope, role, principal):
    """Assign the built-in role (definition GUID) to a service principal at scope (AuthorizationManagementClient)."""
    import uuid
    auth.role_assignments.create(scope, str(uuid.uuid4()), {"properties": {
        "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}",
        "principalId": principal, "principalType": "ServicePrincipal"}})
