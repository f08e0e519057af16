"""Nomad stand-in against the HTTP API and CLI documentation, endpoint by endpoint (shape, status, headers),
on one shared cluster (a server, a client, a Consul agent for the consul {} block): evaluations, deployments
and rolling updates, allocations, job versions / plan / validate / parse, the fixed force-leave and purge,
blocking queries, scheduler and autopilot configuration, metrics, snapshots; and through python-nomad."""

from __future__ import annotations

import json
import threading
import time

import pytest

from sandbox.agents.shapes import conforms, samples

from .conftest import http, run, wait_for

S = samples("nomad")

JOB = '''
job "api" {
  datacenters = ["dc1"]
  update {
    max_parallel     = 1
    min_healthy_time = "1s"
  }
  group "g" {
    count = 2
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["600"]
      }
      kill_timeout = "1s"
    }
  }
}
'''


@pytest.fixture(scope="module")
def cluster(consul, nomad, module_agents, module_net, tmp_path_factory):
    net = module_net
    module_agents(consul, f'node_name = "cn"\ndata_dir = "data"\nserver = true\nbootstrap_expect = 1\n'
                          f'bind_addr = "{net(9)}"\nclient_addr = "{net(9)}"\nperformance {{ raft_multiplier = 1 }}\n', "consul")
    common = f'data_dir = "data"\nconsul {{\n  address = "{net(9)}:8500"\n}}\n'
    srv = module_agents(nomad, common + f'name = "s1"\nbind_addr = "{net(1)}"\nserver {{\n  enabled = true\n  bootstrap_expect = 1\n'
                                        '  heartbeat_grace = "2s"\n  min_heartbeat_ttl = "1s"\n}\n'
                                        'telemetry {\n  prometheus_metrics = true\n}\n', "s1", product="nomad")
    cli = module_agents(nomad, common + f'name = "c2"\nbind_addr = "{net(2)}"\nclient {{\n  enabled = true\n'
                                        f'  servers = ["{net(1)}:4647"]\n}}\nplugin "raw_exec" {{\n  config {{\n    enabled = true\n  }}\n}}\n'
                                        'telemetry {\n  publish_allocation_metrics = true\n}\n', "c2", product="nomad")
    s, c = f"{net(1)}:4646", f"{net(2)}:4646"
    wait_for(lambda: [n["Status"] for n in http(s, "/v1/nodes")[1]] == ["ready"], 40, what="client ready")
    jobfile = tmp_path_factory.mktemp("jobs") / "api.nomad.hcl"
    jobfile.write_text(JOB)
    env = {"NOMAD_ADDR": f"http://{s}", "NOMAD_CLI_SHOW_HINTS": "false"}
    return {"server": s, "client": c, "consul": f"{net(9)}:8500", "env": env, "jobfile": jobfile,
            "agents": {"s1": srv, "c2": cli}, "net": net}


def running(addr, job):
    st, allocs = http(addr, f"/v1/job/{job}/allocations", timeout=3)
    return [a for a in allocs if a["ClientStatus"] == "running" and a["DesiredStatus"] == "run"] if st == 200 else []


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pids(agent):
    f = agent.workdir / "data" / "client" / "allocs.json"
    out = {}
    for aid, r in (json.loads(f.read_text()).items() if f.exists() else []):
        out[aid] = list((r.get("pids") or {}).values())
    return out


def test_job_lifecycle_evaluations_deployments_versions(cluster, nomad):
    s, env = cluster["server"], cluster["env"]
    r = run(nomad, "job", "validate", str(cluster["jobfile"]), env=env)
    assert r.returncode == 0 and r.stdout.strip() == "Job validation successful"
    r = run(nomad, "job", "plan", str(cluster["jobfile"]), env=env)
    assert r.returncode == 1, r.stderr  # allocations would be created
    assert r.stdout.splitlines()[:3] == ['+ Job: "api"', '+ Task Group: "g" (2 create)', '  + Task: "t" (forces create)']
    assert "- All tasks successfully allocated." in r.stdout and "Job Modify Index: 0" in r.stdout
    assert run(nomad, "job", "run", str(cluster["jobfile"]), env=env, timeout=60).returncode == 0
    wait_for(lambda: len(running(s, "api")) == 2, 30, what="2 running allocations")
    dep = wait_for(lambda: (lambda d: d if d and d["Status"] == "successful" else None)(http(s, "/v1/job/api/deployment")[1]),
                   30, what="deployment successful")
    assert dep["StatusDescription"] == "Deployment completed successfully" and dep["TaskGroups"]["g"]["HealthyAllocs"] == 2
    # an unchanged job plans to nothing (exit 0) and registers without a new version
    r = run(nomad, "job", "plan", str(cluster["jobfile"]), env=env)
    assert r.returncode == 0 and r.stdout.startswith('Job: "api"')
    # a changed task: a rolling update, one allocation at a time, a new deployment
    changed = cluster["jobfile"].with_name("api2.nomad.hcl")
    changed.write_text(JOB.replace('"600"', '"601"'))
    r = run(nomad, "job", "plan", str(changed), env=env)
    assert r.returncode == 1 and '+/- Task Group: "g" (1 create/destroy update, 1 ignore)' in r.stdout
    idx = int(r.stdout.split("Job Modify Index: ")[1].split()[0])
    r = run(nomad, "job", "run", "-check-index", str(idx + 1000), str(changed), env=env)
    assert r.returncode == 1 and "job exists with conflicting job modify index" in r.stderr
    assert run(nomad, "job", "run", "-detach", "-check-index", str(idx), str(changed), env=env).returncode == 0
    wait_for(lambda: sorted(a["JobVersion"] for a in running(s, "api")) == [1, 1], 40, what="rolled to version 1")
    deps = wait_for(lambda: (lambda ds: ds if ds[0]["Status"] == "successful" else None)(http(s, "/v1/job/api/deployments")[1]),
                    30, what="second deployment successful")
    assert [d["JobVersion"] for d in deps] == [1, 0]
    # the documented shapes, headers included
    st, versions, h = http(s, "/v1/job/api/versions", headers=True)
    assert st == 200 and conforms(S["GET /v1/job/:job_id/versions"], versions) == []
    assert [v["Version"] for v in versions["Versions"]] == [1, 0] and versions["Versions"][0]["Stable"] is True
    assert int(h["X-Nomad-Index"]) > 0 and h["X-Nomad-KnownLeader"] == "true"
    allocs = http(s, "/v1/job/api/allocations")[1]
    eval_id = http(s, "/v1/job/api/evaluations")[1][0]["ID"]
    alloc_id = allocs[0]["ID"]
    checks = {"GET /v1/evaluations": "/v1/evaluations", "GET /v1/evaluation/:eval_id": f"/v1/evaluation/{eval_id}",
              "GET /v1/evaluation/:eval_id/allocations": f"/v1/evaluation/{eval_id}/allocations",
              "GET /v1/deployments": "/v1/deployments", "GET /v1/deployment/:deployment_id": f"/v1/deployment/{deps[0]['ID']}",
              "GET /v1/deployment/allocations/:deployment_id": f"/v1/deployment/allocations/{deps[0]['ID']}",
              "GET /v1/allocations": "/v1/allocations", "GET /v1/allocation/:alloc_id": f"/v1/allocation/{alloc_id}",
              "GET /v1/job/:job_id": "/v1/job/api", "GET /v1/job/:job_id/evaluations": "/v1/job/api/evaluations",
              "GET /v1/job/:job_id/deployments": "/v1/job/api/deployments", "GET /v1/job/:job_id/deployment": "/v1/job/api/deployment",
              "GET /v1/job/:job_id/summary": "/v1/job/api/summary", "GET /v1/job/:job_id/allocations": "/v1/job/api/allocations"}
    for key, path in checks.items():
        st, body, h = http(s, path, headers=True)
        assert st == 200 and conforms(S[key], body) == [], (key, conforms(S[key], body))
        assert int(h["X-Nomad-Index"]) > 0, key
    evs = http(s, "/v1/job/api/evaluations")[1]
    assert {e["TriggeredBy"] for e in evs} >= {"job-register"} and all(e["Status"] == "complete" for e in evs)
    assert http(s, "/v1/allocation/nope")[0] == 404
    # parse and validate endpoints
    st, parsed = http(s, "/v1/jobs/parse", "POST", {"JobHCL": JOB, "Canonicalize": True})
    assert st == 200 and conforms(S["POST /v1/jobs/parse"], parsed) == [] and parsed["TaskGroups"][0]["Update"]["MaxParallel"] == 1
    st, v = http(s, "/v1/validate/job", "POST", {"Job": dict(parsed, TaskGroups=[dict(parsed["TaskGroups"][0], Tasks=[
        dict(parsed["TaskGroups"][0]["Tasks"][0], Driver="docker")])])})
    assert st == 200 and conforms(S["POST /v1/validate/job"], v) == [] and "docker" in v["Error"]
    bad = cluster["jobfile"].with_name("bad.nomad.hcl")
    bad.write_text(JOB.replace('"raw_exec"', '"docker"'))
    r = run(nomad, "job", "validate", str(bad), env=env)
    assert r.returncode == 1 and "Job validation errors:" in r.stderr and "docker" in r.stderr


def _register(s, jid, count):
    job = http(s, "/v1/jobs/parse", "POST", {"JobHCL": JOB.replace('"api"', f'"{jid}"').replace("count = 2", f"count = {count}")})[1]
    assert http(s, "/v1/jobs", "POST", {"Job": job})[0] == 200


def test_blocking_query_and_alloc_stop(cluster):
    s = cluster["server"]
    _register(s, "blk", 2)
    wait_for(lambda: len(running(s, "blk")) == 2, 30, what="job running")
    st, _b, h = http(s, "/v1/job/blk/allocations", headers=True)
    idx = int(h["X-Nomad-Index"])
    t0 = time.monotonic()
    st, _b, h = http(s, f"/v1/job/blk/allocations?index={idx}&wait=300ms", headers=True)
    assert st == 200 and int(h["X-Nomad-Index"]) == idx and time.monotonic() - t0 >= 0.3
    # a client agent forwards the blocking query to the servers: same index, same wait
    c = cluster["client"]
    t0 = time.monotonic()
    st, _b, h = http(c, f"/v1/job/blk/allocations?index={idx}&wait=300ms", headers=True)
    assert st == 200 and int(h["X-Nomad-Index"]) == idx and time.monotonic() - t0 >= 0.3
    victim = running(s, "blk")[0]
    threading.Timer(0.5, lambda: http(s, f"/v1/allocation/{victim['ID']}/stop", "POST")).start()
    st, allocs, h = http(s, f"/v1/job/blk/allocations?index={idx}&wait=20s", headers=True, timeout=30)
    assert int(h["X-Nomad-Index"]) > idx
    wait_for(lambda: {a["ID"]: a for a in http(s, "/v1/job/blk/allocations")[1]}[victim["ID"]]["DesiredStatus"] == "stop",
             15, what="stopped allocation")
    new = wait_for(lambda: [a for a in running(s, "blk") if a["ID"] != victim["ID"] and a.get("PreviousAllocation") == victim["ID"]],
                   30, what="replacement allocation")
    assert new and len(running(s, "blk")) <= 2
    assert http(s, "/v1/job/blk/allocations?index=x") == (400, "Invalid index")
    assert http(s, "/v1/job/blk/allocations?index=1&wait=x") == (400, "Invalid wait time")
    assert http(s, "/v1/no/such") == (404, "404 page not found\n")
    assert http(s, "/v1/job/blk/summary", "DELETE") == (405, "Invalid method")
    assert http(s, "/v1/job/blk?purge=true", "DELETE")[0] == 200


@pytest.mark.parametrize("purge", ["True", "1"])
def test_purge_stops_task_processes(cluster, nomad, purge):
    """Regression: DELETE /v1/job/<id>?purge=<ParseBool true> removes the job and stops its task processes;
    ?purge=<not a bool> is an error."""
    s = cluster["server"]
    jid = f"purge{purge}"
    body = {"Job": json.loads(json.dumps(http(s, "/v1/jobs/parse", "POST", {"JobHCL": JOB.replace('"api"', f'"{jid}"').replace(
        "count = 2", "count = 1")})[1]))}
    assert http(s, "/v1/jobs", "POST", body)[0] == 200
    (alloc,) = wait_for(lambda: running(s, jid) or None, 30, what="purge job running")
    pids = wait_for(lambda: _pids(cluster["agents"]["c2"]).get(alloc["ID"]), 10, what="task pid")
    assert all(pid_alive(p) for p in pids)
    st, msg = http(s, f"/v1/job/{jid}?purge=maybe", "DELETE")
    assert st == 500 and 'Failed to parse value of "purge" (maybe) as a bool' in msg
    st, out = http(s, f"/v1/job/{jid}?purge={purge}", "DELETE")
    assert st == 200 and conforms(S["DELETE /v1/job/:job_id"], out) == []
    assert http(s, f"/v1/job/{jid}")[0] == 404
    wait_for(lambda: not any(pid_alive(p) for p in pids), 20, what="purged job's task stopped")


def test_force_leave_keeps_the_receiving_agent(cluster, nomad, module_agents):
    """Regression: force-leave of a dead server removes that member; the agent that received it stays up."""
    s, net = cluster["server"], cluster["net"]
    extra = module_agents(nomad, f'name = "s3"\ndata_dir = "data"\nbind_addr = "{net(3)}"\nserver {{\n  enabled = true\n'
                                 f'  bootstrap_expect = 1\n  server_join {{\n    retry_join = ["{net(1)}"]\n    retry_interval = "1s"\n  }}\n}}\n'
                                 'consul {\n  auto_advertise = false\n  server_auto_join = false\n}\n', "s3", product="nomad")
    wait_for(lambda: "s3.global" in [m["Name"] for m in http(s, "/v1/agent/members")[1]["Members"]], 20, what="s3 joined")
    extra.kill()
    wait_for(lambda: {m["Name"]: m["Status"] for m in http(s, "/v1/agent/members")[1]["Members"]}["s3.global"] == "failed",
             20, what="s3 failed")
    r = run(nomad, "server", "force-leave", "s3.global", env=cluster["env"])
    assert r.returncode == 0, r.stderr
    wait_for(lambda: {m["Name"]: m["Status"] for m in http(s, "/v1/agent/members")[1]["Members"]}["s3.global"] == "left",
             10, what="s3 left")
    time.sleep(1)
    assert cluster["agents"]["s1"].alive() and http(s, "/v1/agent/self")[0] == 200
    assert http(s, "/v1/agent/force-leave?node=s3.global&prune=true", "PUT") == (200, None)
    wait_for(lambda: "s3.global" not in [m["Name"] for m in http(s, "/v1/agent/members")[1]["Members"]], 10, what="pruned")
    assert http(s, "/v1/agent/force-leave", "PUT") == (400, "missing node to force leave")
    assert http(s, "/v1/agent/force-leave?node=x&prune=perhaps", "PUT") == (400, "invalid prune value")
    assert http(cluster["client"], "/v1/agent/force-leave?node=x", "PUT")[0] == 501
    assert cluster["agents"]["s1"].alive()


def test_operator_scheduler_autopilot_metrics(cluster, nomad):
    s, env = cluster["server"], cluster["env"]
    _register(s, "met", 0)
    st, cfg = http(s, "/v1/operator/scheduler/configuration")
    assert st == 200 and conforms(S["GET /v1/operator/scheduler/configuration"], cfg) == []
    sc = cfg["SchedulerConfig"]
    assert sc["SchedulerAlgorithm"] == "binpack"
    st, r = http(s, f"/v1/operator/scheduler/configuration?cas={sc['ModifyIndex'] + 5}", "PUT", dict(sc, SchedulerAlgorithm="spread"))
    assert st == 200 and r["Updated"] is False
    r = run(nomad, "operator", "scheduler", "set-config", "-scheduler-algorithm=spread", env=env)
    assert r.returncode == 0 and r.stdout.strip() == "Scheduler configuration updated!"
    assert "Scheduler Algorithm            = spread" in run(nomad, "operator", "scheduler", "get-config", env=env).stdout
    run(nomad, "operator", "scheduler", "set-config", "-scheduler-algorithm=binpack", env=env)
    st, ap = http(s, "/v1/operator/autopilot/configuration")
    assert st == 200 and conforms(S["GET /v1/operator/autopilot/configuration"], ap) == []
    assert http(s, f"/v1/operator/autopilot/configuration?cas={ap['ModifyIndex'] + 3}", "PUT", ap) == (200, False)
    r = run(nomad, "operator", "autopilot", "set-config", "-max-trailing-logs=300", env=env)
    assert r.returncode == 0 and r.stdout.strip() == "Configuration updated!"
    assert "MaxTrailingLogs = 300" in run(nomad, "operator", "autopilot", "get-config", env=env).stdout.splitlines()
    r = run(nomad, "operator", "autopilot", "health", env=env)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[:2] == ["Healthy: true", "FailureTolerance: 0"]
    assert any(ln.split()[:3] == ["ID", "Name", "Address"] for ln in lines)
    h = json.loads(run(nomad, "operator", "autopilot", "health", "-json", env=env).stdout)
    assert h["Healthy"] is True and h["Servers"][0]["Leader"] is True
    st, m = http(s, "/v1/metrics")
    assert st == 200 and {"Timestamp", "Gauges", "Counters", "Samples", "Points"} <= set(m)
    assert any(g["Name"] == "nomad.nomad.job_summary.running" for g in m["Gauges"])
    st, text = http(s, "/v1/metrics?format=prometheus")
    assert st == 200 and "nomad_runtime_num_goroutines" in text
    assert http(cluster["client"], "/v1/metrics?format=prometheus") == (415, "Prometheus is not enabled")
    assert any(g["Name"] == "nomad.client.allocations.running" for g in http(cluster["client"], "/v1/metrics")[1]["Gauges"])
    info = run(nomad, "agent-info", env=env).stdout
    for k in ("commit_index", "last_log_index", "applied_index", "last_contact"):
        assert f"  {k} = " in info, k


def test_snapshot_save_inspect_restore(cluster, nomad, tmp_path):
    s, env = cluster["server"], cluster["env"]
    _register(s, "snapjob", 0)
    f = tmp_path / "n.snap"
    r = run(nomad, "operator", "snapshot", "save", str(f), env=env)
    assert r.returncode == 0 and r.stdout.strip() == f"State file written to {f}"
    assert run(nomad, "operator", "snapshot", "save", str(f), env=env).returncode == 1  # no overwrite
    r = run(nomad, "operator", "snapshot", "inspect", str(f), env=env)
    assert r.returncode == 0 and [ln.split()[0] for ln in r.stdout.splitlines()[:6]] == ["Created", "ID", "Size", "Index", "Term", "Version"]
    assert any(ln.split()[:1] == ["Job"] for ln in r.stdout.splitlines())
    before = sorted(j["ID"] for j in http(s, "/v1/jobs")[1])
    extra = {"Job": dict(http(s, "/v1/jobs/parse", "POST", {"JobHCL": JOB.replace('"api"', '"later"').replace("count = 2", "count = 0")})[1])}
    assert http(s, "/v1/jobs", "POST", extra)[0] == 200
    r = run(nomad, "operator", "snapshot", "restore", str(f), env=env)
    assert r.returncode == 0 and r.stdout.strip() == "Snapshot Restored"
    assert sorted(j["ID"] for j in http(s, "/v1/jobs")[1]) == before


def test_consul_block_registers_agent_services(cluster):
    """Nomad's consul {} block: servers register "nomad" (rpc, serf, http), clients "nomad-client" (http), with
    the checks Nomad uses; they turn passing in Consul."""
    c = cluster["consul"]
    svcs = wait_for(lambda: (lambda x: x if {"nomad", "nomad-client"} <= set(x) else None)(http(c, "/v1/catalog/services")[1]),
                    30, what="nomad services in consul")
    assert sorted(svcs["nomad"]) == ["http", "rpc", "serf"] and svcs["nomad-client"] == ["http"]
    rows = wait_for(lambda: (lambda r: r if len(r) == 3 else None)(http(c, "/v1/health/service/nomad?passing")[1]), 40,
                    what="nomad server checks passing")
    names = sorted(ch["Name"] for r in rows for ch in r["Checks"] if ch["CheckID"] != "serfHealth")
    assert names == ["Nomad Server HTTP Check", "Nomad Server RPC Check", "Nomad Server Serf Check"]
    assert all(r["Service"]["ID"].startswith("_nomad-server-") for r in rows)
    rpc = next(r for r in rows if "rpc" in r["Service"]["Tags"])
    assert f'{rpc["Service"]["Address"]}:{rpc["Service"]["Port"]}' == f"{cluster['net'](1)}:4647"
    wait_for(lambda: http(c, "/v1/health/service/nomad-client?passing")[1], 40, what="nomad client check passing")


def test_python_nomad_client(cluster):
    nomad_client = pytest.importorskip("nomad")
    host, port = cluster["server"].split(":")
    n = nomad_client.Nomad(host=host, port=int(port), timeout=10)
    assert n.status.leader.get_leader().endswith(":4647")
    assert [x["Status"] for x in n.nodes.get_nodes()] == ["ready"]
    job = n.jobs.parse(JOB.replace('"api"', '"pyjob"').replace("count = 2", "count = 1"))
    r = n.job.register_job("pyjob", {"Job": job})
    assert r["EvalID"]
    wait_for(lambda: [a for a in n.job.get_allocations("pyjob") if a["ClientStatus"] == "running"], 30, what="python-nomad job runs")
    assert n.job.get_job("pyjob")["ID"] == "pyjob"
    assert n.evaluation.get_evaluation(r["EvalID"])["Status"] == "complete"
    assert [v["Version"] for v in n.job.get_versions("pyjob")["Versions"]] == [0]
    assert n.deployments.get_deployments()
    assert n.operator.get_configuration()["Servers"][0]["Leader"] is True
    n.job.deregister_job("pyjob", purge=True)
    wait_for(lambda: "pyjob" not in [j["ID"] for j in n.jobs.get_jobs()], 10, what="job purged")
