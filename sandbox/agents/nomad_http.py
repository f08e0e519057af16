"""Nomad's HTTP API: the route table (with the ACL capability each endpoint needs, per the API docs),
the read views of the replicated state served as blocking queries, and agent/self."""

from __future__ import annotations

import base64
import json
import os
import threading
import time

from . import nomad_acl, snapshot
from .config import format_duration, parse_duration
from .httpapi import HTTPError, Routes, canon, parse_bool
from .metrics import process_gauges
from .net import Response, RPCError
from .nomad import TERMINAL, NomadAgent, _multierror, job_errors, job_from_hcl, new_eval, normalize_job, plan_job
from .shapes import fill, sample

ROUTES = Routes()
route = ROUTES.add


# ---------------------------------------------------------------- response shapes

def _stub_node(n):
    keys = list(sample("nomad", "GET /v1/nodes")[0].keys())
    out = {k: n.get(k) for k in keys}
    out["Address"] = n.get("Address") or n.get("HTTPAddr", "").rsplit(":", 1)[0]
    out["Version"] = n.get("Version", "")
    out["Drivers"] = n.get("Drivers") or {}
    out["Attributes"] = {"os.name": "debian", "nomad.version": n.get("Version", "")}
    return fill(out, sample("nomad", "GET /v1/nodes")[0])


_ALLOC_LISTS = ("GET /v1/job/:job_id/allocations", "GET /v1/allocations", "GET /v1/evaluation/:eval_id/allocations",
                "GET /v1/deployment/allocations/:deployment_id")


def _stub_alloc(a):
    """AllocListStub: the fields every documented allocation list shows."""
    tmpls = [sample("nomad", k)[0] for k in _ALLOC_LISTS]
    keys = {k for t in tmpls for k in t}
    out = {k: json.loads(json.dumps(a.get(k))) for k in keys if k in a}
    out["NodeName"] = a.get("NodeName", "")
    out["JobVersion"] = (a.get("Job") or {}).get("Version", 0)
    out["JobType"] = (a.get("Job") or {}).get("Type", "service")
    out["TaskStates"] = json.loads(json.dumps(a.get("TaskStates") or {}))
    out["DeploymentStatus"] = a.get("DeploymentStatus")
    for t in tmpls:
        fill(out, t)
    return out


def _full_alloc(a):
    return fill(json.loads(json.dumps(a)), sample("nomad", "GET /v1/node/:node_id/allocations")[0])


def _job_summary(job, allocs):
    summ = {}
    for g in job["TaskGroups"]:
        s = {"Queued": 0, "Complete": 0, "Failed": 0, "Running": 0, "Starting": 0, "Lost": 0, "Unknown": 0}
        ga = [a for a in allocs if a["TaskGroup"] == g["Name"]]
        for a in ga:
            k = {"running": "Running", "pending": "Starting", "complete": "Complete", "failed": "Failed", "lost": "Lost"}.get(a["ClientStatus"])
            if k:
                s[k] += 1
        live = sum(1 for a in ga if a["DesiredStatus"] == "run" and a["ClientStatus"] not in TERMINAL)
        if not job.get("Stop"):
            s["Queued"] = max(0, g["Count"] - live)
        summ[g["Name"]] = s
    return {"JobID": job["ID"], "Namespace": job.get("Namespace", "default"), "Summary": summ,
            "Children": {"Pending": 0, "Running": 0, "Dead": 0}, "CreateIndex": job["CreateIndex"], "ModifyIndex": job["ModifyIndex"]}


def _job_status(job, allocs):
    if job.get("Stop"):
        return "dead"
    if any(a["ClientStatus"] in ("running", "pending") and a["DesiredStatus"] == "run" for a in allocs):
        return "running"
    return "pending"


def _prefix_one(items: dict, ident: str, what="node"):
    if ident in items:
        return items[ident]
    m = [v for k, v in items.items() if k.startswith(ident)]
    if len(m) == 1:
        return m[0]
    if not m:
        raise RPCError(f"{what} not found", 404)
    raise RPCError(f"Prefix matched multiple {what}s", 400)


def _job_out(j, allocs):
    """A job with every field the API serialises (the documented job and job-version samples as templates)."""
    out = fill(json.loads(json.dumps(dict(j, Status=_job_status(j, allocs)))), sample("nomad", "GET /v1/job/:job_id"))
    return fill(out, sample("nomad", "GET /v1/job/:job_id/versions")["Versions"][0])


def _eval_out(e):
    return fill(dict(e), sample("nomad", "GET /v1/evaluations")[0])


def _deployment_out(d):
    return fill(json.loads(json.dumps(d)), sample("nomad", "GET /v1/deployment/:deployment_id"))


# ---------------------------------------------------------------- views: (index, result)

def _idx(st, *tables):
    return max([st["index"].get(t, 0) for t in tables] or [0])


def _jallocs(st, jid):
    return [a for a in st["allocs"].values() if a["JobID"] == jid]


def v_nodes(st, prefix=""):
    return _idx(st, "nodes"), sorted((_stub_node(n) for n in st["nodes"].values() if n["ID"].startswith(prefix)), key=lambda n: n["ID"])


def v_node(st, node_id):
    n = _prefix_one(st["nodes"], node_id)
    return n["ModifyIndex"], fill(json.loads(json.dumps(n)), sample("nomad", "GET /v1/node/:node_id"))


def v_node_allocs(st, node_id):
    n = _prefix_one(st["nodes"], node_id)
    return _idx(st, "allocs"), [_full_alloc(a) for a in st["allocs"].values() if a["NodeID"] == n["ID"]]


def v_jobs(st, prefix=""):
    out = []
    for j in sorted(st["jobs"].values(), key=lambda j: j["ID"]):
        if not j["ID"].startswith(prefix):
            continue
        allocs = _jallocs(st, j["ID"])
        out.append({"ID": j["ID"], "ParentID": "", "Name": j["Name"], "Type": j["Type"], "Priority": j["Priority"],
                    "Status": _job_status(j, allocs), "StatusDescription": "", "Datacenters": j["Datacenters"],
                    "Namespace": j.get("Namespace", "default"), "NodePool": j.get("NodePool", "default"), "Stop": j["Stop"],
                    "JobSummary": _job_summary(j, allocs), "CreateIndex": j["CreateIndex"], "ModifyIndex": j["ModifyIndex"],
                    "JobModifyIndex": j["JobModifyIndex"], "SubmitTime": j["SubmitTime"], "Version": j["Version"]})
    return _idx(st, "jobs"), out


def _job(st, jid):
    j = st["jobs"].get(jid)
    if j is None:
        raise RPCError("job not found", 404)
    return j


def v_job(st, job_id):
    j = _job(st, job_id)
    return j["ModifyIndex"], _job_out(j, _jallocs(st, job_id))


def v_job_allocs(st, job_id):
    _job(st, job_id)
    return _idx(st, "allocs"), [_stub_alloc(a) for a in sorted(_jallocs(st, job_id), key=lambda a: a["CreateIndex"])]


def v_job_summary(st, job_id):
    j = _job(st, job_id)
    return _idx(st, "jobs", "allocs"), _job_summary(j, _jallocs(st, job_id))


def v_job_versions(st, job_id):
    _job(st, job_id)
    vs = sorted(st["versions"].get(job_id, []), key=lambda v: -v["Version"])
    return _idx(st, "job_version"), [_job_out(v, []) | {"Status": v.get("Status") or ""} for v in vs]


def v_job_evals(st, job_id):
    return _idx(st, "evals"), [_eval_out(e) for e in sorted(st["evals"].values(), key=lambda e: -e["CreateIndex"])
                               if e["JobID"] == job_id]


def v_job_deployments(st, job_id, latest=False):
    ds = [_deployment_out(d) for d in sorted(st["deployments"].values(), key=lambda d: -d["CreateIndex"]) if d["JobID"] == job_id]
    if latest:
        return _idx(st, "deployment"), ds[0] if ds else None
    return _idx(st, "deployment"), ds


def v_evals(st, prefix="", job=""):
    return _idx(st, "evals"), [_eval_out(e) for e in sorted(st["evals"].values(), key=lambda e: e["CreateIndex"])
                               if e["ID"].startswith(prefix) and (not job or e["JobID"] == job)]


def v_eval(st, eval_id):
    e = _prefix_one(st["evals"], eval_id, "eval")
    related = [{k: x.get(k) for k in ("ID", "Namespace", "JobID", "DeploymentID", "NodeID", "Priority", "Status",
                                      "StatusDescription", "TriggeredBy", "Type", "BlockedEval", "NextEval",
                                      "PreviousEval", "WaitUntil", "CreateIndex", "ModifyIndex", "CreateTime", "ModifyTime")}
               for x in st["evals"].values() if x["ID"] in (e.get("BlockedEval"), e.get("PreviousEval"), e.get("NextEval"))]
    out = _eval_out(e)
    out["RelatedEvals"] = related or None
    return e["ModifyIndex"], fill(out, sample("nomad", "GET /v1/evaluation/:eval_id"))


def v_eval_allocs(st, eval_id):
    e = _prefix_one(st["evals"], eval_id, "eval")
    return _idx(st, "allocs"), [_stub_alloc(a) for a in st["allocs"].values() if a.get("EvalID") == e["ID"]]


def v_deployments(st, prefix=""):
    return _idx(st, "deployment"), [_deployment_out(d) for d in sorted(st["deployments"].values(), key=lambda d: d["CreateIndex"])
                                    if d["ID"].startswith(prefix)]


def v_deployment(st, dep_id):
    d = _prefix_one(st["deployments"], dep_id, "deployment")
    return d["ModifyIndex"], _deployment_out(d)


def v_deployment_allocs(st, dep_id):
    d = _prefix_one(st["deployments"], dep_id, "deployment")
    return _idx(st, "allocs"), [_stub_alloc(a) for a in st["allocs"].values() if a.get("DeploymentID") == d["ID"]]


def v_allocs(st, prefix=""):
    return _idx(st, "allocs"), [_stub_alloc(a) for a in sorted(st["allocs"].values(), key=lambda a: a["CreateIndex"])
                                if a["ID"].startswith(prefix)]


def v_alloc(st, alloc_id):
    a = _prefix_one(st["allocs"], alloc_id, "alloc")
    return a["ModifyIndex"], fill(_full_alloc(a), sample("nomad", "GET /v1/allocation/:alloc_id"))


def v_scheduler(st):
    return _idx(st, "scheduler_config"), st.get("scheduler")


def v_autopilot(st):
    return _idx(st, "autopilot-config"), st.get("autopilot")


NomadAgent.VIEWS = {"nodes": v_nodes, "node": v_node, "node_allocs": v_node_allocs, "jobs": v_jobs, "job": v_job,
                    "job_allocs": v_job_allocs, "job_summary": v_job_summary, "job_versions": v_job_versions,
                    "job_evals": v_job_evals, "job_deployments": v_job_deployments, "evals": v_evals, "eval": v_eval,
                    "eval_allocs": v_eval_allocs, "deployments": v_deployments, "deployment": v_deployment,
                    "deployment_allocs": v_deployment_allocs, "allocs": v_allocs, "alloc": v_alloc,
                    "scheduler": v_scheduler, "autopilot": v_autopilot, "acl": nomad_acl.view_acl}
nomad_acl.register(route)
NomadAgent.ROUTES = ROUTES
NomadAgent.INDEX_HEADER = "X-Nomad-Index"


def _http_not_found(self, req):
    return Response(raw=b"404 page not found\n", status=404, ctype="text/plain; charset=utf-8")


def _method_not_allowed(self, req, allowed):
    return HTTPError(405, "Invalid method")


NomadAgent.http_not_found = _http_not_found
NomadAgent.method_not_allowed = _method_not_allowed


def _ok(body, headers=None):
    return Response(body, headers=headers)


def _read(self, req, view, **params):
    res, _idx_, h = self.query(req, view, **params)
    return _ok(res, h)


def _body(req) -> dict:
    d = req.json({}) or {}
    if not isinstance(d, dict):
        raise HTTPError(400, "Request decode failed: body must be an object")
    return d


# ---------------------------------------------------------------- status, agent, operator

@route("GET", "/v1/status/leader")
def status_leader(self: NomadAgent, req):
    return _ok(self.rpc("Status.Leader"))


@route("GET", "/v1/status/peers")
def status_peers(self: NomadAgent, req):
    return _ok(self.rpc("Status.Peers"))


@route("GET", "/v1/regions")
def regions(self: NomadAgent, req):
    return _ok([self.region])


@route("GET", "/v1/agent/self", acl="agent:read")
def agent_self_route(self: NomadAgent, req):
    return _ok(self.agent_self())


@route("GET", "/v1/agent/health")
def agent_health(self: NomadAgent, req):
    typ = req.get("type", "")
    out = {}
    if self.is_server and typ in ("", "server"):
        out["server"] = {"ok": True, "message": "ok"}
    if self.is_client and typ in ("", "client"):
        ok = self.client.registered
        out["client"] = {"ok": ok, "message": "ok" if ok else "not registered with a server"}
    if typ == "server" and not self.is_server:
        raise HTTPError(400, "server not enabled")
    if typ == "client" and not self.is_client:
        raise HTTPError(400, "client not enabled")
    bad = any(not v["ok"] for v in out.values())
    return Response(out, status=500 if bad else 200)


@route("GET", "/v1/agent/servers", acl="agent:read")
def agent_servers(self: NomadAgent, req):
    return _ok(self.known_servers())


@route("GET", "/v1/agent/members", acl="node:read")
def agent_members(self: NomadAgent, req):
    members = self.rpc("Status.Members")
    return _ok({"ServerName": self.name, "ServerRegion": self.region, "ServerDC": self.dc,
                "Members": [self.member_json(m) for m in members]})


@route("PUT POST", "/v1/agent/join")  # none, per docs and source
def agent_join(self: NomadAgent, req):
    if not self.serf:
        raise HTTPError(501, "Invalid method")
    addrs = [a if ":" in a else f"{a}:4648" for raw in req.all("address") for a in raw.split(",") if a]
    n, errs = self.serf.join(addrs)
    return _ok({"num_joined": n, "error": "; ".join(errs)})


@route("PUT POST", "/v1/agent/force-leave", acl="agent:write")
def agent_force_leave(self: NomadAgent, req):
    if not self.serf:
        raise HTTPError(501, "Invalid method")
    node = req.get("node", "")
    if not node:
        raise HTTPError(400, "missing node to force leave")
    v = req.get("prune", "")
    try:
        prune = parse_bool(v) if v else False
    except ValueError:
        raise HTTPError(400, "invalid prune value") from None
    # the named (failed) member is removed from the gossip pool; this agent stays a member
    self.log("INFO", f"agent: force-leave of node {node} (prune={str(prune).lower()})")
    self.serf.force_leave(node, prune=prune)
    return _ok(None)


@route("GET", "/v1/metrics")
def metrics(self: NomadAgent, req):
    self.collect_metrics()
    if req.get("format") == "prometheus":
        if not (self.cfg.get("telemetry") or {}).get("prometheus_metrics"):
            raise HTTPError(415, "Prometheus is not enabled")
        return Response(raw=self.metrics.prometheus().encode(), ctype="text/plain; version=0.0.4; charset=utf-8")
    return _ok(self.metrics.display())


@route("GET", "/v1/operator/raft/configuration", acl="management")
def raft_configuration(self: NomadAgent, req):
    return _ok(self.rpc("Operator.RaftConfiguration", stale=req.has("stale")))


@route("PUT POST", "/v1/operator/raft/transfer-leadership", acl="management")
def raft_transfer(self: NomadAgent, req):
    pid, addr = req.get("id", ""), req.get("address", "")
    if pid and addr:
        raise HTTPError(400, "must specify either id or address, not both")
    self.rpc("Operator.TransferLeader", {"id": pid, "address": addr})
    return _ok(None)


@route("DELETE", "/v1/operator/raft/peer", acl="management")
def raft_remove_peer(self: NomadAgent, req):
    pid, addr = req.get("id", ""), req.get("address", "")
    if bool(pid) == bool(addr):
        raise HTTPError(400, "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove"
                        if not pid else "Must specify only one of ?id or ?address")
    self.rpc("Operator.RemovePeer", {"id": pid, "address": addr})
    return _ok(None)


@route("GET", "/v1/operator/autopilot/health", acl="operator:read")
def autopilot_health(self: NomadAgent, req):
    h = self.rpc("Operator.AutopilotHealth")
    return Response(h, status=200 if h["Healthy"] else 429)


@route("GET", "/v1/operator/autopilot/configuration", acl="operator:read")
def autopilot_get(self: NomadAgent, req):
    cfg, _i, h = self.query(req, "autopilot")
    if cfg is None:
        raise HTTPError(500, "autopilot config not initialized yet")
    return _ok(cfg)


_AP_FIELDS = {"CleanupDeadServers": bool, "LastContactThreshold": "dur", "MaxTrailingLogs": int, "MinQuorum": int,
              "ServerStabilizationTime": "dur", "EnableRedundancyZones": bool, "DisableUpgradeMigration": bool,
              "EnableCustomUpgrades": bool, "CreateIndex": int, "ModifyIndex": int}


@route("PUT", "/v1/operator/autopilot/configuration", acl="operator:write")
def autopilot_put(self: NomadAgent, req):
    body = canon(_body(req), list(_AP_FIELDS))
    cur, _i, _h = self.query(req, "autopilot")
    cur = dict(cur or {})
    for k, v in body.items():
        conv = _AP_FIELDS.get(k)
        if conv is None:
            raise HTTPError(400, f'Error parsing autopilot config: json: unknown field "{k}"')
        if conv == "dur":
            try:
                v = format_duration(parse_duration(v))
            except ValueError as e:
                raise HTTPError(400, f"Error parsing autopilot config: {e}") from None
        cur[k] = v
    for k in ("EnableRedundancyZones", "EnableCustomUpgrades"):
        if cur.get(k):
            raise HTTPError(400, f"{k}: Enterprise autopilot features are not implemented by the sandbox stand-in")
    cur.pop("CreateIndex", None)
    cur.pop("ModifyIndex", None)
    op = {"op": "autopilot_set", "config": cur}
    if req.has("cas"):
        op["cas"] = req.uint("cas")
    return _ok(bool(self.apply(op)))


@route("GET", "/v1/operator/scheduler/configuration", acl="operator:read")
def scheduler_get(self: NomadAgent, req):
    cfg, idx, h = self.query(req, "scheduler")
    return _ok({"SchedulerConfig": cfg, "Index": idx, "KnownLeader": h["X-Nomad-KnownLeader"] == "true",
                "LastContact": int(h["X-Nomad-LastContact"]), "NextToken": ""}, h)


@route("PUT POST", "/v1/operator/scheduler/configuration", acl="operator:write")
def scheduler_put(self: NomadAgent, req):
    body = canon(_body(req), ["SchedulerAlgorithm", "MemoryOversubscriptionEnabled", "RejectJobRegistration",
                              "PauseEvalBroker", "PreemptionConfig", "CreateIndex", "ModifyIndex"])
    cfg = {"SchedulerAlgorithm": body.get("SchedulerAlgorithm") or "binpack",
           "MemoryOversubscriptionEnabled": bool(body.get("MemoryOversubscriptionEnabled")),
           "RejectJobRegistration": bool(body.get("RejectJobRegistration")),
           "PauseEvalBroker": bool(body.get("PauseEvalBroker")),
           "PreemptionConfig": {"SystemSchedulerEnabled": True, "SysBatchSchedulerEnabled": False,
                                "BatchSchedulerEnabled": False, "ServiceSchedulerEnabled": False} | (body.get("PreemptionConfig") or {})}
    if cfg["SchedulerAlgorithm"] not in ("binpack", "spread"):
        raise HTTPError(400, f"invalid scheduler algorithm: {cfg['SchedulerAlgorithm']}")
    if cfg["MemoryOversubscriptionEnabled"] or cfg["PreemptionConfig"].get("ServiceSchedulerEnabled"):
        raise HTTPError(400, "memory oversubscription and preemption are not implemented by the sandbox stand-in "
                             "(it models no resources)")
    op = {"op": "scheduler_set", "config": cfg}
    if req.has("cas"):
        op["cas"] = req.uint("cas")
    ok = self.apply(op)
    st_idx = self.query(req, "scheduler")[1]
    return _ok({"Updated": bool(ok), "Index": st_idx})


@route("GET", "/v1/operator/snapshot", acl="management")
def snapshot_save(self: NomadAgent, req):
    r = self.rpc("Snapshot.Save", stale=req.has("stale"))
    return Response(raw=base64.b64decode(r["archive"]), ctype="application/octet-stream",
                    headers={"X-Nomad-Index": str(r["index"])})


@route("PUT POST", "/v1/operator/snapshot", acl="management")
def snapshot_restore(self: NomadAgent, req):
    _meta, state = snapshot.read(req.body)
    self.apply({"op": "restore", "state": state})
    return _ok(None)


# ---------------------------------------------------------------- nodes

@route("GET", "/v1/nodes", acl="node:read")
def nodes(self: NomadAgent, req):
    return _read(self, req, "nodes", prefix=req.get("prefix", ""))


@route("GET", "/v1/node/<node_id>", acl="node:read")
def node(self: NomadAgent, req):
    return _read(self, req, "node", node_id=req.params["node_id"])


@route("GET", "/v1/node/<node_id>/allocations", acl="node:read,namespace:read-job")
def node_allocs(self: NomadAgent, req):
    return _read(self, req, "node_allocs", node_id=req.params["node_id"])


def _node_id(self, req):
    n, _i, _h = self.query(req, "node", node_id=req.params["node_id"])
    return n["ID"]


@route("PUT POST", "/v1/node/<node_id>/drain", acl="node:write")
def node_drain(self: NomadAgent, req):
    data = _body(req)
    nid = _node_id(self, req)
    idx = self.apply({"op": "node_drain", "node_id": nid, "drain": data.get("DrainSpec"),
                      "mark_eligible": data.get("MarkEligible", False), "meta": data.get("Meta")})
    return _ok({"EvalCreateIndex": 0, "EvalIDs": None, "Index": idx, "NodeModifyIndex": idx})


@route("PUT POST", "/v1/node/<node_id>/eligibility", acl="node:write")
def node_eligibility(self: NomadAgent, req):
    data = _body(req)
    nid = _node_id(self, req)
    elig = data.get("Eligibility")
    if elig not in ("eligible", "ineligible"):
        raise HTTPError(400, f"invalid scheduling eligibility {elig!r}")
    idx = self.apply({"op": "node_eligibility", "node_id": nid, "eligibility": elig})
    return _ok({"EvalCreateIndex": 0, "EvalIDs": None, "Index": idx, "NodeModifyIndex": idx})


# ---------------------------------------------------------------- jobs

def _register(self: NomadAgent, data: dict, path_id: str | None = None):
    raw = data.get("Job")
    if not isinstance(raw, dict):
        raise HTTPError(400, "Job must be specified")
    if path_id is not None and raw.get("ID") != path_id:
        raise HTTPError(400, "Job ID does not match name")
    job = normalize_job(raw)
    sched = self.query_local("scheduler")
    if (sched or {}).get("RejectJobRegistration"):
        raise HTTPError(500, "Job registration, dispatch, and scale are disabled by the scheduler configuration")
    ev = new_eval(job, "job-register")
    idx = self.apply({"op": "job_register", "job": job, "eval": ev, "enforce_index": bool(data.get("EnforceIndex")),
                      "job_modify_index": int(data.get("JobModifyIndex") or 0)})
    return _ok({"EvalID": ev["ID"], "EvalCreateIndex": idx, "JobModifyIndex": idx, "Warnings": "",
                "Index": idx, "LastContact": 0, "KnownLeader": True})


@route("GET", "/v1/jobs", acl="namespace:list-jobs")
def jobs_list(self: NomadAgent, req):
    return _read(self, req, "jobs", prefix=req.get("prefix", ""))


@route("PUT POST", "/v1/jobs", acl="namespace:submit-job")
def jobs_register(self: NomadAgent, req):
    return _register(self, _body(req))


@route("PUT POST", "/v1/jobs/parse", acl="namespace:parse-job")
def jobs_parse(self: NomadAgent, req):
    data = _body(req)
    text = data.get("JobHCL")
    if not text:
        raise HTTPError(400, "Job spec is empty")
    try:
        job = job_from_hcl(text)
    except ValueError as e:
        raise HTTPError(400, f"error parsing job: {e}") from None
    if data.get("Canonicalize"):
        try:
            job = normalize_job(job)
        except RPCError as e:
            raise HTTPError(400, str(e)) from None
    return _ok(fill(job, sample("nomad", "POST /v1/jobs/parse")))


@route("PUT POST", "/v1/validate/job", acl="namespace:read-job")
def jobs_validate(self: NomadAgent, req):
    data = _body(req)
    raw = data.get("Job")
    if not isinstance(raw, dict):
        raise HTTPError(400, "Job must be specified")
    errs = [] if raw.get("ID") else ["Missing job ID"]
    if not raw.get("TaskGroups"):
        errs.append("Missing job task groups")
    errs += job_errors(raw)
    return _ok({"DriverConfigValidated": True, "ValidationErrors": errs or None, "Warnings": "",
                "Error": _multierror(errs) if errs else ""})


@route("GET", "/v1/job/<job_id>", acl="namespace:read-job")
def job_get(self: NomadAgent, req):
    return _read(self, req, "job", job_id=req.params["job_id"])


@route("PUT POST", "/v1/job/<job_id>", acl="namespace:submit-job")
def job_update(self: NomadAgent, req):
    return _register(self, _body(req), req.params["job_id"])


@route("DELETE", "/v1/job/<job_id>", acl="namespace:submit-job")
def job_deregister(self: NomadAgent, req):
    purge = req.opt_bool("purge")
    req.opt_bool("global")
    jid = req.params["job_id"]
    job = self.query_local("job_raw", job_id=jid)
    ev = new_eval(job or {"ID": jid}, "job-deregister")
    idx = self.apply({"op": "job_deregister", "job_id": jid, "purge": purge, "eval": ev})
    return _ok({"EvalID": ev["ID"], "EvalCreateIndex": idx, "JobModifyIndex": idx, "VolumeEvalID": "",
                "VolumeEvalIndex": 0, "Index": idx, "LastContact": 0, "KnownLeader": True})


@route("GET", "/v1/job/<job_id>/allocations", acl="namespace:read-job")
def job_allocs(self: NomadAgent, req):
    return _read(self, req, "job_allocs", job_id=req.params["job_id"])


@route("GET", "/v1/job/<job_id>/summary", acl="namespace:read-job")
def job_summary(self: NomadAgent, req):
    return _read(self, req, "job_summary", job_id=req.params["job_id"])


@route("GET", "/v1/job/<job_id>/versions", acl="namespace:read-job")
def job_versions(self: NomadAgent, req):
    vs, idx, h = self.query(req, "job_versions", job_id=req.params["job_id"])
    return _ok({"Versions": vs, "Diffs": None, "Index": idx, "KnownLeader": h["X-Nomad-KnownLeader"] == "true",
                "LastContact": int(h["X-Nomad-LastContact"]), "NextToken": ""}, h)


@route("GET", "/v1/job/<job_id>/evaluations", acl="namespace:read-job")
def job_evals(self: NomadAgent, req):
    return _read(self, req, "job_evals", job_id=req.params["job_id"])


@route("GET", "/v1/job/<job_id>/deployments", acl="namespace:read-job")
def job_deployments(self: NomadAgent, req):
    return _read(self, req, "job_deployments", job_id=req.params["job_id"])


@route("GET", "/v1/job/<job_id>/deployment", acl="namespace:read-job")
def job_deployment(self: NomadAgent, req):
    return _read(self, req, "job_deployments", job_id=req.params["job_id"], latest=True)


@route("PUT POST", "/v1/job/<job_id>/plan", acl="namespace:submit-job")
def job_plan(self: NomadAgent, req):
    data = _body(req)
    raw = data.get("Job")
    if not isinstance(raw, dict):
        raise HTTPError(400, "Job must be specified")
    if raw.get("ID") != req.params["job_id"]:
        raise HTTPError(400, "Job ID does not match")
    job = normalize_job(raw)
    return _ok(self.rpc("Job.Plan", {"job": job, "diff": bool(data.get("Diff"))}))


# ---------------------------------------------------------------- evaluations, deployments, allocations

@route("GET", "/v1/evaluations", acl="namespace:read-job")
def evals(self: NomadAgent, req):
    return _read(self, req, "evals", prefix=req.get("prefix", ""), job=req.get("job", ""))


@route("GET", "/v1/evaluation/<eval_id>", acl="namespace:read-job")
def eval_get(self: NomadAgent, req):
    return _read(self, req, "eval", eval_id=req.params["eval_id"])


@route("GET", "/v1/evaluation/<eval_id>/allocations", acl="namespace:read-job")
def eval_allocs(self: NomadAgent, req):
    return _read(self, req, "eval_allocs", eval_id=req.params["eval_id"])


@route("GET", "/v1/deployments", acl="namespace:read-job")
def deployments(self: NomadAgent, req):
    return _read(self, req, "deployments", prefix=req.get("prefix", ""))


@route("GET", "/v1/deployment/<dep_id>", acl="namespace:read-job")
def deployment(self: NomadAgent, req):
    return _read(self, req, "deployment", dep_id=req.params["dep_id"])


@route("GET", "/v1/deployment/allocations/<dep_id>", acl="namespace:read-job")
def deployment_allocs(self: NomadAgent, req):
    return _read(self, req, "deployment_allocs", dep_id=req.params["dep_id"])


@route("PUT POST", "/v1/deployment/fail/<dep_id>", acl="namespace:submit-job")
def deployment_fail(self: NomadAgent, req):
    d, _i, _h = self.query(req, "deployment", dep_id=req.params["dep_id"])
    ev = new_eval({"ID": d["JobID"], "Namespace": d.get("Namespace", "default")}, "deployment-watcher")
    ev["DeploymentID"] = d["ID"]
    idx = self.apply({"op": "deployment_status", "id": d["ID"], "status": "failed",
                      "description": "Deployment marked as failed", "evals": [ev]})
    return _ok({"EvalID": ev["ID"], "EvalCreateIndex": idx, "DeploymentModifyIndex": idx, "RevertedJobVersion": None,
                "Index": idx})


@route("GET", "/v1/allocations", acl="namespace:read-job")
def allocs(self: NomadAgent, req):
    return _read(self, req, "allocs", prefix=req.get("prefix", ""))


@route("GET", "/v1/allocation/<alloc_id>", acl="namespace:read-job")
def alloc_get(self: NomadAgent, req):
    return _read(self, req, "alloc", alloc_id=req.params["alloc_id"])


@route("PUT POST", "/v1/allocation/<alloc_id>/stop", acl="namespace:alloc-lifecycle")
def alloc_stop(self: NomadAgent, req):
    a, _i, _h = self.query(req, "alloc", alloc_id=req.params["alloc_id"])
    ev = new_eval(a.get("Job") or {"ID": a["JobID"]}, "alloc-stop")
    idx = self.apply({"op": "alloc_transition", "alloc_ids": [a["ID"]], "evals": [ev]})
    return _ok({"EvalID": ev["ID"], "Index": idx})


# ---------------------------------------------------------------- server-side helpers

def _query_local(self: NomadAgent, view: str, **params):
    """A consistent read (through the leader) without blocking, for handlers that need state."""
    if view == "job_raw":
        try:
            return self.rpc("State.Query", {"view": "job", "params": params})["Result"]
        except RPCError as e:
            if e.status == 404:
                return None
            raise
    return self.rpc("State.Query", {"view": view, "params": params})["Result"]


def _rpc_job_plan(self: NomadAgent, a):
    """Job.Plan: the scheduler's dry run against the current state (nothing is written)."""
    import copy
    st, _ = self.raft.snapshot()
    job = a["job"]
    cur = st["jobs"].get(job["ID"])
    trial = copy.deepcopy(job)
    from .nomad import _spec
    if cur is not None and _spec(cur) == _spec(trial) and not cur.get("Stop"):
        trial.update(Version=cur["Version"], JobModifyIndex=cur["JobModifyIndex"], CreateIndex=cur["CreateIndex"])
    else:
        trial.update(Version=(cur["Version"] + 1) if cur else 0, JobModifyIndex=0, CreateIndex=cur["CreateIndex"] if cur else 0)
    st2 = dict(st, jobs=dict(st["jobs"], **{job["ID"]: trial}))
    plan = plan_job(st2, trial, (st.get("scheduler") or {}).get("SchedulerAlgorithm", "binpack"), job["ID"])
    diff = _job_diff(cur, trial, plan) if a.get("diff") else None
    return {"Index": cur["JobModifyIndex"] if cur else 0, "JobModifyIndex": cur["JobModifyIndex"] if cur else 0,
            "Diff": diff, "Annotations": {"DesiredTGUpdates": plan.desired, "PreemptedAllocs": None},
            "FailedTGAllocs": plan.failed or None, "CreatedEvals": None, "Warnings": "",
            "NextPeriodicLaunch": "0001-01-01T00:00:00Z"}


def _job_diff(cur, job, plan):
    """A JobDiff at the level the CLI shows (job, groups with update counts, tasks with their annotation)."""
    if cur is not None and cur.get("Stop"):
        cur = None
    from .nomad import _group_spec, _spec
    if cur is None:
        jtype = "Added"
    elif _spec(cur) == _spec(job):
        jtype = "None"
    else:
        jtype = "Edited"
    groups = []
    old_groups = {g["Name"]: g for g in (cur or {}).get("TaskGroups") or []}
    for g in job["TaskGroups"]:
        d = plan.desired.get(g["Name"], {})
        old = old_groups.get(g["Name"])
        gtype = "Added" if old is None else ("None" if _group_spec(cur, g["Name"]) == _group_spec(job, g["Name"])
                                               and old.get("Count") == g["Count"] else "Edited")
        updates = {k: v for k, v in (("create", d.get("Place", 0)), ("destroy", d.get("Stop", 0)),
                                      ("create/destroy update", d.get("DestructiveUpdate", 0)),
                                      ("in-place update", d.get("InPlaceUpdate", 0)), ("ignore", d.get("Ignore", 0)),
                                      ("migrate", d.get("Migrate", 0))) if v}
        tasks = []
        old_tasks = {t["Name"]: t for t in (old or {}).get("Tasks") or []}
        for t in g.get("Tasks") or []:
            ot = old_tasks.get(t["Name"])
            ttype = "Added" if ot is None else ("None" if json.dumps(ot, sort_keys=True) == json.dumps(t, sort_keys=True) else "Edited")
            ann = ["forces create"] if ttype == "Added" else (["forces create/destroy update"] if ttype == "Edited" else None)
            fields = None
            if ot is not None and ttype == "Edited":
                fields = [{"Type": "Edited", "Name": k, "Old": json.dumps(ot.get(k)), "New": json.dumps(t.get(k)), "Annotations": None}
                          for k in sorted(set(ot) | set(t)) if ot.get(k) != t.get(k)]
            tasks.append({"Type": ttype, "Name": t["Name"], "Fields": fields, "Objects": None, "Annotations": ann})
        fields = None
        if old is not None and old.get("Count") != g["Count"]:
            fields = [{"Type": "Edited", "Name": "Count", "Old": str(old.get("Count")), "New": str(g["Count"]), "Annotations": None}]
        groups.append({"Type": gtype, "Name": g["Name"], "Updates": updates or None, "Tasks": tasks, "Fields": fields,
                       "Objects": None})
    for name in old_groups:
        if not any(g["Name"] == name for g in job["TaskGroups"]):
            groups.append({"Type": "Deleted", "Name": name, "Updates": {"destroy": plan.desired.get(name, {}).get("Stop", 0)},
                           "Tasks": None, "Fields": None, "Objects": None})
    return {"Type": jtype, "ID": job["ID"], "Fields": None, "Objects": None, "TaskGroups": groups}


NomadAgent.query_local = _query_local
NomadAgent.rpc_Job_Plan = _rpc_job_plan


def _rpc_snapshot_save(self: NomadAgent, a):
    with self.raft.lock:
        return {"archive": base64.b64encode(snapshot.archive(self.raft.state, self.raft.index, self.raft.last_term,
                                                              self.raft.configuration()["Servers"],
                                                              self.raft.config_index)).decode(),
                "index": self.raft.index}


def _rpc_remove_peer(self: NomadAgent, a):
    return self.raft.remove_peer(a.get("id") or None, a.get("address") or None)


NomadAgent.rpc_Snapshot_Save = _rpc_snapshot_save
NomadAgent.rpc_Operator_RemovePeer = _rpc_remove_peer


# ---------------------------------------------------------------- agent/self and metrics

def _agent_self(self: NomadAgent):
    c = self.cfg
    cfgj = sample("nomad", "GET /v1/agent/self")["config"]
    sj = (self.srv_cfg.get("server_join") or {})
    cfgj.update({
        "Addresses": {"HTTP": self.addrs["http"], "RPC": self.addrs["rpc"], "Serf": self.addrs["serf"]},
        "AdvertiseAddrs": {"HTTP": self.adv["http"], "RPC": self.adv["rpc"], "Serf": self.adv["serf"]},
        "BindAddr": self.bind, "DataDir": str(self.data_dir), "Datacenter": self.dc, "DevMode": self.dev,
        "LeaveOnInt": bool(c.get("leave_on_interrupt")), "LeaveOnTerm": bool(c.get("leave_on_terminate")),
        "LogLevel": str(c.get("log_level", "INFO")).upper(), "NodeName": self.name, "Region": self.region,
        "Ports": {"HTTP": self.ports["http"], "RPC": self.ports["rpc"], "Serf": self.ports["serf"]},
        "Revision": self.revision, "Version": self.version,
        "VersionPrerelease": "", "Files": self.config_paths, "Vault": cfgj["Vault"] | {"Token": "", "Addr": ""},
    })
    cfgj["Server"].update({"Enabled": self.is_server, "BootstrapExpect": self.srv_cfg.get("bootstrap_expect", 0),
                           "DataDir": str(self.data_dir / "server"), "HeartbeatGrace": f"{self.heartbeat_grace:g}s",
                           "RetryJoin": (sj.get("retry_join") or []) + (self.srv_cfg.get("retry_join") or []),
                           "RejoinAfterLeave": bool(self.srv_cfg.get("rejoin_after_leave")), "EncryptKey": ""})
    cfgj["Client"].update({"Enabled": self.is_client, "NodeClass": self.cli_cfg.get("node_class", ""),
                           "Meta": self.cli_cfg.get("meta") or {}, "Servers": self.cli_cfg.get("servers"),
                           "NodePool": self.cli_cfg.get("node_pool", "default"), "Options": {}})
    stats = {"runtime": {"cpu_count": str(os.cpu_count()), "kernel.name": "linux", "arch": "amd64", "version": "go1.22.7",
                         "max_procs": str(os.cpu_count()), "goroutines": str(threading.active_count())},
             "nomad": {"server": str(self.is_server).lower()}}
    member = None
    if self.is_server:
        lid, laddr = self.raft.leader()
        stats["nomad"].update({"leader": str(self.raft.is_leader()).lower(), "leader_addr": laddr or "",
                               "bootstrap": "false", "known_regions": "1"})
        stats["raft"] = self.raft.stats()
        members = self.serf.list()
        stats["serf"] = {"members": str(len(members)), "failed": str(sum(m["Status"] == "failed" for m in members)),
                         "left": str(sum(m["Status"] == "left" for m in members)), "encrypted": str(bool(self.srv_cfg.get("encrypt"))).lower(),
                         "event_time": "1", "event_queue": "0", "member_time": "1", "query_time": "1", "intent_queue": "0",
                         "query_queue": "0", "health_score": "0"}
        member = self.member_json(self.serf.local())
    if self.is_client:
        stats["client"] = {"node_id": self.client_node_id, "known_servers": ",".join(self.client.servers),
                           "num_allocations": str(sum(1 for r in self.client.running.values() if r.get("status") == "running")),
                           "heartbeat_ttl": f"{self.client.ttl:g}s", "last_heartbeat": f"{max(0.0, time.monotonic() - self.client.last_hb):.3f}s"}
    if member is None:
        member = {"Name": "", "Addr": None, "Port": 0, "Tags": None, "Status": "", "ProtocolMin": 0, "ProtocolMax": 0,
                  "ProtocolCur": 0, "DelegateMin": 0, "DelegateMax": 0, "DelegateCur": 0}
    return {"config": cfgj, "member": member, "stats": stats}


def _collect_metrics(self: NomadAgent):
    m = self.metrics
    process_gauges(m, "nomad")
    if self.is_server and self.raft:
        m.gauge("nomad.raft.appliedIndex", self.raft.index)
        m.gauge("nomad.raft.lastIndex", self.raft.index)
        st, _ = self.raft.snapshot()
        if self.raft.is_leader():
            h = self.raft.autopilot_health()
            m.gauge("nomad.nomad.autopilot.healthy", 1 if h["Healthy"] else 0)
            m.gauge("nomad.nomad.autopilot.failure_tolerance", h["FailureTolerance"])
            for status in ("pending", "blocked"):
                m.gauge(f"nomad.nomad.broker.total_{status}", sum(1 for e in st["evals"].values() if e["Status"] == status))
            for j in st["jobs"].values():
                allocs = [a for a in st["allocs"].values() if a["JobID"] == j["ID"]]
                for g, s in _job_summary(j, allocs)["Summary"].items():
                    for k, v in s.items():
                        m.gauge(f"nomad.nomad.job_summary.{k.lower()}", v, {"job": j["ID"], "task_group": g, "namespace": j["Namespace"]})
    tel = self.cfg.get("telemetry") or {}
    if self.is_client and tel.get("publish_allocation_metrics"):
        m.gauge("nomad.client.allocations.running", sum(1 for r in self.client.running.values() if r.get("status") == "running"),
                {"node_id": self.client_node_id, "datacenter": self.dc})
    if self.is_client and tel.get("publish_node_metrics"):
        m.gauge("nomad.client.uptime", int(time.time() - self.started), {"node_id": self.client_node_id, "datacenter": self.dc})


NomadAgent.agent_self = _agent_self
NomadAgent.collect_metrics = _collect_metrics
