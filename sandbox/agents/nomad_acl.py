"""Nomad's ACL system on the stand-in: acl { enabled = true }, token resolution (the "anonymous" policy
for requests without a token), /v1/acl/* (bootstrap, policies by name, client/management tokens) with
the documented shapes and errors, and the `nomad acl` CLI's output."""

from __future__ import annotations

import hashlib
import json

from . import acl
from .httpapi import HTTPError, canon
from .net import Response


class NomadACL:
    """Mixed into NomadAgent."""

    TOKEN_HEADER = "X-Nomad-Token"
    ACL_NOT_FOUND = "ACL token not found"
    acl_default_allow = False  # Nomad: what no rule grants is denied

    def acl_settings(self):
        self.acl_enabled = bool((self.cfg.get("acl") or {}).get("enabled", False))

    def acl_object(self, req, resource):
        if resource == "namespace":
            return req.get("namespace") or "default"
        return None

    def acl_identity(self, state, secret):
        if not secret:
            return {"found": True, "management": False, "accessor": "anonymous",
                    "rules": acl.policy_rules(state, "nomad", ["anonymous"])}
        tok = acl.find_token(state, secret)
        if tok is None:
            return {"found": False}
        return {"found": True, "management": tok["Type"] == "management", "accessor": tok["AccessorID"],
                "rules": acl.policy_rules(state, "nomad", tok.get("Policies") or [])}


def _hash(obj) -> str:
    import base64
    return base64.b64encode(hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=32).digest()).decode()


def _token(name, typ, policies, glob):
    tok = {"AccessorID": acl.new_id(), "SecretID": acl.new_secret(), "Name": name, "Type": typ,
           "Policies": policies or None, "Roles": None, "Global": glob, "CreateTime": acl.now_rfc3339(),
           "ExpirationTime": None, "ExpirationTTL": 0}
    tok["Hash"] = _hash({k: v for k, v in tok.items() if k != "CreateTime"})
    return tok


def _policy_stub(p):
    return {k: p.get(k) for k in ("Name", "Description", "CreateIndex", "ModifyIndex")}


def register(route):
    def enabled(self):
        if not self.acl_enabled:
            raise HTTPError(400, "ACL support disabled")

    def table(self):
        r = self.rpc("State.Query", {"view": "acl", "params": {}})
        return r["Result"], self.meta_headers(r["Index"], r["KnownLeader"], r["LastContact"])

    @route("PUT POST", "/v1/acl/bootstrap")
    def acl_bootstrap(self, req):
        enabled(self)
        tok = _token("Bootstrap Token", "management", None, True)
        b = canon(req.json({}) or {}, ["BootstrapSecret"])
        if b.get("BootstrapSecret"):
            tok["SecretID"] = b["BootstrapSecret"]
        r = self.apply({"op": "acl_bootstrap", "token": tok})
        if r.get("error"):
            raise HTTPError(400, f"ACL bootstrap already done (reset index: {r['reset_index']})")
        return Response(r)

    @route("GET", "/v1/acl/policies", acl="management")
    def acl_policies(self, req):
        enabled(self)
        t, h = table(self)
        return Response([_policy_stub(p) for p in sorted(t["policies"].values(), key=lambda p: p["Name"])], headers=h)

    @route("PUT POST", "/v1/acl/policy/<name>", acl="management")
    def acl_policy_write(self, req):
        enabled(self)
        b = canon(req.json({}), ["Name", "Description", "Rules"])
        name = req.params["name"]
        if b.get("Name") and b["Name"] != name:
            raise HTTPError(400, "ACL policy name does not match request path")
        try:
            acl.parse_rules("nomad", b.get("Rules") or "")
        except ValueError as e:
            raise HTTPError(400, f"Invalid policy: failed to parse rules: {e}") from None
        t, _ = table(self)
        cur = next((p for p in t["policies"].values() if p["Name"] == name), None)
        pol = {"ID": (cur or {}).get("ID") or acl.new_id(), "Name": name, "Description": b.get("Description") or "",
               "Rules": b.get("Rules") or ""}
        pol["Hash"] = _hash(pol)
        self.apply({"op": "acl_policy_set", "policy": pol})
        return Response(None)

    def find_policy(self, name):
        t, h = table(self)
        p = next((p for p in t["policies"].values() if p["Name"] == name), None)
        if p is None:
            raise HTTPError(404, "ACL policy not found")
        return p, h

    @route("GET", "/v1/acl/policy/<name>", acl="management")
    def acl_policy_read(self, req):
        enabled(self)
        p, h = find_policy(self, req.params["name"])
        return Response({k: v for k, v in p.items() if k != "ID"}, headers=h)

    @route("DELETE", "/v1/acl/policy/<name>", acl="management")
    def acl_policy_delete(self, req):
        enabled(self)
        p, _ = find_policy(self, req.params["name"])
        self.apply({"op": "acl_policy_delete", "id": p["ID"]})
        return Response(None)

    @route("PUT POST", "/v1/acl/token", acl="management")
    def acl_token_create(self, req):
        enabled(self)
        b = canon(req.json({}), ["Name", "Type", "Policies", "Global", "Roles", "ExpirationTTL"])
        if b.get("Roles") or b.get("ExpirationTTL"):
            raise HTTPError(400, "ACL roles and token expiry are not implemented by the sandbox nomad stand-in")
        typ = b.get("Type") or "client"
        pols = list(b.get("Policies") or [])
        if typ not in ("client", "management"):
            raise HTTPError(400, "token type must be client or management")
        if typ == "client" and not pols:
            raise HTTPError(400, "client token missing policies or roles")
        if typ == "management" and pols:
            raise HTTPError(400, "management token cannot be associated with policies or roles")
        tok = _token(b.get("Name") or "", typ, pols, bool(b.get("Global")))
        return Response(self.apply({"op": "acl_token_set", "token": tok}))

    @route("GET", "/v1/acl/token/self")
    def acl_token_self(self, req):
        enabled(self)
        secret = req.token(self.TOKEN_HEADER)
        t, h = table(self)
        tok = next((x for x in t["tokens"].values() if x["SecretID"] == secret), None) if secret else None
        if tok is None:
            raise HTTPError(403, "ACL token not found")
        return Response(tok, headers=h)

    @route("GET", "/v1/acl/token/<accessor>", acl="management")
    def acl_token_read(self, req):
        enabled(self)
        t, h = table(self)
        tok = t["tokens"].get(req.params["accessor"])
        if tok is None:
            raise HTTPError(404, "ACL token not found")
        return Response(tok, headers=h)

    @route("DELETE", "/v1/acl/token/<accessor>", acl="management")
    def acl_token_delete(self, req):
        enabled(self)
        if not self.apply({"op": "acl_token_delete", "id": req.params["accessor"]}):
            raise HTTPError(404, "ACL token not found")
        return Response(None)

    @route("GET", "/v1/acl/tokens", acl="management")
    def acl_tokens(self, req):
        enabled(self)
        t, h = table(self)
        return Response([{k: v for k, v in x.items() if k != "SecretID"}
                         for x in sorted(t["tokens"].values(), key=lambda x: x["CreateIndex"])], headers=h)


def view_acl(st):
    return st["index"].get("acl", 0), acl.table(st)


def format_token(t) -> str:
    """command/acl_bootstrap.go formatKVACLToken."""
    rows = [("Accessor ID", t["AccessorID"]), ("Secret ID", t["SecretID"]), ("Name", t.get("Name", "")),
            ("Type", t["Type"]), ("Global", str(t.get("Global", False)).lower()), ("Create Time", t.get("CreateTime", "")),
            ("Expiry Time", t.get("ExpirationTime") or "<none>"), ("Create Index", t.get("CreateIndex", 0)),
            ("Modify Index", t.get("ModifyIndex", 0)), ("Policies", ", ".join(t.get("Policies") or []) or "n/a"),
            ("Roles", "n/a")]
    return "\n".join(f"{k:<12} = {v}" for k, v in rows)


def cli(api, o, multi, rest) -> int:
    """nomad acl bootstrap | policy apply|info|list|delete | token create|self|info|list|delete."""
    import sys

    def show(tok):
        print(json.dumps(tok, indent=4) if "json" in o else format_token(tok))
        return 0

    sub = rest[:2]
    if rest[:1] == ["bootstrap"]:
        return show(api(o, "/acl/bootstrap", method="POST", body={}))
    if sub == ["policy", "apply"]:
        if len(rest) != 4:
            print("This command takes two arguments: <name> and <path>", file=sys.stderr)
            return 1
        name, path = rest[2], rest[3]
        with (sys.stdin if path == "-" else open(path)) as fh:
            rules = fh.read()
        api(o, f"/acl/policy/{name}", method="POST", body={"Name": name, "Description": o.get("description", ""),
                                                           "Rules": rules})
        print(f'Successfully wrote "{name}" ACL policy!')
        return 0
    if sub == ["policy", "info"]:
        p = api(o, f"/acl/policy/{rest[2]}")
        print(json.dumps(p, indent=4) if "json" in o else
              f"Name        = {p['Name']}\nDescription = {p.get('Description', '')}\nCreateIndex = {p['CreateIndex']}\n"
              f"ModifyIndex = {p['ModifyIndex']}\n\nRules\n\n{p.get('Rules', '')}")
        return 0
    if sub == ["policy", "list"]:
        pols = api(o, "/acl/policies")
        from .agentbase import columnize
        print(json.dumps(pols, indent=4) if "json" in o else
              columnize([["Name", "Description"]] + [[p["Name"], p.get("Description", "")] for p in pols])
              if pols else "No policies found")
        return 0
    if sub == ["policy", "delete"]:
        api(o, f"/acl/policy/{rest[2]}", method="DELETE")
        print(f'Successfully deleted "{rest[2]}" ACL policy!')
        return 0
    if sub == ["token", "create"]:
        return show(api(o, "/acl/token", method="POST",
                        body={"Name": o.get("name", ""), "Type": o.get("type", "client"),
                              "Policies": multi.get("policy", []), "Global": "global" in o}))
    if sub == ["token", "self"]:
        return show(api(o, "/acl/token/self"))
    if sub == ["token", "info"]:
        return show(api(o, f"/acl/token/{rest[2]}"))
    if sub == ["token", "delete"]:
        api(o, f"/acl/token/{rest[2]}", method="DELETE")
        print(f"Token {rest[2]} successfully deleted")
        return 0
    print("Usage: nomad acl <bootstrap|policy|token> <subcommand> [options] (other acl commands are not implemented "
          "by the sandbox stand-in)", file=sys.stderr)
    return 1
