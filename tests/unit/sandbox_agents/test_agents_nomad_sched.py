"""Nomad stand-in: job file conversion, constraints and the placement logic (no processes)."""

from __future__ import annotations

import time

import pytest

from sandbox.agents.net import RPCError
from sandbox.agents.nomad import (
    _apply,
    _initial_state,
    drain_actions,
    job_from_hcl,
    node_satisfies,
    normalize_job,
    plan_job,
)

JOB = '''
job "web" {
  datacenters = ["dc1", "dc2"]
  constraint {
    attribute = "${node.class}"
    value     = "web"
  }
  group "app" {
    count = 3
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }
    task "srv" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["60"]
      }
      env { MODE = "test" }
    }
  }
}
'''
DISTINCT = '''    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }
'''


def _node(i, dc="dc1", cls="web", status="ready", elig="eligible"):
    return {"ID": f"node-{i}", "Name": f"n{i}", "Datacenter": dc, "NodeClass": cls, "NodePool": "default",
            "Status": status, "SchedulingEligibility": elig, "DrainStrategy": None, "Meta": {}, "Attributes": {},
            "Drivers": {"raw_exec": {"Detected": True, "Healthy": True}}}


def test_job_file_to_api_job():
    j = normalize_job(job_from_hcl(JOB))
    assert j["ID"] == "web" and j["Type"] == "service" and j["Datacenters"] == ["dc1", "dc2"]
    g = j["TaskGroups"][0]
    assert g["Count"] == 3 and g["Tasks"][0]["Config"] == {"command": "/bin/sleep", "args": ["60"]}
    assert g["Tasks"][0]["Env"] == {"MODE": "test"}
    assert j["Constraints"] == [{"LTarget": "${node.class}", "RTarget": "web", "Operand": "="}]
    assert {"Migrate", "RestartPolicy", "ReschedulePolicy"} <= set(g)  # API fields filled in


@pytest.mark.parametrize("job,needle", [
    ({"ID": "x", "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "docker", "Config": {"image": "x"}}]}]}, "driver"),
    ({"ID": "x", "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {}}]}]}, "command"),
    ({"ID": "x", "TaskGroups": []}, "task groups"),
    ({"TaskGroups": [{"Name": "g"}]}, "ID"),
    ({"ID": "x", "Type": "batch", "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "exec", "Config": {"command": "x"}}]}]},
     "only service jobs"),
    ({"ID": "x", "TaskGroups": [{"Name": "g", "Update": {"Canary": 1},
                                 "Tasks": [{"Name": "t", "Driver": "exec", "Config": {"command": "x"}}]}]}, "canary"),
    ({"ID": "x", "Migrate": {"MinHealthyTime": 60 * 10**9, "HealthyDeadline": 30 * 10**9},
      "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "exec", "Config": {"command": "x"}}]}]},
     "MinHealthyTime must be less than HealthyDeadline"),
    ({"ID": "x", "TaskGroups": [{"Name": "g", "Migrate": {"MaxParallel": -1, "HealthCheck": "nope"},
                                 "Tasks": [{"Name": "t", "Driver": "exec", "Config": {"command": "x"}}]}]},
     "Invalid HealthCheck: 'nope'"),
])
def test_invalid_jobs_rejected(job, needle):
    """Job.Register's validation errors (a 500 with go-multierror text, as Nomad answers); features the stand-in
    does not run are refused the same way rather than accepted and ignored."""
    with pytest.raises(RPCError) as e:
        normalize_job(job)
    assert needle in str(e.value) and e.value.status in (400, 500)


def test_constraints():
    n = dict(_node(1), Meta={"rack": "r1"}, Attributes={"kernel.name": "linux"})
    assert node_satisfies(n, [{"LTarget": "${node.class}", "RTarget": "web", "Operand": "="}])
    assert not node_satisfies(n, [{"LTarget": "${node.datacenter}", "RTarget": "dc2", "Operand": "=="}])
    assert node_satisfies(n, [{"LTarget": "${meta.rack}", "RTarget": "^r\\d$", "Operand": "regexp"}])
    assert node_satisfies(n, [{"LTarget": "${attr.kernel.name}", "RTarget": "windows", "Operand": "!="}])
    assert not node_satisfies(n, [{"LTarget": "${meta.missing}", "RTarget": "", "Operand": "is_set"}])


def test_placement_respects_constraints_eligibility_and_distinct_hosts():
    st = _initial_state()
    for n in (_node(1), _node(2, dc="dc2"), _node(3, cls="db"), _node(4, elig="ineligible"), _node(5, status="down"),
              _node(6, dc="dc9")):
        st["nodes"][n["ID"]] = n
    job = normalize_job(job_from_hcl(JOB))
    index = [0]

    def apply(op):
        index[0] += 1
        return _apply(st, op, index[0])

    def schedule():
        plan = plan_job(st, st["jobs"].get("web"), "binpack", "web")
        apply({"op": "plan", "allocs": plan.stop + plan.inplace + plan.place, "deployments": plan.deployments})
        return plan

    apply({"op": "job_register", "job": job})
    plan = schedule()
    live = [a for a in st["allocs"].values() if a["DesiredStatus"] == "run"]
    # only node-1 and node-2 qualify; distinct_hosts caps placement at one per node
    assert sorted(a["NodeID"] for a in live) == ["node-1", "node-2"]
    assert sorted(a["Name"] for a in live) == ["web.app[0]", "web.app[1]"]
    assert plan.queued == {"app": 1} and plan.failed["app"]["CoalescedFailures"] == 0
    assert len(plan.deployments) == 1 and all(a["DeploymentID"] == plan.deployments[0]["ID"] for a in live)
    # a third qualifying node gets the missing allocation
    st["nodes"]["node-7"] = _node(7)
    schedule()
    live = [a for a in st["allocs"].values() if a["DesiredStatus"] == "run"]
    assert sorted(a["NodeID"] for a in live) == ["node-1", "node-2", "node-7"]
    # scaling down stops the highest indexes
    job2 = normalize_job(job_from_hcl(JOB.replace("count = 3", "count = 1")))
    apply({"op": "job_register", "job": job2})
    schedule()
    assert [a["Name"] for a in st["allocs"].values() if a["DesiredStatus"] == "run"] == ["web.app[0]"]


def _cluster(nodes: int):
    """A scheduler state with NODES ready nodes, an apply(op) that writes a raft entry, and a schedule() that
    plans the job "web" and writes the plan (returned)."""
    st = _initial_state()
    for i in range(1, nodes + 1):
        st["nodes"][f"node-{i}"] = _node(i)
    index = [0]

    def apply(op):
        index[0] += 1
        return _apply(st, op, index[0])

    def schedule():
        plan = plan_job(st, st["jobs"]["web"], "binpack", "web")
        apply({"op": "plan", "allocs": plan.stop + plan.inplace + plan.place, "deployments": plan.deployments})
        return plan
    return st, apply, schedule


def test_rolling_update_respects_max_parallel_and_health():
    """A changed task is replaced max_parallel allocations at a time; the next batch waits for the new ones to be
    healthy; the deployment succeeds once all are healthy."""
    st, apply, schedule = _cluster(3)

    def healthy_all():
        ups = [{"ID": a["ID"], "ClientStatus": "running", "DeploymentStatus": {"Healthy": True}}
               for a in st["allocs"].values() if a["DesiredStatus"] == "run"]
        apply({"op": "alloc_client_update", "updates": ups})

    apply({"op": "job_register", "job": normalize_job(job_from_hcl(JOB))})
    schedule()
    healthy_all()
    schedule()
    (d0,) = st["deployments"].values()
    assert d0["Status"] == "successful"
    apply({"op": "job_register", "job": normalize_job(job_from_hcl(JOB.replace('"60"', '"61"')))})
    assert st["jobs"]["web"]["Version"] == 1
    plan = schedule()
    assert plan.desired["app"]["DestructiveUpdate"] == 1 and plan.desired["app"]["Ignore"] == 2
    assert len(plan.place) == 1 and plan.place[0]["Job"]["Version"] == 1
    assert len(schedule().place) == 0  # the new allocation is not healthy yet: the rollout waits
    healthy_all()
    assert len(schedule().place) == 1
    healthy_all()
    schedule()
    healthy_all()
    schedule()
    schedule()
    live = [a for a in st["allocs"].values() if a["DesiredStatus"] == "run"]
    assert sorted(a["Job"]["Version"] for a in live) == [1, 1, 1]
    d1 = next(d for d in st["deployments"].values() if d["JobVersion"] == 1)
    assert d1["Status"] == "successful" and d1["TaskGroups"]["app"]["HealthyAllocs"] == 3


def test_drain_fsm_events():
    st = _initial_state()
    _apply(st, {"op": "node_register", "node": _node(1)}, 1)
    _apply(st, {"op": "node_drain", "node_id": "node-1", "drain": {"Deadline": 60 * 10**9}, "meta": {"message": "m"}}, 2)
    n = st["nodes"]["node-1"]
    assert n["SchedulingEligibility"] == "ineligible" and n["DrainStrategy"]["Deadline"] == 60 * 10**9
    assert n["LastDrain"]["Status"] == "draining" and n["LastDrain"]["Meta"] == {"message": "m"}
    with pytest.raises(RPCError):
        _apply(st, {"op": "node_eligibility", "node_id": "node-1", "eligibility": "eligible"}, 3)
    _apply(st, {"op": "drain_complete", "node_id": "node-1"}, 4)
    assert n["DrainStrategy"] is None and n["LastDrain"]["Status"] == "complete"
    assert [e["Message"] for e in n["Events"]] == ["Node registered", "Node drain strategy set", "Node drain complete"]


def test_drain_moves_max_parallel_at_a_time_once_replacements_are_healthy():
    """As Nomad's drainer with the default migrate block (max_parallel 1): both allocations of a count-2 group
    sit on the drained node; one moves, the other waits until its replacement is healthy; the drain completes
    when the node runs nothing. At the deadline everything left is marked at once."""
    st, apply, schedule = _cluster(2)

    def client_reports(healthy):
        ups = [{"ID": a["ID"], "ClientStatus": "running" if a["DesiredStatus"] == "run" else "complete",
                **({"DeploymentStatus": {"Healthy": True}} if healthy and a["DesiredStatus"] == "run" else {})}
               for a in st["allocs"].values() if a["ClientStatus"] not in ("complete", "failed", "lost")]
        apply({"op": "alloc_client_update", "updates": ups})

    def running():
        return sorted(a["NodeID"] for a in st["allocs"].values()
                      if a["DesiredStatus"] == "run" and a["ClientStatus"] == "running")

    job = normalize_job(job_from_hcl(JOB.replace("count = 3", "count = 2").replace(DISTINCT, "")))
    assert job["TaskGroups"][0]["Migrate"] == {"MaxParallel": 1, "HealthCheck": "checks",
                                               "MinHealthyTime": 10 * 10**9, "HealthyDeadline": 300 * 10**9}
    apply({"op": "job_register", "job": job})
    st["nodes"]["node-2"]["SchedulingEligibility"] = "ineligible"
    schedule()
    client_reports(healthy=True)
    assert running() == ["node-1", "node-1"]
    st["nodes"]["node-2"]["SchedulingEligibility"] = "eligible"
    apply({"op": "node_drain", "node_id": "node-1", "drain": {"Deadline": 3600 * 10**9}, "meta": {}})

    marks, complete = drain_actions(st, 0)
    assert len(marks) == 1 and complete == []
    apply({"op": "alloc_transition", "alloc_ids": marks})
    schedule()
    client_reports(healthy=False)  # the replacement runs, its health not set yet
    assert running() == ["node-1", "node-2"]
    assert drain_actions(st, 0) == ([], [])  # the last one on node-1 waits for the replacement's health
    client_reports(healthy=True)
    marks, complete = drain_actions(st, 0)
    assert len(marks) == 1 and complete == []
    apply({"op": "alloc_transition", "alloc_ids": marks})
    schedule()
    client_reports(healthy=False)
    assert running() == ["node-2", "node-2"]
    assert drain_actions(st, 0) == ([], ["node-1"])
    apply({"op": "drain_complete", "node_id": "node-1"})

    # past the deadline every allocation left on a draining node is marked, healthy replacements or not
    apply({"op": "node_drain", "node_id": "node-2", "drain": {"Deadline": 10**9}, "meta": {}})
    marks, complete = drain_actions(st, 2 + time.time())
    assert len(marks) == 2 and complete == ["node-2"]
