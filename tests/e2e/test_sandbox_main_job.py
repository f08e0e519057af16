"""The README's main command, end to end: `scripts/sandbox.sh up` runs playbooks/site.yml with the
sandbox spec against the ARM emulator: the scale sets' instances (local machines) form a Consul and
Nomad cluster by managed-identity cloud auto-join, the second-location pool joins the servers'
datacenter and region with its own Nomad datacenter, a smoke job runs on every pool, a second `up`
changes nothing and writes nothing to Azure, and playbooks/destroy.yml leaves no Azure resource and no
sandbox machine. One sandbox for the whole module (the tests run in file order; destroy is last)."""

from __future__ import annotations

import json
import os
import re
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
SPEC = ["-e", "@sandbox/main/spec.yml", "-e", "@sandbox/main/sandbox.yml"]


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
        proc = subprocess.run([script, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
        if check and proc.returncode != 0:
            raise AssertionError(f"sandbox.sh {' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}")
        return proc

    try:
        up = run("up")
        exports = run("env").stdout
    except BaseException:
        run("down", check=False)  # a failed `up` must not leave its machines, networks and emulator behind
        raise
    shell_env = dict(env, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache/collections"), ANSIBLE_NOCOLOR="1")
    for line in exports.splitlines():
        for assignment in shlex.split(line)[1:]:  # export K=V [K=V ...]
            key, _, value = assignment.partition("=")
            shell_env[key] = value
    hosts_env = dict(env, HASHISTACK_SANDBOX_RUN=str(state / "arm" / "hosts-run"))
    yield {"up": up, "env": shell_env, "hosts_env": hosts_env, "state": state, "run": run}
    down = run("down", check=False)
    assert down.returncode == 0, down.stderr
    left = subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "sandbox.hosts", "leftovers"], env=hosts_env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    leftovers = json.loads(left.stdout)  # kernel objects by kind: links, mounts, netns, nft, processes, ...
    assert leftovers and not any(leftovers.values()), leftovers


def _arm(env, path: str, method: str = "GET"):
    ctx = ssl.create_default_context(cafile=env["AZURE_CA_BUNDLE"])
    req = urllib.request.Request(env["AZURE_CLOUD_ENVIRONMENT"].rstrip("/") + path, method=method)
    with urllib.request.urlopen(req, context=ctx) as resp:
        return json.load(resp)


def _requests(env, since: int = 0) -> list[dict]:
    return _arm(env, f"/_sandbox/requests?since={since}")["requests"]


def _mark(env) -> int:
    return _arm(env, "/_sandbox/requests?since=1000000000")["next"]


def _recap(stdout: str) -> dict[str, dict[str, int]]:
    recap = {}
    for line in stdout.split("PLAY RECAP")[-1].splitlines():
        if ":" in line and "ok=" in line:
            host, _, counts = line.partition(":")
            recap[host.strip()] = {k: int(v) for k, v in (c.split("=") for c in counts.split())}
    return recap


def _table(text: str, first_column: str) -> list[dict[str, str]]:
    """A CLI table (columns split on 2+ spaces) as dicts, from the line starting with its first header."""
    lines = [line for line in text.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith(first_column))
    header = re.split(r"\s{2,}", lines[start].strip())
    return [dict(zip(header, re.split(r"\s{2,}", line.strip()), strict=False)) for line in lines[start + 1:]]


def _machines(sandbox) -> dict[str, str]:
    """Each Consul node (the instance's host name) -> its sandbox machine (found by address)."""
    listed = subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "sandbox.hosts", "list"], env=sandbox["hosts_env"],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    by_ip = {h["ip"]: h["name"] for h in json.loads(listed.stdout)}
    members = _table(sandbox["run"]("consul", "members").stdout, "Node")
    return {m["Node"]: by_ip[m["Address"].split(":")[0]] for m in members}


def _exec(sandbox, host: str, *argv: str) -> str:
    machine = _machines(sandbox)[host]
    proc = subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "sandbox.hosts", "exec", machine, "--", *argv],
                          env=sandbox["hosts_env"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _agent_self(sandbox, host: str, port: int) -> dict:
    code = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/v1/agent/self').read().decode())"
    return json.loads(_exec(sandbox, host, "python3", "-c", code))


def test_up_runs_site_and_forms_the_cluster_by_cloud_auto_join(sandbox):
    out = sandbox["up"].stdout
    recap = _recap(out)
    instances = {h for h in recap if h != "localhost"}
    assert len(instances) == 5, recap  # 3 servers + 1 + 1 client
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), recap
    members = _table(sandbox["run"]("consul", "members").stdout, "Node")
    assert sorted(m["Node"] for m in members) == sorted(instances)
    assert {m["Status"] for m in members} == {"alive"}
    for host in instances:
        # joined through the servers' scale set with the instance's managed identity, not inventory addresses
        consul = _agent_self(sandbox, host, 8500)
        join = ("provider=azure resource_group=hashistack-sandbox vm_scale_set=sandbox-servers "
                f"subscription_id={sandbox['env']['AZURE_SUBSCRIPTION_ID']}")
        assert consul["DebugConfig"]["RetryJoinLAN"] == [join]
        assert f'retry_join = {json.dumps([join])}' in _exec(sandbox, host, "cat", "/etc/nomad.d/nomad.hcl")
    nodes = _table(sandbox["run"]("nomad", "node", "status").stdout, "ID")
    assert sorted(n["Name"] for n in nodes) == sorted(h for h in instances if "servers" not in h)
    assert {n["Status"] for n in nodes} == {"ready"}
    servers = _table(sandbox["run"]("nomad", "server", "members").stdout, "Name")
    assert len(servers) == 3 and {s["Status"] for s in servers} == {"alive"}
    assert "scripts/sandbox.sh nomad node status" in out  # how to reach the APIs


def test_second_location_client_keeps_the_servers_datacenter_and_region_with_its_own_nomad_datacenter(sandbox):
    north = next(h for h in _recap(sandbox["up"].stdout) if "north" in h)
    consul = _agent_self(sandbox, north, 8500)
    nomad = _agent_self(sandbox, north, 4646)
    assert consul["Config"]["Datacenter"] == "dc1"
    assert consul["Member"]["Addr"].startswith("10.78.0.")  # its own, peered network
    assert nomad["config"]["Region"] == "global"
    assert nomad["config"]["Datacenter"] == "northeurope"
    row = next(n for n in _table(sandbox["run"]("nomad", "node", "status").stdout, "ID") if n["Name"] == north)
    assert row["DC"] == "northeurope" and row["Status"] == "ready"


def test_smoke_job_ran_on_each_pool_and_was_removed(sandbox):
    out = sandbox["up"].stdout
    ran = dict(re.findall(r"smoke job on pool (\w+): running on (\S+) \(nomad datacenter \w+\)", out))
    assert set(ran) == {"west", "north"}, out[-4000:]
    assert "west" in ran["west"] and "north" in ran["north"]
    assert re.search(r"smoke job on pool north: running on \S+ \(nomad datacenter northeurope\)", out)
    jobs = sandbox["run"]("nomad", "job", "status").stdout
    assert "hashistack-smoke" not in jobs


def test_second_up_changes_nothing_and_sends_no_write_to_azure(sandbox):
    env = sandbox["env"]
    since = _mark(env)
    again = sandbox["run"]("up")
    recap = _recap(again.stdout)
    assert len(recap) == 6, recap
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()), again.stdout[-4000:]
    writes = [(r["method"], r["path"]) for r in _requests(env, since)
              if r["method"] in WRITES and r["path"].lower().startswith("/subscriptions/")]
    assert writes == []


def test_destroy_needs_the_cluster_name_then_leaves_no_azure_resource_and_no_machine(sandbox):
    env = sandbox["env"]
    playbook = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "sandbox/main/vmss.yml", "playbooks/destroy.yml", *SPEC]
    since = _mark(env)
    refused = subprocess.run([*playbook, "-e", "hashistack_destroy_confirm=prod"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "hashistack_destroy_confirm=sandbox" in refused.stdout, refused.stdout[-3000:]
    assert [r for r in _requests(env, since) if r["method"] in WRITES and r["path"].lower().startswith("/subscriptions/")] == []

    done = subprocess.run([*playbook, "-e", "hashistack_destroy_confirm=sandbox"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:]
    from azure.identity import ClientSecretCredential
    from azure.mgmt.resource.resources import ResourceManagementClient

    credential = ClientSecretCredential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
                                        authority=env["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True,
                                        connection_verify=env["AZURE_CA_BUNDLE"])
    base = env["AZURE_CLOUD_ENVIRONMENT"]
    client = ResourceManagementClient(credential, env["AZURE_SUBSCRIPTION_ID"], base_url=base,
                                      credential_scopes=[base + ".default"], connection_verify=env["AZURE_CA_BUNDLE"])
    # the collection created the group, so it went too; nothing of the cluster is left anywhere
    assert "hashistack-sandbox" not in [g.name for g in client.resource_groups.list()]
    assert [r.id for r in client.resources.list()] == []
    hosts = subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "sandbox.hosts", "list"], env=sandbox["hosts_env"],
                           cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(hosts.stdout) == []
