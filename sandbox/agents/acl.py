"""ACLs of the stand-ins: the replicated ACL table (bootstrap, policies, tokens), policy rules as the
products parse them, and the authorizer both agents' `authorize` hook asks.

Consul rules: key/key_prefix, node/node_prefix, service/service_prefix, agent/agent_prefix,
session/session_prefix (policy = read|write|deny, key also list), operator/acl/keyring = read|write|deny.
Exact rules win over prefix rules, the longest prefix wins, and the same rule in several policies of a
token merges as Consul's policy merger does (deny > write > list > read); anything unmatched follows
acl.default_policy. Nomad rules: namespace "<name or glob>" { policy | capabilities }, node/agent/operator
{ policy }; nothing matched is denied (requests without a token use the policy named "anonymous").
"""

from __future__ import annotations

import fnmatch
import secrets
import time
import uuid

from . import hcl

MANAGEMENT_POLICY_ID = "00000000-0000-0000-0000-000000000001"   # Consul's global-management
ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"     # Consul's anonymous token

CONSUL_SEGMENTED = ("key", "node", "service", "agent", "session", "query")
CONSUL_SINGLE = ("operator", "acl", "keyring", "mesh", "peering")
CONSUL_LEVELS = ("read", "write", "deny", "list")
NOMAD_BLOCKS = ("node", "agent", "operator", "quota", "plugin")
NOMAD_LEVELS = ("read", "write", "deny", "scale", "list")

# Nomad's namespace policies as capabilities (acl/policy.go expandNamespacePolicy)
_NS_READ = ["list-jobs", "parse-job", "read-job", "csi-list-volume", "csi-read-volume", "list-scaling-policies",
            "read-scaling-policy", "read-job-scaling"]
_NS_WRITE = _NS_READ + ["scale-job", "submit-job", "dispatch-job", "read-logs", "read-fs", "alloc-exec",
                        "alloc-lifecycle", "csi-write-volume", "csi-mount-volume", "submit-recommendation"]
NS_POLICIES = {"deny": ["deny"], "read": _NS_READ, "write": _NS_WRITE, "scale": ["list-scaling-policies",
                                                                                 "read-scaling-policy", "read-job-scaling",
                                                                                 "scale-job"]}


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1000000:06d}Z"


def new_id() -> str:
    return str(uuid.uuid4())


def new_secret() -> str:
    return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))


# ---------------------------------------------------------------- rules

def parse_rules(product: str, text: str) -> dict:
    """The rules of a policy, checked like the products check them; ValueError names what is wrong."""
    try:
        doc = hcl.loads(text or "", "hcl") if (text or "").strip() else {}
    except hcl.HCLError as e:
        raise ValueError(f"Failed to parse ACL rules: {e}") from None
    out: dict = {}
    for k, v in doc.items():
        if product == "consul":
            base = k[:-7] if k.endswith("_prefix") else k
            if base in CONSUL_SEGMENTED and isinstance(v, dict):
                for name, body in v.items():
                    pol = (body or {}).get("policy") if isinstance(body, dict) else None
                    if pol not in CONSUL_LEVELS or (pol == "list" and base != "key"):
                        raise ValueError(f"Invalid {k} policy: {k} {name!r} {{ policy = {pol!r} }}")
                    out.setdefault(k, {})[name] = pol
            elif k in CONSUL_SINGLE and isinstance(v, str) and v in ("read", "write", "deny"):
                out[k] = v
            else:
                raise ValueError(f"Failed to parse ACL rules: unsupported rule {k!r} (not implemented by the sandbox "
                                 "consul stand-in, or malformed)")
        else:
            if k == "namespace" and isinstance(v, dict):
                for name, body in v.items():
                    body = body or {}
                    pol = body.get("policy")
                    if pol is not None and pol not in NS_POLICIES and pol != "list":
                        raise ValueError(f"Invalid namespace policy: {pol!r}")
                    caps = list(body.get("capabilities") or [])
                    out.setdefault("namespace", {})[name] = NS_POLICIES.get(pol, []) + caps
            elif k in NOMAD_BLOCKS and isinstance(v, dict):
                pol = v.get("policy")
                if pol not in NOMAD_LEVELS:
                    raise ValueError(f"Invalid {k} policy: {pol!r}")
                out[k] = pol
            else:
                raise ValueError(f"Failed to parse ACL rules: unsupported rule {k!r} (not implemented by the sandbox "
                                 "nomad stand-in, or malformed)")
    return out


_RANK = {"deny": 4, "write": 3, "list": 2, "read": 1}


def _merge(rules_list: list[dict]) -> dict:
    """Several policies of one token as one (the most restrictive-or-strongest per rule, Consul's merger)."""
    out: dict = {}
    for rules in rules_list:
        for k, v in rules.items():
            if isinstance(v, dict):
                dst = out.setdefault(k, {})
                for name, pol in v.items():
                    if isinstance(pol, list):
                        dst[name] = sorted(set(dst.get(name, [])) | set(pol))
                    elif _RANK.get(pol, 0) > _RANK.get(dst.get(name), 0):
                        dst[name] = pol
            elif _RANK.get(v, 0) > _RANK.get(out.get(k), 0):
                out[k] = v
    return out


def _grants(level: str | None, access: str) -> bool | None:
    if level is None:
        return None
    if level == "deny":
        return False
    if access == "read":
        return level in ("read", "write", "list")
    if access == "list":
        return level in ("list", "write")
    return level == "write"


class Authorizer:
    """What one token may do. management: everything; otherwise the merged rules of its policies, then the
    default (Consul's acl.default_policy; Nomad: deny)."""

    def __init__(self, product: str, management: bool, rules_list: list[dict], default_allow: bool):
        self.product, self.management, self.default_allow = product, management, default_allow
        self.rules = _merge(rules_list)

    def allowed(self, resource: str, access: str, name: str | None = None) -> bool:
        if self.management:
            return True
        if resource == "management":
            return False
        if self.product == "nomad":
            return self._nomad(resource, access, name)
        if resource in CONSUL_SINGLE:
            got = _grants(self.rules.get(resource), access)
            return self.default_allow if got is None else got
        exact = self.rules.get(resource, {})
        if name is not None and name in exact:
            return bool(_grants(exact[name], access))
        prefixes = self.rules.get(resource + "_prefix", {})
        if name is None:
            # no object named (a listing or a write whose object is in the body): a rule covering every name
            match = prefixes.get("")
        else:
            best = max((p for p in prefixes if name.startswith(p)), key=len, default=None)
            match = prefixes.get(best) if best is not None else None
        got = _grants(match, access)
        return self.default_allow if got is None else got

    def _nomad(self, resource, access, name):
        if resource == "namespace":
            rules = self.rules.get("namespace", {})
            ns = name or "default"
            caps = rules.get(ns)
            if caps is None:  # globs: the closest (longest) match wins
                globs = sorted((g for g in rules if any(c in g for c in "*?") and fnmatch.fnmatchcase(ns, g)), key=len)
                caps = rules[globs[-1]] if globs else None
            if caps is None or "deny" in caps:
                return False
            return access in caps
        got = _grants(self.rules.get(resource), access)
        return bool(got)

    def can_read_any(self, resource: str) -> bool:
        """Consul list endpoints filter rather than deny: whether anything of resource could be shown."""
        return self.management or self.default_allow or any(
            _grants(p, "read") for p in list(self.rules.get(resource, {}).values())
            + list(self.rules.get(resource + "_prefix", {}).values()))


# ---------------------------------------------------------------- the replicated table

def _empty() -> dict:
    return {"bootstrap_index": 0, "policies": {}, "tokens": {}}


def table(state) -> dict:
    """The ACL table of a state (read only; a state from an older stand-in has none yet)."""
    return state.get("acl") or _empty()


def apply(state, op, index):
    """The ACL operations of the FSM; the ids and secrets come with the operation (made by the leader's
    handler), so every server applies the same."""
    t = state.setdefault("acl", _empty())
    kind = op["op"]
    if kind == "acl_bootstrap":
        if t["bootstrap_index"] and not op.get("from_config"):
            return {"error": "bootstrap", "reset_index": t["bootstrap_index"]}
        t["bootstrap_index"] = index
        tok = dict(op["token"], CreateIndex=index, ModifyIndex=index)
        t["tokens"][tok["AccessorID"]] = tok
        return tok
    if kind == "acl_policy_set":
        p = op["policy"]
        clash = [x for x in t["policies"].values() if x["Name"] == p["Name"] and x["ID"] != p["ID"]]
        if clash:
            return {"error": "name", "name": p["Name"]}
        cur = t["policies"].get(p["ID"])
        t["policies"][p["ID"]] = dict(p, CreateIndex=(cur or {}).get("CreateIndex", index), ModifyIndex=index)
        return t["policies"][p["ID"]]
    if kind == "acl_policy_delete":
        return t["policies"].pop(op["id"], None) is not None
    if kind == "acl_token_set":
        tok = op["token"]
        cur = t["tokens"].get(tok["AccessorID"])
        t["tokens"][tok["AccessorID"]] = dict(tok, CreateIndex=(cur or {}).get("CreateIndex", index), ModifyIndex=index)
        return t["tokens"][tok["AccessorID"]]
    if kind == "acl_token_delete":
        return t["tokens"].pop(op["id"], None) is not None
    raise KeyError(kind)


def find_token(state, secret: str) -> dict | None:
    return next((x for x in table(state)["tokens"].values() if x.get("SecretID") == secret), None)


def policy_rules(state, product: str, refs) -> list[dict]:
    """The parsed rules of the policies a token names (by ID for Consul, by name for Nomad)."""
    pols = table(state)["policies"]
    out = []
    for ref in refs or []:
        if product == "consul":
            p = pols.get(ref.get("ID")) or next((x for x in pols.values() if x["Name"] == ref.get("Name")), None)
        else:
            p = next((x for x in pols.values() if x["Name"] == ref), None)
        if p:
            out.append(parse_rules(product, p.get("Rules", "")))
    return out
