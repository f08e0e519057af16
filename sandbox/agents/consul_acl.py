"""Consul's ACL system on the stand-in: the acl block, the leader's initialisation (global-management
policy, anonymous token, acl.tokens.initial_management), token resolution, and /v1/acl/* (bootstrap,
policy and token CRUD) with the documented shapes and errors."""

from __future__ import annotations

import hashlib
import json

from . import acl
from .httpapi import HTTPError, canon
from .net import Response

MANAGEMENT_RULES = ""  # global-management: a built-in policy that grants everything, no rules


class ConsulACL:
    """Mixed into ConsulAgent."""

    TOKEN_HEADER = "X-Consul-Token"
    ACL_NOT_FOUND = "ACL not found"
    ACL_FILTERED = frozenset({"/v1/agent/members", "/v1/catalog/nodes", "/v1/catalog/services"})

    def acl_settings(self):
        a = self.cfg.get("acl") or {}
        self.acl_enabled = bool(a.get("enabled", False))
        self.acl_default_allow = str(a.get("default_policy", "allow")) == "allow"
        toks = a.get("tokens") or {}
        self.acl_tokens = {k: toks.get(k) or "" for k in ("initial_management", "agent", "default")}
        self.acl_persist = bool(a.get("enable_token_persistence", False))
        if self.acl_persist:  # tokens set through the API win over the configuration, as in Consul
            p = self.data_dir / "acl-tokens.json"
            if p.is_file():
                try:
                    saved = json.loads(p.read_text())
                except ValueError:
                    saved = {}
                self.acl_tokens.update({k: saved[k] for k in ("agent", "default") if saved.get(k)})

    def set_agent_token(self, kind: str, token: str):
        self.acl_tokens[kind] = token
        if self.acl_persist:
            p = self.data_dir / "acl-tokens.json"
            saved = json.loads(p.read_text()) if p.is_file() else {}
            saved[kind] = token
            p.write_text(json.dumps(saved))
            p.chmod(0o600)

    def default_token(self):
        return self.acl_tokens.get("default", "")

    def acl_object(self, req, resource):
        if resource == "agent":
            return self.node_name
        if resource == "session" and req.route.acl_name is None and req.method == "PUT":
            return self.node_name  # session/create: session:write on the agent's node
        name = req.route.acl_name
        if not name:
            return None
        kinds = {"key": "key", "node": "node", "service": "service", "service_id": "service"}
        if kinds.get(name) == resource:
            v = req.params.get(name)
            if name == "service_id":  # the rule applies to the service's name
                svc = self.local.services.get(v) if hasattr(self.local, "services") else None
                return (svc or {}).get("Service", v)
            return v
        return None

    def permission_denied(self, ident, perm, name):
        on = f' on "{name}"' if name is not None else ""
        if ident.get("accessor") == acl.ANONYMOUS_ACCESSOR:
            return (f"Permission denied: anonymous token lacks permission '{perm}'{on}. The anonymous token is used "
                    "implicitly when a request does not specify a token.")
        return f"Permission denied: token with AccessorID '{ident.get('accessor')}' lacks permission '{perm}'{on}"

    def sync_permission(self):
        """Anti-entropy writes with the agent token (acl.tokens.agent, else the default token, else anonymous),
        as Consul does: returns (may(resource, name) -> bool for write, the token's accessor for the logs)."""
        if not self.acl_enabled:
            return (lambda res, name: True), ""
        ident = self.rpc("ACL.Resolve", {"secret": self.acl_tokens.get("agent") or self.default_token()}, stale=True)
        if not ident.get("found"):
            return (lambda res, name: False), "(token not found)"
        authz = acl.Authorizer("consul", ident["management"], ident["rules"], self.acl_default_allow)
        return (lambda res, name: authz.allowed(res, "write", name)), ident["accessor"]

    def acl_identity(self, state, secret):
        t = acl.table(state)
        tok = acl.find_token(state, secret) if secret else t["tokens"].get(acl.ANONYMOUS_ACCESSOR)
        if tok is None:
            if not secret:  # ACLs enabled but the leader has not created the anonymous token yet
                return {"found": True, "management": False, "rules": [], "accessor": acl.ANONYMOUS_ACCESSOR}
            return {"found": False}
        mgmt = any(p.get("ID") == acl.MANAGEMENT_POLICY_ID for p in tok.get("Policies") or [])
        return {"found": True, "management": mgmt, "accessor": tok["AccessorID"],
                "rules": acl.policy_rules(state, "consul", [p for p in tok.get("Policies") or []
                                                            if p.get("ID") != acl.MANAGEMENT_POLICY_ID])}

    def acl_leader_init(self):
        """initializeACLs: the built-in policy and anonymous token, then the configured initial management token."""
        if not self.acl_enabled:
            return
        st, _ = self.raft.snapshot()
        t = acl.table(st)
        if acl.MANAGEMENT_POLICY_ID not in t["policies"]:
            self.raft.apply({"op": "acl_policy_set", "policy": _policy(acl.MANAGEMENT_POLICY_ID, "global-management",
                                                                       "Builtin Policy that grants unlimited access",
                                                                       MANAGEMENT_RULES)})
        if acl.ANONYMOUS_ACCESSOR not in t["tokens"]:
            self.raft.apply({"op": "acl_token_set", "token": _token(acl.ANONYMOUS_ACCESSOR, "anonymous",
                                                                     "Anonymous Token", [])})
        im = self.acl_tokens.get("initial_management")
        if im and acl.find_token(st, im) is None:
            self.raft.apply({"op": "acl_bootstrap", "from_config": True,
                             "token": _token(acl.new_id(), im, "Initial Management Token", [_mgmt_ref()])})
            self.log("INFO", "agent.server: Created ACL 'initial management' token from configuration")


def _mgmt_ref():
    return {"ID": acl.MANAGEMENT_POLICY_ID, "Name": "global-management"}


def _hash(obj) -> str:
    import base64
    return base64.b64encode(hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=32).digest()).decode()


def _policy(pid, name, desc, rules, dcs=None):
    p = {"ID": pid, "Name": name, "Description": desc, "Rules": rules, "Datacenters": dcs or None}
    p["Hash"] = _hash(p)
    return p


def _token(accessor, secret, desc, policies, local=False):
    tok = {"AccessorID": accessor, "SecretID": secret, "Description": desc, "Policies": policies or None,
           "Local": local, "CreateTime": acl.now_rfc3339()}
    tok["Hash"] = _hash({k: v for k, v in tok.items() if k != "CreateTime"})
    return tok


def _policy_stub(p):
    return {k: p.get(k) for k in ("ID", "Name", "Description", "Datacenters", "Hash", "CreateIndex", "ModifyIndex")}


def _token_out(tok):
    out = dict(tok)
    if not out.get("Policies"):
        out.pop("Policies", None)
    return out


# ---------------------------------------------------------------- routes

def register(route):
    """The /v1/acl endpoints (route = the Consul route table's add)."""

    def enabled(self):
        if not self.acl_enabled:
            raise HTTPError(401, "ACL support disabled")

    @route("PUT", "/v1/acl/bootstrap")
    def acl_bootstrap(self, req):
        enabled(self)
        tok = _token(acl.new_id(), acl.new_secret(), "Bootstrap Token (Global Management)", [_mgmt_ref()])
        r = self.apply({"op": "acl_bootstrap", "token": tok})
        if r.get("error"):
            raise HTTPError(403, f"Permission denied: ACL bootstrap no longer allowed (reset index: {r['reset_index']})")
        self.log("INFO", "agent.server.acl: ACL bootstrap completed")
        return Response(_token_out(r))

    def policy_body(self, req, pid):
        b = canon(req.json({}), ["ID", "Name", "Description", "Rules", "Datacenters"])
        if not b.get("Name"):
            raise HTTPError(400, "Invalid Policy: no name set")
        try:
            acl.parse_rules("consul", b.get("Rules") or "")
        except ValueError as e:
            raise HTTPError(400, f"Invalid Policy: failed to parse rules: {e}") from None
        return _policy(pid, b["Name"], b.get("Description") or "", b.get("Rules") or "", b.get("Datacenters"))

    def write_policy(self, pol):
        r = self.apply({"op": "acl_policy_set", "policy": pol})
        if r.get("error"):
            raise HTTPError(400, f"Invalid Policy: A Policy with Name \"{r['name']}\" already exists")
        return Response(r)

    @route("PUT", "/v1/acl/policy", acl="acl:write")
    def acl_policy_create(self, req):
        enabled(self)
        return write_policy(self, policy_body(self, req, acl.new_id()))

    def state(self):
        st = self.rpc("State.Query", {"view": "acl", "params": {}}, stale=False)
        return st["Result"], self.meta_headers(st["Index"], st["KnownLeader"], st["LastContact"])

    def get_policy(self, req, pid=None, name=None):
        t, h = state(self)
        p = t["policies"].get(pid) if pid else next((x for x in t["policies"].values() if x["Name"] == name), None)
        if p is None:
            raise HTTPError(403, "ACL not found")
        return p, h

    @route("GET", "/v1/acl/policy/<id>", acl="acl:read")
    def acl_policy_read(self, req):
        enabled(self)
        p, h = get_policy(self, req, pid=req.params["id"])
        return Response(p, headers=h)

    @route("GET", "/v1/acl/policy/name/<name>", acl="acl:read")
    def acl_policy_read_name(self, req):
        enabled(self)
        p, h = get_policy(self, req, name=req.params["name"])
        return Response(p, headers=h)

    @route("PUT", "/v1/acl/policy/<id>", acl="acl:write")
    def acl_policy_update(self, req):
        enabled(self)
        get_policy(self, req, pid=req.params["id"])
        if req.params["id"] == acl.MANAGEMENT_POLICY_ID:
            raise HTTPError(400, "Invalid Policy: Changing the Rules for the builtin global-management policy is not permitted")
        return write_policy(self, policy_body(self, req, req.params["id"]))

    @route("DELETE", "/v1/acl/policy/<id>", acl="acl:write")
    def acl_policy_delete(self, req):
        enabled(self)
        if req.params["id"] == acl.MANAGEMENT_POLICY_ID:
            raise HTTPError(400, "Delete operation not permitted on the builtin global-management policy")
        return Response(bool(self.apply({"op": "acl_policy_delete", "id": req.params["id"]})))

    @route("GET", "/v1/acl/policies", acl="acl:read")
    def acl_policies(self, req):
        enabled(self)
        t, h = state(self)
        return Response([_policy_stub(p) for p in sorted(t["policies"].values(), key=lambda p: p["Name"])], headers=h)

    @route("PUT", "/v1/acl/token", acl="acl:write")
    def acl_token_create(self, req):
        enabled(self)
        b = canon(req.json({}), ["AccessorID", "SecretID", "Description", "Policies", "Local", "Roles",
                                 "ServiceIdentities", "NodeIdentities", "ExpirationTTL", "TemplatedPolicies"])
        for k in ("Roles", "ServiceIdentities", "NodeIdentities", "TemplatedPolicies", "ExpirationTTL"):
            if b.get(k):
                raise HTTPError(400, f"{k}: not implemented by the sandbox consul stand-in")
        t, _h = state(self)
        refs = []
        for ref in b.get("Policies") or []:
            ref = canon(ref, ["ID", "Name"])
            p = t["policies"].get(ref.get("ID")) or next((x for x in t["policies"].values()
                                                           if x["Name"] == ref.get("Name")), None)
            if p is None:
                raise HTTPError(400, f"ACL token creation failed: cannot find policy {ref.get('ID') or ref.get('Name')!r}")
            refs.append({"ID": p["ID"], "Name": p["Name"]})
        tok = _token(b.get("AccessorID") or acl.new_id(), b.get("SecretID") or acl.new_secret(), b.get("Description") or "",
                     refs, bool(b.get("Local")))
        return Response(_token_out(self.apply({"op": "acl_token_set", "token": tok})))

    @route("GET", "/v1/acl/token/self")
    def acl_token_self(self, req):
        enabled(self)
        secret = req.token(self.TOKEN_HEADER) or self.default_token()
        t, h = state(self)
        tok = next((x for x in t["tokens"].values() if x["SecretID"] == secret), None) if secret else None
        if tok is None:
            raise HTTPError(403, "ACL not found")
        return Response(_token_out(tok), headers=h)

    @route("GET", "/v1/acl/token/<accessor>", acl="acl:read")
    def acl_token_read(self, req):
        enabled(self)
        t, h = state(self)
        tok = t["tokens"].get(req.params["accessor"])
        if tok is None:
            raise HTTPError(403, "ACL not found")
        return Response(_token_out(tok), headers=h)

    @route("DELETE", "/v1/acl/token/<accessor>", acl="acl:write")
    def acl_token_delete(self, req):
        enabled(self)
        if req.params["accessor"] == acl.ANONYMOUS_ACCESSOR:
            raise HTTPError(400, "Delete operation not permitted on the anonymous token")
        return Response(bool(self.apply({"op": "acl_token_delete", "id": req.params["accessor"]})))

    @route("PUT", "/v1/agent/token/<kind>", acl="agent:write")
    def agent_token(self, req):
        enabled(self)
        kind = {"acl_token": "default", "acl_agent_token": "agent"}.get(req.params["kind"], req.params["kind"])
        if kind not in ("default", "agent"):
            raise HTTPError(404, f'Token "{req.params["kind"]}" is unknown (the sandbox consul stand-in implements '
                                 "the default and agent tokens)")
        b = canon(req.json({}), ["Token"])
        self.set_agent_token(kind, b.get("Token") or "")
        self.log("INFO", f"agent: Updated agent's ACL token: token={kind}")
        return Response(None)

    @route("GET", "/v1/acl/tokens", acl="acl:read")
    def acl_tokens(self, req):
        enabled(self)
        t, h = state(self)
        out = []
        for tok in t["tokens"].values():
            stub = {k: v for k, v in _token_out(tok).items() if k != "SecretID"}
            stub["SecretID"] = tok["SecretID"] if req.authz is None or req.authz.allowed("acl", "write") else "<hidden>"
            out.append(stub)
        return Response(sorted(out, key=lambda x: x["CreateIndex"]), headers=h)

