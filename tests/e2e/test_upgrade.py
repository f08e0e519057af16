"""The README's upgrade on the shared sandbox cluster: `scripts/sandbox.sh upgrade` (playbooks/upgrade.yml to the
newer versions the sandbox mirror carries) while a client writes a KV key every 0.25 s through its own Consul
agent and a Nomad service job runs. `--check` first: the plan, no change, no Azure write. Then a Consul server
is stopped right after its restart (a machine that does not come back): the run stops naming it and what it
waited for, the cluster keeps a leader. After `start`, the re-run completes: every agent on the new build, no
acknowledged write lost, the job's allocations never all down; the scale sets' model names the new versions, so an
instance Azure creates afterwards boots on them.
Leaves the cluster on the newer versions (runs after the tests that converge it to the spec's)."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from .cluster import (
    ROOT,
    AllocSampler,
    KvWriter,
    agent_self,
    azure_writes,
    compute_client,
    machines,
    mark,
    nomad_api,
    recap,
    sandbox_hosts,
    table,
)

pytestmark = [pytest.mark.hosts, pytest.mark.slow, pytest.mark.upgrades_sandbox]

OLD = {"consul": "1.20.0", "nomad": "1.9.2"}
NEW = {"consul": "1.20.1", "nomad": "1.9.3"}
JOB = "upgrade-probe"
RG, NORTH = "hashistack-sandbox", "sandbox-north"
FAST_WAITS = ["-e", "hashistack_upgrade_wait_timeout=40"]


def _versions(sandbox):
    """Consul node -> (Consul build, Nomad build) of every member."""
    def nomad(host):
        version = agent_self(sandbox, host, 4646)["config"]["Version"]  # a string, or {Version, Revision, ...}
        return version["Version"] if isinstance(version, dict) else version
    return {host: (agent_self(sandbox, host, 8500)["Config"]["Version"], nomad(host)) for host in machines(sandbox)}


def _alive(sandbox, node):
    members = {m["Node"]: m["Status"] for m in table(sandbox["run"]("consul", "members").stdout, "Node")}
    return members.get(node) == "alive"


def _upgrade_stopping_a_server(sandbox, machine_of):
    """sandbox.sh upgrade; the first Consul server restarted loses its machine at once (no shutdown, as a host
    failure takes it). (its node name, the run's exit status and output)"""
    proc = subprocess.Popen([str(ROOT / "scripts/sandbox.sh"), "upgrade", *FAST_WAITS], env=sandbox["env"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, victim, in_restart = [], None, False
    for line in proc.stdout:
        lines.append(line)
        if "Restart the agent on the new release - Consul" in line:
            in_restart = True
        elif in_restart and victim is None and line.startswith("changed: ["):
            victim = line.split("[", 1)[1].split("]", 1)[0]
            stopped = sandbox_hosts(sandbox, "stop", "--power-off", machine_of[victim], timeout=120)
            assert stopped.returncode == 0, stopped.stderr
    proc.wait(timeout=900)
    return victim, proc.returncode, "".join(lines)


def test_upgrade_check_then_a_lost_server_stops_it_and_the_rerun_completes_losing_no_write(sandbox):
    assert set(_versions(sandbox).values()) == {(OLD["consul"], OLD["nomad"])}

    since = mark(sandbox["env"])
    check = sandbox["run"]("upgrade", "--check")
    counts = recap(check.stdout)  # localhost would change the scale sets' model: reported, not sent
    assert all(r["changed"] == 0 and r["failed"] == 0 for h, r in counts.items() if h != "localhost"), check.stdout[-4000:]
    assert azure_writes(sandbox["env"], since) == []
    assert set(_versions(sandbox).values()) == {(OLD["consul"], OLD["nomad"])}

    machine_of = machines(sandbox)
    job = {"Job": {"ID": JOB, "Name": JOB, "Type": "service", "Region": "global",
                   "Datacenters": ["westeurope", "northeurope"],
                   "TaskGroups": [{"Name": "web", "Count": 2, "Tasks": [{
                       "Name": "sleep", "Driver": "exec", "Config": {"command": "/bin/sleep", "args": ["3600"]},
                       "Resources": {"CPU": 20, "MemoryMB": 16}}]}]}}
    nomad_api(sandbox, "/v1/jobs", "POST", job)
    writer = KvWriter(sandbox, sorted(h for h in machine_of if "west" in h)[0])
    allocs = AllocSampler(sandbox, JOB)
    try:
        deadline = time.monotonic() + 120
        while not (allocs.samples and allocs.samples[-1] == 2) and time.monotonic() < deadline:
            time.sleep(1)
        assert allocs.samples and allocs.samples[-1] == 2, "the probe job's two allocations never ran"

        victim, rc, out = _upgrade_stopping_a_server(sandbox, machine_of)
        assert victim, out[-4000:]
        assert rc != 0, out[-4000:]
        # stopped at the lost server while waiting for it (from a peer), or at the next one waiting for the
        # failure tolerance to come back: either way a named server and a wait, nothing restarted after it
        stop = re.search(r"The Consul upgrade stopped at (\S+) during '(Wait [^']+)'", out)
        assert stop and stop.group(1) in machine_of, out[-4000:]
        peers = sandbox["run"]("consul", "operator", "raft", "list-peers").stdout
        assert "leader" in peers, peers  # quorum kept: the servers not yet upgraded were not touched

        started = sandbox_hosts(sandbox, "start", machine_of[victim], timeout=180)
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 180
        while not _alive(sandbox, victim) and time.monotonic() < deadline:
            time.sleep(2)
        assert _alive(sandbox, victim)

        rerun = sandbox["run"]("upgrade", check=False, timeout=1500)
        assert rerun.returncode == 0, rerun.stdout[-6000:]
    finally:
        writer.stop()
        samples = allocs.stop()
        nomad_api(sandbox, f"/v1/job/{JOB}?purge=true", "DELETE")

    assert set(_versions(sandbox).values()) == {(NEW["consul"], NEW["nomad"])}
    record = writer.record()
    assert record["failed"] == [] and len(record["acked"]) > 100, record
    assert writer.lost() == [], "acknowledged writes lost"
    assert samples and min(samples) >= 1, samples  # the job never had all its allocations down
    assert "Set consul_version and nomad_version to these in the spec file too" in rerun.stdout
    # the post-check's verify.yml placed a smoke job on every client pool of the spec on the new builds
    assert sorted(set(re.findall(r"smoke job on pool (\w+): running on", rerun.stdout))) == ["north", "west"], rerun.stdout[-4000:]


def test_after_the_upgrade_an_instance_azure_creates_boots_on_the_new_versions(sandbox):
    """The scale sets' model was updated by upgrade.yml: a scale-out with the plain SDK (as autoscale would) brings
    an instance up on the new build by itself. It is then deleted with the SDK (drained and left first)."""
    compute = compute_client(sandbox["env"])
    before = {v.os_profile.computer_name: v.instance_id for v in compute.virtual_machine_scale_set_vms.list(RG, NORTH)}
    compute.virtual_machine_scale_sets.begin_update(RG, NORTH, {"sku": {"capacity": len(before) + 1}}).result()
    vms = {v.os_profile.computer_name: v.instance_id for v in compute.virtual_machine_scale_set_vms.list(RG, NORTH)}
    (new,) = set(vms) - set(before)
    try:
        deadline = time.monotonic() + 180
        while not _alive(sandbox, new) and time.monotonic() < deadline:
            time.sleep(3)
        assert _alive(sandbox, new)
        assert _versions(sandbox)[new] == (NEW["consul"], NEW["nomad"])
    finally:
        compute.virtual_machine_scale_sets.begin_delete_instances(RG, NORTH, {"instanceIds": [vms[new]]}).result()
    assert {v.os_profile.computer_name for v in compute.virtual_machine_scale_set_vms.list(RG, NORTH)} == set(before)
