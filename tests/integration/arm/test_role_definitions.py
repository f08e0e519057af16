"""Custom role definitions (issue 10): the REST contract of Microsoft.Authorization/roleDefinitions
(x-ms-examples in ./reference, errors as documented) and RBAC with them — a scale set's managed
identity holding only the cloud auto-join role can do what go-discover's azure provider does and
nothing else."""
from __future__ import annotations

import json
import uuid

import pytest
import requests

from .armwire import Wire
from .test_conformance import check, example
from .test_sdk_flows import READER, network, vmss_model

API = "2022-04-01"
# The reads go-discover's azure provider makes (hashicorp/go-discover provider/azure/azure_discover.go:
# ListVirtualMachineScaleSetNetworkInterfaces for resource_group + vm_scale_set, ListAll of the
# subscription's NICs for tag_name + tag_value), and the scale set / instance reads around them.
AUTOJOIN_ACTIONS = [
    "Microsoft.Compute/virtualMachineScaleSets/read",
    "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read",
    "Microsoft.Compute/virtualMachineScaleSets/networkInterfaces/read",
    "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/networkInterfaces/read",
    "Microsoft.Network/networkInterfaces/read",
]


@pytest.fixture(scope="module")
def w(arm):
    return Wire(arm)


def rg_id(arm, rg):
    return f"/subscriptions/{arm.subscription_id}/resourceGroups/{rg}"


def rd_path(scope, guid):
    return f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def role_body(name, scopes, actions=("Microsoft.Compute/virtualMachineScaleSets/read",), not_actions=(),
              data_actions=(), description="test role"):
    return {"properties": {"roleName": name, "description": description, "type": "CustomRole",
                           "assignableScopes": list(scopes),
                           "permissions": [{"actions": list(actions), "notActions": list(not_actions),
                                            "dataActions": list(data_actions), "notDataActions": []}]}}


def put_role(w, scope, name, **kw):
    guid = str(uuid.uuid4())
    r = w.call("PUT", rd_path(scope, guid), role_body(name, [scope], **kw), api_version=API)
    assert r.status_code == 201, r.text
    return guid


def assign(w, scope, guid, principal):
    path = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    return w.call("PUT", path, {"properties": {
        "roleDefinitionId": f"/subscriptions/{w.arm.subscription_id}/providers/Microsoft.Authorization/"
                            f"roleDefinitions/{guid}", "principalId": principal, "principalType": "ServicePrincipal"}},
        api_version=API), path


def error(r, status, code):
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    return r.json()["error"]["message"]


def test_put_get_list_delete_as_documented(arm, w, rg):
    scope = rg_id(arm, rg)
    guid = str(uuid.uuid4())
    name = f"autojoin-{guid[:8]}"
    # (a data action too: the example has one)
    body = role_body(name, [scope], actions=AUTOJOIN_ACTIONS, data_actions=["Microsoft.Compute/virtualMachines/login/action"])
    r = w.call("PUT", rd_path(scope, guid), body, api_version=API)
    check(r, example("PutRoleDefinition.json"), 201)
    created = r.json()
    # a tenant object: the id is subscription-based whatever scope the PUT named
    assert created["id"] == f"/subscriptions/{arm.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    assert created["properties"]["type"] == "CustomRole"
    assert created["properties"]["permissions"][0]["actions"] == AUTOJOIN_ACTIONS
    check(w.call("GET", rd_path(scope, guid), api_version=API), example("GetRoleDefinitionByName.json"), 200)
    # seen where it can be assigned (at or below its assignable scopes), not above
    assert w.call("GET", rd_path(f"{scope}/providers/Microsoft.Network/virtualNetworks/x", guid),
                  api_version=API).status_code == 200
    error(w.call("GET", rd_path(f"/subscriptions/{arm.subscription_id}", guid), api_version=API), 404,
          "RoleDefinitionDoesNotExist")

    def listed(at, flt):
        r = w.call("GET", f"{at}/providers/Microsoft.Authorization/roleDefinitions", params={"$filter": flt},
                   api_version=API)
        assert r.status_code == 200, r.text
        return [d["name"] for d in r.json()["value"]]

    assert listed(scope, f"roleName eq '{name}'") == [guid]
    assert guid in listed(scope, "type eq 'CustomRole'") and READER not in listed(scope, "type eq 'CustomRole'")
    assert READER in listed(scope, "type eq 'BuiltInRole'") and guid not in listed(scope, "type eq 'BuiltInRole'")
    sub = f"/subscriptions/{arm.subscription_id}"
    assert guid not in listed(sub, "type eq 'CustomRole'")
    assert guid in listed(sub, "atScopeAndBelow() and type eq 'CustomRole'")
    error(w.call("GET", f"{scope}/providers/Microsoft.Authorization/roleDefinitions",
                 params={"$filter": "startswith(roleName, 'a')"}, api_version=API), 400, "InvalidFilterInQueryString")

    # an update keeps the creation stamp and replaces the permissions
    body["properties"]["permissions"][0]["actions"] = AUTOJOIN_ACTIONS[:1]
    r = w.call("PUT", rd_path(scope, guid), body, api_version=API)
    assert r.status_code == 201 and r.json()["properties"]["permissions"][0]["actions"] == AUTOJOIN_ACTIONS[:1]
    assert r.json()["properties"]["createdOn"] == created["properties"]["createdOn"]

    check(w.call("DELETE", rd_path(scope, guid), api_version=API), example("DeleteRoleDefinition.json"), 200)
    assert w.call("DELETE", rd_path(scope, guid), api_version=API).status_code == 204
    error(w.call("GET", rd_path(scope, guid), api_version=API), 404, "RoleDefinitionDoesNotExist")


@pytest.mark.parametrize("action", [
    "bogus", "Microsoft.Compute/virtualMachineScaleSets/readd", "Microsoft.Compute/*/virtualMachines/*",
    "Microsoft.Compute", "Microsoft.Compute//read", "*/reads"])
def test_invalid_action_strings_are_refused(arm, w, rg, action):
    scope = rg_id(arm, rg)
    body = role_body(f"bad-{uuid.uuid4().hex[:8]}", [scope], actions=["*/read"], not_actions=[action])
    msg = error(w.call("PUT", rd_path(scope, uuid.uuid4()), body, api_version=API), 400, "InvalidActionOrNotAction")
    assert f"'{action}'" in msg


def test_name_scope_and_assignment_errors(arm, w, rg):
    scope = rg_id(arm, rg)
    name = f"dup-{uuid.uuid4().hex[:8]}"
    guid = put_role(w, scope, name)
    # roleName is unique in the tenant, case-insensitively
    error(w.call("PUT", rd_path(scope, uuid.uuid4()), role_body(name.upper(), [scope]), api_version=API), 409,
          "RoleDefinitionWithSameNameExists")
    # the request's scope must be one of the assignable scopes; "/" and wildcards never are
    sub = f"/subscriptions/{arm.subscription_id}"
    msg = error(w.call("PUT", rd_path(sub, uuid.uuid4()), role_body("x-" + name, [scope]), api_version=API), 400,
                "InvalidCreateRoleDefinitionRequest")
    assert sub in msg and scope in msg
    error(w.call("PUT", rd_path(sub, uuid.uuid4()), role_body("x-" + name, ["/"]), api_version=API), 400,
          "InvalidAssignableScope")
    error(w.call("PUT", rd_path(sub, uuid.uuid4()), role_body("x-" + name, [sub + "/resourceGroups/*"]),
                 api_version=API), 400, "InvalidAssignableScope")
    error(w.call("PUT", rd_path(sub, uuid.uuid4()), role_body("x-" + name, [sub, sub + "/resourceGroups/nope-rg"]),
                 api_version=API), 404, "ResourceGroupNotFound")
    error(w.call("PUT", rd_path(scope, "not-a-guid"), role_body("x-" + name, [scope]), api_version=API), 400,
          "InvalidRoleDefinitionId")
    error(w.call("PUT", rd_path(sub, READER), role_body("x-" + name, [sub]), api_version=API), 403,
          "AuthorizationFailed")
    # assignable only at or below its assignable scopes
    other = f"other-{uuid.uuid4().hex[:8]}"
    assert w.call("PUT", f"{sub}/resourceGroups/{other}", {"location": "westeurope"}, api_version="2024-07-01").ok
    try:
        r, _ = assign(w, f"{sub}/resourceGroups/{other}", guid, arm.endpoint["principal_id"])
        error(r, 400, "RoleDefinitionDoesNotExist")
    finally:
        w.call("DELETE", f"{sub}/resourceGroups/{other}", api_version="2024-07-01")
    # a role in use cannot be deleted
    r, ra = assign(w, scope, guid, arm.endpoint["principal_id"])
    assert r.status_code == 201, r.text
    error(w.call("DELETE", rd_path(scope, guid), api_version=API), 409, "RoleDefinitionHasAssignments")
    assert w.call("DELETE", ra, api_version=API).status_code == 200
    assert w.call("DELETE", rd_path(scope, guid), api_version=API).status_code == 200


def _as(arm, token):
    def call(method, path, body=None, api_version="2024-07-01"):
        return requests.request(method, f"{arm.resource_manager}{path.lstrip('/')}", params={"api-version": api_version},
                                json=body, headers={"Authorization": f"Bearer {token}"}, verify=arm.ca_path, timeout=30)
    return call


def test_identity_with_only_the_autojoin_role(arm, az, w, rg):
    """What auto-join reads is allowed at the group; anything else, or elsewhere, is 403 AuthorizationFailed."""
    subnet = network(az, rg)
    vmss = az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "servers", vmss_model(subnet.id, 2)).result()
    principal = vmss.identity.principal_id
    scope = rg_id(arm, rg)
    guid = put_role(w, scope, f"autojoin-{uuid.uuid4().hex[:8]}", actions=AUTOJOIN_ACTIONS)
    r, _ = assign(w, scope, guid, principal)
    assert r.status_code == 201, r.text
    call = _as(arm, arm.identity_token(principal)["access_token"])
    cmp = f"{scope}/providers/Microsoft.Compute/virtualMachineScaleSets/servers"

    # go-discover's vm_scale_set call, at the api-version azure-mgmt-network pins for it
    nics = call("GET", f"{cmp}/networkInterfaces", api_version="2018-10-01")
    assert nics.status_code == 200, nics.text
    assert len(nics.json()["value"]) == 2
    assert call("GET", cmp).status_code == 200
    vms = call("GET", f"{cmp}/virtualMachines")
    assert vms.status_code == 200 and len(vms.json()["value"]) == 2
    instance = vms.json()["value"][0]["instanceId"]
    assert call("GET", f"{cmp}/virtualMachines/{instance}/networkInterfaces", api_version="2018-10-01").status_code == 200

    def denied(method, path, action, body=None, api_version="2024-07-01"):
        msg = error(call(method, path, body, api_version), 403, "AuthorizationFailed")
        assert f"'{action}'" in msg, msg

    denied("GET", f"{scope}/providers/Microsoft.Network/virtualNetworks/vnet", "Microsoft.Network/virtualNetworks/read")
    denied("PATCH", cmp, "Microsoft.Compute/virtualMachineScaleSets/write", {"sku": {"capacity": 3}})
    denied("PUT", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
           "Microsoft.Authorization/roleAssignments/write",
           {"properties": {"roleDefinitionId": f"/subscriptions/{arm.subscription_id}/providers/"
                           f"Microsoft.Authorization/roleDefinitions/{READER}", "principalId": principal}}, API)
    denied("GET", f"{scope}/providers/Microsoft.Authorization/roleAssignments", "Microsoft.Authorization/roleAssignments/read",
           api_version=API)
    # scoped to the group: the subscription-wide NIC list (go-discover's tag method) is outside it
    denied("GET", f"/subscriptions/{arm.subscription_id}/providers/Microsoft.Network/networkInterfaces",
           "Microsoft.Network/networkInterfaces/read")

    # notActions take a permission back out of a wildcard, and an update applies on the next request
    body = role_body(json.loads(w.call("GET", rd_path(scope, guid), api_version=API).text)["properties"]["roleName"],
                     [scope], actions=["Microsoft.Compute/*/read"],
                     not_actions=["Microsoft.Compute/virtualMachineScaleSets/virtualMachines/*"])
    assert w.call("PUT", rd_path(scope, guid), body, api_version=API).status_code == 201
    assert call("GET", cmp).status_code == 200
    denied("GET", f"{cmp}/virtualMachines", "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read")
    assert call("GET", f"{cmp}/networkInterfaces", api_version="2018-10-01").status_code == 200
