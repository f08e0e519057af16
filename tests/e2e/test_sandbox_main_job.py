"""The README's main command, end to end: `scripts/sandbox.sh up` provisions the sandbox cluster
with the collection against the ARM emulator, every scale-set instance becomes a local machine
that ran its custom data, the inventory plugin groups them for the roles, a second run writes
nothing to Azure, and `down` leaves nothing behind."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.hosts, pytest.mark.slow]

WRITES = {"PUT", "PATCH", "POST", "DELETE"}


def _can_boot() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("systemd-nspawn"):
        return "needs systemd-nspawn"
    return None


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    reason = _can_boot()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("sandbox-state")
    env = dict(os.environ, HASHISTACK_SANDBOX_STATE=str(state))
    env.pop("HASHISTACK_SANDBOX_RUN", None)  # the script keeps the machines under its state dir
    script = str(ROOT / "scripts" / "sandbox.sh")

    def run(*args, check=True):
        proc = subprocess.run([script, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
        if check and proc.returncode != 0:
            raise AssertionError(f"sandbox.sh {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    up = run("up")
    exports = run("env").stdout
    shell_env = dict(env)
    for line in exports.splitlines():
        for assignment in shlex.split(line)[1:]:  # export K=V [K=V ...]
            key, _, value = assignment.partition("=")
            shell_env[key] = value
    yield {"up": up, "env": shell_env, "state": state, "run": run}
    down = run("down", check=False)
    assert down.returncode == 0, down.stderr
    hosts_env = dict(env, HASHISTACK_SANDBOX_RUN=str(state / "arm" / "hosts-run"))
    left = subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "sandbox.hosts", "leftovers"], env=hosts_env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    leftovers = json.loads(left.stdout)  # kernel objects by kind: links, mounts, netns, nft, processes, ...
    assert leftovers and not any(leftovers.values()), leftovers


def _requests(env) -> list[dict]:
    ctx = ssl.create_default_context(cafile=env["AZURE_CA_BUNDLE"])
    with urllib.request.urlopen(env["AZURE_CLOUD_ENVIRONMENT"] + "_sandbox/requests", context=ctx) as resp:
        body = json.load(resp)
    return body["requests"] if isinstance(body, dict) else body


def _recap(stdout: str) -> dict[str, dict[str, int]]:
    recap = {}
    for line in stdout.split("PLAY RECAP")[-1].splitlines():
        if ":" in line and "ok=" in line:
            host, _, counts = line.partition(":")
            recap[host.strip()] = {k: int(v) for k, v in (c.split("=") for c in counts.split())}
    return recap


def test_every_instance_booted_ran_its_custom_data_and_is_grouped(sandbox):
    out = sandbox["up"].stdout
    recap = _recap(out)
    instances = {h for h in recap if h != "localhost"}
    assert len(instances) == 5, recap  # 3 servers + 1 + 1 client
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), recap
    for pool in ("servers", "west", "north"):
        assert f'custom-data={{"cluster": "sandbox", "pool": "{pool}"}}' in out.replace('\\"', '"')
    graph = out.split("@all:")[-1]
    for group in ("consul_servers", "nomad_servers", "nomad_clients", "pool_north", "location_northeurope"):
        assert f"@{group}:" in graph


def test_client_pool_in_second_location_keeps_the_servers_datacenter_and_region(sandbox):
    out = sandbox["up"].stdout
    north = next(line for line in out.splitlines() if "client/north" in line)
    assert "dc=dc1 region=global nomad_dc=northeurope" in north
    assert "10.78.1." in north  # its own, peered network


def test_second_run_changes_nothing_and_sends_no_write_to_azure(sandbox):
    env = sandbox["env"]
    before = len(_requests(env))
    proc = subprocess.run(
        [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "sandbox/main/vmss.yml", "sandbox/main/up.yml",
         "-e", f"sandbox_ssh_public_key={env['ANSIBLE_PRIVATE_KEY_FILE']}.pub"],
        env=dict(env, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache/collections")), cwd=ROOT,
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert all(r["changed"] == 0 for r in _recap(proc.stdout).values()), proc.stdout[-3000:]
    writes = [(r["method"], r["path"]) for r in _requests(env)[before:]
              if r["method"] in WRITES and "/oauth2/" not in r["path"]]
    assert writes == []
