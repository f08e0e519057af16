"""Nomad stand-in: servers + clients, job placement as real processes, drain, rescheduling, API shapes, CLI."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from sandbox.agents.shapes import conforms

from .conftest import http, run, wait_for


def server_cfg(net, i, expect=3, region="global", join=(1, 2, 3), encrypt=None):
    rj = ", ".join(f'"{net(j)}"' for j in join if j != i)
    enc = f'  encrypt = "{encrypt}"\n' if encrypt else ""
    return f'''
name = "s{i}"
region = "{region}"
data_dir = "data"
bind_addr = "{net(i)}"
server {{
  enabled = true
  bootstrap_expect = {expect}
  heartbeat_grace = "2s"
  min_heartbeat_ttl = "1s"
{enc}  server_join {{
    retry_join = [{rj}]
    retry_interval = "1s"
  }}
}}
autopilot {{
  server_stabilization_time = "3s"
}}
consul {{
  address = "{net(250)}:8500"
}}
'''


def client_cfg(net, i, servers=(1, 2, 3), region="global", node_class="web"):
    sv = ", ".join(f'"{net(j)}:4647"' for j in servers)
    return f'''
name = "c{i}"
region = "{region}"
data_dir = "data"
bind_addr = "{net(i)}"
client {{
  enabled = true
  node_class = "{node_class}"
  servers = [{sv}]
  meta {{
    rack = "r{i}"
  }}
}}
plugin "raw_exec" {{
  config {{
    enabled = true
  }}
}}
consul {{
  address = "{net(250)}:8500"
}}
'''


JOB = '''
job "web" {
  datacenters = ["dc1"]
  type = "service"
  group "app" {
    count = 3
    task "server" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args = ["-c", "echo $NOMAD_ALLOC_ID > $NOMAD_ALLOC_DIR/started; exec sleep 600"]
      }
      kill_timeout = "2s"
    }
  }
}
'''


def running(addr, job="web"):
    st, allocs = http(addr, f"/v1/job/{job}/allocations", timeout=3)
    return [a for a in allocs if a["ClientStatus"] == "running" and a["DesiredStatus"] == "run"] if st == 200 else []


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def alloc_pids(client_agent):
    f = client_agent.workdir / "data" / "client" / "allocs.json"
    return {k: v["pid"] for k, v in json.loads(f.read_text()).items() if v.get("status") == "running"} if f.exists() else {}


@pytest.mark.slow
def test_nomad_cluster_jobs_drain_reschedule(nomad, agents, net, api_samples, cli_ref, tmp_path):
    servers = [agents(nomad, server_cfg(net, i), f"s{i}", product="nomad") for i in (1, 2, 3)]
    clients = {i: agents(nomad, client_cfg(net, i), f"c{i}", product="nomad") for i in (4, 5)}
    a1 = f"{net(1)}:4646"
    env = {"NOMAD_ADDR": f"http://{a1}", "NOMAD_CLI_SHOW_HINTS": "false"}

    leader = wait_for(lambda: http(a1, "/v1/status/leader", timeout=2)[1], 30, what="leader")
    wait_for(lambda: len([n for n in http(a1, "/v1/nodes")[1] if n["Status"] == "ready"]) == 2, 30, what="2 ready nodes")

    # --- CLI formats
    r = run(nomad, "server", "members", env=env)
    lines = r.stdout.splitlines()
    assert r.returncode == 0
    assert [h.strip() for h in _split_cols(lines[0])] == cli_ref["nomad"]["server members"]["headers"]
    rows = [ln.split() for ln in lines[1:]]
    assert sorted(r_[0] for r_ in rows) == ["s1.global", "s2.global", "s3.global"]
    assert sum(r_[4] == "true" for r_ in rows) == 1 and {r_[6] for r_ in rows} == {"1.9.3"}
    r = run(nomad, "node", "status", env=env)
    lines = r.stdout.splitlines()
    assert _split_cols(lines[0]) == cli_ref["nomad"]["node status"]["headers"]
    assert sorted(ln.split()[3] for ln in lines[1:]) == ["c4", "c5"]
    assert all(ln.split()[4:] == ["web", "false", "eligible", "ready"] for ln in lines[1:])
    r = run(nomad, "operator", "raft", "list-peers", env=env)
    assert r.stdout.splitlines()[0].split() == cli_ref["nomad"]["operator raft list-peers"]["source_headers"]

    # --- a service job with count 3 runs as real processes
    jf = tmp_path / "web.nomad.hcl"
    jf.write_text(JOB)
    r = run(nomad, "job", "run", str(jf), env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    allocs = wait_for(lambda: (lambda x: x if len(x) == 3 else None)(running(a1)), 30, what="3 running allocs")
    for a in allocs:
        c = clients[int(a["NodeName"][1:])]
        started = c.workdir / "data" / "alloc" / a["ID"] / "started"
        wait_for(lambda s=started: s.exists(), 10, what="task wrote its marker")
        assert started.read_text().strip() == a["ID"]
    pids = {}
    for c in clients.values():
        pids.update(alloc_pids(c))
    assert len(pids) == 3 and all(pid_alive(p) for p in pids.values())
    st = run(nomad, "job", "status", "web", env=env).stdout
    assert [ln.split("=")[1].strip() for ln in st.splitlines() if ln.startswith("Status ")] == ["running"]

    # --- every response has the documented keys and types
    node_id = http(a1, "/v1/nodes")[1][0]["ID"]
    smp = api_samples["nomad"]
    checks = {
        "GET /v1/status/leader": http(a1, "/v1/status/leader"),
        "GET /v1/status/peers": http(a1, "/v1/status/peers"),
        "GET /v1/agent/self": http(a1, "/v1/agent/self"),
        "GET /v1/agent/members": http(a1, "/v1/agent/members"),
        "GET /v1/operator/raft/configuration": http(a1, "/v1/operator/raft/configuration"),
        "GET /v1/operator/autopilot/health": http(a1, "/v1/operator/autopilot/health"),
        "GET /v1/nodes": http(a1, "/v1/nodes"),
        "GET /v1/node/:node_id": http(a1, f"/v1/node/{node_id}"),
        "GET /v1/node/:node_id/allocations": http(a1, f"/v1/node/{allocs[0]['NodeID']}/allocations"),
        "POST /v1/node/:node_id/eligibility": http(a1, f"/v1/node/{node_id}/eligibility", "POST", {"Eligibility": "eligible"}),
        "GET /v1/jobs": http(a1, "/v1/jobs"),
        "GET /v1/job/:job_id/allocations": http(a1, "/v1/job/web/allocations"),
        # re-registering the unchanged job and unsetting a drain that was never set are both harmless
        "POST /v1/jobs": http(a1, "/v1/jobs", "POST", {"Job": http(a1, "/v1/job/web")[1]}),
        "POST /v1/node/:node_id/drain": http(a1, f"/v1/node/{node_id}/drain", "POST", {"DrainSpec": None, "MarkEligible": True}),
    }
    for key, (status, body) in checks.items():
        assert status == 200, (key, status, body)
        assert conforms(smp[key], body) == [], key
    # agent/health: a server reports "server", a client "client" (the docs sample shows a dev agent with both)
    for addr, part in ((a1, "server"), (f"{net(4)}:4646", "client")):
        status, body = http(addr, "/v1/agent/health")
        assert status == 200 and list(body) == [part] and body[part]["ok"] is True
        assert conforms(smp["GET /v1/agent/health"][part], body[part]) == []
    assert checks["GET /v1/agent/self"][1]["config"]["Version"] == "1.9.3"
    assert {m["Tags"]["build"] for m in checks["GET /v1/agent/members"][1]["Members"]} == {"1.9.3"}
    assert checks["GET /v1/jobs"][1][0]["JobSummary"]["Summary"]["app"]["Running"] == 3
    client_self = http(f"{net(4)}:4646", "/v1/agent/self")[1]
    client_node = client_self["stats"]["client"]["node_id"]

    # --- draining a node migrates its allocations to the other node
    by_node = {}
    for a in allocs:
        by_node.setdefault(a["NodeID"], []).append(a)
    busy = max(by_node, key=lambda n: len(by_node[n]))
    other = next(n["ID"] for n in http(a1, "/v1/nodes")[1] if n["ID"] != busy)
    r = run(nomad, "node", "drain", "-enable", "-yes", "-deadline", "30s", busy, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f'Node "{busy}" drain strategy set' in r.stdout
    assert f'All allocations on node "{busy}" have stopped.' in r.stdout
    moved = wait_for(lambda: (lambda x: x if len(x) == 3 and {a["NodeID"] for a in x} == {other} else None)(running(a1)),
                     30, what="allocations migrated")
    assert not set(a["ID"] for a in moved) & set(a["ID"] for a in by_node[busy])
    for a in by_node[busy]:
        wait_for(lambda p=pids[a["ID"]]: not pid_alive(p), 15, what="drained task stopped")
    node = http(a1, f"/v1/node/{busy}")[1]
    assert node["SchedulingEligibility"] == "ineligible" and node["DrainStrategy"] is None
    assert node["LastDrain"]["Status"] == "complete"
    r = run(nomad, "node", "eligibility", "-enable", busy, env=env)
    assert r.returncode == 0
    assert r.stdout.strip() == f'Node "{busy}" scheduling eligibility set: eligible for scheduling'

    # --- a client gone longer than the heartbeat grace: its allocations are rescheduled
    dead = next(c for c in clients.values() if _node_id(c) == other)
    survivor_node = busy
    dead.kill()
    wait_for(lambda: http(a1, f"/v1/node/{other}")[1]["Status"] == "down", 30, what="node down")
    resched = wait_for(lambda: (lambda x: x if len(x) == 3 and {a["NodeID"] for a in x} == {survivor_node} else None)(running(a1)),
                       30, what="allocations rescheduled")
    lost = [a for a in http(a1, "/v1/job/web/allocations")[1] if a["ClientStatus"] == "lost"]
    assert len(lost) == 3
    assert all(a["PreviousAllocation"] for a in resched)

    # --- the client comes back with the same node id and stops its lost allocations
    old_pids = alloc_pids(dead)
    dead.start()
    wait_for(lambda: http(a1, f"/v1/node/{other}")[1]["Status"] == "ready", 30, what="node ready again")
    for p in old_pids.values():
        wait_for(lambda p=p: not pid_alive(p), 15, what="lost allocation killed after restart")
    assert client_node in (busy, other)

    # --- leadership transfer (the upgrade path): to a chosen voter by id, then by address, without an election wait
    peers = http(a1, "/v1/operator/raft/configuration")[1]["Servers"]
    target = next(p for p in peers if not p["Leader"])
    r = run(nomad, "operator", "raft", "transfer-leadership", f"-peer-id={target['ID']}", env=env)
    assert r.returncode == 0 and r.stdout.strip() == f'Transferred leadership to peer with id "{target["ID"]}"'
    wait_for(lambda: http(a1, "/v1/status/leader", timeout=2)[1] == target["Address"], 15, what="leadership on the chosen peer")
    back = next(p for p in peers if p["Address"] == leader)
    r = run(nomad, "operator", "raft", "transfer-leadership", f"-peer-address={back['Address']}", env=env)
    assert r.returncode == 0 and r.stdout.strip() == f'Transferred leadership to peer with address "{back["Address"]}"'
    wait_for(lambda: http(a1, "/v1/status/leader", timeout=2)[1] == leader, 15, what="leadership back")
    assert run(nomad, "operator", "raft", "transfer-leadership", env=env).returncode == 1
    raft = http(a1, "/v1/agent/self")[1]["stats"]["raft"]
    assert int(raft["commit_index"]) > 0 and int(raft["last_log_index"]) >= int(raft["commit_index"])

    # --- leader loss: a new leader, the job is still there
    lead_srv = next(s for s, i in zip(servers, (1, 2, 3), strict=True) if f"{net(i)}:4647" == leader)
    lead_srv.kill()
    alive_api = next(f"{net(i)}:4646" for s, i in zip(servers, (1, 2, 3), strict=True) if s is not lead_srv)
    wait_for(lambda: (lambda x: x and x != leader)(http(alive_api, "/v1/status/leader", timeout=2)[1]), 15, what="new leader")
    # a server that just learned the new leader may still answer 500 (no leader yet established,
    # as Nomad does right after an election): the job list is read once the cluster serves it
    jobs = wait_for(lambda: (lambda r: r[1] if r[0] == 200 else None)(http(alive_api, "/v1/jobs", timeout=3)),
                    15, what="job list after the election")
    assert [j["ID"] for j in jobs] == ["web"]
    r = run(nomad, "job", "stop", "web", env={"NOMAD_ADDR": f"http://{alive_api}"})
    assert r.returncode == 0
    for c in clients.values():
        for p in alloc_pids(c).values():
            wait_for(lambda p=p: not pid_alive(p), 15, what="stopped job's tasks exit")


def _split_cols(line):
    import re
    return [c for c in re.split(r"\s{2,}", line.strip()) if c]


def _task_pids(client_agent):
    f = client_agent.workdir / "data" / "client" / "allocs.json"
    (r,) = [r for r in json.loads(f.read_text()).values() if r["status"] == "running"]
    return r["pids"]


def _node_id(client_agent):
    return (client_agent.workdir / "data" / "client" / "client-id").read_text().strip()


def test_nomad_region_mismatch_refused(nomad, agents, net):
    a = agents(nomad, server_cfg(net, 1, expect=1, join=()), "a", product="nomad")
    wait_for(lambda: http(f"{net(1)}:4646", "/v1/status/leader", timeout=2)[1], 20, what="leader")
    b = agents(nomad, server_cfg(net, 2, expect=1, region="europe", join=(1,)), "b", product="nomad")
    c = agents(nomad, client_cfg(net, 3, servers=(1,), region="europe"), "c", product="nomad")
    wait_for(lambda: "wrong region" in b.log, 20, what="region refusal logged by the joining server")
    wait_for(lambda: "region mismatch" in c.log, 20, what="client registration refused")
    assert "part of wrong region 'europe'" in a.log
    members = http(f"{net(1)}:4646", "/v1/agent/members")[1]["Members"]
    assert [m["Name"] for m in members] == ["s1.global"]
    assert http(f"{net(1)}:4646", "/v1/nodes")[1] == []
    assert os.path.exists(Path(a.workdir) / "data" / "server" / "node-id")
    assert http(f"{net(1)}:4646", "/v1/regions")[1] == ["global"]
    assert http(f"{net(1)}:4646", "/v1/agent/servers")[1] == [f"{net(1)}:4647"]
    assert json.loads(run(nomad, "node", "status", "-json", env={"NOMAD_ADDR": f"http://{net(1)}:4646"}).stdout) == []
    info = run(nomad, "agent-info", env={"NOMAD_ADDR": f"http://{net(1)}:4646"}).stdout.splitlines()
    assert "nomad" in info and "  leader = true" in info and "raft" in info
    a.stop(signal.SIGTERM)


def test_client_drain_on_shutdown_and_cloud_auto_join(nomad, agents, net, tmp_path):
    from sandbox.agents.testing import SUB, FakeAzure, nic

    fake = FakeAzure([], [nic("vm0", net(1))])
    env = {"HASHISTACK_SANDBOX_IMDS_URL": fake.url, "HASHISTACK_SANDBOX_ARM_URL": fake.url}
    agents(nomad, server_cfg(net, 1, expect=1, join=()), "s", product="nomad")
    extra = ('\nleave_on_terminate = true\nclient {\n  drain_on_shutdown {\n    deadline = "20s"\n  }\n'
             f'  server_join {{\n    retry_join = ["provider=azure resource_group=rg1 vm_scale_set=servers subscription_id={SUB}"]\n'
             '    retry_interval = "1s"\n  }\n}\n')
    c = agents(nomad, client_cfg(net, 2, servers=()) + extra, "c", product="nomad", env=env)
    a1 = f"{net(1)}:4646"
    wait_for(lambda: [n["Status"] for n in http(a1, "/v1/nodes")[1]] == ["ready"], 30, what="client ready")
    job = tmp_path / "one.hcl"
    sidecar = '    task "sidecar" {\n      driver = "raw_exec"\n      config {\n        command = "/bin/sleep"\n        args = ["600"]\n      }\n    }\n'
    job.write_text(JOB.replace("count = 3", "count = 1").replace('    task "server" {', sidecar + '    task "server" {'))
    assert run(nomad, "job", "run", "-detach", str(job), env={"NOMAD_ADDR": f"http://{a1}"}).returncode == 0
    wait_for(lambda: len(running(a1)) == 1, 30, what="alloc running")
    pids = _task_pids(c)
    assert sorted(pids) == ["server", "sidecar"] and all(pid_alive(p) for p in pids.values())
    # a task that exits non-zero: the allocation fails (and is replaced after a delay)
    bad = tmp_path / "bad.hcl"
    bad.write_text(JOB.replace('job "web"', 'job "bad"').replace("count = 3", "count = 1")
                   .replace('"echo $NOMAD_ALLOC_ID > $NOMAD_ALLOC_DIR/started; exec sleep 600"', '"exit 3"'))
    assert run(nomad, "job", "run", "-detach", str(bad), env={"NOMAD_ADDR": f"http://{a1}"}).returncode == 0
    failed = wait_for(lambda: [a for a in http(a1, "/v1/job/bad/allocations")[1] if a["ClientStatus"] == "failed"], 20,
                      what="failed allocation")
    assert failed[0]["TaskStates"]["server"]["Failed"] is True
    assert http(a1, "/v1/job/bad", "DELETE")[0] == 200
    assert c.stop(signal.SIGTERM, timeout=40) == 0
    assert "draining node on shutdown" in c.log
    assert not any(pid_alive(p) for p in pids.values())
    node = http(a1, "/v1/nodes")[1][0]
    assert node["SchedulingEligibility"] == "ineligible"
    assert [a["ClientStatus"] for a in http(a1, "/v1/job/web/allocations")[1]] == ["complete"]
    assert any(p.endswith("/virtualMachineScaleSets/servers/networkInterfaces") for p, _q, _h in fake.requests)
    fake.close()
