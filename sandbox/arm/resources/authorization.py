"""Microsoft.Authorization: role assignments at any scope, the built-in role definitions and custom ones.

Custom role definitions (PUT/GET/DELETE ``{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}``,
list with ``$filter``) are tenant objects, as in Azure: the id is subscription-based whatever scope the PUT
named, the roleName is unique in the tenant, and a definition is seen (GET, list, assignment) only at the
scopes at or below one of its assignableScopes. The request's scope must be one of the assignableScopes.
Azure checks actions against the providers' operation lists, which the emulator does not have: it checks
their form (Namespace/type/.../verb, one wildcard at most) and refuses loudly anything else."""
from __future__ import annotations

import re

from .. import registry
from ..auth import ROLES, authorize, in_scope, role_definition_body
from ..errors import ArmError, bad_request
from ..router import Response, route
from ..util import deep, now_iso
from .resources import require_rg

RA = "Microsoft.Authorization/roleAssignments"
RD = "Microsoft.Authorization/roleDefinitions"
# "Each tenant can have up to 5000 custom roles" (learn.microsoft.com, Azure custom roles: limits)
CUSTOM_ROLE_LIMIT = 5000
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Namespace/resourceType[/childType...]/verb, a wildcard standing for a segment or the end of one; or */verb, *
ACTION = re.compile(r"(\*|\*/[A-Za-z]+|[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)+(/[A-Za-z0-9_.*-]+)+)")
VERBS = ("read", "write", "delete", "action")
# api-versions: the stable and preview folders of azure-rest-api-specs
# specification/authorization/resource-manager/Microsoft.Authorization that define the role assignment
# (authorization-RoleAssignmentsCalls.json) and role definition (authorization-RoleDefinitionsCalls.json)
# operations; azure-mgmt-authorization 4 and the collection's role_assignment module send 2022-04-01.
PROVIDER = registry.provider("Microsoft.Authorization", "azure-rest-api-specs authorization stable/preview folders")
PROVIDER.resource_type("roleAssignments", (
    "2015-07-01", "2017-10-01-preview", "2018-01-01-preview", "2018-09-01-preview", "2020-03-01-preview",
    "2020-04-01-preview", "2020-08-01-preview", "2020-10-01-preview", "2022-01-01-preview", "2022-04-01"))
PROVIDER.resource_type("roleDefinitions", ("2015-07-01", "2018-01-01-preview", "2022-04-01", "2022-05-01-preview"))
SCOPE = r"(?P<scope>(?:/subscriptions/[^/]+(?:/resourceGroups/[^/]+(?:/providers/.+?)?)?)?)"


def create_assignment(app, rid, scope, role_guid, principal, principal_type, description=None) -> dict:
    body = {"properties": {"roleDefinitionId": f"/subscriptions/{app.sub}/providers/Microsoft.Authorization/"
                                               f"roleDefinitions/{role_guid}",
                           "principalId": principal, "principalType": principal_type, "scope": scope,
                           "condition": None, "conditionVersion": None, "createdOn": now_iso(),
                           "updatedOn": now_iso(), "createdBy": app.identity["principal_id"],
                           "updatedBy": app.identity["principal_id"], "delegatedManagedIdentityResourceId": None,
                           "description": description},
            "id": rid, "type": RA, "name": rid.rsplit("/", 1)[1]}
    return app.store.put(body)


def _known_principals(app) -> set:
    return {app.identity["principal_id"], *registry.principals(app)}


@route("PUT", SCOPE + r"/providers/Microsoft\.Authorization/roleAssignments/(?P<name>[^/]+)")
def put_assignment(app, req, scope, name):
    scope = scope or "/"
    props = (req.body or {}).get("properties") or {}
    role_id = props.get("roleDefinitionId") or ""
    guid = role_id.rstrip("/").rsplit("/", 1)[-1].lower()
    if guid not in ROLES and available_custom(app, guid, scope) is None:
        raise bad_request("RoleDefinitionDoesNotExist", f"The specified role definition with ID '{guid}' does not "
                                                        "exist.")
    if not re.fullmatch(r"[0-9a-fA-F-]{36}", name):
        raise bad_request("InvalidRoleAssignmentId", f"The role assignment ID '{name}' is not valid. The role "
                                                     "assignment ID must be a GUID.")
    principal = props.get("principalId") or ""
    if principal not in _known_principals(app):
        raise bad_request("PrincipalNotFound", f"Principal {principal.replace('-', '')} does not exist in the "
                                               f"directory {app.identity['tenant_id']}. Check that you have the correct "
                                               "principal ID. If you are creating this principal and then immediately "
                                               "assigning a role, this error might be related to a replication delay. "
                                               "In this case, set the role assignment principalType property to a "
                                               "value, such as ServicePrincipal, User, or Group.  See "
                                               "https://aka.ms/docs-principaltype")
    if scope != "/" and scope.count("/") > 2 and app.store.get(scope) is None:
        rg = scope.split("/")[4]
        require_rg(app, rg)
        if "/providers/" in scope:
            raise ArmError(404, "ResourceNotFound", f"The Resource '{scope.split('/providers/', 1)[1]}' under "
                                                    f"resource group '{rg}' was not found.")
    rid = f"{scope.rstrip('/')}/providers/Microsoft.Authorization/roleAssignments/{name}"
    with app.store.lock:
        old = app.store.get(rid)
        for rec in app.store.of_type(RA):
            p = rec["body"]["properties"]
            if (rec["body"]["id"].lower() != rid.lower() and p["principalId"] == principal
                    and p["scope"].lower() == scope.rstrip("/").lower()
                    and p["roleDefinitionId"].lower().endswith(guid)):
                raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.")
        if old:
            op = old["body"]["properties"]
            if op["principalId"] != principal or not op["roleDefinitionId"].lower().endswith(guid):
                raise ArmError(409, "RoleAssignmentUpdateNotPermitted",
                               "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.")
            return Response(201, deep(old["body"]))
        rec = create_assignment(app, rid, scope.rstrip("/") or "/", guid, principal,
                                props.get("principalType") or "ServicePrincipal", props.get("description"))
    return Response(201, deep(rec["body"]))


@route("GET", SCOPE + r"/providers/Microsoft\.Authorization/roleAssignments/(?P<name>[^/]+)")
def get_assignment(app, req, scope, name):
    rec = app.store.get(f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}")
    if rec is None:
        raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
    return Response(200, deep(rec["body"]))


@route("DELETE", SCOPE + r"/providers/Microsoft\.Authorization/roleAssignments/(?P<name>[^/]+)")
def delete_assignment(app, req, scope, name):
    rec = app.store.delete(f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}")
    if rec is None:
        return Response(204)
    return Response(200, rec["body"])


@route("GET", SCOPE + r"/providers/Microsoft\.Authorization/roleAssignments")
def list_assignments(app, req, scope):
    scope = scope or "/"
    flt = (req.q("$filter") or "").strip()
    items = []
    principal = None
    m = re.search(r"(?:principalId\s+eq|assignedTo\()\s*'([^']+)'", flt, re.I)
    if m:
        principal = m.group(1)
    at_scope = "atscope()" in flt.lower()
    for rec in app.store.of_type(RA):
        p = rec["body"]["properties"]
        above = in_scope(p["scope"], scope)
        below = in_scope(scope, p["scope"])
        if not (above or (below and not at_scope)):
            continue
        if principal and p["principalId"] != principal:
            continue
        items.append(deep(rec["body"]))
    return Response(200, {"value": items})


# -- role definitions ---------------------------------------------------------------------------------
def definition_id(app, guid: str) -> str:
    return f"/subscriptions/{app.sub}/providers/Microsoft.Authorization/roleDefinitions/{guid.lower()}"


def custom_roles(app) -> dict:
    """Lower-cased GUID -> properties of every custom role definition (what ``authorize`` evaluates)."""
    return {rec["body"]["name"].lower(): rec["body"]["properties"] for rec in app.store.of_type(RD)}


def _available_at(props: dict, scope: str) -> bool:
    return any(in_scope(s, scope or "/") for s in props["assignableScopes"])


def available_custom(app, guid: str, scope: str) -> dict | None:
    """The custom role ``guid`` when it can be seen and assigned at ``scope``, else None."""
    rec = app.store.get(definition_id(app, guid))
    if rec is None or not _available_at(rec["body"]["properties"], scope):
        return None
    return rec


def _not_found(guid: str) -> ArmError:
    return ArmError(404, "RoleDefinitionDoesNotExist", f"The specified role definition with ID '{guid}' does not "
                                                       "exist.")


def _check_action(value, where: str) -> None:
    if not isinstance(value, str) or not ACTION.fullmatch(value) or value.count("*") > 1 or (
            "*" not in value.rsplit("/", 1)[-1] and value.rsplit("/", 1)[-1].lower() not in VERBS):
        raise bad_request("InvalidActionOrNotAction", f"'{value}' does not match any of the actions supported by "
                                                      f"the providers. ({where})")


def _check_scope(app, scope) -> str:
    if not isinstance(scope, str) or scope.strip() in ("", "/") or "*" in scope:
        raise bad_request("InvalidAssignableScope", f"The assignable scope '{scope}' is not valid: a custom role "
                                                    "cannot be assignable at the root scope ('/') or with wildcards; "
                                                    "use subscription, resource group or resource ids.")
    m = re.fullmatch(r"/subscriptions/([^/]+)(?:/resourceGroups/([^/]+)(/providers/.+)?)?", scope.rstrip("/"), re.I)
    if not m:
        raise bad_request("InvalidAssignableScope", f"The assignable scope '{scope}' is not valid: it must be a "
                                                    "subscription, resource group or resource id.")
    if m.group(1).lower() != app.sub.lower():
        raise ArmError(404, "SubscriptionNotFound", f"The subscription '{m.group(1)}' could not be found.")
    if m.group(2):
        require_rg(app, m.group(2))
        if m.group(3) and app.store.get(scope.rstrip("/")) is None:
            raise ArmError(404, "ResourceNotFound", f"The Resource '{m.group(3)[len('/providers/'):]}' under "
                                                    f"resource group '{m.group(2)}' was not found.")
    return scope.rstrip("/")


def _permissions(raw) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise bad_request("InvalidCreateRoleDefinitionRequest", "The role definition must have a 'permissions' "
                                                                "list with at least one entry.")
    blocks = []
    for block in raw:
        if not isinstance(block, dict):
            raise bad_request("InvalidCreateRoleDefinitionRequest", "Each entry of 'permissions' must be an object.")
        out = {}
        for key in ("actions", "notActions", "dataActions", "notDataActions"):
            values = block.get(key) or []
            if not isinstance(values, list):
                raise bad_request("InvalidCreateRoleDefinitionRequest", f"'permissions.{key}' must be a list.")
            for v in values:
                _check_action(v, key)
            out[key] = list(values)
        blocks.append(out)
    return blocks


@route("PUT", SCOPE + r"/providers/Microsoft\.Authorization/roleDefinitions/(?P<guid>[^/]+)")
def put_role_definition(app, req, scope, guid):
    scope = scope.rstrip("/") or "/"
    if not GUID.fullmatch(guid):
        raise bad_request("InvalidRoleDefinitionId", f"The role definition ID '{guid}' is not valid. The role "
                                                     "definition ID must be a GUID.")
    guid = guid.lower()
    if guid in ROLES:
        raise ArmError(403, "AuthorizationFailed",
                       f"The built-in role definition '{guid}' cannot be changed.")
    props = (req.body or {}).get("properties")
    if not isinstance(props, dict):
        raise bad_request("InvalidCreateRoleDefinitionRequest", "The request body must have 'properties'.")
    name = props.get("roleName")
    if not isinstance(name, str) or not name.strip() or len(name) > 512:
        raise bad_request("InvalidCreateRoleDefinitionRequest", "'properties.roleName' is required: the display "
                                                                "name of the role, at most 512 characters.")
    description = props.get("description") or ""
    if not isinstance(description, str) or len(description) > 2048:
        raise bad_request("InvalidCreateRoleDefinitionRequest", "'properties.description' is at most 2048 "
                                                                "characters.")
    if (props.get("type") or "CustomRole").lower() != "customrole":
        raise bad_request("InvalidCreateRoleDefinitionRequest", f"The role type '{props.get('type')}' cannot be "
                                                                "created: only 'CustomRole'.")
    raw_scopes = props.get("assignableScopes")
    if not isinstance(raw_scopes, list) or not raw_scopes:
        raise bad_request("InvalidCreateRoleDefinitionRequest", "'properties.assignableScopes' must list at least "
                                                                "one scope.")
    scopes = [_check_scope(app, s) for s in raw_scopes]
    if scope.lower() not in (s.lower() for s in scopes):
        raise bad_request("InvalidCreateRoleDefinitionRequest",
                          f"The request scope '{scope}' must be one of the role definition's assignable scopes "
                          f"({', '.join(scopes)}).")
    blocks = _permissions(props.get("permissions"))
    # "Users that are granted this action on all the AssignableScopes of the custom role can create ... it"
    assignments = [r["body"] for r in app.store.of_type(RA)]
    for s in scopes:
        authorize(assignments, req.principal["oid"], "PUT", s, custom_roles(app),
                  action="Microsoft.Authorization/roleDefinitions/write")
    rid = definition_id(app, guid)
    with app.store.lock:
        old = app.store.get(rid)
        for rec in app.store.of_type(RD):
            if rec["body"]["id"].lower() != rid.lower() and rec["body"]["properties"]["roleName"].lower() == name.lower():
                raise ArmError(409, "RoleDefinitionWithSameNameExists",
                               "A role definition cannot be updated with a name that already exists.")
        if old is None and len(app.store.of_type(RD)) >= CUSTOM_ROLE_LIMIT:
            raise ArmError(400, "RoleDefinitionLimitExceeded",
                           "Role definition limit exceeded. No more role definitions can be created.")
        now, who = now_iso(), req.principal["oid"]
        created = old["body"]["properties"] if old else {"createdOn": now, "createdBy": who}
        body = {"properties": {"roleName": name, "type": "CustomRole", "description": description,
                               "assignableScopes": scopes, "permissions": blocks,
                               "createdOn": created["createdOn"], "updatedOn": now,
                               "createdBy": created["createdBy"], "updatedBy": who},
                "id": rid, "type": RD, "name": guid}
        app.store.put(body, {"scope": scope})
    return Response(201, deep(body))


@route("GET", SCOPE + r"/providers/Microsoft\.Authorization/roleDefinitions/(?P<guid>[^/]+)")
def get_role_definition(app, req, scope, guid):
    if guid.lower() in ROLES:
        return Response(200, role_definition_body(app.sub, guid.lower(), scope or None))
    rec = available_custom(app, guid, scope)
    if rec is None:
        raise _not_found(guid)
    return Response(200, deep(rec["body"]))


@route("DELETE", SCOPE + r"/providers/Microsoft\.Authorization/roleDefinitions/(?P<guid>[^/]+)")
def delete_role_definition(app, req, scope, guid):
    if guid.lower() in ROLES:
        raise ArmError(403, "AuthorizationFailed", f"The built-in role definition '{guid}' cannot be deleted.")
    rec = available_custom(app, guid, scope)
    if rec is None:
        return Response(204)
    with app.store.lock:
        if any(r["body"]["properties"]["roleDefinitionId"].rstrip("/").rsplit("/", 1)[-1].lower() == guid.lower()
               for r in app.store.of_type(RA)):
            raise ArmError(409, "RoleDefinitionHasAssignments",
                           "There are existing role assignments referencing role (code: RoleDefinitionHasAssignments).")
        app.store.delete(rec["body"]["id"])
    return Response(200, deep(rec["body"]))


FILTER_TERM = re.compile(r"\s*(?:(roleName|type)\s+eq\s+'((?:[^']|'')*)'|(atScopeAndBelow\(\)))\s*", re.I)


def _parse_filter(flt: str) -> dict:
    """roleName eq '...', type eq 'BuiltInRole'|'CustomRole' and atScopeAndBelow(), joined with 'and'."""
    out = {}
    for term in re.split(r"\s+and\s+", flt.strip(), flags=re.I) if flt.strip() else []:
        m = FILTER_TERM.fullmatch(term)
        if not m:
            raise bad_request("InvalidFilterInQueryString", f"The filter '{flt}' is not supported. Supported: "
                                                            "roleName eq '<name>', type eq '<BuiltInRole|CustomRole>', "
                                                            "atScopeAndBelow().")
        if m.group(3):
            out["below"] = True
        else:
            out[m.group(1).lower()] = m.group(2).replace("''", "'").lower()
    return out


@route("GET", SCOPE + r"/providers/Microsoft\.Authorization/roleDefinitions")
def list_role_definitions(app, req, scope):
    flt = _parse_filter(req.q("$filter") or "")
    items = []
    if flt.get("type", "builtinrole") == "builtinrole":
        items = [role_definition_body(app.sub, g, scope or None) for g in ROLES]
    for rec in app.store.of_type(RD):
        props = rec["body"]["properties"]
        if flt.get("type", "customrole") == "customrole" and (
                _available_at(props, scope) or (flt.get("below") and any(in_scope(scope or "/", s)
                                                                          for s in props["assignableScopes"]))):
            items.append(deep(rec["body"]))
    if "rolename" in flt:
        items = [i for i in items if i["properties"]["roleName"].lower() == flt["rolename"]]
    return Response(200, {"value": items})


@registry.on_purge(90)  # after the resources they are assigned on
def purge_under(app, prefix: str) -> None:
    for rec in app.store.of_type(RA):
        if in_scope(prefix, rec["body"]["properties"]["scope"]):
            app.store.delete(rec["body"]["id"])
