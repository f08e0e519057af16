"""Scaling a pool on the shared sandbox cluster, with a Nomad service job spread over the pool: out through
playbooks/scale.yml; an instance deleted with the plain Azure SDK (as the portal would) drains and leaves
before it is gone (the on-instance Scheduled Events service); back to the spec's count through site.yml with
the instance to remove named: its allocations move first, none is lost, its Consul member shows `left`, only
that instance is deleted. A capacity decrease of the servers' scale set from outside removes no server.
Leaves the cluster in the spec's shape (west: 1)."""

from __future__ import annotations

import json
import time

import pytest

from .cluster import compute_client, nomad_api, playbook, table

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
