"""Nomad stand-in: job file conversion, constraints and the placement logic (no processes)."""

from __future__ import annotations

import pytest

from sandbox.agents.net import RPCError
from sandbox.agents.nomad import NomadAgent, _apply, _initial_state, job_from_hcl, node_satisfies, normalize_job

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


def _node(i, dc="dc1", cls="web", status="ready", elig="eligible"):
    return {"ID": f"node-{i}", "Name": f"n{i}", "Datacenter": dc, "NodeClass": cls, "NodePool": "default",
            "Status": status, "SchedulingEligibility": elig, "DrainStrategy": None, "Meta": {}, "Attributes": {}}


class _FakeRaft:
    def __init__(self, state):
        self.state = state
        self.index = 0

    def apply(self, op):
        self.index += 1
        return _apply(self.state, op, self.index)


def _scheduler(state):
    agent = NomadAgent.__new__(NomadAgent)
    agent.raft = _FakeRaft(state)
    agent.log = lambda *a: None
    return agent


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
])
def test_invalid_jobs_rejected(job, needle):
    with pytest.raises(RPCError) as e:
        normalize_job(job)
    assert needle in str(e.value) and e.value.status == 400


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
    sched = _scheduler(st)
    sched.raft.apply({"op": "job_register", "job": job})
    sched._schedule(st)
    live = [a for a in st["allocs"].values() if a["DesiredStatus"] == "run"]
    # only node-1 and node-2 qualify; distinct_hosts caps placement at one per node
    assert sorted(a["NodeID"] for a in live) == ["node-1", "node-2"]
    assert sorted(a["Name"] for a in live) == ["web.app[0]", "web.app[1]"]
    # a third qualifying node gets the missing allocation
    st["nodes"]["node-7"] = _node(7)
    sched._schedule(st)
    live = [a for a in st["allocs"].values() if a["DesiredStatus"] == "run"]
    assert sorted(a["NodeID"] for a in live) == ["node-1", "node-2", "node-7"]
    # scaling down stops the highest indexes
    st["jobs"]["web"]["TaskGroups"][0]["Count"] = 1
    sched._schedule(st)
    assert [a["Name"] for a in st["allocs"].values() if a["DesiredStatus"] == "run"] == ["web.app[0]"]


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
