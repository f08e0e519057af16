"""Scaling a pool on the shared sandbox cluster, with a Nomad service job spread over the pool: out through
playbooks/scale.yml; an instance deleted with the plain Azure SDK (as the portal would) drains and leaves
before it is gone (the on-instance Scheduled Events service); back to the spec's count through site.yml with
the instance to remove named: its allocations move first, none is lost, its Consul member shows `left`, only
that instance is deleted. The servers 3 -> 5 -> 3 through the spec file and site.yml, with Consul and Nomad
keeping a leader throughout. A capacity decrease of the servers' scale set from outside removes no server.
Leaves the cluster in the spec's shape (west: 1, 3 servers)."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from .cluster import ROOT, compute_client, exec_on, nomad_api, playbook, server_api, table

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

RG = "hashistack-sandbox"
WEST = "sandbox-west"
JOB = "scale-probe"


def _instances(compute, name):
    """computer name -> instance id of a scale set's instances."""
    return {v.os_profile.computer_name: v.instance_id for v in compute.virtual_machine_scale_set_vms.list(RG, name)}


def _wait_running(sandbox, count, timeout=180):
    """(allocations running, every allocation of the job) once COUNT run or the timeout passed."""
    deadline = time.monotonic() + timeout
    while True:
        allocs = nomad_api(sandbox, f"/v1/job/{JOB}/allocations")
        running = [a for a in allocs if a["ClientStatus"] == "running" and a["DesiredStatus"] == "run"]
        if len(running) == count or time.monotonic() > deadline:
            return running, allocs
        time.sleep(2)


def _members(sandbox):
    return {m["Node"]: m["Status"] for m in table(sandbox["run"]("consul", "members").stdout, "Node")}


def _node(sandbox, name):
    stub = next(n for n in nomad_api(sandbox, "/v1/nodes") if n["Name"] == name)
    return nomad_api(sandbox, f"/v1/node/{stub['ID']}")


def test_scale_west_out_sdk_delete_then_in_through_the_spec(sandbox):
    compute = compute_client(sandbox["env"])
    out = playbook(sandbox, "playbooks/scale.yml", "-e", "pool=west", "-e", "count=3")
    assert out.returncode == 0, out.stdout[-5000:]
    assert "Set its count to 3 in the spec file too" in out.stdout
    west = _instances(compute, WEST)
    assert len(west) == 3
    nodes = {n["Name"]: n for n in nomad_api(sandbox, "/v1/nodes") if n["Name"] in west}
    assert len(nodes) == 3 and {n["Status"] for n in nodes.values()} == {"ready"}

    job = {"Job": {"ID": JOB, "Name": JOB, "Type": "service", "Region": "global", "Datacenters": ["westeurope"],
                   "Constraints": [{"LTarget": "${meta.hashistack_pool}", "RTarget": "west", "Operand": "="}],
                   "TaskGroups": [{"Name": "web", "Count": 3, "Tasks": [{
                       "Name": "sleep", "Driver": "exec", "Config": {"command": "/bin/sleep", "args": ["3600"]},
                       "Resources": {"CPU": 20, "MemoryMB": 16}}]}]}}
    nomad_api(sandbox, "/v1/jobs", "POST", job)
    try:
        running, _ = _wait_running(sandbox, 3)
        assert len(running) == 3
        assert {a["NodeName"] for a in running} <= set(west)

        # deleted from outside with the plain SDK: the Scheduled Events service drains and leaves first
        victim = max((a["NodeName"] for a in running), key=lambda n: int(west[n]))
        compute.virtual_machine_scale_sets.begin_delete_instances(RG, WEST, {"instanceIds": [west[victim]]}).result()
        assert victim not in _instances(compute, WEST)
        drained = _node(sandbox, victim)
        assert (drained.get("LastDrain") or {}).get("Meta", {}).get("drained_by") == "hashistack-scheduled-events"
        assert _members(sandbox)[victim] == "left"
        running, allocs = _wait_running(sandbox, 3)
        assert len(running) == 3 and victim not in {a["NodeName"] for a in running}
        assert not [a for a in allocs if a["ClientStatus"] == "lost"]

        # back to the spec's count (1) through site.yml, naming the instance that runs the most allocations
        left_now = _instances(compute, WEST)
        per_node = {n: sum(a["NodeName"] == n for a in running) for n in left_now}
        named = max(per_node, key=lambda n: (per_node[n], -int(left_now[n])))
        keep = next(n for n in left_now if n != named)
        out = playbook(sandbox, "playbooks/site.yml", "-e", json.dumps({"azure_infra_remove_instances": [named]}))
        assert out.returncode == 0, out.stdout[-5000:]
        assert _instances(compute, WEST) == {keep: left_now[keep]}
        node = _node(sandbox, named)
        assert (node.get("LastDrain") or {}).get("Meta", {}).get("drained_by") == "hashistack.azure"
        assert _members(sandbox)[named] == "left"
        running, allocs = _wait_running(sandbox, 3)
        assert len(running) == 3 and {a["NodeName"] for a in running} == {keep}
        assert not [a for a in allocs if a["ClientStatus"] == "lost"]
    finally:
        nomad_api(sandbox, f"/v1/job/{JOB}?purge=true", "DELETE")


class LeaderSampler:
    """Consul's and Nomad's leader as a server that stays (the oldest) sees them, every second, until stop()."""

    def __init__(self, sandbox):
        self.sandbox, self.samples = sandbox, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self._leader(8500), self._leader(4646)))
            self._stop.wait(1)

    def _leader(self, port):
        try:
            return server_api(self.sandbox, port, "/v1/status/leader")
        except (AssertionError, ValueError, subprocess.TimeoutExpired):
            return None  # no leader (Nomad answers 500) or no answer: a sample without one

    def longest_without_leader(self) -> int:
        """The most consecutive samples in which Consul or Nomad had no leader."""
        longest = run = 0
        for _, consul, nomad in self.samples:
            run = 0 if consul and nomad else run + 1
            longest = max(longest, run)
        return longest

    def stop(self) -> list:
        self._stop.set()
        self._thread.join(timeout=90)
        return self.samples


def _servers_spec(tmp_path, count):
    """sandbox/main/spec.yml with servers.count changed, as a user edits the spec file."""
    text = (ROOT / "sandbox/main/spec.yml").read_text()
    assert "servers: {count: 3," in text
    path = tmp_path / f"spec-{count}-servers.yml"
    path.write_text(text.replace("servers: {count: 3,", f"servers: {{count: {count},"))
    return str(path)


def _voters(sandbox, port):
    health = server_api(sandbox, port, "/v1/operator/autopilot/health")
    return sorted(s["Name"] for s in health["Servers"] if s["Voter"]), health["Healthy"]


def test_servers_3_to_5_to_3_through_the_spec_keep_a_leader_throughout(sandbox, tmp_path):
    compute = compute_client(sandbox["env"])
    first = _instances(compute, "sandbox-servers")
    assert len(first) == 3
    leaders = LeaderSampler(sandbox)
    try:
        out = playbook(sandbox, "playbooks/site.yml", "-e", "@" + _servers_spec(tmp_path, 5))
        assert out.returncode == 0, out.stdout[-5000:]
        five = _instances(compute, "sandbox-servers")
        assert len(five) == 5 and set(first) < set(five)
        added = sorted(set(five) - set(first))
        consul, healthy = _voters(sandbox, 8500)
        assert healthy and consul == sorted(five), consul
        assert len(_voters(sandbox, 4646)[0]) == 5
        assert "bootstrap_expect = 5" in exec_on(sandbox, added[0], "cat", "/etc/consul.d/consul.hcl")

        out = playbook(sandbox, "playbooks/site.yml")  # the spec file's 3 again: the two newest go, one at a time
        assert out.returncode == 0, out.stdout[-5000:]
        assert out.stdout.index(f"Delete the instance - {added[1]}") < out.stdout.index(f"Delete the instance - {added[0]}")
    finally:
        samples = leaders.stop()
    assert _instances(compute, "sandbox-servers") == first
    consul, healthy = _voters(sandbox, 8500)
    assert healthy and consul == sorted(first), consul
    assert len(_voters(sandbox, 4646)[0]) == 3
    assert all(_members(sandbox)[name] == "left" for name in added)
    assert "bootstrap_expect = 3" in exec_on(sandbox, sorted(first)[0], "cat", "/etc/consul.d/consul.hcl")
    # at most a hand-over's second or two without a leader (a server that leads transfers leadership before it goes)
    assert len(samples) > 30 and leaders.longest_without_leader() <= 2, [s for s in samples if not (s[1] and s[2])]


def test_capacity_decrease_of_the_servers_from_outside_removes_no_server(sandbox):
    from azure.core.exceptions import HttpResponseError
    compute = compute_client(sandbox["env"])
    servers = _instances(compute, "sandbox-servers")
    assert len(servers) == 3
    assert all(v.protection_policy and v.protection_policy.protect_from_scale_in
               for v in compute.virtual_machine_scale_set_vms.list(RG, "sandbox-servers"))
    with pytest.raises(HttpResponseError, match="not protected from scale-in"):
        compute.virtual_machine_scale_sets.begin_update(RG, "sandbox-servers", {"sku": {"capacity": 1}}).result()
    assert _instances(compute, "sandbox-servers") == servers
    assert sorted(s for s, st in _members(sandbox).items() if "servers" in s and st == "alive") == sorted(servers)
