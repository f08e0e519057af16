"""The emulator's RBAC evaluation of custom roles (wildcards, notActions per permission block, letter case) next to
the built-in roles, and its check of action strings."""
from __future__ import annotations

import pytest

from sandbox.arm.auth import ROLES, authorize
from sandbox.arm.errors import ArmError
from sandbox.arm.resources.authorization import _check_action

SUB = "/subscriptions/00000000-0000-0000-0000-000000000001"
RG = f"{SUB}/resourceGroups/rg1"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CUSTOM = "11111111-2222-3333-4444-555555555555"


def assignment(role, scope=RG, principal="p1"):
    return {"properties": {"principalId": principal, "scope": scope,
                           "roleDefinitionId": f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}"}}


def allowed(blocks, method, path, role=CUSTOM, scope=RG):
    custom = {CUSTOM: {"roleName": "c", "permissions": blocks}}
    try:
        authorize([assignment(role, scope)], "p1", method, path, custom)
        return True
    except ArmError as exc:
        assert exc.status == 403 and exc.code == "AuthorizationFailed"
        return False


VMSS = f"{RG}/providers/Microsoft.Compute/virtualMachineScaleSets/servers"


def test_custom_role_wildcards_and_not_actions():
    blocks = [{"actions": ["Microsoft.Compute/*/read"],
               "notActions": ["microsoft.compute/virtualMachineScaleSets/virtualMachines/*"]}]
    assert allowed(blocks, "GET", VMSS)
    assert allowed(blocks, "GET", f"{VMSS}/networkInterfaces")
    assert not allowed(blocks, "GET", f"{VMSS}/virtualMachines")
    assert not allowed(blocks, "PUT", VMSS)
    assert not allowed(blocks, "GET", f"{RG}/providers/Microsoft.Network/virtualNetworks/v")


def test_not_actions_only_take_out_of_their_own_block():
    blocks = [{"actions": ["Microsoft.Compute/*"], "notActions": ["Microsoft.Compute/*/write"]},
              {"actions": ["Microsoft.Compute/virtualMachineScaleSets/write"], "notActions": []}]
    assert allowed(blocks, "PUT", VMSS)
    assert not allowed(blocks, "PUT", f"{VMSS}/virtualMachines/0")


def test_scope_and_unknown_roles():
    blocks = [{"actions": ["*/read"]}]
    assert not allowed(blocks, "GET", f"{SUB}/resourceGroups/other/providers/Microsoft.Compute/virtualMachineScaleSets/x")
    assert not allowed(blocks, "GET", VMSS, role="99999999-2222-3333-4444-555555555555")
    # built-in roles keep their table entries' shape
    assert allowed(blocks, "GET", VMSS, role=READER) and not allowed(blocks, "PUT", VMSS, role=READER)
    assert "actions" in ROLES[READER] and "permissions" not in ROLES[READER]


def test_explicit_action_on_a_scope():
    custom = {CUSTOM: {"permissions": [{"actions": ["Microsoft.Authorization/roleDefinitions/write"]}]}}
    authorize([assignment(CUSTOM)], "p1", "PUT", RG, custom, action="Microsoft.Authorization/roleDefinitions/write")
    with pytest.raises(ArmError):
        authorize([assignment(CUSTOM)], "p1", "PUT", SUB, custom, action="Microsoft.Authorization/roleDefinitions/write")


@pytest.mark.parametrize("action", ["*", "*/read", "Microsoft.Compute/*", "Microsoft.Authorization/*/Delete",
                                    "Microsoft.Network/virtualNetworks/subnets/join/action",
                                    "Microsoft.Compute/virtualMachineScaleSets/*/read"])
def test_well_formed_actions(action):
    _check_action(action, "actions")


@pytest.mark.parametrize("action", ["", "read", "Microsoft.Compute", "Microsoft.Compute/x/readd", "*/*/read",
                                    "Microsoft.Compute/*/x/*", "Microsoft.Compute//read", 7])
def test_malformed_actions(action):
    with pytest.raises(ArmError) as err:
        _check_action(action, "actions")
    assert err.value.status == 400 and err.value.code == "InvalidActionOrNotAction"
