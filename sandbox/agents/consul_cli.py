"""The consul command line: agent, validate, version, keygen, and the commands that talk to an agent's
HTTP API (members, join, leave, force-leave, reload, info, kv, catalog, lock, maint, operator raft /
autopilot, snapshot). Output formats follow the real CLI's source (columnize, tabwriter)."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

from . import snapshot
from .agentbase import cli_client, cli_err, columnize, parse_cli_flags, run_client_cmd
from .config import ConfigError, consul_rules, format_duration, load_and_check
from .net import RPCError

TLS_FLAGS = {"ca": ("ca-file", "CONSUL_CACERT"), "cert": ("client-cert", "CONSUL_CLIENT_CERT"),
             "key": ("client-key", "CONSUL_CLIENT_KEY"), "server_name": ("tls-server-name", "CONSUL_TLS_SERVER_NAME"),
             "ssl": (None, "CONSUL_HTTP_SSL"), "verify": (None, "CONSUL_HTTP_SSL_VERIFY")}
_, _api = cli_client("http-addr", "CONSUL_HTTP_ADDR", "127.0.0.1:8500", tls_flags=TLS_FLAGS,
                     token=("token", "CONSUL_HTTP_TOKEN", "X-Consul-Token"))
_parse = parse_cli_flags
_err = cli_err

COMMANDS = ("acl agent catalog force-leave info join keygen kv leave lock maint members operator reload snapshot "
            "tls validate version").split()
LOCK_FLAG_VALUE = 0x2DDCCBC058A50C18  # api.LockFlagValue
LOCK_KEY = ".lock"                     # api.DefaultSemaphoreKey


def cli(argv, build) -> int:
    version = build["version"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("Usage: consul [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n    " + "  ".join(COMMANDS))
        return 0 if argv else 1
    cmd, args = argv[0], argv[1:]
    if cmd in ("version", "-version", "--version", "-v"):
        o, _, _ = _parse(args)
        if o.get("format") == "json":
            print(json.dumps({"Version": version, "Revision": build["revision"][:8], "Prerelease": "",
                              "BuildDate": "2024-01-01T00:00:00Z", "RPC": {"Default": 2, "Min": 2, "Max": 3}}, indent=2))
        elif o.get("format") not in (None, "pretty"):
            return _err(f"Invalid format: {o['format']}")
        else:
            print(f"Consul v{version}\nRevision {build['revision'][:8]}\nBuild Date 2024-01-01T00:00:00Z\n"
                  "Protocol 2 spoken by default, understands 2 to 3 (agent will automatically use protocol >2 when speaking to compatible agents)")
        return 0
    if cmd == "tls":
        from .tls import cli as tls_cli
        return tls_cli("consul", args)
    if cmd == "keygen":
        print(base64.b64encode(secrets.token_bytes(32)).decode())
        return 0
    if cmd == "validate":
        o, _, rest = _parse(args, ("config-format",))
        if not rest:
            return _err("Must specify at least one config file or directory")
        _cfg, errs = _load(rest, o.get("config-format"), for_agent=False)
        if errs:
            return _err("Config validation failed: " + "\n".join(errs))
        if "quiet" not in o:
            print("Configuration is valid!")
        return 0
    if cmd == "agent":
        return _agent(args, build)
    return run_client_cmd(_client_cmd, cmd, args, ("http-addr", "status", "address", "id", "flags", "modify-index", "token",
                                                   "session", "acquire", "release", "n", "name", "timeout", "try",
                                                   "monitor-retry", "service", "reason", "node-meta", "format",
                                                   "cleanup-dead-servers", "max-trailing-logs", "min-quorum",
                                                   "last-contact-threshold", "server-stabilization-time",
                                                   "disable-upgrade-migration", "redundancy-zone-tag",
                                                   "upgrade-version-tag", "separator", "node", "ca-file", "client-cert",
                                                   "client-key", "tls-server-name", "rules", "description",
                                                   "policy-name", "policy-id", "secret", "accessor", "accessor-id"),
                          "Error connecting to Consul agent")


def _load(paths, fmt, for_agent):
    try:
        return load_and_check("consul", paths, fmt, for_agent=for_agent)
    except (ConfigError, ValueError, TypeError, KeyError, AttributeError) as e:
        return {}, [f"failed to load configuration: {e}"]


def _agent(args, build) -> int:
    from .consul import ConsulAgent
    o, multi, _rest = _parse(args, ("config-dir", "config-file", "config-format", "data-dir", "node", "bind",
                                    "client", "datacenter", "retry-join", "bootstrap-expect", "advertise", "encrypt"))
    # keep the command-line order of -config-file/-config-dir
    ordered = []
    i = 0
    while i < len(args):
        a = args[i].lstrip("-")
        if a.split("=")[0] in ("config-file", "config-dir"):
            ordered.append(a.split("=", 1)[1] if "=" in a else args[i + 1])
            i += 1 if "=" in a else 2
            continue
        i += 1
    paths = ordered or multi.get("config-file", []) + multi.get("config-dir", [])
    cfg, errs = _load(paths, o.get("config-format"), for_agent=True) if paths else ({}, [])
    flagmap = {"data-dir": "data_dir", "node": "node_name", "bind": "bind_addr", "client": "client_addr",
               "datacenter": "datacenter", "advertise": "advertise_addr", "encrypt": "encrypt"}
    for f, k in flagmap.items():
        if f in o:
            cfg[k] = o[f]
    if "server" in o:
        cfg["server"] = True
    if "bootstrap-expect" in o:
        try:
            cfg["bootstrap_expect"] = int(o["bootstrap-expect"])
        except ValueError:
            return _err(f'==> invalid value "{o["bootstrap-expect"]}" for flag -bootstrap-expect: parse error')
    if "retry-join" in multi:
        cfg["retry_join"] = (cfg.get("retry_join") or []) + multi["retry-join"]
    if "dev" in o:
        cfg.setdefault("server", True)
        cfg.setdefault("bootstrap_expect", 1)
        cfg.setdefault("data_dir", "/tmp/consul-dev")
        cfg.setdefault("bind_addr", "127.0.0.1")
        cfg.setdefault("performance", {}).setdefault("raft_multiplier", 1)
    if errs and paths:
        print("==> " + "\n".join(errs), file=sys.stderr)
        return 1
    rerr = consul_rules(cfg, True)
    if rerr:
        print("==> " + "\n".join(rerr), file=sys.stderr)
        return 1
    try:
        agent = ConsulAgent(cfg, paths, build, dev="dev" in o)
    except (RPCError, ValueError, OSError) as e:
        print(f"==> Error starting agent: {e}", file=sys.stderr)
        return 1
    return agent.run()


# ---------------------------------------------------------------- client commands

def _client_cmd(cmd, o, multi, rest) -> int:
    handler = _COMMANDS.get(cmd)
    if handler is None:
        return _err(f"Unknown command: {cmd}", 127)
    return handler(o, multi, rest)


def _members(o, multi, rest):
    members = _api(o, "/agent/members")
    rx = re.compile(o["status"]) if "status" in o else None
    rows = [["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"]]
    if "detailed" in o:
        rows = [["Node", "Address", "Status", "Tags"]]
    names = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}
    matched = 0
    for m in sorted(members, key=lambda m: m["Name"]):
        st = names.get(m["Status"], "none")
        if rx and not rx.search(st):
            continue
        matched += 1
        t = m["Tags"]
        if "detailed" in o:
            rows.append([m["Name"], f"{m['Addr']}:{m['Port']}", st, ",".join(f"{k}={v}" for k, v in sorted(t.items()))])
        else:
            typ = {"consul": "server", "node": "client"}.get(t.get("role"), "unknown")
            rows.append([m["Name"], f"{m['Addr']}:{m['Port']}", st, typ, t.get("build", "").split(":")[0],
                         t.get("vsn", ""), t.get("dc", ""), "default", "<all>" if typ == "server" else "<default>"])
    if rx and not matched:
        return 2
    print(columnize(rows))
    return 0


def _join(o, multi, rest):
    if not rest:
        return _err("At least one address to join must be specified.")
    n = 0
    for a in rest:
        try:
            _api(o, f"/agent/join/{a}", method="PUT")
            n += 1
        except RPCError as e:
            print(f"Error joining address '{a}': {e}", file=sys.stderr)
    if not n:
        return _err("Failed to join any nodes.")
    print(f"Successfully joined cluster by contacting {n} nodes.")
    return 0


def _leave(o, multi, rest):
    if rest:
        return _err(f"Error found unexpected args: {rest}")
    try:
        _api(o, "/agent/leave", method="PUT")
    except RPCError as e:
        if e.status == 0:
            return _err(f"Error connecting to Consul agent: {e}")
        return _err(f"Error leaving: {e}")
    print("Graceful leave complete")
    return 0


def _force_leave(o, multi, rest):
    if len(rest) != 1:
        return _err("A single node name must be specified to force leave.")
    q = [k for k in ("prune", "wan") if k in o]
    try:
        _api(o, f"/agent/force-leave/{urllib.parse.quote(rest[0])}" + ("?" + "&".join(q) if q else ""), method="PUT")
    except RPCError as e:
        if e.status == 0:
            raise
        return _err(f"Error force leaving: Unexpected response code: {e.status} ({e})")
    return 0


def _reload(o, multi, rest):
    _api(o, "/agent/reload", method="PUT")
    print("Configuration reload triggered")
    return 0


def _info(o, multi, rest):
    s = _api(o, "/agent/self")["Stats"]
    out = []
    for sec in sorted(s):
        out.append(f"{sec}:")
        for k in sorted(s[sec]):
            out.append(f"\t{k} = {s[sec][k]}")
    print("\n".join(out))
    return 0


def _kv(o, multi, rest):
    if not rest:
        return _err("Usage: consul kv <subcommand>")
    sub, rest = rest[0], rest[1:]
    if sub == "put":
        if not rest:
            return _err("Error! Missing KEY argument")
        key = rest[0]
        val = rest[1] if len(rest) > 1 else ""
        if val.startswith("@"):
            with open(val[1:]) as f:
                val = f.read()
        elif val == "-":
            val = sys.stdin.read()
        q = []
        if "flags" in o:
            q.append(f"flags={o['flags']}")
        if "cas" in o:
            q.append(f"cas={o.get('modify-index', 0)}")
        if "acquire" in o:
            if "session" not in o:
                return _err("Error! Missing -session (required with -acquire)")
            q.append(f"acquire={o['session']}")
        if "release" in o:
            if "session" not in o:
                return _err("Error! Missing -session (required with -release)")
            q.append(f"release={o['session']}")
        ok = _api(o, f"/kv/{key}" + ("?" + "&".join(q) if q else ""), method="PUT", body=val.encode())
        if not ok:
            if "acquire" in o:
                return _err(f"Error! Did not acquire lock for {key}")
            if "release" in o:
                return _err(f"Error! Did not release lock for {key}")
            return _err(f"Error! Did not write to {key}: CAS failed")
        if "acquire" in o:
            print(f"Success! Lock acquired on: {key}")
        elif "release" in o:
            print(f"Success! Lock released on: {key}")
        else:
            print(f"Success! Data written to: {key}")
        return 0
    if sub == "get":
        if not rest:
            return _err("Error! Missing KEY argument")
        key = rest[0]
        try:
            if "recurse" in o:
                items = _api(o, f"/kv/{key}?recurse")
                for it in items:
                    print(f"{it['Key']}:{base64.b64decode(it['Value'] or '').decode(errors='replace')}")
                return 0
            if "keys" in o:
                sep = o.get("separator", "/")
                for k in _api(o, f"/kv/{key}?keys&separator={urllib.parse.quote(sep)}"):
                    print(k)
                return 0
            items = _api(o, f"/kv/{key}")
        except RPCError as e:
            if e.status == 404:
                return _err(f"Error! No key exists at: {key}")
            raise
        if "detailed" in o:
            it = items[0]
            rows = [[k, str(it[k])] for k in ("CreateIndex", "Flags", "Key", "LockIndex", "ModifyIndex", "Session")]
            rows.append(["Value", base64.b64decode(it["Value"] or "").decode(errors="replace")])
            print(columnize(rows))
        else:
            print(base64.b64decode(items[0]["Value"] or "").decode(errors="replace"))
        return 0
    if sub == "delete":
        if not rest:
            return _err("Error! Missing KEY argument")
        q = []
        if "recurse" in o:
            q.append("recurse")
        if "cas" in o:
            q.append(f"cas={o.get('modify-index', 0)}")
        ok = _api(o, f"/kv/{rest[0]}" + ("?" + "&".join(q) if q else ""), method="DELETE")
        if not ok:
            return _err(f"Error! Did not delete key {rest[0]}: CAS failed")
        print(f"Success! Deleted key{'s with prefix' if 'recurse' in o else ''}: {rest[0]}")
        return 0
    return _err(f"Unknown kv subcommand {sub}")


def _catalog(o, multi, rest):
    sub = rest[0] if rest else ""
    if len(rest) > 1:
        return _err(f"Too many arguments (expected 0, got {len(rest) - 1})")
    if sub == "datacenters":
        try:
            for dc in _api(o, "/catalog/datacenters"):
                print(dc)
        except RPCError as e:
            if e.status == 0:
                raise
            return _err(f"Error listing datacenters: {e}")
        return 0
    if sub == "nodes":
        if "service" in o:
            rows = _api(o, f"/catalog/service/{o['service']}")
            nodes = [{"Node": r["Node"], "ID": r["ID"], "Address": r["Address"], "Datacenter": r["Datacenter"],
                      "TaggedAddresses": r["TaggedAddresses"], "Meta": r["NodeMeta"]} for r in rows]
        else:
            q = "".join(f"&node-meta={urllib.parse.quote(v.replace('=', ':', 1))}" for v in multi.get("node-meta", []))
            nodes = _api(o, "/catalog/nodes" + ("?" + q[1:] if q else ""))
        if not nodes:
            return _err("No nodes match the given query - try expanding your search.", 0)
        detailed = "detailed" in o
        table = [["Node", "ID", "Address", "DC"] + (["TaggedAddresses", "Meta"] if detailed else [])]
        for n in nodes:
            nid = n["ID"] if detailed or "-" not in n["ID"] else n["ID"].split("-")[0]
            row = [n["Node"], nid, n["Address"], n["Datacenter"]]
            if detailed:
                row += [", ".join(f"{k}={v}" for k, v in sorted((n.get("TaggedAddresses") or {}).items())),
                        ", ".join(f"{k}={v}" for k, v in sorted((n.get("Meta") or {}).items()))]
            table.append(row)
        print(columnize(table))
        return 0
    if sub == "services":
        if "node" in o:
            res = _api(o, f"/catalog/node/{o['node']}")
            services = {s["Service"]: s.get("Tags") or [] for s in ((res or {}).get("Services") or {}).values()}
        else:
            services = _api(o, "/catalog/services")
        if not services:
            return _err("No services match the given query - try expanding your search.", 0)
        if "tags" in o:
            w = max(len(s) for s in services)
            print("\n".join(f"{s.ljust(w + 6)}{','.join(sorted(services[s]))}".rstrip() for s in sorted(services)))
        else:
            print("\n".join(sorted(services)))
        return 0
    return _err("Usage: consul catalog <subcommand> [options] [args]\n\nSubcommands:\n    datacenters\n    nodes\n    services")


def _maint(o, multi, rest):
    enable, disable = "enable" in o, "disable" in o
    if enable and disable:
        return _err("Only one of -enable or -disable may be provided")
    if not enable and not disable and "reason" in o:
        return _err("Reason may only be provided with -enable")
    if not enable and not disable and "service" not in o:
        checks = _api(o, "/agent/checks")
        for c in checks.values():
            if c["CheckID"] == "_node_maintenance":
                print(f"Node:\n  Name:   {c['Node']}\n  Reason: {c['Notes']}\n")
            elif c["CheckID"].startswith("_service_maintenance:"):
                print(f"Service:\n  ID:     {c['ServiceID']}\n  Reason: {c['Notes']}\n")
        return 0
    flag = "true" if enable else "false"
    reason = "&reason=" + urllib.parse.quote(o["reason"]) if "reason" in o else ""
    if "service" in o:
        _api(o, f"/agent/service/maintenance/{o['service']}?enable={flag}{reason}", method="PUT")
        print(f"Service maintenance is now {'enabled' if enable else 'disabled'}")
    else:
        _api(o, f"/agent/maintenance?enable={flag}{reason}", method="PUT")
        print(f"Node maintenance is now {'enabled' if enable else 'disabled'}")
    return 0


def _operator(o, multi, rest):
    area, sub = (rest + ["", ""])[:2]
    if area == "raft":
        if sub == "list-peers":
            try:
                cfgj = _api(o, "/operator/raft/configuration" + ("?stale" if o.get("stale") == "true" else ""))
            except RPCError as e:
                if e.status == 0:
                    raise
                return _err(f"Error getting peers: Failed to retrieve raft configuration: Unexpected response code: {e.status} ({e})")
            rows = [["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]]
            for s in cfgj["Servers"]:
                rows.append([s["Node"], s["ID"], s["Address"], "leader" if s["Leader"] else "follower",
                             str(s["Voter"]).lower(), "3"])
            print(columnize(rows))
            return 0
        if sub == "transfer-leader":
            q = f"?id={o['id']}" if "id" in o else ""
            try:
                _api(o, "/operator/raft/transfer-leader" + q, method="POST")
            except RPCError as e:
                if e.status == 0:
                    raise
                return _err(f"Error transfering leadership: Failed to transfer leadership Unexpected response code: {e.status} ({e})")
            print("Success")
            return 0
        if sub == "remove-peer":
            if ("id" in o) == ("address" in o):
                return _err("Must specify either -id or -address" if "id" not in o else "Must specify only one of -id or -address")
            q = f"?id={o['id']}" if "id" in o else f"?address={o['address']}"
            try:
                _api(o, "/operator/raft/peer" + q, method="DELETE")
            except RPCError as e:
                if e.status == 0:
                    raise
                return _err(f"Error removing peer: Unexpected response code: {e.status} ({e})")
            print(f'Removed peer with {"id" if "id" in o else "address"} "{o.get("id") or o.get("address")}"')
            return 0
        return _err(f"Unknown operator raft subcommand {sub}")
    if area == "autopilot":
        if sub == "get-config":
            try:
                c = _api(o, "/operator/autopilot/configuration")
            except RPCError as e:
                if e.status == 0:
                    raise
                return _err(f"Error querying Autopilot configuration: {e}")
            print("\n".join([f"CleanupDeadServers = {str(c['CleanupDeadServers']).lower()}",
                             f"LastContactThreshold = {c['LastContactThreshold']}",
                             f"MaxTrailingLogs = {c['MaxTrailingLogs']}", f"MinQuorum = {c['MinQuorum']}",
                             f"ServerStabilizationTime = {c['ServerStabilizationTime']}",
                             f"RedundancyZoneTag = {json.dumps(c['RedundancyZoneTag'])}",
                             f"DisableUpgradeMigration = {str(c['DisableUpgradeMigration']).lower()}",
                             f"UpgradeVersionTag = {json.dumps(c['UpgradeVersionTag'])}"]))
            return 0
        if sub == "set-config":
            c = _api(o, "/operator/autopilot/configuration")
            changes = {"cleanup-dead-servers": ("CleanupDeadServers", _bool), "max-trailing-logs": ("MaxTrailingLogs", int),
                       "min-quorum": ("MinQuorum", int), "last-contact-threshold": ("LastContactThreshold", _dur),
                       "server-stabilization-time": ("ServerStabilizationTime", _dur),
                       "disable-upgrade-migration": ("DisableUpgradeMigration", _bool),
                       "redundancy-zone-tag": ("RedundancyZoneTag", str), "upgrade-version-tag": ("UpgradeVersionTag", str)}
            for flag, (field, conv) in changes.items():
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
        if sub == "state":
            fmt = o.get("format", "pretty")
            if fmt not in ("pretty", "json"):
                return _err(f"Error: Unknown format: {fmt}")
            try:
                st = _api(o, "/operator/autopilot/state")
            except RPCError as e:
                if e.status == 0:
                    raise
                return _err(f"Error: Failed to retrieve the autopilot state: {e}")
            if fmt == "json":
                print(json.dumps(st, indent=4))
                return 0
            print(_autopilot_pretty(st), end="")
            return 0
        return _err(f"Unknown operator autopilot subcommand {sub}")
    return _err(f"Unknown operator subcommand {area}")


def _bool(v):
    from .httpapi import parse_bool
    return parse_bool(v)


def _dur(v):
    from .config import parse_duration
    return format_duration(parse_duration(v))


def _autopilot_pretty(st) -> str:
    out = [f"Healthy:                      {str(st['Healthy']).lower()}",
           f"Failure Tolerance:            {st['FailureTolerance']}",
           f"Optimistic Failure Tolerance: {st['OptimisticFailureTolerance']}",
           f"Leader:                       {st['Leader']}", "Voters:"]
    out += [f"   {v}" for v in st["Voters"]]
    out.append("Servers:")
    for sid in sorted(st["Servers"]):
        s = st["Servers"][sid]
        out += [f"   {s['ID']}", f"      Name:            {s['Name']}", f"      Address:         {s['Address']}",
                f"      Version:         {s['Version']}", f"      Status:          {s['Status']}",
                f"      Node Type:       {s['NodeType']}", f"      Node Status:     {s['NodeStatus']}",
                f"      Healthy:         {str(s['Healthy']).lower()}", f"      Last Contact:    {s['LastContact']}",
                f"      Last Term:       {s['LastTerm']}", f"      Last Index:      {s['LastIndex']}"]
        if s.get("UpgradeVersion"):
            out.append(f"      Upgrade Version: {s['UpgradeVersion']}")
        if s.get("Meta"):
            out.append("      Meta")
            out += [f"         {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(s["Meta"].items())]
    return "\n".join(out) + "\n"


def _snapshot(o, multi, rest):
    sub = rest[0] if rest else ""
    files = rest[1:]
    if sub not in ("save", "restore", "inspect"):
        return _err("Usage: consul snapshot <subcommand> [options] [args]\n\nSubcommands:\n    inspect\n    restore\n    save")
    if not files:
        return _err("Missing FILE argument")
    if len(files) > 1:
        return _err(f"Too many arguments (expected 1, got {len(files)})")
    path = files[0]
    if sub == "save":
        try:
            data, hdrs = _api(o, "/snapshot" + ("?stale" if "stale" in o else ""), raw=True)
        except RPCError as e:
            if e.status == 0:
                raise
            return _err(f"Error saving snapshot: Unexpected response code: {e.status} ({e})")
        tmp = path + ".unverified"
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            snapshot.read(data)
        except RPCError as e:
            return _err(f"Error verifying snapshot file: {e}")
        os.replace(tmp, path)
        print(f"Saved and verified snapshot to index {hdrs.get('X-Consul-Index', '0')}")
        return 0
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return _err(f"Error opening snapshot file: {e}")
    if sub == "restore":
        try:
            _api(o, "/snapshot", method="PUT", body=data)
        except RPCError as e:
            if e.status == 0:
                raise
            return _err(f"Error restoring snapshot: Unexpected response code: {e.status} ({e})")
        print("Restored snapshot")
        return 0
    try:
        meta, state = snapshot.read(data)
    except RPCError as e:
        return _err(f"Error extracting snapshot data: {e}")
    from .consul import SNAPSHOT_TYPES
    merged: dict[str, dict] = {}
    for s in snapshot.stats(state, SNAPSHOT_TYPES):
        m = merged.setdefault(s["Name"], {"Name": s["Name"], "Count": 0, "Sum": 0})
        m["Count"] += s["Count"]
        m["Sum"] += s["Sum"]
    st = sorted(merged.values(), key=lambda s: (-s["Sum"], s["Name"]))
    if o.get("format") == "json":
        print(json.dumps({"Meta": {k: meta[k] for k in ("ID", "Size", "Index", "Term", "Version")}, "Stats": st,
                          "TotalSize": sum(s["Sum"] for s in st)}, indent=3))
        return 0
    rows = [[" ID", meta["ID"]], [" Size", str(meta["Size"])], [" Index", str(meta["Index"])], [" Term", str(meta["Term"])],
            [" Version", str(meta["Version"])]]
    print(_tabwrite(rows))
    print()
    table = [[" Type", "Count", "Size"], [" ----", "----", "----"]]
    table += [[f" {s['Name']}", str(s["Count"]), snapshot.byte_size(s["Sum"])] for s in st]
    table += [[" ----", "----", "----"], [" Total", "", snapshot.byte_size(sum(s["Sum"] for s in st))]]
    print(_tabwrite(table))
    return 0


def _tabwrite(rows, minwidth=8, padding=6) -> str:
    """text/tabwriter with (minwidth 8, tabwidth 8, padding 6, ' ') as the inspect formatter sets it up."""
    widths = [max(minwidth, max(len(r[i]) for r in rows if i < len(r)) + padding) for i in range(max(len(r) for r in rows) - 1)]
    return "\n".join("".join(c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)).rstrip() for r in rows)


# ---------------------------------------------------------------- consul lock (api.Lock semantics)

def _lock(o, multi, rest):
    try:
        limit = int(o.get("n", "1"))
    except ValueError:
        return _err(f'invalid value "{o.get("n")}" for flag -n: parse error')
    if limit <= 0:
        return _err("Lock holder limit must be positive")
    if limit > 1:
        return _err("Semaphores (-n > 1) are not implemented by the sandbox stand-in; use -n=1 (a lock)")
    if len(rest) < 2:
        return _err("Key prefix and child command must be specified")
    prefix = rest[0].lstrip("/")
    child = rest[1:]
    timeout = 0.0
    for f in ("timeout", "try"):
        if f in o:
            from .config import parse_duration
            try:
                timeout = parse_duration(o[f])
            except ValueError:
                return _err(f'invalid value "{o[f]}" for flag -{f}: parse error')
    if timeout < 0:
        return _err("Timeout must be positive")
    name = o.get("name") or f"Consul lock for '{' '.join(child)}' at '{prefix}'"
    verbose = "verbose" in o
    try:
        _api(o, "/agent/self")
    except RPCError as e:
        return _err(f"Error querying Consul agent: {e}")
    key = (prefix.rstrip("/") + "/" + LOCK_KEY) if prefix else LOCK_KEY
    if verbose:
        print(f"Setting up lock at path: {key}")
    try:
        sid = _api(o, "/session/create", method="PUT", body={"Name": name, "TTL": "15s", "Behavior": "release",
                                                                "LockDelay": "15s"})["ID"]
    except RPCError as e:
        if e.status == 0:
            raise
        return _err(f"Lock setup failed: failed to create session: {e}")
    stop = threading.Event()
    lost = threading.Event()
    threading.Thread(target=_renew, args=(o, sid, stop, lost), daemon=True).start()
    shutdown = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: shutdown.set())
    if verbose:
        print("Attempting lock acquisition")
    try:
        got = _acquire(o, key, sid, timeout, shutdown)
    except RPCError as e:
        _cleanup(o, key, sid, stop, held=False)
        if e.status == 0:
            raise
        return _err(f"Lock acquisition failed: {e}")
    if not got:
        _cleanup(o, key, sid, stop, held=False)
        return _err("Shutdown triggered or timeout during lock acquisition")
    code = 0
    cmd = [os.environ.get("SHELL", "/bin/sh"), "-c", " ".join(child)] if o.get("shell", "true") != "false" else child
    proc = subprocess.Popen(cmd, stdin=None if "pass-stdin" in o else subprocess.DEVNULL, start_new_session=True)
    threading.Thread(target=_monitor, args=(o, key, sid, stop, lost), daemon=True).start()
    while proc.poll() is None and not shutdown.is_set() and not lost.is_set():
        time.sleep(0.1)
    if proc.poll() is None:
        if verbose:
            print("Lock lost, killing child" if lost.is_set() else "Shutdown triggered, killing child")
        _kill_child(proc, verbose)
    else:
        code = 2 if proc.returncode else 0
        if verbose:
            print("Child terminated, releasing lock")
    _cleanup(o, key, sid, stop, held=not lost.is_set(), verbose=verbose)
    return code if "child-exit-code" in o else 0


def _acquire(o, key, sid, timeout, shutdown) -> bool:
    """api.Lock.Lock: wait (blocking query) while another session holds the key, then ?acquire; a refused
    acquisition (lock-delay) is retried after 5 s."""
    deadline = time.monotonic() + timeout if timeout else None
    index = 0
    while not shutdown.is_set():
        if deadline and time.monotonic() >= deadline:
            return False
        wait = min(15.0, max(0.1, deadline - time.monotonic())) if deadline else 15.0
        try:
            items, hdrs = _api(o, f"/kv/{key}?index={index}&wait={wait:.3f}s", raw=True)
            cur = json.loads(items)[0]
        except RPCError as e:
            if e.status != 404:
                raise
            cur, hdrs = None, {}
        index = int(hdrs.get("X-Consul-Index", index) or index)
        if cur and cur.get("Flags") != LOCK_FLAG_VALUE:
            raise RPCError("Existing key does not match lock use", 500)
        if cur and cur.get("Session"):
            if cur["Session"] == sid:
                return True
            continue
        if _api(o, f"/kv/{key}?acquire={sid}&flags={LOCK_FLAG_VALUE}", method="PUT", body=b""):
            return True
        end = time.monotonic() + 5.0  # DefaultLockRetryTime
        while time.monotonic() < end and not shutdown.is_set() and (not deadline or time.monotonic() < deadline):
            time.sleep(0.1)
    return False


def _renew(o, sid, stop, lost):
    while not stop.wait(7.5):  # TTL / 2
        try:
            _api(o, f"/session/renew/{sid}", method="PUT")
        except RPCError as e:
            if e.status == 404:
                lost.set()
                return


def _monitor(o, key, sid, stop, lost):
    index = 0
    while not stop.is_set():
        try:
            data, hdrs = _api(o, f"/kv/{key}?index={index}&wait=15s", raw=True)
            cur = json.loads(data)[0]
            index = int(hdrs.get("X-Consul-Index", 0))
        except RPCError as e:
            if e.status == 0:
                time.sleep(1)
                continue
            cur = None
        if not stop.is_set() and (cur is None or cur.get("Session") != sid):
            lost.set()
            return


def _kill_child(proc, verbose):
    if verbose:
        print(f"Terminating child pid {proc.pid}")
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(5)
    except (OSError, subprocess.TimeoutExpired):
        if verbose:
            print(f"Killing child pid {proc.pid}")
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()


def _cleanup(o, key, sid, stop, held, verbose=False):
    stop.set()
    try:
        if held:
            _api(o, f"/kv/{key}?release={sid}&flags={LOCK_FLAG_VALUE}", method="PUT", body=b"")
        _api(o, f"/session/destroy/{sid}", method="PUT")
        # Lock.Destroy: remove the key unless another session holds it
        cur = _api(o, f"/kv/{key}")[0]
        if not cur.get("Session"):
            _api(o, f"/kv/{key}?cas={cur['ModifyIndex']}", method="DELETE")
            if verbose:
                print("Cleanup succeeded")
        elif verbose:
            print("Cleanup aborted, lock in use")
    except RPCError:
        pass


def _acl(o, multi, rest):
    """consul acl bootstrap | policy create|read|list|delete | token create|read|list|delete."""
    sub = " ".join(rest[:2]) if rest[:1] != ["bootstrap"] else "bootstrap"
    as_json = o.get("format") == "json"
    if sub == "bootstrap":
        return _show_token(_api(o, "/acl/bootstrap", method="PUT", body=b""), as_json)
    if sub == "policy create":
        if not o.get("name"):
            return _err("Missing require '-name' flag")
        rules = o.get("rules", "")
        if rules.startswith("@"):
            with open(rules[1:]) as fh:
                rules = fh.read()
        body = {"Name": o["name"], "Description": o.get("description", ""), "Rules": rules}
        return _show_policy(_api(o, "/acl/policy", method="PUT", body=body), as_json)
    if sub == "policy read":
        pol = _api(o, f"/acl/policy/name/{o['name']}" if o.get("name") else f"/acl/policy/{o.get('id', '')}")
        return _show_policy(pol, as_json)
    if sub == "policy list":
        pols = _api(o, "/acl/policies")
        if as_json:
            print(json.dumps(pols, indent=4))
        else:
            for p in pols:
                print(f"{p['Name']}:\n   ID:           {p['ID']}\n   Description:  {p['Description']}\n"
                      f"   Datacenters:  {', '.join(p.get('Datacenters') or [])}")
        return 0
    if sub == "policy delete":
        pid = o.get("id") or _api(o, f"/acl/policy/name/{o.get('name', '')}")["ID"]
        _api(o, f"/acl/policy/{pid}", method="DELETE")
        print(f"Policy \"{pid}\" deleted successfully")
        return 0
    if rest[:1] == ["set-agent-token"]:
        if len(rest) != 3:
            return _err("Missing TYPE and TOKEN arguments")
        _api(o, f"/agent/token/{rest[1]}", method="PUT", body={"Token": rest[2]})
        print(f"ACL token \"{rest[1]}\" set successfully")
        return 0
    if sub == "token create":
        pols = [{"ID": x} for x in multi.get("policy-id", [])] + [{"Name": x} for x in multi.get("policy-name", [])]
        body = {"Description": o.get("description", ""), "Policies": pols, "Local": "local" in o}
        if o.get("secret"):
            body["SecretID"] = o["secret"]
        if o.get("accessor"):
            body["AccessorID"] = o["accessor"]
        return _show_token(_api(o, "/acl/token", method="PUT", body=body), as_json)
    if sub == "token read":
        tok = _api(o, "/acl/token/self" if "self" in o else f"/acl/token/{o.get('accessor-id') or o.get('id', '')}")
        return _show_token(tok, as_json)
    if sub == "token delete":
        acc = o.get("accessor-id") or o.get("id", "")
        _api(o, f"/acl/token/{acc}", method="DELETE")
        print(f"Token \"{acc}\" deleted successfully")
        return 0
    if sub == "token list":
        toks = _api(o, "/acl/tokens")
        if as_json:
            print(json.dumps(toks, indent=4))
            return 0
        for t in toks:
            _show_token(t, False)
            print()
        return 0
    return _err("Usage: consul acl <bootstrap|policy|token> <subcommand> [options] (other acl commands are not "
                "implemented by the sandbox stand-in)")


def _show_token(t, as_json):
    """command/acl/token/formatter.go (pretty)."""
    if as_json:
        print(json.dumps(t, indent=4))
        return 0
    lines = [f"AccessorID:       {t['AccessorID']}", f"SecretID:         {t['SecretID']}",
             f"Description:      {t.get('Description', '')}", f"Local:            {str(t.get('Local', False)).lower()}",
             f"Create Time:      {t.get('CreateTime', '')}"]
    if t.get("Policies"):
        lines.append("Policies:")
        lines += [f"   {p['ID']} - {p['Name']}" for p in t["Policies"]]
    print("\n".join(lines))
    return 0


def _show_policy(p, as_json):
    if as_json:
        print(json.dumps(p, indent=4))
        return 0
    print(f"ID:           {p['ID']}\nName:         {p['Name']}\nDescription:  {p.get('Description', '')}\n"
          f"Datacenters:  {', '.join(p.get('Datacenters') or [])}\nRules:\n{p.get('Rules', '')}")
    return 0


_COMMANDS = {"acl": _acl, "members": _members, "join": _join, "leave": _leave, "force-leave": _force_leave, "reload": _reload,
             "info": _info, "kv": _kv, "catalog": _catalog, "maint": _maint, "operator": _operator,
             "snapshot": _snapshot, "lock": _lock}
