"""Nomad stand-in: servers (gossip, raft, scheduler, heartbeats, drainer), clients (raw_exec-style
allocations as real processes), HTTP API and CLI."""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from . import hcl
from .agentbase import BaseAgent, cli_client, cli_err, columnize, dur, parse_cli_flags, run_client_cmd
from .config import load_and_check, nomad_rules, parse_duration, resolve_addr
from .net import Response, RPCError, call, sd_notify, serve
from .shapes import fill, sample

TERMINAL = ("complete", "failed", "lost")


def _now_ns():
    return time.time_ns()


def _initial_state():
    return {"nodes": {}, "jobs": {}, "allocs": {}}


def _apply(state, op, index):
    kind = op["op"]
    nodes, jobs, allocs = state["nodes"], state["jobs"], state["allocs"]
    if kind == "noop":
        return True
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
        j["CreateIndex"] = cur["CreateIndex"] if cur else index
        j["Version"] = (cur["Version"] + 1) if cur else 0
        j["ModifyIndex"] = j["JobModifyIndex"] = index
        j["SubmitTime"] = _now_ns()
        j["Stop"] = False
        jobs[j["ID"]] = j
        return index
    if kind == "job_deregister":
        j = jobs.get(op["job_id"])
        if j is None:
            raise RPCError("job not found", 404)
        if op.get("purge"):
            del jobs[op["job_id"]]
        else:
            j["Stop"] = True
            j["ModifyIndex"] = j["JobModifyIndex"] = index
        return index
    if kind == "alloc_upsert":
        for a in op["allocs"]:
            cur = allocs.get(a["ID"])
            if cur:
                # scheduler-side fields only; keep client-side state
                for k in ("ClientStatus", "ClientDescription", "TaskStates"):
                    a[k] = cur[k]
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
            a["ClientStatus"] = u["ClientStatus"]
            a["ClientDescription"] = u.get("ClientDescription", "")
            a["TaskStates"] = u.get("TaskStates") or a.get("TaskStates") or {}
            a["ModifyIndex"] = index
            a["ModifyTime"] = _now_ns()
        return index
    if kind == "restore":
        state.clear()
        state.update(op["state"])
        return index
    raise RPCError(f"unknown operation {kind}", 400)


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
                       "Constraints": _constraints(g) + [c for t in tmap.values() for c in _constraints(t)]})
    dcs = b.get("datacenters") or ["*"]
    return {"ID": jid, "Name": b.get("name", jid), "Type": b.get("type", "service"), "Region": b.get("region", "global"),
            "Namespace": b.get("namespace", "default"), "Datacenters": dcs, "NodePool": b.get("node_pool", "default"),
            "Priority": int(b.get("priority", 50)), "TaskGroups": groups, "Meta": b.get("meta"),
            "Constraints": _constraints(b)}


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
    for g in j["TaskGroups"]:
        g.setdefault("Count", 1)
        for t in g.get("Tasks") or []:
            if t.get("Driver") not in ("raw_exec", "exec"):
                raise RPCError(f"Task {t.get('Name')}: driver {t.get('Driver')!r} is not available in the sandbox (use raw_exec)", 400)
            if not (t.get("Config") or {}).get("command"):
                raise RPCError(f"Task {t.get('Name')}: missing required field 'command' in config", 400)
    tmpl = sample("nomad", "GET /v1/node/:node_id/allocations")[0]["Job"]
    return fill(j, tmpl, "Job", ".Job")


# ---------------------------------------------------------------- agent

class NomadAgent(BaseAgent):
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
        self.servers_http.append(serve(self.addrs["http"], self.ports["http"], self.http_router, self.log))
        self.log("INFO", f"http: Starting HTTP server: address={self.addrs['http']}:{self.ports['http']}")
        if self.is_client:
            self.client = NomadClient(self)
            self.client.start()

    def ready(self):
        sd_notify("READY=1")

    def shutdown(self):
        if self.client:
            self.client.stop()
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
        self.hb_seen = {nid: now for nid in self.raft.read()["nodes"]}
        self.while_leader(self._leader_tick, 0.3, "nomad: leader loop", catch_all=True)

    def _ttl(self):
        return self.min_ttl

    def _leader_tick(self):
        st = self.raft.read()
        now = time.monotonic()
        # heartbeats
        for nid, n in st["nodes"].items():
            seen = self.hb_seen.setdefault(nid, now)
            if n["Status"] == "ready" and now - seen > self._ttl() + self.heartbeat_grace:
                self.log("WARN", f"nomad.heartbeat: node TTL expired: node_id={nid}")
                self.raft.apply({"op": "node_status", "node_id": nid, "status": "down"})
        st = self.raft.read()
        updates = []
        # lost allocations on down nodes
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
            st = self.raft.read()
        # drains
        for nid, n in st["nodes"].items():
            ds = n.get("DrainStrategy")
            if not ds:
                continue
            mine = [a for a in st["allocs"].values() if a["NodeID"] == nid and a["ClientStatus"] not in TERMINAL]
            marks = []
            for a in mine:
                if a["DesiredStatus"] == "run":
                    marks.append(dict(a, DesiredStatus="stop", DesiredDescription="alloc is being migrated",
                                      DesiredTransition={"Migrate": True}))
            if marks:
                self.raft.apply({"op": "alloc_upsert", "allocs": marks})
            deadline_passed = ds.get("Deadline", 0) > 0 and time.time() > _parse_rfc3339(ds.get("ForceDeadline"))
            if not mine or deadline_passed:
                self.raft.apply({"op": "drain_complete", "node_id": nid})
        self._schedule(self.raft.read())

    def _schedule(self, st):
        new, stops = [], []
        for job in st["jobs"].values():
            jallocs = [a for a in st["allocs"].values() if a["JobID"] == job["ID"]]
            for g in job["TaskGroups"]:
                live = [a for a in jallocs if a["TaskGroup"] == g["Name"] and a["DesiredStatus"] == "run"
                        and a["ClientStatus"] not in TERMINAL]
                want = 0 if job.get("Stop") else g["Count"]
                if len(live) > want:
                    for a in sorted(live, key=lambda a: a["Name"], reverse=True)[: len(live) - want]:
                        stops.append(dict(a, DesiredStatus="stop", DesiredDescription="alloc not needed due to job update"))
                    continue
                if len(live) == want:
                    continue
                # recently failed allocations are replaced after a short delay
                recent_fail = [a for a in jallocs if a["TaskGroup"] == g["Name"] and a["ClientStatus"] == "failed"
                               and _now_ns() - a["ModifyTime"] < 5e9]
                if recent_fail:
                    continue
                cons = (job.get("Constraints") or []) + (g.get("Constraints") or [])
                distinct = any(c.get("Operand") == "distinct_hosts" and c.get("RTarget", "true") == "true" for c in cons)
                nodes = [n for n in st["nodes"].values() if n["Status"] == "ready" and n["SchedulingEligibility"] == "eligible"
                         and not n.get("DrainStrategy") and any(fnmatch.fnmatch(n["Datacenter"], d) for d in job["Datacenters"])
                         and (job.get("NodePool") in ("all", n.get("NodePool", "default"))) and node_satisfies(n, cons)]
                if not nodes:
                    continue
                used = {i for i in range(want) if any(a["Name"] == f"{job['ID']}.{g['Name']}[{i}]" for a in live)}
                load = {n["ID"]: sum(1 for a in st["allocs"].values() if a["NodeID"] == n["ID"] and a["DesiredStatus"] == "run"
                                      and a["ClientStatus"] not in TERMINAL) for n in nodes}
                jload = {n["ID"]: sum(1 for a in live if a["NodeID"] == n["ID"]) for n in nodes}
                prev = {a["Name"]: a for a in jallocs if a["DesiredStatus"] != "run" or a["ClientStatus"] in TERMINAL}
                for i in range(want):
                    if i in used or len(live) >= want:
                        continue
                    cands = [n for n in nodes if not distinct or jload[n["ID"]] == 0]
                    if not cands:
                        break
                    node = min(cands, key=lambda n: (jload[n["ID"]], load[n["ID"]], n["ID"]))
                    jload[node["ID"]] += 1
                    load[node["ID"]] += 1
                    name = f"{job['ID']}.{g['Name']}[{i}]"
                    p = prev.get(name)
                    a = self._new_alloc(job, g, node, name, p)
                    new.append(a)
                    live.append(a)
                    if p and not p.get("NextAllocation"):
                        stops.append(dict(p, NextAllocation=a["ID"]))
        if new or stops:
            self.raft.apply({"op": "alloc_upsert", "allocs": stops + new})
            for a in new:
                self.log("INFO", f"nomad: placed allocation: alloc_id={a['ID']} node_id={a['NodeID']} name={a['Name']}")

    def _new_alloc(self, job, g, node, name, prev):
        aid = str(uuid.uuid4())
        a = {"ID": aid, "EvalID": str(uuid.uuid4()), "Name": name, "Namespace": job.get("Namespace", "default"),
             "NodeID": node["ID"], "NodeName": node["Name"], "JobID": job["ID"], "Job": job, "TaskGroup": g["Name"],
             "DesiredStatus": "run", "DesiredDescription": "", "DesiredTransition": {"Migrate": None},
             "ClientStatus": "pending", "ClientDescription": "", "TaskStates": {},
             "PreviousAllocation": prev["ID"] if prev else "", "NextAllocation": "",
             "RescheduleTracker": {"Events": [{"PrevAllocID": prev["ID"], "PrevNodeID": prev["NodeID"],
                                               "RescheduleTime": _now_ns(), "Delay": 0}]} if prev else None,
             "DeploymentID": "", "DeploymentStatus": {"Healthy": True, "ModifyIndex": 0}, "FollowupEvalID": "",
             "CreateTime": _now_ns(), "ModifyTime": _now_ns(),
             "Metrics": {"NodesEvaluated": 1, "NodesFiltered": 0, "NodesInPool": 1, "NodesAvailable": {node["Datacenter"]: 1},
                         "NodesExhausted": 0, "AllocationTime": 1000, "CoalescedFailures": 0, "Scores": {}}}
        return a

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

    def rpc_State_Read(self, a):
        return self.raft.read()

    def rpc_Node_Register(self, a):
        node = a["node"]
        if a.get("region", self.region) != self.region:
            raise RPCError(f"region mismatch: node region {a.get('region')!r}, server region {self.region!r}", 400)
        idx = self.raft.apply({"op": "node_register", "node": node})
        self.hb_seen[node["ID"]] = time.monotonic()
        return {"Index": idx, "HeartbeatTTL": self._ttl(), "Servers": self.known_servers()}

    def rpc_Node_UpdateStatus(self, a):
        nid = a["node_id"]
        st = self.raft.read()
        if nid not in st["nodes"]:
            raise RPCError("node not found", 404)
        self.hb_seen[nid] = time.monotonic()
        if st["nodes"][nid]["Status"] != a.get("status", "ready"):
            self.raft.apply({"op": "node_status", "node_id": nid, "status": a.get("status", "ready")})
        return {"HeartbeatTTL": self._ttl(), "Servers": self.known_servers()}

    def rpc_Node_GetClientAllocs(self, a):
        st = self.raft.read()
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
        n = {"ID": self.id, "SecretID": "", "Name": a.name, "Datacenter": a.dc, "NodeClass": a.cli_cfg.get("node_class", ""),
             "NodePool": a.cli_cfg.get("node_pool", "default"), "HTTPAddr": http, "TLSEnabled": False,
             "Status": "ready", "StatusDescription": "", "SchedulingEligibility": "eligible", "Drain": False,
             "DrainStrategy": None, "LastDrain": None, "Meta": a.cli_cfg.get("meta") or {},
             "Attributes": {"kernel.name": "linux", "os.name": "debian", "cpu.arch": "amd64", "nomad.version": a.version,
                            "nomad.revision": a.revision, "driver.raw_exec": "1", "unique.hostname": os.uname().nodename,
                            "unique.network.ip-address": host, "unique.advertise.address": http,
                            "cpu.numcores": str(os.cpu_count())},
             "Drivers": {"raw_exec": {"Attributes": {"driver.raw_exec": "true"}, "Detected": True,
                                      "HealthDescription": "Healthy", "Healthy": True, "UpdateTime": _rfc3339()}},
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
            known = {a["ID"] for a in allocs}
            for aid in [x for x in self.running if x not in known]:
                r = self.running.pop(aid)
                if r.get("status") == "running":
                    threading.Thread(target=self._stop_alloc, args=(aid, r), daemon=True).start()
            self._save()
        if updates:
            self._rpc("Node.UpdateAlloc", {"updates": updates})

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
        r = {"pid": 0, "pids": {}, "status": "running", "started": _rfc3339(), "kill_timeout": 5.0, "exit_codes": {}}
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


# ---------------------------------------------------------------- HTTP API

def _stub_node(n):
    keys = list(sample("nomad", "GET /v1/nodes")[0].keys())
    out = {k: n.get(k) for k in keys}
    out["Address"] = n.get("Address") or n.get("HTTPAddr", "").rsplit(":", 1)[0]
    out["Version"] = n.get("Version", "")
    out["Drivers"] = n.get("Drivers") or {}
    out["Attributes"] = {"os.name": "debian", "nomad.version": n.get("Version", "")}
    return fill(out, sample("nomad", "GET /v1/nodes")[0])


def _stub_alloc(a):
    keys = list(sample("nomad", "GET /v1/job/:job_id/allocations")[0].keys())
    out = {k: a.get(k) for k in keys}
    out["NodeName"] = a.get("NodeName", "")
    out["JobVersion"] = (a.get("Job") or {}).get("Version", 0)
    out["TaskStates"] = a.get("TaskStates") or {}
    return fill(out, sample("nomad", "GET /v1/job/:job_id/allocations")[0])


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


def _http_not_found(self):
    return Response(raw=b"Invalid URL\n", status=404, ctype="text/plain")


def _route(self, method, p, q, body):
    data = json.loads(body) if body and body[:1] in (b"{", b"[") else {}
    common = self.common_route(p, q)
    if common is not None:
        return common
    if p == "/agent/health":
        out = {}
        if self.is_server:
            lid, _ = self.raft.leader()
            out["server"] = {"ok": True, "message": "ok"}
        if self.is_client:
            ok = self.client.registered
            out["client"] = {"ok": ok, "message": "ok" if ok else "not registered with a server"}
        bad = any(not v["ok"] for v in out.values())
        return Response(out, status=500 if bad else 200)
    if p == "/regions":
        return Response([self.region])
    if p == "/agent/servers":
        return Response(self.known_servers())
    if p == "/agent/members":
        members = self.rpc("Status.Members")
        return Response({"ServerName": self.name, "ServerRegion": self.region, "ServerDC": self.dc,
                         "Members": [self.member_json(m) for m in members]})
    if p == "/agent/join":
        addrs = [a if ":" in a else f"{a}:4648" for a in (q.get("address") or "").split(",") if a]
        if not self.serf:
            raise RPCError("agent is not a server", 400)
        n, errs = self.serf.join(addrs)
        return Response({"num_joined": n, "error": "; ".join(errs)})
    if p == "/agent/leave" or p == "/agent/force-leave":
        self.leave()
        self.stopping.set()
        return Response(None)
    if p == "/nodes":
        st = self.rpc("State.Read", stale="stale" in q)
        nodes = [_stub_node(n) for n in st["nodes"].values()]
        if q.get("prefix"):
            nodes = [n for n in nodes if n["ID"].startswith(q["prefix"])]
        return Response(sorted(nodes, key=lambda n: n["ID"]), headers=self.index_headers())
    m = re.match(r"^/node/([^/]+)(/(drain|eligibility|allocations))?$", p)
    if m:
        st = self.rpc("State.Read")
        n = _prefix_one(st["nodes"], m.group(1))
        nid = n["ID"]
        sub = m.group(3)
        if sub is None:
            return Response(fill(json.loads(json.dumps(n)), sample("nomad", "GET /v1/node/:node_id")), headers=self.index_headers())
        if sub == "allocations":
            return Response([_full_alloc(a) for a in st["allocs"].values() if a["NodeID"] == nid], headers=self.index_headers())
        if method not in ("POST", "PUT"):
            raise RPCError("Invalid method", 405)
        if sub == "drain":
            spec = data.get("DrainSpec")
            idx = self.apply({"op": "node_drain", "node_id": nid, "drain": spec, "mark_eligible": data.get("MarkEligible", False),
                              "meta": data.get("Meta")})
            return Response({"EvalCreateIndex": 0, "EvalIDs": None, "Index": idx, "NodeModifyIndex": idx})
        elig = data.get("Eligibility")
        if elig not in ("eligible", "ineligible"):
            raise RPCError(f"invalid scheduling eligibility {elig!r}", 400)
        idx = self.apply({"op": "node_eligibility", "node_id": nid, "eligibility": elig})
        return Response({"EvalCreateIndex": 0, "EvalIDs": None, "Index": idx, "NodeModifyIndex": idx})
    if p == "/jobs":
        if method in ("POST", "PUT"):
            job = normalize_job(data.get("Job") or {})
            idx = self.apply({"op": "job_register", "job": job})
            return Response({"EvalID": str(uuid.uuid4()), "EvalCreateIndex": idx, "JobModifyIndex": idx, "Warnings": "",
                             "Index": idx, "LastContact": 0, "KnownLeader": True})
        st = self.rpc("State.Read", stale="stale" in q)
        out = []
        for j in sorted(st["jobs"].values(), key=lambda j: j["ID"]):
            allocs = [a for a in st["allocs"].values() if a["JobID"] == j["ID"]]
            out.append({"ID": j["ID"], "ParentID": "", "Name": j["Name"], "Type": j["Type"], "Priority": j["Priority"],
                        "Status": _job_status(j, allocs), "StatusDescription": "", "Datacenters": j["Datacenters"],
                        "Namespace": j.get("Namespace", "default"), "NodePool": j.get("NodePool", "default"), "Stop": j["Stop"],
                        "JobSummary": _job_summary(j, allocs), "CreateIndex": j["CreateIndex"], "ModifyIndex": j["ModifyIndex"],
                        "JobModifyIndex": j["JobModifyIndex"], "SubmitTime": j["SubmitTime"], "Version": j["Version"]})
        return Response(out, headers=self.index_headers())
    m = re.match(r"^/job/([^/]+)(/(allocations|summary))?$", p)
    if m:
        jid = m.group(1)
        if m.group(3) is None and method in ("POST", "PUT"):
            job = normalize_job(data.get("Job") or {})
            idx = self.apply({"op": "job_register", "job": job})
            return Response({"EvalID": str(uuid.uuid4()), "EvalCreateIndex": idx, "JobModifyIndex": idx, "Warnings": "",
                             "Index": idx, "LastContact": 0, "KnownLeader": True})
        if m.group(3) is None and method == "DELETE":
            idx = self.apply({"op": "job_deregister", "job_id": jid, "purge": q.get("purge") in ("true", "")})
            return Response({"EvalID": str(uuid.uuid4()), "EvalCreateIndex": idx, "JobModifyIndex": idx, "Index": idx})
        st = self.rpc("State.Read")
        j = st["jobs"].get(jid)
        if j is None:
            return Response(raw=b"job not found\n", status=404, ctype="text/plain")
        allocs = [a for a in st["allocs"].values() if a["JobID"] == jid]
        if m.group(3) == "allocations":
            return Response([_stub_alloc(a) for a in sorted(allocs, key=lambda a: a["CreateIndex"])], headers=self.index_headers())
        if m.group(3) == "summary":
            return Response(_job_summary(j, allocs))
        return Response(dict(j, Status=_job_status(j, allocs)), headers=self.index_headers())
    if p == "/operator/raft/transfer-leadership":
        if method not in ("PUT", "POST"):
            raise RPCError("Invalid method", 405)
        self.rpc("Operator.TransferLeader", {"id": q.get("id", ""), "address": q.get("address", "")})
        return Response(None)
    if p == "/operator/snapshot":
        from .consul import _snapshot_bytes
        snap = self.rpc("Snapshot.Save")
        return Response(raw=_snapshot_bytes(snap), ctype="application/octet-stream", headers={"X-Nomad-Index": str(snap["index"])})
    return Response(raw=b"Invalid URL\n", status=404, ctype="text/plain")


def _agent_self(self):
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


NomadAgent.http_not_found = _http_not_found
NomadAgent._route = _route
NomadAgent.agent_self = _agent_self


# ---------------------------------------------------------------- CLI

_addr, _api = cli_client("address", "NOMAD_ADDR", "http://127.0.0.1:4646")
_err = cli_err
_parse = parse_cli_flags


def _hint(kind):
    if os.environ.get("NOMAD_CLI_SHOW_HINTS", "").lower() in ("false", "0"):
        return
    print(f"\n\n==> View and manage Nomad {kind} in the Web UI: http://{_addr({})}/ui/{kind}", file=sys.stderr)


def _self_node_id(o):
    s = _api(o, "/agent/self")
    nid = (s["stats"].get("client") or {}).get("node_id")
    if not nid:
        raise RPCError("Only clients can use -self", 1)
    return nid


def _resolve_node(o, ident):
    if len(ident) < 2:
        raise RPCError("Identifier must contain at least two characters.", 1)
    nodes = _api(o, f"/nodes?prefix={ident}")
    if not nodes:
        raise RPCError(f'No node(s) with prefix or id "{ident}" found', 1)
    if len(nodes) > 1 and not any(n["ID"] == ident for n in nodes):
        raise RPCError(f"Prefix matched multiple nodes\n\n{columnize([['ID', 'Name']] + [[n['ID'][:8], n['Name']] for n in nodes])}", 1)
    return next((n for n in nodes if n["ID"] == ident), nodes[0])


def cli(argv, build) -> int:
    version = build["version"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("Usage: nomad [-version] [-help] [-autocomplete-(un)install] <command> [args]\n\nCommon commands:\n    run  status  node  job  server  agent  operator  config  version")
        return 0 if argv else 1
    cmd, args = argv[0], argv[1:]
    if cmd in ("version", "-version", "--version", "-v"):
        print(f"Nomad v{version}\nBuildDate 2024-01-01T00:00:00Z\nRevision {build['revision']}")
        return 0
    if cmd == "config" and args[:1] == ["validate"]:
        paths = args[1:]
        if not paths:
            return _err("Must specify at least one config file or directory")
        _cfg, errs = load_and_check("nomad", paths, for_agent=False)
        if errs:
            for e in errs:
                print(e, file=sys.stderr)
            return _err("Configuration is invalid")
        print("Configuration is valid!")
        return 0
    if cmd == "agent":
        o, multi, rest = _parse(args, ("config", "data-dir", "bind", "region", "dc", "node", "servers", "retry-join", "bootstrap-expect"))
        paths = multi.get("config", [])
        cfg, errs = load_and_check("nomad", paths, for_agent=True) if paths else ({}, [])
        if errs:
            for e in errs:
                print(f"==> Error loading configuration: {e}", file=sys.stderr)
            return 1
        for f, k in {"data-dir": "data_dir", "bind": "bind_addr", "region": "region", "dc": "datacenter", "node": "name"}.items():
            if f in o:
                cfg[k] = o[f]
        if "server" in o:
            cfg.setdefault("server", {})["enabled"] = True
        if "client" in o:
            cfg.setdefault("client", {})["enabled"] = True
        if "bootstrap-expect" in o:
            cfg.setdefault("server", {})["bootstrap_expect"] = int(o["bootstrap-expect"])
        if "dev" in o:
            cfg.setdefault("server", {}).setdefault("enabled", True)
            cfg["server"].setdefault("bootstrap_expect", 1)
            cfg.setdefault("client", {}).setdefault("enabled", True)
            cfg.setdefault("data_dir", "/tmp/nomad-dev")
            cfg.setdefault("bind_addr", "127.0.0.1")
        rerr = nomad_rules(cfg, True)
        if rerr:
            for e in rerr:
                print(f"==> {e}", file=sys.stderr)
            return 1
        return NomadAgent(cfg, paths, build, dev="dev" in o).run()
    if cmd == "operator" and args[:3] == ["gossip", "keyring", "generate"]:
        print(base64.b64encode(secrets.token_bytes(32)).decode())
        return 0
    return run_client_cmd(_client_cmd, cmd, args, ("address", "deadline", "m", "meta", "t", "token", "id", "peer-id",
                                                   "peer-address"), "Error querying")


def _client_cmd(cmd, o, multi, rest) -> int:
    if cmd == "agent-info":
        info = _api(o, "/agent/self")
        if "json" in o:
            print(json.dumps(info, indent=4))
            return 0
        out = []
        for sec in sorted(info["stats"]):
            out.append(sec)
            out += [f"  {k} = {v}" for k, v in sorted(info["stats"][sec].items())]
        print("\n".join(out))
        return 0
    if cmd == "server" and rest[:1] == ["members"]:
        d = _api(o, "/agent/members")
        members = d["Members"]
        if not members:
            return _err("Agent doesn't know about server members", 0)
        leaders = {}
        try:
            leader = _api(o, "/status/leader")
        except RPCError:
            leader = ""
        verbose = "verbose" in o or "detailed" in o
        if "json" in o:
            print(json.dumps(members, indent=4))
            return 0
        hdr = (["Name", "Address", "Port", "Status", "Leader", "Protocol", "Raft Version", "Build", "Datacenter", "Region", "Tags"]
               if verbose else ["Name", "Address", "Port", "Status", "Leader", "Raft Version", "Build", "Datacenter", "Region"])
        rows = [hdr]
        for m in sorted(members, key=lambda m: m["Name"]):
            t = m["Tags"]
            is_leader = leader == f"{t.get('rpc_addr', m['Addr'])}:{t.get('port')}"
            leaders[m["Name"]] = is_leader
            row = [m["Name"], m["Addr"], str(m["Port"]), m["Status"], str(is_leader).lower()]
            if verbose:
                row.append(str(m["ProtocolCur"]))
            row += [t.get("raft_vsn", ""), t.get("build", ""), t.get("dc", ""), t.get("region", "")]
            if verbose:
                row.append(",".join(f"{k}={v}" for k, v in t.items()))
            rows.append(row)
        print(columnize(rows))
        _hint("servers")
        return 0
    if cmd == "node" and rest[:1] == ["status"]:
        if len(rest) > 1 or "self" in o:
            n = _api(o, f"/node/{_self_node_id(o) if 'self' in o else _resolve_node(o, rest[1])['ID']}")
            allocs = _api(o, f"/node/{n['ID']}/allocations")
            lines = [["ID", "= " + n["ID"]], ["Name", "= " + n["Name"]], ["Node Pool", "= " + n["NodePool"]],
                     ["Class", "= " + (n["NodeClass"] or "<none>")], ["DC", "= " + n["Datacenter"]],
                     ["Drain", "= " + str(n["Drain"]).lower()], ["Eligibility", "= " + n["SchedulingEligibility"]],
                     ["Status", "= " + n["Status"]], ["Nomad Version", "= " + n["Attributes"].get("nomad.version", "")]]
            print(columnize(lines))
            print("\nAllocations")
            rows = [["ID", "Node ID", "Task Group", "Version", "Desired", "Status", "Created", "Modified"]]
            for a in allocs:
                rows.append([a["ID"][:8], a["NodeID"][:8], a["TaskGroup"], str(a["Job"].get("Version", 0)), a["DesiredStatus"],
                             a["ClientStatus"], "now", "now"])
            print(columnize(rows) if len(rows) > 1 else "No allocations placed")
            return 0
        nodes = _api(o, "/nodes")
        if "json" in o:
            print(json.dumps(nodes, indent=4))
            return 0
        if not nodes:
            print("No nodes registered")
            return 0
        hdr = ["ID", "Node Pool", "DC", "Name", "Class"]
        if "os" in o:
            hdr.append("OS")
        if "verbose" in o or "allocs" in o:
            hdr += ["Address", "Version"]
        hdr += ["Drain", "Eligibility", "Status"]
        if "allocs" in o:
            hdr.append("Running Allocs")
        rows = [hdr]
        for n in nodes:
            row = [n["ID"] if "verbose" in o else n["ID"][:8], n["NodePool"], n["Datacenter"], n["Name"], n["NodeClass"] or "<none>"]
            if "os" in o:
                row.append(n["Attributes"].get("os.name", ""))
            if "verbose" in o or "allocs" in o:
                row += [n["Address"], n["Version"]]
            row += [str(n["Drain"]).lower(), n["SchedulingEligibility"], n["Status"]]
            if "allocs" in o:
                al = _api(o, f"/node/{n['ID']}/allocations")
                row.append(str(sum(1 for a in al if a["ClientStatus"] == "running")))
            rows.append(row)
        print(columnize(rows))
        _hint("clients")
        return 0
    if cmd == "node" and rest[:1] == ["drain"]:
        en, dis = "enable" in o, "disable" in o
        if not en and not dis and "monitor" not in o:
            return _err("Either the '-enable' or '-disable' flag must be set, unless using '-monitor'")
        if "deadline" in o and ("force" in o or "no-deadline" in o):
            return _err("-deadline can't be combined with -force or -no-deadline")
        if "force" in o and "no-deadline" in o:
            return _err("-force and -no-deadline are mutually exclusive")
        if dis and ("deadline" in o or "force" in o or "no-deadline" in o or "ignore-system" in o):
            return _err("-disable can't be combined with flags configuring drain strategy")
        if "self" in o:
            nid, exact = _self_node_id(o), True
        elif len(rest) > 1:
            n = _resolve_node(o, rest[1])
            nid, exact = n["ID"], n["ID"] == rest[1]
        else:
            return _err("Node ID must be specified if -self isn't being used")
        if not exact and "yes" not in o:
            ans = input(f'Are you sure you want to {"enable" if en else "disable"} drain mode for node "{nid}"? [y/N] ').strip()
            if ans == "" or ans.lower().startswith("n"):
                print("Canceling drain toggle")
                return 0
            if ans != "y":
                if ans.lower().startswith("y"):
                    print("For confirmation, an exact ‘y’ is required.")
                    return 0
                return _err("No confirmation detected. For confirmation, an exact 'y' is required.")
        if dis:
            _api(o, f"/node/{nid}/drain", method="POST", body={"DrainSpec": None, "MarkEligible": "keep-ineligible" not in o})
            print(f'Node "{nid}" drain strategy unset')
            return 0
        deadline = 3600.0
        if "deadline" in o:
            deadline = parse_duration(o["deadline"])
            if deadline <= 0:
                return _err("A positive drain duration must be given")
        if "force" in o:
            deadline = -1
        if "no-deadline" in o:
            deadline = 0
        meta = {"message": o["m"]} if "m" in o else {}
        _api(o, f"/node/{nid}/drain", method="POST", body={"DrainSpec": {"Deadline": int(deadline * 1e9) if deadline > 0 else int(deadline),
                                                                       "IgnoreSystemJobs": "ignore-system" in o},
                                                          "MarkEligible": False, "Meta": meta})
        if "detach" in o:
            print(f'Node "{nid}" drain strategy set')
            return 0
        ts = lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # noqa: E731
        print(f"{ts()}: Ctrl-C to stop monitoring: will not cancel the node drain", flush=True)
        print(f'{ts()}: Node "{nid}" drain strategy set', flush=True)
        seen = {}
        while True:
            n = _api(o, f"/node/{nid}")
            for a in _api(o, f"/node/{nid}/allocations"):
                prev = seen.get(a["ID"])
                if a["DesiredTransition"].get("Migrate") and prev is None:
                    print(f'{ts()}: Alloc "{a["ID"]}" marked for migration', flush=True)
                    print(f'{ts()}: Alloc "{a["ID"]}" draining', flush=True)
                if prev is not None and prev != a["ClientStatus"]:
                    print(f'{ts()}: Alloc "{a["ID"]}" status {prev} -> {a["ClientStatus"]}', flush=True)
                if a["DesiredTransition"].get("Migrate") or prev is not None:
                    seen[a["ID"]] = a["ClientStatus"]
            if not n.get("DrainStrategy"):
                print(f'{ts()}: All allocations on node "{nid}" have stopped.', flush=True)
                return 0
            time.sleep(0.5)
    if cmd == "node" and rest[:1] == ["eligibility"]:
        en, dis = "enable" in o, "disable" in o
        if en == dis:
            return _err("Either the '-enable' or '-disable' flag must be set")
        if "self" in o:
            nid = _self_node_id(o)
        elif len(rest) > 1:
            nid = _resolve_node(o, rest[1])["ID"]
        else:
            return _err("Node ID must be specified if -self isn't being used")
        _api(o, f"/node/{nid}/eligibility", method="POST", body={"Eligibility": "eligible" if en else "ineligible", "NodeID": nid})
        print(f'Node "{nid}" scheduling eligibility set: {"eligible" if en else "ineligible"} for scheduling')
        return 0
    if cmd in ("job", "run", "status", "stop") and (cmd != "job" or rest):
        sub = rest[0] if cmd == "job" else cmd
        rest = rest[1:] if cmd == "job" else rest
        if sub == "run":
            if not rest:
                return _err("This command takes one argument: <path>")
            text = sys.stdin.read() if rest[0] == "-" else open(rest[0]).read()
            try:
                if rest[0].endswith(".json") or text.lstrip().startswith("{"):
                    d = json.loads(text)
                    job = d.get("Job", d)
                else:
                    job = job_from_hcl(text)
            except (ValueError, hcl.HCLError) as e:
                return _err(f"Error getting job struct: {e}")
            r = _api(o, "/jobs", method="POST", body={"Job": job})
            print(f'==> {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}: Monitoring evaluation "{r["EvalID"][:8]}"')
            print(f'    {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}: Evaluation triggered by job "{job["ID"]}"')
            if "detach" in o:
                print(f'Job registration successful\nEvaluation ID: {r["EvalID"]}')
                return 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < 30:
                allocs = _api(o, f"/job/{job['ID']}/allocations")
                if sum(1 for a in allocs if a["ClientStatus"] == "running") >= sum(g.get("Count", 1) for g in job.get("TaskGroups", [])):
                    break
                time.sleep(0.5)
            print(f'    {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}: Evaluation status changed: "pending" -> "complete"')
            print(f'==> {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}: Evaluation "{r["EvalID"][:8]}" finished with status "complete"')
            return 0
        if sub == "status":
            if not rest:
                jobs = _api(o, "/jobs")
                if not jobs:
                    print("No running jobs")
                    return 0
                rows = [["ID", "Type", "Priority", "Status", "Submit Date"]]
                for j in jobs:
                    rows.append([j["ID"], j["Type"], str(j["Priority"]), j["Status"],
                                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(j["SubmitTime"] / 1e9))])
                print(columnize(rows))
                return 0
            try:
                j = _api(o, f"/job/{rest[0]}")
            except RPCError as e:
                if e.status == 404:
                    return _err(f'No job(s) with prefix or ID "{rest[0]}" found')
                raise
            allocs = _api(o, f"/job/{rest[0]}/allocations")
            summ = _api(o, f"/job/{rest[0]}/summary")["Summary"]
            print(columnize([["ID", "= " + j["ID"]], ["Name", "= " + j["Name"]], ["Type", "= " + j["Type"]],
                             ["Priority", "= " + str(j["Priority"])], ["Datacenters", "= " + ",".join(j["Datacenters"])],
                             ["Namespace", "= " + j["Namespace"]], ["Node Pool", "= " + j["NodePool"]],
                             ["Status", "= " + j["Status"]], ["Periodic", "= false"], ["Parameterized", "= false"]]))
            print("\nSummary")
            rows = [["Task Group", "Queued", "Starting", "Running", "Failed", "Complete", "Lost", "Unknown"]]
            for g, s in summ.items():
                rows.append([g] + [str(s[k]) for k in ("Queued", "Starting", "Running", "Failed", "Complete", "Lost", "Unknown")])
            print(columnize(rows))
            print("\nAllocations")
            rows = [["ID", "Node ID", "Task Group", "Version", "Desired", "Status", "Created", "Modified"]]
            for a in allocs:
                rows.append([a["ID"][:8], a["NodeID"][:8], a["TaskGroup"], str(a.get("JobVersion", 0)), a["DesiredStatus"],
                             a["ClientStatus"], "now", "now"])
            print(columnize(rows) if len(rows) > 1 else "No allocations placed")
            return 0
        if sub == "stop":
            if not rest:
                return _err("This command takes one argument: <job>")
            _api(o, f"/job/{rest[0]}" + ("?purge=true" if "purge" in o else ""), method="DELETE")
            print(f'==> Job "{rest[0]}" stopped')
            return 0
    if cmd == "operator" and rest[:2] == ["raft", "list-peers"]:
        c = _api(o, "/operator/raft/configuration" + ("?stale=true" if "stale" in o else ""))
        rows = [["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]]
        for s in c["Servers"]:
            rows.append([s["Node"], s["ID"], s["Address"], "leader" if s["Leader"] else "follower", str(s["Voter"]).lower(), s.get("RaftProtocol", "3")])
        print(columnize(rows))
        return 0
    if cmd == "operator" and rest[:2] == ["raft", "transfer-leadership"]:
        q = f"?id={o['peer-id']}" if "peer-id" in o else (f"?address={o['peer-address']}" if "peer-address" in o else "")
        _api(o, "/operator/raft/transfer-leadership" + q, method="PUT")
        print("==> Transferred leadership")
        return 0
    if cmd == "operator" and rest[:2] == ["snapshot", "save"]:
        if len(rest) < 3:
            return _err("This command takes one argument: <filename>")
        data, _h = _api(o, "/operator/snapshot", raw=True)
        Path(rest[2]).write_bytes(data)
        print(f"State file written to {rest[2]}")
        return 0
    return _err(f"Unknown command: {' '.join([cmd] + rest)}", 127)
