"""The README's main command, end to end: `scripts/sandbox.sh up` runs playbooks/site.yml with the
sandbox spec against the ARM emulator: the scale sets' instances (local machines) form a Consul and
Nomad cluster by managed-identity cloud auto-join, the second-location pool joins the servers'
datacenter and region with its own Nomad datacenter, a smoke job runs on every pool, a second `up`
changes nothing and writes nothing to Azure, and playbooks/destroy.yml leaves no Azure resource and no
sandbox machine. The sandbox is the session's shared cluster (tests/e2e/conftest.py); destroy runs after every other test on it."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from .cluster import ROOT, SPEC, agent_self, azure_writes, exec_on, mark, recap, sandbox_hosts, table

pytestmark = [pytest.mark.hosts, pytest.mark.slow]


def test_up_runs_site_and_forms_the_cluster_by_cloud_auto_join(sandbox):
    out = sandbox["up"].stdout
    counts = recap(out)
    instances = {h for h in counts if h != "localhost"}
    assert len(instances) == 5, counts  # 3 servers + 1 + 1 client
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in counts.values()), counts
    members = table(sandbox["run"]("consul", "members").stdout, "Node")
    assert sorted(m["Node"] for m in members) == sorted(instances)
    assert {m["Status"] for m in members} == {"alive"}
    for host in instances:
        # joined through the servers' scale set with the instance's managed identity, not inventory addresses
        consul = agent_self(sandbox, host, 8500)
        join = ("provider=azure resource_group=hashistack-sandbox vm_scale_set=sandbox-servers "
                f"subscription_id={sandbox['env']['AZURE_SUBSCRIPTION_ID']}")
        assert consul["DebugConfig"]["RetryJoinLAN"] == [join]
        assert f'retry_join = {json.dumps([join])}' in exec_on(sandbox, host, "cat", "/etc/nomad.d/nomad.hcl")
    nodes = table(sandbox["run"]("nomad", "node", "status").stdout, "ID")
    assert sorted(n["Name"] for n in nodes) == sorted(h for h in instances if "servers" not in h)
    assert {n["Status"] for n in nodes} == {"ready"}
    servers = table(sandbox["run"]("nomad", "server", "members").stdout, "Name")
    assert len(servers) == 3 and {s["Status"] for s in servers} == {"alive"}
    assert "scripts/sandbox.sh nomad node status" in out  # how to reach the APIs


def test_every_instance_configured_itself_from_its_boot_payload(sandbox):
    """The scale sets' custom data is the pools' boot payload: each instance installed, configured and started its
    agents before site.yml's roles reached it (the roles then found it converged), the gossip keys from Key Vault."""
    instances = [h for h in recap(sandbox["up"].stdout) if h != "localhost"]
    for host in instances:
        doc = json.loads(exec_on(sandbox, host, "cat", "/var/lib/hashistack/boot.json"))
        assert doc["state"] == "ok" and all(s["ok"] for s in doc["steps"]), (host, doc)
        assert doc["pool"] == ("servers" if "servers" in host else host.removeprefix("sandbox-").rstrip("0123456789"))
        secrets = next(s for s in doc["steps"] if s["step"] == "secrets")
        assert "consul-gossip-key" in secrets["message"] and "from vault hs-sandbox-" in secrets["message"]
    assert "its boot payload failed" not in sandbox["up"].stdout


def test_second_location_client_keeps_the_servers_datacenter_and_region_with_its_own_nomad_datacenter(sandbox):
    north = next(h for h in recap(sandbox["up"].stdout) if "north" in h)
    consul = agent_self(sandbox, north, 8500)
    nomad = agent_self(sandbox, north, 4646)
    assert consul["Config"]["Datacenter"] == "dc1"
    assert consul["Member"]["Addr"].startswith("10.78.0.")  # its own, peered network
    assert nomad["config"]["Region"] == "global"
    assert nomad["config"]["Datacenter"] == "northeurope"
    row = next(n for n in table(sandbox["run"]("nomad", "node", "status").stdout, "ID") if n["Name"] == north)
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
    since = mark(env)
    again = sandbox["run"]("up")
    counts = recap(again.stdout)
    assert len(counts) == 6, counts
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in counts.values()), again.stdout[-4000:]
    assert azure_writes(env, since) == []


@pytest.mark.destroys_sandbox
def test_destroy_needs_the_cluster_name_then_leaves_no_azure_resource_and_no_machine(sandbox):
    env = sandbox["env"]
    playbook = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "sandbox/main/vmss.yml", "playbooks/destroy.yml", *SPEC]
    since = mark(env)
    refused = subprocess.run([*playbook, "-e", "hashistack_destroy_confirm=prod"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "hashistack_destroy_confirm=sandbox" in refused.stdout, refused.stdout[-3000:]
    assert azure_writes(env, since) == []

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
    hosts = sandbox_hosts(sandbox, "list")
    assert json.loads(hosts.stdout) == []
