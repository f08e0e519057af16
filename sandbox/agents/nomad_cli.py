"""The nomad command line: agent, config validate, version, and the commands that talk to an agent's HTTP
API (agent-info, server members / force-leave, node, job, operator raft / autopilot / scheduler / snapshot).
Output formats follow the real CLI's source."""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import time
from pathlib import Path

from . import hcl
from .agentbase import cli_client, cli_err, columnize, parse_cli_flags, run_client_cmd
from .config import load_and_check, nomad_rules, parse_duration
from .net import RPCError
from .nomad import NomadAgent, job_from_hcl

TLS_FLAGS = {"ca": ("ca-cert", "NOMAD_CACERT"), "cert": ("client-cert", "NOMAD_CLIENT_CERT"),
             "key": ("client-key", "NOMAD_CLIENT_KEY"), "server_name": ("tls-server-name", "NOMAD_TLS_SERVER_NAME"),
             "skip_verify": ("tls-skip-verify", "NOMAD_SKIP_VERIFY")}
_addr, _api = cli_client("address", "NOMAD_ADDR", "http://127.0.0.1:4646", tls_flags=TLS_FLAGS,
                         token=("token", "NOMAD_TOKEN", "X-Nomad-Token"))
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
    if cmd == "tls":
        from .tls import cli as tls_cli
        return tls_cli("nomad", args)
    if cmd == "config" and args[:1] == ["validate"]:
        paths = args[1:]
        if not paths:
            return _err("Must specify at least one config file or directory")
        _cfg, errs = _load(paths, for_agent=False)
        if errs:
            for e in errs:
                print(e, file=sys.stderr)
            return _err("Configuration is invalid")
        print("Configuration is valid!")
        return 0
    if cmd == "agent":
        o, multi, rest = _parse(args, ("config", "data-dir", "bind", "region", "dc", "node", "servers", "retry-join", "bootstrap-expect"))
        paths = multi.get("config", [])
        cfg, errs = _load(paths, for_agent=True) if paths else ({}, [])
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
            try:
                cfg.setdefault("server", {})["bootstrap_expect"] = int(o["bootstrap-expect"])
            except ValueError:
                return _err(f'invalid value "{o["bootstrap-expect"]}" for flag -bootstrap-expect: parse error')
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
        try:
            agent = NomadAgent(cfg, paths, build, dev="dev" in o)
        except (RPCError, ValueError, OSError) as e:
            return _err(f"==> Error starting agent: {e}")
        return agent.run()
    if cmd == "operator" and args[:3] == ["gossip", "keyring", "generate"]:
        print(base64.b64encode(secrets.token_bytes(32)).decode())
        return 0
    return run_client_cmd(_client_cmd, cmd, args, ("address", "deadline", "m", "meta", "t", "token", "id", "peer-id",
                                                   "peer-address", "check-index", "scheduler-algorithm",
                                                   "pause-eval-broker", "reject-job-registration", "cleanup-dead-servers",
                                                   "max-trailing-logs", "min-quorum", "last-contact-threshold",
                                                   "server-stabilization-time", "enable-redundancy-zones",
                                                   "disable-upgrade-migration", "enable-custom-upgrades",
                                                   "memory-oversubscription", "preempt-service-scheduler",
                                                   "preempt-batch-scheduler", "preempt-system-scheduler",
                                                   "preempt-sysbatch-scheduler", "verbose", "ca-cert", "client-cert",
                                                   "client-key", "tls-server-name", "name", "type", "policy",
                                                   "description"), "Error querying")


def _load(paths, for_agent):
    try:
        return load_and_check("nomad", paths, for_agent=for_agent)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        return {}, [f"failed to load configuration: {e}"]


def _read_job(path):
    """A job file (HCL or JSON, '-' for stdin) as the API's Job."""
    text = sys.stdin.read() if path == "-" else open(path).read()
    if path.endswith(".json") or text.lstrip().startswith("{"):
        d = json.loads(text)
        return d.get("Job", d)
    return job_from_hcl(text)


def _client_cmd(cmd, o, multi, rest) -> int:
    if cmd == "acl":
        from .nomad_acl import cli as acl_cli
        return acl_cli(_api, o, multi, rest)
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
            try:
                job = _read_job(rest[0])
            except (OSError, ValueError, hcl.HCLError) as e:
                return _err(f"Error getting job struct: {e}")
            body = {"Job": job}
            if "check-index" in o:
                body.update(EnforceIndex=True, JobModifyIndex=int(o["check-index"]))
            try:
                r = _api(o, "/jobs", method="POST", body=body)
            except RPCError as e:
                if e.status == 0:
                    raise
                if "check-index" in o and "job modify index" in str(e):
                    return _err(f"Enforcing job modify index {o['check-index']}: job exists with conflicting job modify index: "
                                + str(e).rsplit(":", 1)[-1].strip() if "conflicting" in str(e) else str(e))
                return _err(f"Error submitting job: Unexpected response code: {e.status} ({e})")
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
            r = _api(o, f"/job/{rest[0]}" + ("?purge=true" if "purge" in o else ""), method="DELETE")
            if "detach" in o:
                print(r["EvalID"])
            else:
                print(f'==> {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}: Monitoring evaluation "{r["EvalID"][:8]}"')
                print(f'    {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}: Evaluation triggered by job "{rest[0]}"')
                print(f'==> {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}: Evaluation "{r["EvalID"][:8]}" finished with status "complete"')
            return 0
        if sub in ("validate", "plan"):
            if len(rest) != 1:
                return _err("This command takes one argument: <path>")
            try:
                job = _read_job(rest[0])
            except (OSError, ValueError, hcl.HCLError) as e:
                return _err(f"Error getting job struct: {e}")
            if sub == "validate":
                try:
                    jr = _api(o, "/validate/job", method="POST", body={"Job": job})
                except RPCError as e:
                    if e.status == 0:
                        raise
                    return _err(f"Error validating job: {e}")
                if jr.get("Error"):
                    print("Job validation errors:", file=sys.stderr)
                    return _err(jr["Error"])
                print("Job validation successful")
                return 0
            return _plan(o, job, rest[0])
        if sub == "inspect":
            if not rest:
                return _err("This command takes one argument: <job>")
            try:
                j = _api(o, f"/job/{rest[0]}")
            except RPCError as e:
                if e.status == 404:
                    return _err(f'No job(s) with prefix or ID "{rest[0]}" found')
                raise
            print(json.dumps({"Job": j}, indent=4))
            return 0
    if cmd == "operator" and rest[:2] == ["raft", "list-peers"]:
        c = _api(o, "/operator/raft/configuration" + ("?stale=true" if "stale" in o else ""))
        rows = [["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]]
        for s in c["Servers"]:
            rows.append([s["Node"], s["ID"], s["Address"], "leader" if s["Leader"] else "follower", str(s["Voter"]).lower(), s.get("RaftProtocol", "3")])
        print(columnize(rows))
        return 0
    if cmd == "operator" and rest[:2] == ["raft", "transfer-leadership"]:
        if ("peer-id" in o) == ("peer-address" in o):
            return _err("Error transferring leadership to peer: must specify either peer address or id, not both"
                        if "peer-id" in o else "Error transferring leadership to peer: must specify a peer address or id")
        q = f"?id={o['peer-id']}" if "peer-id" in o else f"?address={o['peer-address']}"
        try:
            _api(o, "/operator/raft/transfer-leadership" + q, method="PUT")
        except RPCError as e:
            if e.status == 0:
                raise
            return _err(f"Error transferring leadership to peer: Unexpected response code: {e.status} ({e})")
        if "peer-address" in o:
            print(f'Transferred leadership to peer with address "{o["peer-address"]}"')
        else:
            print(f'Transferred leadership to peer with id "{o["peer-id"]}"')
        return 0
    if cmd == "operator" and rest[:2] == ["raft", "remove-peer"]:
        if "peer-id" not in o:
            return _err("Missing peer id required")
        try:
            _api(o, f"/operator/raft/peer?id={o['peer-id']}", method="DELETE")
        except RPCError as e:
            if e.status == 0:
                raise
            return _err(f"Error removing peer: Unexpected response code: {e.status} ({e})")
        print(f'Removed peer with id "{o["peer-id"]}"')
        return 0
    if cmd == "operator" and rest[:1] == ["autopilot"]:
        return _autopilot(o, rest[1:])
    if cmd == "operator" and rest[:1] == ["scheduler"]:
        return _scheduler(o, rest[1:])
    if cmd == "operator" and rest[:1] == ["snapshot"]:
        return _snapshot(o, rest[1:])
    if cmd == "server" and rest[:1] == ["force-leave"]:
        if len(rest) != 2:
            return _err("This command takes one argument: <node>")
        try:
            _api(o, f"/agent/force-leave?node={rest[1]}" + ("&prune=true" if "prune" in o else ""), method="PUT")
        except RPCError as e:
            if e.status == 0:
                raise
            return _err(f"Error force-leaving server {rest[1]}: Unexpected response code: {e.status} ({e})")
        return 0
    return _err(f"Unknown command: {' '.join([cmd] + rest)}", 127)


# ---------------------------------------------------------------- job plan

_JOB_MODIFY_HELP = """To submit the job with version verification run:

nomad job run -check-index {idx} {path}

When running the job with the check-index flag, the job will only be run if the
job modify index given matches the server-side version. If the index has
changed, another user has modified the job and the plan's results are
potentially invalid."""


def _plan(o, job, path) -> int:
    try:
        r = _api(o, f"/job/{job['ID']}/plan", method="POST", body={"Job": job, "Diff": True})
    except RPCError as e:
        if e.status == 0:
            return _err(f"Error during plan: {e}", 255)
        return _err(f"Error during plan: Unexpected response code: {e.status} ({e})", 255)
    d = r["Diff"]
    sym = {"Added": "+", "Deleted": "-", "Edited": "+/-", "None": ""}
    lines = [f'{sym[d["Type"]]} Job: "{d["ID"]}"'.strip()]
    for g in d["TaskGroups"] or []:
        ups = ", ".join(f"{v} {k}" for k, v in (g.get("Updates") or {}).items())
        lines.append(f'{sym[g["Type"]]} Task Group: "{g["Name"]}"'.strip() + (f" ({ups})" if ups else ""))
        for f in g.get("Fields") or []:
            lines.append(f'  +/- {f["Name"]}: "{f["Old"]}" => "{f["New"]}"')
        for t in g.get("Tasks") or []:
            ann = f' ({", ".join(t["Annotations"])})' if t.get("Annotations") else ""
            lines.append(f'  {sym[t["Type"]]} Task: "{t["Name"]}"{ann}'.replace("   ", "  "))
    print("\n".join(lines) + "\n")
    print("Scheduler dry-run:")
    failed = r.get("FailedTGAllocs") or {}
    if not failed:
        print("- All tasks successfully allocated.")
    else:
        print("- WARNING: Failed to place all allocations.")
        for tg, m in sorted(failed.items()):
            n = m.get("CoalescedFailures", 0) + 1
            print(f'  Task Group "{tg}" (failed to place {n} allocation{"s" if n > 1 else ""}):')
            print("    * No nodes were eligible for evaluation" if not m.get("NodesEvaluated") else
                  f"    * Constraint filtered {m.get('NodesFiltered', 0)} nodes")
    print()
    print(f"Job Modify Index: {r['JobModifyIndex']}")
    print(_JOB_MODIFY_HELP.format(idx=r["JobModifyIndex"], path=path))
    if d["Type"] == "None":
        return 0
    for u in (r.get("Annotations") or {}).get("DesiredTGUpdates", {}).values():
        if u.get("Stop", 0) + u.get("Place", 0) + u.get("Migrate", 0) + u.get("DestructiveUpdate", 0) + u.get("Canary", 0) > 0:
            return 1
    return 0


# ---------------------------------------------------------------- operator autopilot / scheduler / snapshot

def _bool(v):
    from .httpapi import parse_bool
    return parse_bool(v)


def _dur(v):
    from .config import format_duration
    return format_duration(parse_duration(v))


def _autopilot(o, rest) -> int:
    sub = rest[0] if rest else ""
    if sub == "get-config":
        try:
            c = _api(o, "/operator/autopilot/configuration")
        except RPCError as e:
            if e.status == 0:
                raise
            return _err(f"Error querying Autopilot configuration: {e}")
        for k in ("CleanupDeadServers", "LastContactThreshold", "MaxTrailingLogs", "MinQuorum", "ServerStabilizationTime",
                  "EnableRedundancyZones", "DisableUpgradeMigration", "EnableCustomUpgrades"):
            v = c[k]
            print(f"{k} = {str(v).lower() if isinstance(v, bool) else v}")
        return 0
    if sub == "set-config":
        c = _api(o, "/operator/autopilot/configuration")
        for flag, (field, conv) in {"cleanup-dead-servers": ("CleanupDeadServers", _bool), "max-trailing-logs": ("MaxTrailingLogs", int),
                                    "min-quorum": ("MinQuorum", int), "last-contact-threshold": ("LastContactThreshold", _dur),
                                    "server-stabilization-time": ("ServerStabilizationTime", _dur),
                                    "enable-redundancy-zones": ("EnableRedundancyZones", _bool),
                                    "disable-upgrade-migration": ("DisableUpgradeMigration", _bool),
                                    "enable-custom-upgrades": ("EnableCustomUpgrades", _bool)}.items():
            if flag in o:
                try:
                    c[field] = conv(o[flag])
                except ValueError as e:
                    return _err(f"Failed to parse args: invalid value {o[flag]!r} for -{flag}: {e}")
        idx = c.pop("ModifyIndex", 0)
        c.pop("CreateIndex", None)
        try:
            ok = _api(o, f"/operator/autopilot/configuration?cas={idx}", method="PUT", body=c)
        except RPCError as e:
            if e.status == 0:
                raise
            return _err(f"Error setting Autopilot configuration: {e}")
        print("Configuration updated!" if ok else "Configuration could not be atomically updated, please try again")
        return 0 if ok else 1
    if sub == "health":
        try:
            h = _api(o, "/operator/autopilot/health")
        except RPCError as e:
            if e.status == 0:
                raise
            if e.status != 429:
                return _err(f"Error querying Autopilot configuration: Unexpected response code: {e.status} ({e})")
            h = json.loads(str(e)) if str(e).startswith("{") else None
            if h is None:
                return _err(f"Error querying Autopilot configuration: Unexpected response code: {e.status} ({e})")
        if "json" in o:
            print(json.dumps(h))
            return 0
        rows = [["ID", "Name", "Address", "SerfStatus", "Version", "Leader", "Voter", "Healthy", "LastContact", "LastTerm",
                 "LastIndex", "StableSince"]]
        for sv in h["Servers"]:
            rows.append([sv["ID"], sv["Name"], sv["Address"], sv["SerfStatus"], sv["Version"], str(sv["Leader"]).lower(),
                         str(sv["Voter"]).lower(), str(sv["Healthy"]).lower(), sv["LastContact"], str(sv["LastTerm"]),
                         str(sv["LastIndex"]), sv["StableSince"]])
        voters = columnize([["\t" + v] for v in h["Voters"]])
        print(f"Healthy: {str(h['Healthy']).lower()}\nFailureTolerance: {h['FailureTolerance']}\nLeader: {h['Leader']}\n"
              f"Voters:  \n\t{voters}\nServers: \n{columnize(rows)}\n")
        return 0
    return _err(f"Unknown operator autopilot subcommand {sub}")


def _scheduler(o, rest) -> int:
    sub = rest[0] if rest else ""
    if sub == "get-config":
        r = _api(o, "/operator/scheduler/configuration")
        c = r["SchedulerConfig"]
        if "json" in o:
            print(json.dumps(c, indent=4))
            return 0
        p = c["PreemptionConfig"]
        rows = [["Scheduler Algorithm", "= " + c["SchedulerAlgorithm"]],
                ["Memory Oversubscription", "= " + str(c["MemoryOversubscriptionEnabled"]).lower()],
                ["Reject Job Registration", "= " + str(c["RejectJobRegistration"]).lower()],
                ["Pause Eval Broker", "= " + str(c["PauseEvalBroker"]).lower()], ["", ""],
                ["Preemption System Scheduler", "= " + str(p["SystemSchedulerEnabled"]).lower()],
                ["Preemption Service Scheduler", "= " + str(p["ServiceSchedulerEnabled"]).lower()],
                ["Preemption Batch Scheduler", "= " + str(p["BatchSchedulerEnabled"]).lower()],
                ["Preemption SysBatch Scheduler", "= " + str(p["SysBatchSchedulerEnabled"]).lower()]]
        print(columnize(rows))
        return 0
    if sub == "set-config":
        r = _api(o, "/operator/scheduler/configuration")
        c = r["SchedulerConfig"]
        idx = c.pop("ModifyIndex", 0)
        c.pop("CreateIndex", None)
        if "scheduler-algorithm" in o:
            c["SchedulerAlgorithm"] = o["scheduler-algorithm"]
        for flag, field in (("memory-oversubscription", "MemoryOversubscriptionEnabled"),
                            ("reject-job-registration", "RejectJobRegistration"), ("pause-eval-broker", "PauseEvalBroker")):
            if flag in o:
                c[field] = _bool(o[flag])
        for flag, field in (("preempt-system-scheduler", "SystemSchedulerEnabled"), ("preempt-service-scheduler", "ServiceSchedulerEnabled"),
                            ("preempt-batch-scheduler", "BatchSchedulerEnabled"), ("preempt-sysbatch-scheduler", "SysBatchSchedulerEnabled")):
            if flag in o:
                c["PreemptionConfig"][field] = _bool(o[flag])
        q = f"?cas={idx}" if "check-index" in o or True else ""
        try:
            res = _api(o, "/operator/scheduler/configuration" + q, method="PUT", body=c)
        except RPCError as e:
            if e.status == 0:
                raise
            return _err(f"Error setting scheduler configuration: {e}")
        if not res["Updated"]:
            return _err("Scheduler configuration could not be atomically updated, please try again")
        print("Scheduler configuration updated!")
        return 0
    return _err(f"Unknown operator scheduler subcommand {sub}")


def _snapshot(o, rest) -> int:
    from . import snapshot
    sub = rest[0] if rest else ""
    args = rest[1:]
    if sub not in ("save", "restore", "inspect"):
        return _err(f"Unknown operator snapshot subcommand {sub}")
    if sub == "save":
        if len(args) > 1:
            return _err("This command takes either no arguments or one: <filename>")
        path = args[0] if args else "backup.snap"
        if Path(path).exists():
            return _err(f'Destination file already exists: "{path}"')
        try:
            data, _h = _api(o, "/operator/snapshot" + ("?stale=true" if "stale" in o else ""), raw=True)
        except RPCError as e:
            if e.status == 0:
                raise
            return _err(f"Failed to get snapshot file: Unexpected response code: {e.status} ({e})")
        Path(path).write_bytes(data)
        print(f"State file written to {path}")
        return 0
    if len(args) != 1:
        return _err("This command takes one argument: <filename>")
    try:
        data = Path(args[0]).read_bytes()
    except OSError as e:
        return _err(f"Error opening snapshot file: {e}")
    if sub == "restore":
        try:
            _api(o, "/operator/snapshot", method="PUT", body=data)
        except RPCError as e:
            if e.status == 0:
                raise
            return _err(f"Failed to get restore snapshot: Unexpected response code: {e.status} ({e})")
        print("Snapshot Restored")
        return 0
    try:
        meta, state = snapshot.read(data)
    except RPCError as e:
        return _err(f"Error inspecting snapshot: {e}")
    from .nomad import SNAPSHOT_TYPES
    st = snapshot.stats(state, SNAPSHOT_TYPES)
    if "json" in o:
        print(json.dumps({"Meta": meta, "Stats": st}, indent=4))
        return 0
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(meta["ID"].rsplit("-", 1)[1]) / 1000))
    print(columnize([["Created", created], ["ID", meta["ID"]], ["Size", snapshot.ibytes(meta["Size"])],
                     ["Index", str(meta["Index"])], ["Term", str(meta["Term"])], ["Version", str(meta["Version"])]]))
    print()
    rows = [["Type", "Count", "Size"]] + [[x["Name"], str(x["Count"]), snapshot.ibytes(x["Sum"])] for x in st]
    rows += [[" ", " ", " "], ["Total", str(sum(x["Count"] for x in st)), snapshot.ibytes(sum(x["Sum"] for x in st))]]
    print(columnize(rows))
    return 0
