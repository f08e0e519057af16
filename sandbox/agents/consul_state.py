"""Consul's replicated state: the FSM (operations applied through raft on the leader) and the read
views the HTTP API serves (each returns (index, result), the index following the state store's rules
so blocking queries wake up when their data changes).

Tables: kv (+ tombstones: the index of deleted keys, so a list's index does not go backwards),
nodes, services {node: {id: service}}, checks {node: {id: check}}, sessions, autopilot (the
operator's autopilot configuration), lock_delay {key: wall-clock expiry}. state["index"][table]
is the index of the last write to each table.
"""

from __future__ import annotations

import base64
import copy
import time

from .config import parse_duration
from .net import RPCError

TABLES = ("kvs", "tombstones", "nodes", "services", "checks", "sessions", "autopilot", "acl")
SERF_CHECK = "serfHealth"
SESSION_TTL_MAX = 86400.0


def initial_state():
    return {"kv": {}, "tombstones": {}, "nodes": {}, "services": {}, "checks": {}, "sessions": {},
            "autopilot": None, "lock_delay": {}, "acl": {"bootstrap_index": 0, "policies": {}, "tokens": {}},
            "index": {t: 0 for t in TABLES}}


class TxnAbort(Exception):
    """A transaction operation failed: the whole transaction is rolled back (Consul's TxnError)."""

    def __init__(self, op_index: int, what: str):
        super().__init__(what)
        self.op_index, self.what = op_index, what


def _touch(state, index, *tables):
    for t in tables:
        state["index"][t] = index


# ---------------------------------------------------------------- KV

def _kv_entry(key, value, flags, create, modify, lock_index=0, session=""):
    return {"LockIndex": lock_index, "Key": key, "Flags": int(flags or 0), "Value": value,
            "CreateIndex": create, "ModifyIndex": modify, "Session": session}


def kv_set(state, index, key, value, flags=0, keep_session=True):
    cur = state["kv"].get(key)
    state["kv"][key] = _kv_entry(key, value, flags, cur["CreateIndex"] if cur else index, index,
                                 cur["LockIndex"] if cur else 0, (cur or {}).get("Session", "") if keep_session else "")
    state["tombstones"].pop(key, None)
    _touch(state, index, "kvs")
    return state["kv"][key]


def kv_delete(state, index, key):
    if state["kv"].pop(key, None) is not None:
        state["tombstones"][key] = index
        _touch(state, index, "kvs", "tombstones")


def kv_delete_tree(state, index, prefix):
    for k in [k for k in state["kv"] if k.startswith(prefix)]:
        kv_delete(state, index, k)


def kv_cas(state, index, key, value, flags, cas):
    cur = state["kv"].get(key)
    if (cas == 0 and cur is not None) or (cas != 0 and (cur is None or cur["ModifyIndex"] != cas)):
        return None
    return kv_set(state, index, key, value, flags)


def kv_delete_cas(state, index, key, cas) -> bool:
    cur = state["kv"].get(key)
    if cur is None or cur["ModifyIndex"] != cas:
        return cur is None  # as kvsDeleteCASTxn: deleting a missing key "succeeds"
    kv_delete(state, index, key)
    return True


def kv_lock(state, index, key, value, flags, session, now):
    if not session:
        raise RPCError("missing session", 500)
    if session not in state["sessions"]:
        raise RPCError(f'invalid session "{session}"', 500)
    until = state["lock_delay"].get(key, 0)
    if until > now:
        return None  # lock-delay after an invalidated session: acquisition refused (false), as KVS.Apply does
    cur = state["kv"].get(key)
    if cur and cur.get("Session") == session:
        lock_index = cur["LockIndex"]
    elif cur and cur.get("Session"):
        return None
    else:
        lock_index = (cur["LockIndex"] if cur else 0) + 1
    e = _kv_entry(key, value, flags, cur["CreateIndex"] if cur else index, index, lock_index, session)
    state["kv"][key] = e
    state["tombstones"].pop(key, None)
    _touch(state, index, "kvs")
    return e


def kv_unlock(state, index, key, value, flags, session):
    if not session:
        raise RPCError("missing session", 500)
    cur = state["kv"].get(key)
    if cur is None or cur.get("Session") != session:
        return None
    e = _kv_entry(key, value, flags, cur["CreateIndex"], index, cur["LockIndex"], "")
    state["kv"][key] = e
    _touch(state, index, "kvs")
    return e


def _kv_apply(state, op, index, now):
    verb, key = op["verb"], op["key"]
    value, flags = op.get("value"), op.get("flags", 0)
    if verb == "set":
        return bool(kv_set(state, index, key, value, flags))
    if verb == "cas":
        return kv_cas(state, index, key, value, flags, int(op["index"])) is not None
    if verb == "lock":
        return kv_lock(state, index, key, value, flags, op["session"], now) is not None
    if verb == "unlock":
        return kv_unlock(state, index, key, value, flags, op["session"]) is not None
    if verb == "delete":
        kv_delete(state, index, key)
        return True
    if verb == "delete-tree":
        kv_delete_tree(state, index, key)
        return True
    if verb == "delete-cas":
        return kv_delete_cas(state, index, key, int(op["index"]))
    raise RPCError(f'unknown KV verb "{verb}"', 400)


# ---------------------------------------------------------------- transactions

def _txn_kv(state, index, kv, now):
    """One KV operation of a transaction (agent/consul/state/txn.go txnKVS): results or TxnAbort text."""
    verb, key = kv.get("Verb", ""), kv.get("Key", "")
    value, flags, session = kv.get("Value"), kv.get("Flags", 0), kv.get("Session", "")
    idx = int(kv.get("Index") or 0)
    entry = None
    if verb == "set":
        entry = kv_set(state, index, key, value, flags)
    elif verb == "delete":
        kv_delete(state, index, key)
    elif verb == "delete-cas":
        if not kv_delete_cas(state, index, key, idx):
            raise ValueError(f'failed to delete key "{key}", index is stale')
    elif verb == "delete-tree":
        kv_delete_tree(state, index, key)
    elif verb == "cas":
        entry = kv_cas(state, index, key, value, flags, idx)
        if entry is None:
            raise ValueError(f'failed to set key "{key}", index is stale')
    elif verb == "lock":
        try:
            entry = kv_lock(state, index, key, value, flags, session, now)
        except RPCError as e:
            raise ValueError(str(e)) from None
        if entry is None:
            raise ValueError(f'failed to lock key "{key}", lock is already held')
    elif verb == "unlock":
        try:
            entry = kv_unlock(state, index, key, value, flags, session)
        except RPCError as e:
            raise ValueError(str(e)) from None
        if entry is None:
            raise ValueError(f'failed to unlock key "{key}", lock isn\'t held, or is held by another session')
    elif verb == "get":
        entry = state["kv"].get(key)
        if entry is None:
            raise ValueError(f'key "{key}" doesn\'t exist')
        return [{"KV": dict(entry)}]
    elif verb == "get-or-empty":
        entry = state["kv"].get(key) or _kv_entry(key, None, 0, 0, 0)
        return [{"KV": dict(entry)}]
    elif verb == "get-tree":
        return [{"KV": dict(state["kv"][k])} for k in sorted(state["kv"]) if k.startswith(key)]
    elif verb == "check-session":
        e = state["kv"].get(key)
        if e is None:
            raise ValueError(f'failed to check session, key "{key}" doesn\'t exist')
        if e.get("Session") != session:
            raise ValueError(f'failed session check for key "{key}", current session "{e.get("Session")}" != "{session}"')
        entry = e
    elif verb == "check-index":
        e = state["kv"].get(key)
        if e is None:
            raise ValueError(f'failed to check index, key "{key}" doesn\'t exist')
        if e["ModifyIndex"] != idx:
            raise ValueError(f'failed index check for key "{key}", current modify index {e["ModifyIndex"]} != {idx}')
        entry = e
    elif verb == "check-not-exists":
        if key in state["kv"]:
            raise ValueError(f'key "{key}" exists')
    else:
        raise ValueError(f'unknown KV verb "{verb}"')
    if entry is None:
        return []
    out = dict(entry)
    out["Value"] = None  # write results carry no value (txn.go clones and blanks it)
    return [{"KV": out}]


def txn_apply(state, ops: list[dict], index, now, read_only=False):
    """Apply ops atomically: {"Results": [...], "Errors": None} or {"Results": None, "Errors": [...]}."""
    work = copy.deepcopy(state) if not read_only else state
    results, errors = [], []
    for i, op in enumerate(ops):
        try:
            if "KV" in op:
                results += _txn_kv(work, index, op["KV"], now)
            else:
                raise ValueError("no operation specified")
        except ValueError as e:
            errors.append({"OpIndex": i, "What": str(e)})
    if errors:
        return {"Results": None, "Errors": errors}
    if not read_only:
        state.clear()
        state.update(work)
    return {"Results": results, "Errors": None}


# ---------------------------------------------------------------- catalog

def _node_index_touch(state, index, node):
    node["ModifyIndex"] = index
    _touch(state, index, "nodes")


def catalog_register(state, index, reg: dict):
    """Catalog.Register: a node (created or updated), optionally a service and checks."""
    name = reg["Node"]
    cur = state["nodes"].get(name)
    node = {"ID": reg.get("ID") or (cur or {}).get("ID", ""), "Node": name, "Address": reg.get("Address", ""),
            "Datacenter": reg.get("Datacenter", ""), "TaggedAddresses": reg.get("TaggedAddresses") or {},
            "Meta": reg.get("NodeMeta") or reg.get("Meta") or {}}
    if cur is None or any(cur.get(k) != node[k] for k in ("ID", "Address", "TaggedAddresses", "Meta")) or reg.get("force"):
        node["CreateIndex"] = cur["CreateIndex"] if cur else index
        _node_index_touch(state, index, node)
        state["nodes"][name] = node
    svc = reg.get("Service")
    if svc:
        services = state["services"].setdefault(name, {})
        old = services.get(svc["ID"])
        s = dict(svc)
        s["CreateIndex"] = old["CreateIndex"] if old else index
        s["ModifyIndex"] = index
        if old is None or {k: v for k, v in old.items() if not k.endswith("Index")} != {k: v for k, v in s.items() if not k.endswith("Index")}:
            services[svc["ID"]] = s
            _touch(state, index, "services")
    for chk in reg.get("Checks") or ([reg["Check"]] if reg.get("Check") else []):
        _check_set(state, index, name, chk)


def _check_set(state, index, node, chk: dict):
    checks = state["checks"].setdefault(node, {})
    old = checks.get(chk["CheckID"])
    c = dict(chk, Node=node)
    if c.get("ServiceID"):
        svc = state["services"].get(node, {}).get(c["ServiceID"])
        if svc is None:
            raise RPCError(f'Unknown service ID "{c["ServiceID"]}" for check ID "{c["CheckID"]}"', 500)
        c["ServiceName"], c["ServiceTags"] = svc["Service"], list(svc.get("Tags") or [])
    c["CreateIndex"] = old["CreateIndex"] if old else index
    c["ModifyIndex"] = index
    if old is not None and {k: v for k, v in old.items() if not k.endswith("Index")} == \
            {k: v for k, v in c.items() if not k.endswith("Index")}:
        return
    checks[chk["CheckID"]] = c
    _touch(state, index, "checks")
    if c["Status"] == "critical":
        _invalidate_sessions_for_check(state, index, node, c)


def catalog_deregister(state, index, node: str, service_id: str | None = None, check_id: str | None = None):
    if service_id:
        if state["services"].get(node, {}).pop(service_id, None) is not None:
            _touch(state, index, "services")
        for cid in [cid for cid, c in state["checks"].get(node, {}).items() if c.get("ServiceID") == service_id]:
            del state["checks"][node][cid]
            _touch(state, index, "checks")
            _invalidate_sessions_for_check(state, index, node, {"CheckID": cid, "ServiceID": service_id})
        return
    if check_id:
        if state["checks"].get(node, {}).pop(check_id, None) is not None:
            _touch(state, index, "checks")
            _invalidate_sessions_for_check(state, index, node, {"CheckID": check_id})
        return
    if state["nodes"].pop(node, None) is not None:
        _touch(state, index, "nodes")
    if state["services"].pop(node, None):
        _touch(state, index, "services")
    if state["checks"].pop(node, None):
        _touch(state, index, "checks")
    for sid in [sid for sid, s in state["sessions"].items() if s["Node"] == node]:
        session_destroy(state, index, sid)


# ---------------------------------------------------------------- sessions

def session_validate(state, s: dict, session_ttl_min: float) -> dict:
    """Checks of Session.Apply (create) with Consul's error texts; returns the stored form."""
    node = s.get("Node", "")
    if not node:
        raise RPCError("Must provide Node", 500)
    behavior = s.get("Behavior") or "release"
    if behavior not in ("release", "delete"):
        raise RPCError(f"Invalid Behavior setting '{behavior}'", 500)
    ttl = s.get("TTL") or ""
    if ttl:
        try:
            secs = parse_duration(ttl)
        except ValueError as e:
            raise RPCError(f"Session TTL '{ttl}' invalid: {e}", 500) from None
        if secs != 0 and (secs < session_ttl_min or secs > SESSION_TTL_MAX):
            raise RPCError(f"Invalid Session TTL '{int(secs * 1e9)}', must be between "
                           f"[{_go_dur(session_ttl_min)}={_go_dur(SESSION_TTL_MAX)}]", 500)
    if node not in state["nodes"]:
        raise RPCError(f'Missing node registration for node "{node}"', 500)
    node_checks = s.get("NodeChecks")
    if node_checks is None:
        node_checks = s.get("Checks") if s.get("Checks") is not None else [SERF_CHECK]
    service_checks = s.get("ServiceChecks") or None
    checks = state["checks"].get(node, {})
    for cid in list(node_checks) + [c.get("ID", "") for c in service_checks or []]:
        c = checks.get(cid)
        if c is None:
            raise RPCError(f'Missing check "{cid}" registration', 500)
        if c["Status"] == "critical":
            raise RPCError(f"Check '{cid}' is in critical state", 500)
    delay = s.get("LockDelay", 15 * 10**9)
    if isinstance(delay, str):
        delay = int(parse_duration(delay) * 1e9)
    elif isinstance(delay, (int, float)) and 0 < delay < 1e6:
        delay = int(delay * 1e9)  # a bare number is seconds (api.Session documents LockDelay in seconds when small)
    return {"ID": s["ID"], "Name": s.get("Name", ""), "Node": node, "LockDelay": int(delay), "Behavior": behavior,
            "TTL": ttl, "NodeChecks": list(node_checks), "ServiceChecks": service_checks}


def _go_dur(sec: float) -> str:
    from .config import format_duration
    return format_duration(sec)


def session_create(state, index, sess: dict):
    s = dict(sess, CreateIndex=index, ModifyIndex=index)
    state["sessions"][s["ID"]] = s
    _touch(state, index, "sessions")


def session_destroy(state, index, sid: str, now: float | None = None) -> bool:
    """Invalidate a session: release or delete its locks (per Behavior), set the lock-delay on them."""
    s = state["sessions"].pop(sid, None)
    if s is None:
        return False
    now = time.time() if now is None else now
    for k, e in list(state["kv"].items()):
        if e.get("Session") != sid:
            continue
        if s.get("LockDelay"):
            state["lock_delay"][k] = now + s["LockDelay"] / 1e9
        if s["Behavior"] == "delete":
            kv_delete(state, index, k)
        else:
            state["kv"][k] = dict(e, Session="", ModifyIndex=index)
            _touch(state, index, "kvs")
    _touch(state, index, "sessions")
    return True


def _invalidate_sessions_for_check(state, index, node, check):
    for sid, s in list(state["sessions"].items()):
        if s["Node"] != node:
            continue
        if check["CheckID"] in (s.get("NodeChecks") or []) or \
                any(c.get("ID") == check["CheckID"] for c in s.get("ServiceChecks") or []):
            session_destroy(state, index, sid)


# ---------------------------------------------------------------- FSM entry point

def apply(state, op, index):
    kind = op["op"]
    now = op.get("now") or time.time()
    if kind == "noop":
        return True
    if kind == "kv":
        return _kv_apply(state, op, index, now)
    if kind == "txn":
        return txn_apply(state, op["ops"], index, now)
    if kind == "catalog_register":
        catalog_register(state, index, op["reg"])
        return True
    if kind == "catalog_deregister":
        catalog_deregister(state, index, op["node"], op.get("service_id"), op.get("check_id"))
        return True
    if kind == "session_create":
        session_create(state, index, op["session"])
        return op["session"]["ID"]
    if kind == "session_destroy":
        return session_destroy(state, index, op["id"], now)
    if kind == "autopilot_set":
        cur = state.get("autopilot")
        cas = op.get("cas")
        if cas is not None and (cur or {}).get("ModifyIndex", 0) != int(cas):
            return False
        state["autopilot"] = dict(op["config"], CreateIndex=(cur or {}).get("CreateIndex", index), ModifyIndex=index)
        _touch(state, index, "autopilot")
        return True
    if kind.startswith("acl_"):
        from . import acl
        r = acl.apply(state, op, index)
        state["index"]["acl"] = index
        return r
    if kind == "restore":
        restored = copy.deepcopy(op["state"])
        state.clear()
        state.update(initial_state())
        state.update(restored)
        # a restore is a change of every table (blocking queries wake up; indexes never go backwards)
        _touch(state, index, *TABLES)
        return True
    raise RPCError(f"unknown operation {kind}", 400)


# ---------------------------------------------------------------- read views: (index, result)

def _max_index(*xs):
    return max([x for x in xs if x] or [0])


def view_kv_get(state, key):
    e = state["kv"].get(key)
    if e is None:
        return _max_index(state["index"]["kvs"], state["index"]["tombstones"]), None
    return e["ModifyIndex"], dict(e)


def view_kv_list(state, prefix):
    items = [dict(state["kv"][k]) for k in sorted(state["kv"]) if k.startswith(prefix)]
    graves = [i for k, i in state["tombstones"].items() if k.startswith(prefix)]
    if not items:
        return _max_index(state["index"]["kvs"], state["index"]["tombstones"]), []
    return _max_index(*(e["ModifyIndex"] for e in items), *graves), items


def view_kv_keys(state, prefix, sep):
    keys, idx = set(), 0
    for k, e in state["kv"].items():
        if not k.startswith(prefix):
            continue
        idx = max(idx, e["ModifyIndex"])
        rest = k[len(prefix):]
        if sep and sep in rest:
            keys.add(prefix + rest.split(sep)[0] + sep)
        else:
            keys.add(k)
    graves = [i for k, i in state["tombstones"].items() if k.startswith(prefix)]
    idx = _max_index(idx, *graves) or _max_index(state["index"]["kvs"], state["index"]["tombstones"])
    return idx, sorted(keys)


def node_status(state, node) -> str:
    c = state["checks"].get(node, {}).get(SERF_CHECK)
    return c["Status"] if c else "critical"


def view_nodes(state):
    return state["index"]["nodes"], [dict(state["nodes"][n]) for n in sorted(state["nodes"])]


def view_node(state, name):
    n = state["nodes"].get(name)
    idx = _max_index(state["index"]["nodes"], state["index"]["services"])
    if n is None:
        return idx, None
    return idx, {"Node": dict(n), "Services": copy.deepcopy(state["services"].get(name, {}))}


def view_services(state):
    out: dict[str, set] = {}
    for svcs in state["services"].values():
        for s in svcs.values():
            out.setdefault(s["Service"], set()).update(s.get("Tags") or [])
    return state["index"]["services"], {k: sorted(v) for k, v in sorted(out.items())}


def _instances(state, name, tags=()):
    for node in sorted(state["services"]):
        for sid in sorted(state["services"][node]):
            s = state["services"][node][sid]
            if s["Service"] == name and all(t in (s.get("Tags") or []) for t in tags) and node in state["nodes"]:
                yield state["nodes"][node], s


def view_service_nodes(state, name, tags=()):
    return _max_index(state["index"]["services"], state["index"]["nodes"]), \
        [(dict(n), dict(s)) for n, s in _instances(state, name, tags)]


def view_health_service(state, name, tags=()):
    out = []
    for n, s in _instances(state, name, tags):
        checks = [dict(c) for cid, c in sorted(state["checks"].get(n["Node"], {}).items())
                  if not c.get("ServiceID") or c.get("ServiceID") == s["ID"]]
        out.append({"Node": dict(n), "Service": dict(s), "Checks": checks})
    return _max_index(state["index"]["services"], state["index"]["nodes"], state["index"]["checks"]), out


def view_health_node(state, node):
    return state["index"]["checks"], [dict(c) for _cid, c in sorted(state["checks"].get(node, {}).items())]


def view_health_checks(state, service):
    out = [dict(c) for node in sorted(state["checks"]) for _cid, c in sorted(state["checks"][node].items())
           if c.get("ServiceName") == service]
    return state["index"]["checks"], out


def view_health_state(state, status):
    out = [dict(c) for node in sorted(state["checks"]) for _cid, c in sorted(state["checks"][node].items())
           if status == "any" or c["Status"] == status]
    return state["index"]["checks"], out


def view_sessions(state, node=None, sid=None):
    items = [dict(s) for _i, s in sorted(state["sessions"].items(), key=lambda x: x[1]["CreateIndex"])
             if (node is None or s["Node"] == node) and (sid is None or s["ID"] == sid)]
    return state["index"]["sessions"], items


def view_autopilot(state):
    return state["index"]["autopilot"], copy.deepcopy(state.get("autopilot"))


def view_acl(state):
    from .acl import table
    return state["index"].get("acl", 0), table(state)


VIEWS = {"acl": view_acl, "kv_get": view_kv_get, "kv_list": view_kv_list, "kv_keys": view_kv_keys, "nodes": view_nodes,
         "node": view_node, "services": view_services, "service_nodes": view_service_nodes,
         "health_service": view_health_service, "health_node": view_health_node, "health_checks": view_health_checks,
         "health_state": view_health_state, "sessions": view_sessions, "autopilot": view_autopilot}


def b64(data: bytes) -> str | None:
    return base64.b64encode(data).decode() if data else None
