"""Microsoft.Authorization: role assignments at any scope and the built-in role definitions."""
from __future__ import annotations

import re

from .. import registry
from ..auth import ROLES, in_scope, role_definition_body
from ..errors import ArmError, bad_request
from ..router import Response, route
from ..util import deep, now_iso
from .resources import require_rg

RA = "Microsoft.Authorization/roleAssignments"
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
    if guid not in ROLES:
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


@route("GET", SCOPE + r"/providers/Microsoft\.Authorization/roleDefinitions/(?P<guid>[^/]+)")
def get_role_definition(app, req, scope, guid):
    if guid.lower() not in ROLES:
        raise ArmError(404, "RoleDefinitionDoesNotExist", f"The specified role definition with ID '{guid}' does not "
                                                          "exist.")
    return Response(200, role_definition_body(app.sub, guid.lower(), scope or None))


@route("GET", SCOPE + r"/providers/Microsoft\.Authorization/roleDefinitions")
def list_role_definitions(app, req, scope):
    flt = req.q("$filter") or ""
    m = re.search(r"roleName\s+eq\s+'([^']+)'", flt, re.I)
    items = [role_definition_body(app.sub, g, scope or None) for g, r in ROLES.items()
             if not m or r["roleName"].lower() == m.group(1).lower()]
    return Response(200, {"value": items})


@registry.on_purge(90)  # after the resources they are assigned on
def purge_under(app, prefix: str) -> None:
    for rec in app.store.of_type(RA):
        if in_scope(prefix, rec["body"]["properties"]["scope"]):
            app.store.delete(rec["body"]["id"])
