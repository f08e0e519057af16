"""Nomad stand-in: servers (gossip, raft, scheduler, heartbeats, drainer), clients (raw_exec-style
allocations as real processes), HTTP API and CLI."""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid

from . import hcl
from .agentbase import BaseAgent, dur
from .config import format_duration, parse_duration, resolve_addr
from .metrics import Metrics
from .net import RPCError, call, sd_notify
from .nomad_acl import NomadACL
from .shapes import fill, sample

TERMINAL = ("complete", "failed", "lost")
SNAPSHOT_TYPES = [("nodes", "Node", False), ("jobs", "Job", False), ("allocs", "Alloc", False), ("evals", "Eval", False),
                  ("deployments", "Deployment", False), ("scheduler", "SchedulerConfig", False),
                  ("autopilot", "AutopilotConfig", False)]


def _now_ns():
    return time.time_ns()


TABLES = ("nodes", "jobs", "job_version", "allocs", "evals", "deployment", "scheduler_config", "autopilot-config", "acl")
# which tables an operation writes (the index of each table is the index of its last write, as in Nomad's state store)
_OP_TABLES = {"node_register": ("nodes",), "node_status": ("nodes",), "node_drain": ("nodes",), "node_eligibility": ("nodes",),
              "drain_complete": ("nodes",), "job_register": ("jobs", "job_version", "evals"),
              "job_deregister": ("jobs", "job_version", "evals"), "job_stable": ("jobs", "job_version"),
              "alloc_upsert": ("allocs",), "alloc_client_update": ("allocs",), "alloc_transition": ("allocs", "evals"),
              "plan": ("allocs", "evals", "deployment"), "evals": ("evals",), "deployment_status": ("deployment", "evals"),
              "scheduler_set": ("scheduler_config",), "autopilot_set": ("autopilot-config",), "restore": TABLES,
              **{k: ("acl",) for k in ("acl_bootstrap", "acl_policy_set", "acl_policy_delete", "acl_token_set",
                                       "acl_token_delete")}}


def _initial_state():
    return {"nodes": {}, "jobs": {}, "allocs": {}, "versions": {}, "evals": {}, "deployments": {},
            "scheduler": None, "autopilot": None, "acl": {"bootstrap_index": 0, "policies": {}, "tokens": {}},
            "index": {t: 0 for t in TABLES}}


def _apply(state, op, index):
    for k, v in _initial_state().items():  # state from an older stand-in (upgrade): add the new tables
        state.setdefault(k, v)
    result = _apply_op(state, op, index)
    if op["op"] != "noop":
        for t in _OP_TABLES.get(op["op"], ()):
            state["index"][t] = index
    return result


def _apply_op(state, op, index):
    kind = op["op"]
    nodes, jobs, allocs = state["nodes"], state["jobs"], state["allocs"]
    if kind == "noop":
        return True
    if kind.startswith("acl_"):
        from . import acl
        return acl.apply(state, op, index)
    if kind == "node_register":
        n = op["node"]
        cur = nodes.get(n["ID"])
        if cur:
            for k in ("SchedulingEligibility", "DrainStrategy", "Drain", "LastDrain", "CreateIndex", "Events"):
                n[k] = cur.get(k, n.get(k))
            n["Events"] = (cur.get("Events") or [])[-9:]
        else:
            n["CreateIndex"] = index
            n["Events"] = [_event("Node registered", "Cluster", index)]
        n["ModifyIndex"] = index
        n["StatusUpdatedAt"] = int(time.time())
        nodes[n["ID"]] = n
        return index
    node = nodes.get(op.get("node_id", ""))
    if kind in ("node_status", "node_drain", "node_eligibility", "drain_complete") and node is None:
        raise RPCError(f"node not found: {op.get('node_id')}", 404)
    if kind == "node_status":
        if node["Status"] != op["status"]:
            node["Status"] = op["status"]
            node["StatusUpdatedAt"] = int(time.time())
            node["Events"] = (node.get("Events") or [])[-9:] + [_event(f"Node heartbeat {'missed' if op['status'] == 'down' else 'received'}", "Cluster", index)]
            node["ModifyIndex"] = index
        return index
    if kind == "node_drain":
        spec = op["drain"]
        if spec is None:
            node["DrainStrategy"] = None
            node["Drain"] = False
            if node.get("LastDrain"):
                node["LastDrain"]["Status"] = "canceled"
                node["LastDrain"]["UpdatedAt"] = _rfc3339()
            if op.get("mark_eligible", True):
                node["SchedulingEligibility"] = "eligible"
            msg = "Node drain strategy unset"
        else:
            dl = spec.get("Deadline", 3600 * 10**9)
            node["DrainStrategy"] = {"Deadline": dl, "ForceDeadline": _rfc3339(time.time() + dl / 1e9) if dl > 0 else "0001-01-01T00:00:00Z",
                                     "IgnoreSystemJobs": bool(spec.get("IgnoreSystemJobs")), "StartedAt": _rfc3339()}
            node["Drain"] = True
            node["SchedulingEligibility"] = "ineligible"
            node["LastDrain"] = {"AccessorID": "", "Meta": op.get("meta") or {}, "StartedAt": _rfc3339(),
                                 "Status": "draining", "UpdatedAt": _rfc3339()}
            msg = "Node drain strategy set"
        node["Events"] = (node.get("Events") or [])[-9:] + [_event(msg, "Drain", index)]
        node["ModifyIndex"] = index
        return index
    if kind == "drain_complete":
        node["DrainStrategy"] = None
        node["Drain"] = False
        if node.get("LastDrain"):
            node["LastDrain"]["Status"] = "complete"
            node["LastDrain"]["UpdatedAt"] = _rfc3339()
        node["Events"] = (node.get("Events") or [])[-9:] + [_event("Node drain complete", "Drain", index)]
        node["ModifyIndex"] = index
        return index
    if kind == "node_eligibility":
        if node.get("DrainStrategy") and op["eligibility"] == "eligible":
            raise RPCError("can not set node's scheduling eligibility to eligible while it is draining", 400)
        node["SchedulingEligibility"] = op["eligibility"]
        node["ModifyIndex"] = index
        return index
    if kind == "job_register":
        j = op["job"]
        cur = jobs.get(j["ID"])
        if op.get("enforce_index"):
            jmi = op.get("job_modify_index", 0)
            if cur is not None and jmi == 0:
                raise RPCError("Enforcing job modify index 0: job already exists", 500)
            if cur is not None and jmi != cur["JobModifyIndex"]:
                raise RPCError(f"Enforcing job modify index {jmi}: job exists with conflicting job modify index: "
                               f"{cur['JobModifyIndex']}", 500)
            if cur is None and jmi != 0:
                raise RPCError(f"Enforcing job modify index {jmi}: job does not exist", 500)
        j["CreateIndex"] = cur["CreateIndex"] if cur else index
        j["ModifyIndex"] = index
        j["Stop"] = False
        if cur is not None and _spec(cur) == _spec(j) and not cur.get("Stop"):
            j["Version"], j["JobModifyIndex"], j["SubmitTime"] = cur["Version"], cur["JobModifyIndex"], cur["SubmitTime"]
            j["Stable"] = cur.get("Stable", False)
        else:
            j["Version"] = (cur["Version"] + 1) if cur else 0
            j["JobModifyIndex"] = index
            j["SubmitTime"] = _now_ns()
            j["Stable"] = False
        jobs[j["ID"]] = j
        versions = state["versions"].setdefault(j["ID"], [])
        versions[:] = [v for v in versions if v["Version"] != j["Version"]] + [copy.deepcopy(j)]
        del versions[:-6]  # job_tracked_versions default 6
        if op.get("eval"):
            state["evals"][op["eval"]["ID"]] = dict(op["eval"], JobModifyIndex=j["JobModifyIndex"], CreateIndex=index,
                                                     ModifyIndex=index, SnapshotIndex=index)
        return index
    if kind == "job_deregister":
        j = jobs.get(op["job_id"])
        if j is None:
            raise RPCError("job not found", 404)
        if op.get("purge"):
            del jobs[op["job_id"]]
            state["versions"].pop(op["job_id"], None)
        else:
            j["Stop"] = True
            j["ModifyIndex"] = j["JobModifyIndex"] = index
            j["Version"] += 1
            state["versions"].setdefault(j["ID"], []).append(copy.deepcopy(j))
            del state["versions"][j["ID"]][:-6]
        if op.get("eval"):
            state["evals"][op["eval"]["ID"]] = dict(op["eval"], JobModifyIndex=index, CreateIndex=index, ModifyIndex=index,
                                                     SnapshotIndex=index)
        return index
    if kind == "job_stable":
        j = jobs.get(op["job_id"])
        for v in state["versions"].get(op["job_id"], []):
            if v["Version"] == op["version"]:
                v["Stable"] = op["stable"]
        if j and j["Version"] == op["version"]:
            j["Stable"] = op["stable"]
            j["ModifyIndex"] = index
        return index
    if kind == "plan":
        # one scheduling pass: allocation changes, evaluation updates and deployments, in one write
        _apply_op(state, {"op": "alloc_upsert", "allocs": op.get("allocs") or []}, index)
        for e in op.get("evals") or []:
            cur = state["evals"].get(e["ID"])
            state["evals"][e["ID"]] = dict(e, CreateIndex=cur["CreateIndex"] if cur else index, ModifyIndex=index,
                                           ModifyTime=_now_ns())
        for d in op.get("deployments") or []:
            cur = state["deployments"].get(d["ID"])
            state["deployments"][d["ID"]] = dict(d, CreateIndex=cur["CreateIndex"] if cur else index, ModifyIndex=index)
        return index
    if kind == "evals":
        for e in op["evals"]:
            cur = state["evals"].get(e["ID"])
            state["evals"][e["ID"]] = dict(e, CreateIndex=cur["CreateIndex"] if cur else index, ModifyIndex=index)
        return index
    if kind == "alloc_transition":
        for aid in op["alloc_ids"]:
            a = allocs.get(aid)
            if a is None:
                raise RPCError(f"alloc not found: {aid}", 404)
            a["DesiredTransition"] = dict(a.get("DesiredTransition") or {}, Migrate=True)
            a["ModifyIndex"] = a["AllocModifyIndex"] = index
        for e in op.get("evals") or []:
            state["evals"][e["ID"]] = dict(e, CreateIndex=index, ModifyIndex=index, SnapshotIndex=index)
        return index
    if kind == "deployment_status":
        d = state["deployments"].get(op["id"])
        if d is None:
            raise RPCError(f"deployment not found: {op['id']}", 404)
        if d["Status"] not in ("running", "paused", "pending"):
            raise RPCError("can't fail terminal deployment", 500)
        d["Status"], d["StatusDescription"] = op["status"], op["description"]
        d["ModifyIndex"] = index
        for e in op.get("evals") or []:
            state["evals"][e["ID"]] = dict(e, CreateIndex=index, ModifyIndex=index, SnapshotIndex=index)
        return index
    if kind in ("scheduler_set", "autopilot_set"):
        key = "scheduler" if kind == "scheduler_set" else "autopilot"
        cur = state.get(key)
        if op.get("cas") is not None and (cur or {}).get("ModifyIndex", 0) != int(op["cas"]):
            return False
        state[key] = dict(op["config"], CreateIndex=(cur or {}).get("CreateIndex", index), ModifyIndex=index)
        return True
    if kind == "alloc_upsert":
        for a in op["allocs"]:
            cur = allocs.get(a["ID"])
            if cur:
                # scheduler-side fields only; keep client-side state
                for k in ("ClientStatus", "ClientDescription", "TaskStates", "DeploymentStatus"):
                    a[k] = cur.get(k)
                a["CreateIndex"] = cur["CreateIndex"]
            else:
                a["CreateIndex"] = index
            a["ModifyIndex"] = a["AllocModifyIndex"] = index
            a["ModifyTime"] = _now_ns()
            allocs[a["ID"]] = a
        return index
    if kind == "alloc_client_update":
        for u in op["updates"]:
            a = allocs.get(u["ID"])
            if not a:
                continue
            a["ClientStatus"] = u.get("ClientStatus", a["ClientStatus"])
            a["ClientDescription"] = u.get("ClientDescription", a.get("ClientDescription", ""))
            a["TaskStates"] = u.get("TaskStates") or a.get("TaskStates") or {}
            if u.get("DeploymentStatus"):
                a["DeploymentStatus"] = dict(u["DeploymentStatus"], ModifyIndex=index)
            a["ModifyIndex"] = index
            a["ModifyTime"] = _now_ns()
        return index
    if kind == "restore":
        restored = copy.deepcopy(op["state"])
        state.clear()
        state.update(_initial_state())
        state.update(restored)
        return index
    raise RPCError(f"unknown operation {kind}", 400)


def _spec(job: dict) -> str:
    """A job's specification without the fields the servers set: equal specs are the same job version."""
    skip = {"CreateIndex", "ModifyIndex", "JobModifyIndex", "SubmitTime", "Version", "Stable", "Stop", "Status",
            "StatusDescription"}
    return json.dumps({k: v for k, v in job.items() if k not in skip}, sort_keys=True)


def _event(msg, subsystem, index):
    return {"CreateIndex": index, "Details": None, "Message": msg, "Subsystem": subsystem, "Timestamp": _rfc3339()}


def _rfc3339(t=None):
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# ---------------------------------------------------------------- job specs

def job_from_hcl(text: str) -> dict:
    d = hcl.parse(text)
    jobs = d.get("job")
    if not isinstance(jobs, dict) or len(jobs) != 1:
        raise ValueError("job file must contain exactly one job block")
    (jid, body), = jobs.items()
    return _job_api(jid, body)


def _labelled(blocks) -> dict:
    """Labelled HCL blocks (`group "name" { ... }`) as one map name -> body; repeated blocks parse as a list of maps."""
    if isinstance(blocks, list):
        merged = {}
        for m in blocks:
            merged.update(m)
        return merged
    return blocks or {}


def _job_api(jid, b) -> dict:
    groups = []
    for gname, g in _labelled(b.get("group")).items():
        tasks = []
        tmap = _labelled(g.get("task"))
        for tname, t in tmap.items():
            tasks.append({"Name": tname, "Driver": t.get("driver", "raw_exec"), "Config": t.get("config") or {},
                          "Env": t.get("env"), "KillTimeout": int(parse_duration(t.get("kill_timeout", "5s")) * 1e9),
                          "KillSignal": t.get("kill_signal", ""), "Meta": t.get("meta"), "User": t.get("user", "")})
        groups.append({"Name": gname, "Count": int(g.get("count", 1)), "Tasks": tasks, "Meta": g.get("meta"),
                       "Constraints": _constraints(g) + [c for t in tmap.values() for c in _constraints(t)],
                       "Update": _update(g.get("update")), "Migrate": _update(g.get("migrate"), _MIGRATE_KEYS, "migrate")})
    dcs = b.get("datacenters") or ["*"]
    return {"ID": jid, "Name": b.get("name", jid), "Type": b.get("type", "service"), "Region": b.get("region", "global"),
            "Namespace": b.get("namespace", "default"), "Datacenters": dcs, "NodePool": b.get("node_pool", "default"),
            "Priority": int(b.get("priority", 50)), "TaskGroups": groups, "Meta": b.get("meta"),
            "Constraints": _constraints(b), "Update": _update(b.get("update")), "Migrate": _update(b.get("migrate"), _MIGRATE_KEYS, "migrate")}


_UPDATE_KEYS = {"max_parallel": ("MaxParallel", int), "min_healthy_time": ("MinHealthyTime", "dur"),
                "healthy_deadline": ("HealthyDeadline", "dur"), "progress_deadline": ("ProgressDeadline", "dur"),
                "auto_revert": ("AutoRevert", bool), "auto_promote": ("AutoPromote", bool), "canary": ("Canary", int),
                "health_check": ("HealthCheck", str), "stagger": ("Stagger", "dur")}
_MIGRATE_KEYS = {k: _UPDATE_KEYS[k] for k in ("max_parallel", "health_check", "min_healthy_time", "healthy_deadline")}


def _update(block, keys=_UPDATE_KEYS, label="update") -> dict | None:
    """An HCL update (or migrate) block as the API's UpdateStrategy (MigrateStrategy), durations in ns."""
    if not block:
        return None
    if isinstance(block, list):
        block = block[-1]
    out = {}
    for k, v in block.items():
        if k not in keys:
            raise ValueError(f"{label}: unexpected key {k}")
        name, conv = keys[k]
        out[name] = int(parse_duration(v) * 1e9) if conv == "dur" else conv(v)
    return out


def _constraints(block: dict) -> list[dict]:
    cs = block.get("constraint")
    if cs is None:
        return []
    if isinstance(cs, dict):
        cs = [cs]
    out = []
    for c in cs:
        op = c.get("operator", "=")
        if op == "distinct_hosts":
            out.append({"LTarget": "", "RTarget": str(c.get("value", "true")).lower(), "Operand": "distinct_hosts"})
        else:
            out.append({"LTarget": c.get("attribute", ""), "RTarget": str(c.get("value", "")), "Operand": op})
    return out


def _node_value(node: dict, target: str):
    m = re.fullmatch(r"\$\{(.+)\}", target.strip())
    if not m:
        return target
    key = m.group(1)
    direct = {"node.class": node.get("NodeClass", ""), "node.datacenter": node.get("Datacenter"),
              "node.unique.name": node.get("Name"), "node.unique.id": node.get("ID"), "node.pool": node.get("NodePool")}
    if key in direct:
        return direct[key]
    if key.startswith("meta."):
        return (node.get("Meta") or {}).get(key[5:])
    if key.startswith("attr."):
        return (node.get("Attributes") or {}).get(key[5:])
    return None


def node_satisfies(node: dict, constraints: list[dict]) -> bool:
    for c in constraints or []:
        op = c.get("Operand", "=")
        if op == "distinct_hosts":
            continue
        lv = _node_value(node, c.get("LTarget", ""))
        rv = c.get("RTarget", "")
        if op in ("=", "==", "is"):
            ok = lv is not None and str(lv) == rv
        elif op in ("!=", "not"):
            ok = lv is None or str(lv) != rv
        elif op == "regexp":
            ok = lv is not None and re.search(rv, str(lv)) is not None
        elif op == "is_set":
            ok = lv is not None
        elif op == "is_not_set":
            ok = lv is None
        elif op == "set_contains":
            ok = lv is not None and set(x.strip() for x in rv.split(",")) <= set(x.strip() for x in str(lv).split(","))
        else:
            ok = False
        if not ok:
            return False
    return True


def normalize_job(j: dict) -> dict:
    j = dict(j)
    j.setdefault("Name", j.get("ID"))
    j.setdefault("Type", "service")
    j.setdefault("Priority", 50)
    j.setdefault("Namespace", "default")
    j.setdefault("Region", "global")
    j.setdefault("Datacenters", ["*"])
    j.setdefault("NodePool", "default")
    if not j.get("ID"):
        raise RPCError("Job ID must be set", 400)
    if not j.get("TaskGroups"):
        raise RPCError("Missing job task groups", 400)
    errs = job_errors(j)
    if errs:
        raise RPCError(_multierror([e for e in errs]), 500)
    for g in j["TaskGroups"]:
        g.setdefault("Count", 1)
        if j["Type"] == "service":
            # as Job.Canonicalize: the job's update and migrate blocks over the defaults, the group's over those
            for key, default in (("Update", DEFAULT_UPDATE), ("Migrate", DEFAULT_MIGRATE)):
                g[key] = _over(default, j.get(key), g.get(key))
    tmpl = sample("nomad", "GET /v1/node/:node_id/allocations")[0]["Job"]
    return fill(j, tmpl, "Job", ".Job")


def _over(default: dict, *blocks) -> dict:
    """Job.Canonicalize's merge: each block's set values over the ones before (the defaults first)."""
    out = dict(default)
    for b in blocks:
        out.update({k: v for k, v in (b or {}).items() if v is not None})
    return out


DEFAULT_UPDATE = {"Stagger": 30 * 10**9, "MaxParallel": 1, "HealthCheck": "checks", "MinHealthyTime": 10 * 10**9,
                  "HealthyDeadline": 300 * 10**9, "ProgressDeadline": 600 * 10**9, "AutoRevert": False,
                  "AutoPromote": False, "Canary": 0}
DEFAULT_MIGRATE = {"MaxParallel": 1, "HealthCheck": "checks", "MinHealthyTime": 10 * 10**9, "HealthyDeadline": 300 * 10**9}
DRIVERS = ("raw_exec", "exec")


def job_errors(j: dict) -> list[str]:
    """Validation errors of a job, worded like Job.Validate; features the stand-in does not run are errors too."""
    errs = []
    if j.get("Type", "service") not in ("service",):
        errs.append(f"job type {j.get('Type')!r}: only service jobs are implemented by the sandbox stand-in")
    for g in j.get("TaskGroups") or []:
        gerrs = []
        if int(g.get("Count", 1)) < 0:
            gerrs.append("Task group count can't be negative")
        upd = {**(j.get("Update") or {}), **(g.get("Update") or {})}
        if upd.get("Canary"):
            gerrs.append("update.canary: canary deployments are not implemented by the sandbox stand-in")
        if upd.get("AutoRevert"):
            gerrs.append("update.auto_revert: automatic reverts are not implemented by the sandbox stand-in")
        gerrs += _migrate_errors(_over(DEFAULT_MIGRATE, j.get("Migrate"), g.get("Migrate")))
        if not g.get("Tasks"):
            gerrs.append("Missing tasks for task group")
        for t in g.get("Tasks") or []:
            terrs = []
            if t.get("Driver") not in DRIVERS:
                terrs.append(f"driver {t.get('Driver')!r} is not implemented by the sandbox stand-in (raw_exec, exec)")
            elif not (t.get("Config") or {}).get("command"):
                terrs.append("missing required field 'command' in config")
            if terrs:
                gerrs.append(f"Task {t.get('Name')} validation failed: " + _multierror(terrs))
        if gerrs:
            errs.append(f"Task group {g.get('Name')} validation failed: " + _multierror(gerrs))
    return errs


def _migrate_errors(m: dict) -> list[str]:
    """MigrateStrategy.Validate's errors (durations in ns)."""
    errs = []
    if m["MaxParallel"] < 0:
        errs.append(f"MaxParallel must be >= 0 but found {m['MaxParallel']}")
    if m["HealthCheck"] not in ("checks", "task_states") and (m["HealthCheck"] or m["MaxParallel"] > 0):
        errs.append(f"Invalid HealthCheck: {m['HealthCheck']!r}" if m["HealthCheck"] else "Missing HealthCheck")
    for key in ("MinHealthyTime", "HealthyDeadline"):
        if m[key] < 0:
            errs.append(f"{key} is {m[key] / 1e9:g}s and must be >= 0")
    if m["MinHealthyTime"] > m["HealthyDeadline"]:
        errs.append("MinHealthyTime must be less than HealthyDeadline")
    return errs


def _multierror(errs: list[str]) -> str:
    """hashicorp/go-multierror's text."""
    return f"{len(errs)} error(s) occurred:\n\n" + "\n".join(f"* {e}" for e in errs)


# ---------------------------------------------------------------- scheduler

DEFAULT_SCHEDULER_CONFIG = {"SchedulerAlgorithm": "binpack", "MemoryOversubscriptionEnabled": False,
                            "RejectJobRegistration": False, "PauseEvalBroker": False,
                            "PreemptionConfig": {"SystemSchedulerEnabled": True, "SysBatchSchedulerEnabled": False,
                                                 "BatchSchedulerEnabled": False, "ServiceSchedulerEnabled": False}}


def new_eval(job: dict, triggered_by: str, status: str = "pending", previous: str = "", node_id: str = "") -> dict:
    now = _now_ns()
    return {"ID": str(uuid.uuid4()), "Namespace": job.get("Namespace", "default"), "Priority": job.get("Priority", 50),
            "Type": job.get("Type", "service"), "TriggeredBy": triggered_by, "JobID": job.get("ID", ""),
            "JobModifyIndex": job.get("JobModifyIndex", 0), "NodeID": node_id, "NodeModifyIndex": 0, "DeploymentID": "",
            "Status": status, "StatusDescription": "", "Wait": 0, "WaitUntil": None, "NextEval": "",
            "PreviousEval": previous, "BlockedEval": "", "RelatedEvals": None, "FailedTGAllocs": None,
            "ClassEligibility": None, "EscapedComputedClass": False, "AnnotatePlan": False, "QueuedAllocations": {},
            "SnapshotIndex": 0, "CreateIndex": 0, "ModifyIndex": 0, "CreateTime": now, "ModifyTime": now}


class Plan:
    def __init__(self):
        self.place: list[dict] = []
        self.stop: list[dict] = []
        self.inplace: list[dict] = []
        self.deployments: list[dict] = []
        self.deployment_id = ""
        self.queued: dict[str, int] = {}
        self.failed: dict[str, dict] = {}
        self.desired: dict[str, dict] = {}
        self.reason = "node-update"


def drain_actions(st: dict, now: float) -> tuple[list[str], list[str]]:
    """The drainer (nomad/drainer): which allocations on draining nodes to mark for migration now, and which
    drains are complete. Per task group, allocations move migrate.max_parallel at a time: a batch is marked
    only while the group keeps count - max_parallel allocations with their health set, so a replacement must
    be healthy (migrate.min_healthy_time) before the next one goes. At the deadline all that remain are marked.
    A drain is complete once the node runs nothing (or at its deadline)."""
    draining = {nid: n["DrainStrategy"] for nid, n in st["nodes"].items() if n.get("DrainStrategy")}
    if not draining:
        return [], []
    past = {nid for nid, ds in draining.items()
            if ds.get("Deadline", 0) > 0 and now > _parse_rfc3339(ds.get("ForceDeadline"))}

    def terminal(a):
        return a["DesiredStatus"] != "run" or a["ClientStatus"] in TERMINAL

    marks = [a["ID"] for a in st["allocs"].values() if a["NodeID"] in past and not terminal(a)
             and not (a.get("DesiredTransition") or {}).get("Migrate")]
    groups: dict[tuple, list] = {}
    for a in st["allocs"].values():
        groups.setdefault((a["JobID"], a["TaskGroup"]), []).append(a)
    for (jid, gname), allocs in sorted(groups.items()):
        job = st["jobs"].get(jid)
        g = next((g for g in (job or {}).get("TaskGroups") or [] if g["Name"] == gname), None)
        if g is None:
            continue
        live = [a for a in allocs if not terminal(a)]
        healthy = sum(1 for a in live if (a.get("DeploymentStatus") or {}).get("Healthy") is not None)
        drainable = sorted((a for a in live if a["NodeID"] in draining and a["NodeID"] not in past
                            and not (a.get("DesiredTransition") or {}).get("Migrate")), key=lambda a: a["Name"])
        room = healthy - (g["Count"] - (g.get("Migrate") or DEFAULT_MIGRATE)["MaxParallel"])
        marks += [a["ID"] for a in drainable[:max(0, room)]]
    busy = {a["NodeID"] for a in st["allocs"].values() if a["ClientStatus"] not in TERMINAL}
    return marks, sorted(nid for nid in draining if nid in past or nid not in busy)


def _group_spec(job: dict, name: str) -> str:
    g = next((g for g in job.get("TaskGroups") or [] if g["Name"] == name), {})
    return json.dumps({k: v for k, v in g.items() if k not in ("Count", "Update", "Migrate")}, sort_keys=True)


def _node_drivers_ok(node: dict, group: dict) -> bool:
    drivers = node.get("Drivers") or {}
    return all((drivers.get(t.get("Driver")) or {}).get("Detected") and (drivers.get(t.get("Driver")) or {}).get("Healthy")
               for t in group.get("Tasks") or [])


def plan_job(st: dict, job: dict | None, algorithm: str, job_id: str) -> Plan:
    """The reconciler and placement of one service job: what to stop, update in place and place, the
    deployment's progress, and what could not be placed (shared by the scheduler and the plan endpoint)."""
    plan = Plan()
    jallocs = [a for a in st["allocs"].values() if a["JobID"] == job_id]
    if job is None:  # purged: whatever still runs is stopped
        plan.reason = "job-deregister"
        plan.stop = [dict(a, DesiredStatus="stop", DesiredDescription="alloc not needed as job is stopped")
                     for a in jallocs if a["DesiredStatus"] == "run" and a["ClientStatus"] not in TERMINAL]
        return plan
    now = time.time()
    deps = sorted((d for d in st["deployments"].values() if d["JobID"] == job_id), key=lambda d: d["CreateIndex"])
    current = next((d for d in reversed(deps) if d["JobVersion"] == job["Version"]), None)
    uses_deploy = job.get("Type") == "service" and not job.get("Stop") and \
        any((g.get("Update") or {}).get("MaxParallel", 0) > 0 for g in job["TaskGroups"])
    for d in deps:
        if d["Status"] in ("running", "paused") and (current is None or d["ID"] != current["ID"]):
            plan.deployments.append(dict(d, Status="cancelled", StatusDescription="Cancelled due to newer version of job"))
    nodes_all = st["nodes"]
    for g in job["TaskGroups"]:
        gname = g["Name"]
        upd = g.get("Update") or {}
        desired = {"Ignore": 0, "Place": 0, "Migrate": 0, "Stop": 0, "InPlaceUpdate": 0, "DestructiveUpdate": 0,
                   "Canary": 0, "Preemptions": 0}
        plan.desired[gname] = desired
        live = [a for a in jallocs if a["TaskGroup"] == gname and a["DesiredStatus"] == "run" and a["ClientStatus"] not in TERMINAL]
        want = 0 if job.get("Stop") else g["Count"]
        # migrations: allocations the drainer marked (DesiredTransition.Migrate, as a stop through the API does);
        # the others on a draining node keep running until their turn
        for a in list(live):
            n = nodes_all.get(a["NodeID"]) or {}
            if (a.get("DesiredTransition") or {}).get("Migrate"):
                plan.stop.append(dict(a, DesiredStatus="stop", DesiredDescription="alloc is being migrated",
                                      DesiredTransition={"Migrate": True}))
                plan.reason = "node-drain" if n.get("DrainStrategy") else "alloc-stop"
                desired["Migrate"] += 1
                live.remove(a)
        # too many: stop the highest indexes
        if len(live) > want:
            for a in sorted(live, key=lambda a: a["Name"], reverse=True)[: len(live) - want]:
                plan.stop.append(dict(a, DesiredStatus="stop", DesiredDescription="alloc not needed due to job update"))
                desired["Stop"] += 1
                live.remove(a)
            plan.reason = "job-register"
        # a new job version: unchanged groups are updated in place, changed ones replaced (max_parallel at a time)
        outdated = [a for a in live if (a.get("Job") or {}).get("Version") != job["Version"]]
        destructive = []
        for a in outdated:
            if _group_spec(a.get("Job") or {}, gname) == _group_spec(job, gname):
                plan.inplace.append(dict(a, Job=job, DeploymentID=current["ID"] if current else a.get("DeploymentID", "")))
                desired["InPlaceUpdate"] += 1
            else:
                destructive.append(a)
        mine = [a for a in jallocs if current and a.get("DeploymentID") == current["ID"] and a["TaskGroup"] == gname]
        in_flight = sum(1 for a in mine if a["DesiredStatus"] == "run" and a["ClientStatus"] not in TERMINAL
                        and (a.get("DeploymentStatus") or {}).get("Healthy") is not True)
        if destructive:
            if current is not None and current["Status"] in ("failed", "cancelled"):
                allowed = 0  # a failed deployment stops the rollout
            elif upd.get("MaxParallel", 0) > 0:
                allowed = max(0, upd["MaxParallel"] - in_flight)
            else:
                allowed = len(destructive)
            for a in sorted(destructive, key=lambda a: a["Name"])[:allowed]:
                plan.stop.append(dict(a, DesiredStatus="stop", DesiredDescription="alloc is being updated due to job update"))
                desired["DestructiveUpdate"] += 1
                live.remove(a)
            plan.reason = "deployment-watcher" if current else "job-register"
        desired["Ignore"] = len(live) - desired["InPlaceUpdate"]
        # placements
        missing = want - len(live)
        recent_fail = [a for a in jallocs if a["TaskGroup"] == gname and a["ClientStatus"] == "failed"
                       and _now_ns() - a["ModifyTime"] < 5e9]
        if missing > 0 and recent_fail:
            plan.queued[gname] = missing  # a failed allocation is rescheduled after a delay
            plan.reason = "alloc-failure"
            continue
        if missing <= 0:
            plan.queued[gname] = 0
            continue
        cons = (job.get("Constraints") or []) + (g.get("Constraints") or [])
        distinct = any(c.get("Operand") == "distinct_hosts" and c.get("RTarget", "true") == "true" for c in cons)
        pool = [n for n in nodes_all.values() if n["Status"] == "ready" and n["SchedulingEligibility"] == "eligible"
                and not n.get("DrainStrategy") and any(fnmatch.fnmatch(n["Datacenter"], d) for d in job["Datacenters"])
                and job.get("NodePool") in ("all", n.get("NodePool", "default"))]
        nodes = [n for n in pool if node_satisfies(n, cons) and _node_drivers_ok(n, g)]
        used = {a["Name"] for a in live}
        load = {n["ID"]: sum(1 for a in st["allocs"].values() if a["NodeID"] == n["ID"] and a["DesiredStatus"] == "run"
                             and a["ClientStatus"] not in TERMINAL) for n in nodes}
        jload = {n["ID"]: sum(1 for a in live if a["NodeID"] == n["ID"]) for n in nodes}
        prev = {a["Name"]: a for a in jallocs if a["DesiredStatus"] != "run" or a["ClientStatus"] in TERMINAL}
        prev.update({a["Name"]: a for a in plan.stop if a["TaskGroup"] == gname})
        placed = 0
        for i in range(want * 2):
            if placed >= missing:
                break
            name = f"{job['ID']}.{gname}[{i}]"
            if name in used:
                continue
            cands = [n for n in nodes if not distinct or jload[n["ID"]] == 0]
            if not cands:
                break
            # job anti-affinity first, then binpack (fullest node) or spread (emptiest node)
            node = min(cands, key=lambda n: (jload[n["ID"]], -load[n["ID"]] if algorithm == "binpack" else load[n["ID"]], n["ID"]))
            jload[node["ID"]] += 1
            load[node["ID"]] += 1
            p = prev.get(name)
            a = _new_alloc(job, g, node, name, p)
            if uses_deploy and current is None:
                current = new_deployment(job)
                plan.deployments.append(current)
            if current is not None and current["Status"] == "running":
                a["DeploymentID"] = current["ID"]
            plan.place.append(a)
            used.add(name)
            placed += 1
            if p and not p.get("NextAllocation"):
                stopped = next((x for x in plan.stop if x["ID"] == p["ID"]), None)
                if stopped is not None:
                    stopped["NextAllocation"] = a["ID"]
                else:
                    plan.stop.append(dict(p, NextAllocation=a["ID"]))
        if placed < missing:
            plan.failed[gname] = {"NodesEvaluated": len(pool), "NodesFiltered": len(pool) - len(nodes), "NodesInPool": len(pool),
                                  "NodesAvailable": {dc: sum(1 for n in pool if n["Datacenter"] == dc) for dc in job["Datacenters"]},
                                  "ClassFiltered": None, "ConstraintFiltered": {"constraints or drivers": len(pool) - len(nodes)} if len(pool) > len(nodes) else None,
                                  "NodesExhausted": 0, "ClassExhausted": None, "DimensionExhausted": {"distinct_hosts": 1} if distinct else None,
                                  "QuotaExhausted": None, "ResourcesExhausted": None, "Scores": None, "ScoreMetaData": None,
                                  "AllocationTime": 1000, "CoalescedFailures": missing - placed - 1}
        plan.queued[gname] = missing - placed
        desired["Place"] = max(0, placed - desired["DestructiveUpdate"] - desired["Migrate"])
    if plan.place and plan.reason == "node-update" and any(not a.get("PreviousAllocation") for a in plan.place):
        plan.reason = "job-register"
    if current is not None:
        plan.deployment_id = current["ID"]
        d = _deployment_progress(current, job, jallocs + plan.place, now)
        if d is not None and not any(x["ID"] == d["ID"] for x in plan.deployments):
            plan.deployments.append(d)
        elif d is not None:
            plan.deployments = [d if x["ID"] == d["ID"] else x for x in plan.deployments]
    return plan


def new_deployment(job: dict) -> dict:
    groups = {}
    for g in job["TaskGroups"]:
        u = g.get("Update") or {}
        groups[g["Name"]] = {"AutoRevert": bool(u.get("AutoRevert")), "AutoPromote": bool(u.get("AutoPromote")),
                             "Promoted": False, "PlacedCanaries": None, "DesiredCanaries": 0, "DesiredTotal": g["Count"],
                             "PlacedAllocs": 0, "HealthyAllocs": 0, "UnhealthyAllocs": 0,
                             "ProgressDeadline": u.get("ProgressDeadline", 0),
                             "RequireProgressBy": _rfc3339(time.time() + u.get("ProgressDeadline", 0) / 1e9)}
    return {"ID": str(uuid.uuid4()), "Namespace": job.get("Namespace", "default"), "JobID": job["ID"],
            "JobVersion": job["Version"], "JobModifyIndex": job["JobModifyIndex"], "JobSpecModifyIndex": job["JobModifyIndex"],
            "JobCreateIndex": job["CreateIndex"], "IsMultiregion": False, "TaskGroups": groups, "Status": "running",
            "StatusDescription": "Deployment is running", "EvalPriority": job.get("Priority", 50), "CreateIndex": 0,
            "ModifyIndex": 0}


def _deployment_progress(d: dict, job: dict, allocs: list[dict], now: float) -> dict | None:
    """Counts of a running deployment from its allocations; successful / failed as the deployment watcher decides."""
    if d["Status"] != "running":
        return None
    out = json.loads(json.dumps(d))
    all_done = True
    for gname, tg in out["TaskGroups"].items():
        mine = [a for a in allocs if a.get("DeploymentID") == d["ID"] and a["TaskGroup"] == gname]
        healthy = sum(1 for a in mine if (a.get("DeploymentStatus") or {}).get("Healthy") is True)
        unhealthy = sum(1 for a in mine if (a.get("DeploymentStatus") or {}).get("Healthy") is False)
        if healthy > tg["HealthyAllocs"]:
            tg["RequireProgressBy"] = _rfc3339(now + tg["ProgressDeadline"] / 1e9)
        tg["PlacedAllocs"], tg["HealthyAllocs"], tg["UnhealthyAllocs"] = len(mine), healthy, unhealthy
        if unhealthy:
            out["Status"], out["StatusDescription"] = "failed", "Failed due to unhealthy allocations"
        elif tg["ProgressDeadline"] and now > _parse_rfc3339(tg["RequireProgressBy"]) and healthy < tg["DesiredTotal"]:
            out["Status"], out["StatusDescription"] = "failed", "Failed due to progress deadline"
        live_old = [a for a in allocs if a["JobID"] == job["ID"] and a["TaskGroup"] == gname and a["DesiredStatus"] == "run"
                    and a["ClientStatus"] not in TERMINAL and (a.get("Job") or {}).get("Version") != job["Version"]]
        if healthy < tg["DesiredTotal"] or live_old:
            all_done = False
    if out["Status"] == "running" and all_done:
        out["Status"], out["StatusDescription"] = "successful", "Deployment completed successfully"
    return out if out != d else None


def _new_alloc(job, g, node, name, prev):
    aid = str(uuid.uuid4())
    return {"ID": aid, "EvalID": "", "Name": name, "Namespace": job.get("Namespace", "default"),
            "NodeID": node["ID"], "NodeName": node["Name"], "JobID": job["ID"], "Job": job, "TaskGroup": g["Name"],
            "DesiredStatus": "run", "DesiredDescription": "", "DesiredTransition": {"Migrate": None},
            "ClientStatus": "pending", "ClientDescription": "", "TaskStates": {},
            "PreviousAllocation": prev["ID"] if prev else "", "NextAllocation": "",
            "RescheduleTracker": {"Events": [{"PrevAllocID": prev["ID"], "PrevNodeID": prev["NodeID"],
                                              "RescheduleTime": _now_ns(), "Delay": 0}]} if prev else None,
            "DeploymentID": "", "DeploymentStatus": None, "FollowupEvalID": "",
            "CreateTime": _now_ns(), "ModifyTime": _now_ns(),
            "Metrics": {"NodesEvaluated": 1, "NodesFiltered": 0, "NodesInPool": 1, "NodesAvailable": {node["Datacenter"]: 1},
                        "NodesExhausted": 0, "AllocationTime": 1000, "CoalescedFailures": 0, "Scores": {}}}


# ---------------------------------------------------------------- agent

class NomadAgent(NomadACL, BaseAgent):
    product = "nomad"
    LOCAL_RPCS = BaseAgent.LOCAL_RPCS | {"Status.Members"}

    def __init__(self, cfg, paths, build, dev=False):
        super().__init__(cfg, paths, build, dev)
        c = cfg
        self.region = c.get("region", "global")
        self.dc = c.get("datacenter", "dc1")
        self.name = c.get("name") or os.uname().nodename
        self.srv_cfg = c.get("server") or {}
        self.cli_cfg = c.get("client") or {}
        self.is_server = bool(self.srv_cfg.get("enabled"))
        self.acl_settings()
        self.is_client = bool(self.cli_cfg.get("enabled"))
        bind = resolve_addr(c.get("bind_addr"), "0.0.0.0")
        self.bind = bind
        addrs = c.get("addresses") or {}
        adv = c.get("advertise") or {}
        ports = c.get("ports") or {}
        self.ports = {"http": ports.get("http", 4646), "rpc": ports.get("rpc", 4647), "serf": ports.get("serf", 4648)}
        self.addrs = {k: resolve_addr(addrs.get(k), bind) for k in ("http", "rpc", "serf")}
        default_adv = self.default_advertise(bind)
        self.adv = {}
        for k in ("http", "rpc", "serf"):
            a = resolve_addr(adv.get(k), self.addrs[k] if self.addrs[k] != "0.0.0.0" else default_adv)
            self.adv[k] = a if ":" in a else f"{a}:{self.ports[k]}"
        self.heartbeat_grace = dur(self.srv_cfg.get("heartbeat_grace"), "10s")
        self.min_ttl = dur(self.srv_cfg.get("min_heartbeat_ttl"), "10s")
        self.hb_seen: dict[str, float] = {}
        self.metrics = Metrics()
        self.client_node_id = None
        self.client = None
        if self.is_client:
            p = self.data_dir / "client" / "client-id"
            p.parent.mkdir(parents=True, exist_ok=True)
            if not p.is_file():
                p.write_text(str(uuid.uuid4()))
            self.client_node_id = p.read_text().strip()
        sp = self.data_dir / "server" / "node-id"
        if self.is_server:
            sp.parent.mkdir(parents=True, exist_ok=True)
            if not sp.is_file():
                sp.write_text(self.node_id)
            self.node_id = sp.read_text().strip()

    def tls_contexts(self):
        from .tls import nomad_contexts
        return nomad_contexts(self.cfg, self.is_server)

    def should_leave(self, sig):
        return bool(self.cfg.get("leave_on_terminate") if sig == "SIGTERM" else self.cfg.get("leave_on_interrupt"))

    def tags(self):
        return {"role": "nomad", "region": self.region, "dc": self.dc, "vsn": "1", "mvn": "1", "build": self.version,
                "port": self.adv["rpc"].rsplit(":", 1)[1], "rpc_addr": self.adv["rpc"].rsplit(":", 1)[0],
                "id": self.node_id, "raft_vsn": "3", "expect": str(self.srv_cfg.get("bootstrap_expect", 0))}

    def start(self):
        self.log("INFO", f"agent: Nomad agent started! version={self.version} region={self.region} datacenter={self.dc} server={str(self.is_server).lower()} client={str(self.is_client).lower()}")
        if self.is_server:
            host, port = self.adv["serf"].rsplit(":", 1)
            self.start_serf(name=f"{self.name}.{self.region}", addr=host, bind=self.addrs["serf"], port=int(port),
                            tags=self.tags(), key=self.gossip_key(self.srv_cfg.get("encrypt"),
                                                                  self.data_dir / "server" / "serf" / "keyring"),
                            field="region", value=self.region)
            self.start_raft(self.addrs["rpc"], self.ports["rpc"], name=f"{self.name}.{self.region}", rpc_addr=self.adv["rpc"],
                            data_dir=self.data_dir / "server", apply_fn=_apply, initial_state=_initial_state(),
                            bootstrap_expect=self.srv_cfg.get("bootstrap_expect", 0),
                            multiplier=self.srv_cfg.get("raft_multiplier", 1))
            sj = self.srv_cfg.get("server_join") or {}
            entries = (sj.get("retry_join") or []) + (self.srv_cfg.get("retry_join") or []) + (sj.get("start_join") or []) + (self.srv_cfg.get("start_join") or [])
            self.start_retry_join(entries, dur(sj.get("retry_interval") or self.srv_cfg.get("retry_interval"), "30s"),
                                  sj.get("retry_max", self.srv_cfg.get("retry_max", 0)), 4648, lambda a: self.serf.join(a)[0])
        self.serve_http(self.addrs["http"], self.ports["http"], https=bool((self.cfg.get("tls") or {}).get("http")))
        self.log("INFO", f"http: Starting HTTP server: address={self.addrs['http']}:{self.ports['http']}")
        if self.is_client:
            self.client = NomadClient(self)
            self.client.start()
        from .nomad_consul import ConsulRegistration
        self.consul = ConsulRegistration(self)
        self.consul.start()

    def ready(self):
        sd_notify("READY=1")

    def shutdown(self):
        if self.client:
            self.client.stop()
        if getattr(self, "consul", None):
            self.consul.stop()
        super().shutdown()

    def leave(self):
        if self.client and self.cli_cfg.get("drain_on_shutdown"):
            self.client.drain_self()
        super().leave()

    def _server_members(self):
        out = []
        for m in self.serf.list():
            t = m["Tags"]
            if t.get("role") == "nomad" and t.get("region") == self.region:
                out.append({"id": t.get("id"), "name": m["Name"], "addr": f"{t.get('rpc_addr', m['Addr'])}:{t.get('port', 4647)}",
                            "status": m["Status"], "version": t.get("build", "")})
        return out

    def known_servers(self):
        if self.serf:
            return [m["addr"] for m in self._server_members() if m["status"] == "alive"]
        return self.client._candidates(discover=False) if self.client else []

    def no_servers_msg(self):
        return "no servers known (client is not connected to any Nomad server)"

    # ------------------------------------------------------------ leader duties
    def _leadership(self, is_leader):
        if not is_leader:
            return
        self.log("INFO", "nomad: cluster leadership acquired")
        now = time.monotonic()
        self.hb_seen = {nid: now for nid in self.raft.snapshot()[0]["nodes"]}
        self.while_leader(self._leader_tick, 0.3, "nomad: leader loop", catch_all=True)

    def _ttl(self):
        return self.min_ttl

    def _leader_tick(self):
        st, _ = self.raft.snapshot()
        now = time.monotonic()
        self._init_configs(st)
        # heartbeats
        for nid, n in st["nodes"].items():
            seen = self.hb_seen.setdefault(nid, now)
            if n["Status"] == "ready" and now - seen > self._ttl() + self.heartbeat_grace:
                self.log("WARN", f"nomad.heartbeat: node TTL expired: node_id={nid}")
                self.raft.apply({"op": "node_status", "node_id": nid, "status": "down"})
        st, _ = self.raft.snapshot()
        # lost allocations on down nodes
        updates = []
        for a in st["allocs"].values():
            n = st["nodes"].get(a["NodeID"])
            if a["ClientStatus"] not in TERMINAL and (n is None or n["Status"] == "down"):
                a2 = dict(a, DesiredStatus="stop", DesiredDescription="alloc is lost since its node is down")
                a2["ClientStatus"] = "lost"
                updates.append(a2)
        if updates:
            self.raft.apply({"op": "alloc_upsert", "allocs": updates})
            self.raft.apply({"op": "alloc_client_update", "updates": [{"ID": a["ID"], "ClientStatus": "lost",
                                                                       "ClientDescription": "alloc is lost since its node is down"} for a in updates]})
            st, _ = self.raft.snapshot()
        marks, complete = drain_actions(st, time.time())
        if marks:
            jobs = sorted({st["allocs"][aid]["JobID"] for aid in marks})
            self.raft.apply({"op": "alloc_transition", "alloc_ids": marks,
                             "evals": [new_eval(st["jobs"].get(j) or {"ID": j}, "node-drain") for j in jobs]})
        for nid in complete:
            self.raft.apply({"op": "drain_complete", "node_id": nid})
        st, _ = self.raft.snapshot()
        sched = st.get("scheduler") or {}
        pending = sorted((e for e in st["evals"].values() if e["Status"] == "pending"), key=lambda e: e["CreateIndex"])
        if sched.get("PauseEvalBroker"):
            pending = []
        done = set()
        for ev in pending:
            job = st["jobs"].get(ev["JobID"])
            self._run_plan(st, job, ev, ev["JobID"])
            done.add(ev["JobID"])
            st, _ = self.raft.snapshot()
        live_jobs = {a["JobID"] for a in st["allocs"].values() if a["DesiredStatus"] == "run" and a["ClientStatus"] not in TERMINAL}
        for jid in sorted(set(st["jobs"]) | live_jobs):
            if jid not in done:
                self._run_plan(st, st["jobs"].get(jid), None, jid)
                st, _ = self.raft.snapshot()

    def _init_configs(self, st):
        """The first leader writes the scheduler and autopilot configurations (from the agent configuration)."""
        if st.get("scheduler") is None:
            self.raft.apply({"op": "scheduler_set", "config": dict(DEFAULT_SCHEDULER_CONFIG)})
        if st.get("autopilot") is None:
            ap = self.cfg.get("autopilot") or {}
            self.raft.apply({"op": "autopilot_set", "config": {
                "CleanupDeadServers": bool(ap.get("cleanup_dead_servers", True)),
                "LastContactThreshold": format_duration(dur(ap.get("last_contact_threshold"), "200ms")),
                "MaxTrailingLogs": int(ap.get("max_trailing_logs", 250)), "MinQuorum": int(ap.get("min_quorum", 0)),
                "ServerStabilizationTime": format_duration(dur(ap.get("server_stabilization_time"), "10s")),
                "EnableRedundancyZones": False, "DisableUpgradeMigration": False, "EnableCustomUpgrades": False}})
        ap = st.get("autopilot")
        if ap:  # the operator's autopilot configuration drives raft's autopilot
            r = self.raft
            r.cleanup_dead, r.max_trailing, r.min_quorum = ap["CleanupDeadServers"], ap["MaxTrailingLogs"], ap["MinQuorum"]
            r.stabilization = parse_duration(ap["ServerStabilizationTime"])
            r.lct = max(parse_duration(ap["LastContactThreshold"]), 3 * r.hb)

    def _run_plan(self, st, job, ev, jid):
        """Schedule one job (for its evaluation, or to keep it reconciled) and write the result in one raft entry."""
        plan = plan_job(st, job, (st.get("scheduler") or {}).get("SchedulerAlgorithm", "binpack"), jid)
        evals = []
        blocked = next((e for e in st["evals"].values() if e["JobID"] == jid and e["Status"] == "blocked"), None)
        changes = plan.place or plan.stop or plan.inplace or plan.deployments
        if ev is None and (plan.place or plan.stop):
            ev = new_eval(job or {"ID": jid}, plan.reason, status="pending")
        if ev is not None:
            ev = dict(ev, Status="complete", QueuedAllocations=plan.queued, FailedTGAllocs=plan.failed or None,
                      DeploymentID=plan.deployment_id or "")
            if plan.failed and blocked is None:
                blocked = new_eval(job, "queued-allocs", status="blocked", previous=ev["ID"])
                ev["BlockedEval"] = blocked["ID"]
                evals.append(blocked)
            evals.append(ev)
        if blocked is not None and not plan.failed and not any(b["ID"] == blocked["ID"] for b in evals):
            evals.append(dict(blocked, Status="complete", StatusDescription="evaluation unblocked"))
        if not (changes or evals):
            return
        for a in plan.place:
            a["EvalID"] = ev["ID"] if ev else a.get("EvalID", "")
        self.raft.apply({"op": "plan", "allocs": plan.stop + plan.inplace + plan.place, "evals": evals,
                         "deployments": plan.deployments})
        for d in plan.deployments:
            if d["Status"] == "successful" and job:
                self.raft.apply({"op": "job_stable", "job_id": jid, "version": d["JobVersion"], "stable": True})
        for a in plan.place:
            self.log("INFO", f"nomad: placed allocation: alloc_id={a['ID']} node_id={a['NodeID']} name={a['Name']}")

    # ------------------------------------------------------------ server RPCs
    def rpc_Status_Members(self, a):
        return self.serf.list()

    def rpc_Operator_RaftConfiguration(self, a):
        c = super().rpc_Operator_RaftConfiguration(a)
        for s in c["Servers"]:
            s["RaftProtocol"] = "3"
        return c

    def rpc_Operator_TransferLeader(self, a):
        if a.get("address"):
            target = next((i for i, c in self.raft.config.items() if c["addr"] == a["address"]), None)
            if target is None:
                raise RPCError(f"cannot find peer with address {a['address']}", 400)
            return self.raft.transfer_leadership(target)
        return super().rpc_Operator_TransferLeader(a)


    def rpc_Node_Register(self, a):
        node = a["node"]
        if a.get("region", self.region) != self.region:
            raise RPCError(f"region mismatch: node region {a.get('region')!r}, server region {self.region!r}", 400)
        idx = self.raft.apply({"op": "node_register", "node": node})
        self.hb_seen[node["ID"]] = time.monotonic()
        return {"Index": idx, "HeartbeatTTL": self._ttl(), "Servers": self.known_servers()}

    def rpc_Node_UpdateStatus(self, a):
        nid = a["node_id"]
        st, _ = self.raft.snapshot()
        if nid not in st["nodes"]:
            raise RPCError("node not found", 404)
        self.hb_seen[nid] = time.monotonic()
        if st["nodes"][nid]["Status"] != a.get("status", "ready"):
            self.raft.apply({"op": "node_status", "node_id": nid, "status": a.get("status", "ready")})
        return {"HeartbeatTTL": self._ttl(), "Servers": self.known_servers()}

    def rpc_Node_GetClientAllocs(self, a):
        st, _ = self.raft.snapshot()
        return [x for x in st["allocs"].values() if x["NodeID"] == a["node_id"]]

    def rpc_Node_UpdateAlloc(self, a):
        return self.raft.apply({"op": "alloc_client_update", "updates": a["updates"]})


# ---------------------------------------------------------------- client

class NomadClient:
    def __init__(self, agent: NomadAgent):
        self.agent = agent
        c = agent.cli_cfg
        self.id = agent.client_node_id
        sj = c.get("server_join") or {}
        entries = (c.get("servers") or []) + (sj.get("retry_join") or []) + (sj.get("start_join") or [])
        self.entries = entries
        self.retry_interval = min(dur(sj.get("retry_interval"), "30s"), 15.0)
        self._disc_cache: list[str] | None = None
        self._disc_at = 0.0
        self.servers: list[str] = []
        self.stopped = threading.Event()
        self.dir = agent.data_dir / "alloc"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_file = agent.data_dir / "client" / "allocs.json"
        self.running: dict[str, dict] = {}  # alloc id -> {pid, status}
        self.reported: dict[str, str] = {}
        self.ttl = 10.0
        self.registered = False
        self.last_hb = 0.0
        self.lock = threading.Lock()
        self._popen: dict[tuple[str, str], subprocess.Popen] = {}
        self._load()

    def _load(self):
        if self.state_file.is_file():
            try:
                self.running = json.loads(self.state_file.read_text())
            except ValueError:
                self.running = {}

    def _save(self):
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.running))
        os.replace(tmp, self.state_file)

    def node(self) -> dict:
        a = self.agent
        http = a.adv["http"]
        host = http.rsplit(":", 1)[0]
        raw_exec = bool((((a.cfg.get("plugin") or {}).get("raw_exec") or {}).get("config") or {}).get("enabled"))
        drivers = {"exec": {"Attributes": {"driver.exec": "true"}, "Detected": True, "HealthDescription": "Healthy",
                            "Healthy": True, "UpdateTime": _rfc3339()}}
        if raw_exec:  # disabled unless plugin "raw_exec" { config { enabled = true } }, as in Nomad
            drivers["raw_exec"] = {"Attributes": {"driver.raw_exec": "true"}, "Detected": True,
                                   "HealthDescription": "Healthy", "Healthy": True, "UpdateTime": _rfc3339()}
        n = {"ID": self.id, "SecretID": "", "Name": a.name, "Datacenter": a.dc, "NodeClass": a.cli_cfg.get("node_class", ""),
             "NodePool": a.cli_cfg.get("node_pool", "default"), "HTTPAddr": http, "TLSEnabled": False,
             "Status": "ready", "StatusDescription": "", "SchedulingEligibility": "eligible", "Drain": False,
             "DrainStrategy": None, "LastDrain": None, "Meta": a.cli_cfg.get("meta") or {},
             "Attributes": {"kernel.name": "linux", "os.name": "debian", "cpu.arch": "amd64", "nomad.version": a.version,
                            "nomad.revision": a.revision, "unique.hostname": os.uname().nodename,
                            "unique.network.ip-address": host, "unique.advertise.address": http,
                            "cpu.numcores": str(os.cpu_count()), **{f"driver.{d}": "1" for d in drivers}},
             "Drivers": drivers,
             "Links": {}, "ComputedClass": "v1:" + str(abs(hash(a.cli_cfg.get("node_class", ""))) % 10**18),
             "Version": a.version, "Address": host}
        return fill(n, sample("nomad", "GET /v1/node/:node_id"))

    def start(self):
        threading.Thread(target=self._loop, daemon=True, name="nomad-client").start()

    def stop(self):
        self.stopped.set()

    def _discovered(self, force: bool = False) -> list[str]:
        """client.servers / server_join entries resolved (cloud auto-join at most once per retry_interval)."""
        from . import autojoin
        now = time.monotonic()
        if not force and self._disc_cache is not None and now - self._disc_at < self.retry_interval:
            return self._disc_cache
        out = []
        for e in self.entries:
            try:
                out += [x if ":" in x else f"{x}:4647" for x in autojoin.resolve(e)]
            except autojoin.DiscoverError as ex:
                self.agent.log("WARN", f"client: discover failed: {ex}")
        consul = getattr(self.agent, "consul", None)
        if not self.entries and consul is not None:  # consul.client_auto_join: servers from the Consul catalog
            out += consul.discover("rpc")
        self._disc_cache, self._disc_at = out, now
        return out

    def _candidates(self, discover: bool = True):
        addrs = ([self.agent.adv["rpc"]] if self.agent.is_server else []) + list(self.servers)
        if discover or not addrs:
            addrs += self._discovered()
        seen = []
        for x in addrs:
            if x not in seen:
                seen.append(x)
        return seen

    def _rpc(self, name, args):
        errs = []
        tried = set()
        for discover in (False, True):
            for addr in self._candidates(discover=discover):
                if addr in tried:
                    continue
                tried.add(addr)
                try:
                    return call(addr, f"/rpc/{name}", {"args": args}, timeout=5.0)["result"]
                except RPCError as e:
                    if e.status == 0 or "No cluster leader" in str(e):
                        errs.append(f"{addr}: {e}")
                        continue
                    raise
        raise RPCError("no servers available: " + "; ".join(errs), 0)

    def _loop(self):
        log = self.agent.log
        while not self.stopped.is_set():
            try:
                now = time.monotonic()
                if not self.registered:
                    r = self._rpc("Node.Register", {"node": self.node(), "region": self.agent.region})
                    self.registered = True
                    self.ttl = r["HeartbeatTTL"]
                    self.servers = r.get("Servers") or self.servers
                    self.last_hb = now
                    log("INFO", f"client: node registration complete: node_id={self.id}")
                elif now - self.last_hb >= max(0.2, self.ttl / 3):
                    r = self._rpc("Node.UpdateStatus", {"node_id": self.id, "status": "ready"})
                    self.ttl = r["HeartbeatTTL"]
                    self.servers = r.get("Servers") or self.servers
                    self.last_hb = now
                allocs = self._rpc("Node.GetClientAllocs", {"node_id": self.id})
                self._sync(allocs)
            except RPCError as e:
                if e.status == 404:
                    self.registered = False
                log("WARN" if e.status else "ERROR", f"client: {'error registering' if not self.registered else 'rpc error'}: {e}")
                self.stopped.wait(1.0)
            except Exception as e:  # noqa: BLE001
                log("ERROR", f"client: loop failed: {e!r}")
            self.stopped.wait(0.3)

    # ------------------------------------------------------------ allocation runner
    def _sync(self, allocs):
        updates = []
        with self.lock:
            for a in allocs:
                aid = a["ID"]
                r = self.running.get(aid)
                if a["DesiredStatus"] == "run" and a["ClientStatus"] not in TERMINAL:
                    if r is None:
                        r = self._start(a)
                        self.running[aid] = r
                        self._save()
                    elif r["status"] == "running" and not any(_alive(p) for p in _pids(r)):
                        codes = {t: self._exit_code(aid, t) for t in (r.get("pids") or {})}
                        r["exit_codes"] = codes
                        r["status"] = "failed" if any(codes.values()) else "complete"
                        self._save()
                elif r is not None and r["status"] == "running":
                    r["status"] = "stopping"
                    threading.Thread(target=self._stop_alloc, args=(aid, r), daemon=True).start()
                elif r is None and a["ClientStatus"] not in TERMINAL:
                    r = {"pid": 0, "pids": {}, "status": "complete", "started": _rfc3339()}
                    self.running[aid] = r
                want = r["status"] if r and r["status"] != "stopping" else None
                if want and a["ClientStatus"] != want and a["ClientStatus"] != "lost":
                    updates.append({"ID": aid, "ClientStatus": want, "ClientDescription": {
                        "running": "Tasks are running", "complete": "All tasks have completed",
                        "failed": "Failed tasks"}.get(want, ""), "TaskStates": self._task_states(a, r)})
                health = self._health(a, r)
                if health is not None:
                    if updates and updates[-1]["ID"] == aid:
                        updates[-1]["DeploymentStatus"] = health
                    else:
                        updates.append({"ID": aid, "DeploymentStatus": health})
            known = {a["ID"] for a in allocs}
            for aid in [x for x in self.running if x not in known]:
                r = self.running.pop(aid)
                if r.get("status") == "running":
                    threading.Thread(target=self._stop_alloc, args=(aid, r), daemon=True).start()
            self._save()
        if updates:
            self._rpc("Node.UpdateAlloc", {"updates": updates})

    def _health(self, a, r):
        """The allocation health a deployment (its update block) or a migration (its migrate block) waits for:
        healthy once its tasks ran for min_healthy_time, unhealthy if they failed first or healthy_deadline
        passed (health_check = "task_states"). Only service jobs, as the client's health hook."""
        if (a.get("DeploymentStatus") or {}).get("Healthy") is not None or r is None:
            return None
        g = next((g for g in (a.get("Job") or {}).get("TaskGroups", []) if g.get("Name") == a["TaskGroup"]), {})
        upd = g.get("Update" if a.get("DeploymentID") else "Migrate") or {}
        ran = time.time() - r.get("started_ts", time.time())
        if r["status"] == "failed" or (r["status"] == "running" and ran > upd.get("HealthyDeadline", 300e9) / 1e9
                                        and ran < upd.get("MinHealthyTime", 10e9) / 1e9):
            return {"Healthy": False, "Timestamp": _rfc3339(), "Canary": False}
        if r["status"] == "running" and ran >= upd.get("MinHealthyTime", 10e9) / 1e9:
            return {"Healthy": True, "Timestamp": _rfc3339(), "Canary": False}
        return None

    def _stop_alloc(self, aid, r):
        """Stop every task of an allocation (SIGTERM, SIGKILL after kill_timeout) without blocking heartbeats."""
        self._kill(r, aid)
        with self.lock:
            r["status"] = "complete"
            self._save()

    def _task_states(self, a, r):
        tmpl = sample("nomad", "GET /v1/job/:job_id/allocations")[0]["TaskStates"]["redis"]
        out = {}
        group = next((g for g in (a.get("Job") or {}).get("TaskGroups", []) if g.get("Name") == a["TaskGroup"]), {})
        codes = r.get("exit_codes") or {}
        for t in group.get("Tasks") or [{"Name": a["TaskGroup"]}]:
            name = t["Name"]
            st = {"running": "running", "complete": "dead", "failed": "dead"}.get(r["status"], "pending")
            failed = bool(codes.get(name)) or (r["status"] == "failed" and not codes)
            ev = [{"Type": "Received", "Time": _now_ns(), "DisplayMessage": "Task received by client"}]
            if (r.get("pids") or {}).get(name):
                ev.append({"Type": "Started", "Time": _now_ns(), "DisplayMessage": "Task started by client"})
            if st == "dead":
                ev.append({"Type": "Terminated" if name in codes else "Killed", "Time": _now_ns(),
                           "ExitCode": codes.get(name) or 0, "FailsTask": failed,
                           "DisplayMessage": f"Exit Code: {codes.get(name) or 0}" if name in codes else "Task successfully killed"})
            s = {"State": st, "Failed": failed, "StartedAt": r.get("started", _rfc3339()),
                 "FinishedAt": _rfc3339() if st == "dead" else "0001-01-01T00:00:00Z", "Events": ev,
                 "Restarts": 0, "LastRestart": "0001-01-01T00:00:00Z"}
            out[name] = fill(s, tmpl)
        return out

    def _start(self, a) -> dict:
        """Start every task of the allocation's group (raw_exec: command + args, in the alloc dir)."""
        job = a.get("Job") or {}
        group = next((g for g in job.get("TaskGroups", []) if g["Name"] == a["TaskGroup"]), None) or {}
        adir = self.dir / a["ID"]
        (adir / "logs").mkdir(parents=True, exist_ok=True)
        r = {"pid": 0, "pids": {}, "status": "running", "started": _rfc3339(), "started_ts": time.time(), "kill_timeout": 5.0,
             "exit_codes": {}}
        for task in group.get("Tasks") or []:
            name = task.get("Name", "task")
            cfg = task.get("Config") or {}
            env = dict(os.environ)
            env.update({"NOMAD_ALLOC_ID": a["ID"], "NOMAD_ALLOC_NAME": a["Name"], "NOMAD_JOB_NAME": a["JobID"],
                        "NOMAD_GROUP_NAME": a["TaskGroup"], "NOMAD_TASK_NAME": name,
                        "NOMAD_ALLOC_DIR": str(adir), "NOMAD_DC": self.agent.dc, "NOMAD_REGION": self.agent.region,
                        "NOMAD_ALLOC_INDEX": a["Name"].rsplit("[", 1)[-1].rstrip("]")})
            env.update({k: str(v) for k, v in (task.get("Env") or {}).items()})
            cmd = [cfg["command"]] + [str(x) for x in cfg.get("args") or []]
            try:
                with open(adir / "logs" / f"{name}.stdout.0", "ab") as out, open(adir / "logs" / f"{name}.stderr.0", "ab") as err:
                    p = subprocess.Popen(cmd, cwd=adir, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
            except OSError as e:
                self.agent.log("ERROR", f"client.alloc_runner: failed to start task: alloc_id={a['ID']} task={name} error={e}")
                self._kill(r, a["ID"])
                return dict(r, status="failed", exit_codes={name: 127})
            self._popen[(a["ID"], name)] = p
            threading.Thread(target=p.wait, daemon=True).start()  # reap; keeps the exit code
            r["pids"][name] = p.pid
            r["pid"] = r["pid"] or p.pid
            r["kill_timeout"] = max(r["kill_timeout"], task.get("KillTimeout", 5e9) / 1e9)
            self.agent.log("INFO", f"client.alloc_runner: task started: alloc_id={a['ID']} task={name} pid={p.pid}")
        return r

    def _exit_code(self, aid: str, task: str) -> int:
        """Exit code of a task we started; a re-attached task (after an agent restart) counts as complete."""
        p = self._popen.get((aid, task))
        if p is None:
            return 0
        try:
            return p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return 0

    def _kill(self, r, aid):
        pids = [p for p in _pids(r) if _alive(p)]
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + min(float(r.get("kill_timeout", 5)), 30)
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        for pid in pids:
            if _alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
        if pids:
            self.agent.log("INFO", f"client.alloc_runner: tasks stopped: alloc_id={aid} pids={pids}")

    def drain_self(self):
        """client.drain_on_shutdown: drain this node before the agent leaves."""
        dcfg = self.agent.cli_cfg.get("drain_on_shutdown") or {}
        deadline = parse_duration(dcfg.get("deadline") or "1h")
        if dcfg.get("force"):
            deadline = 0.0
        self.agent.log("INFO", f"client: draining node on shutdown: deadline={deadline:g}s")
        try:
            self._rpc("Raft.Apply", {"op": {"op": "node_drain", "node_id": self.id,
                                            "drain": {"Deadline": int(deadline * 1e9) if deadline else -1,
                                                      "IgnoreSystemJobs": bool(dcfg.get("ignore_system_jobs"))}}})
            t0 = time.monotonic()
            while time.monotonic() - t0 < max(deadline, 1.0) + 5:
                allocs = self._rpc("Node.GetClientAllocs", {"node_id": self.id})
                self._sync(allocs)
                if all(x["ClientStatus"] in TERMINAL for x in allocs):
                    return
                time.sleep(0.3)
        except RPCError as e:
            self.agent.log("WARN", f"client: drain on shutdown failed: {e}")


def _pids(r: dict) -> list[int]:
    pids = list((r.get("pids") or {}).values())
    if not pids and r.get("pid"):
        pids = [r["pid"]]
    return pids


def _alive(pid: int) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()[0]
        return st != "Z"
    except OSError:
        return False


def _parse_rfc3339(s):
    if not s or s.startswith("0001"):
        return float("inf")
    import calendar
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


from . import nomad_http  # noqa: E402,F401 - registers the HTTP API routes on NomadAgent
