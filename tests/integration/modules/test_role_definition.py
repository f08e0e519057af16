"""role_definition (a custom role) through ansible-playbook against the ARM emulator: check mode and re-runs send
no write, an actions change shows in the diff, role_assignment takes the returned id, delete; and the refusals."""

from __future__ import annotations

import uuid

from conftest import make_rg, mark, ok, sub_of, writes

AUTOJOIN = ['Microsoft.Compute/virtualMachineScaleSets/read',
            'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read',
            'Microsoft.Compute/virtualMachineScaleSets/networkInterfaces/read',
            'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/networkInterfaces/read',
            'Microsoft.Network/networkInterfaces/read']


def _authz(sdk):
    from azure.mgmt.authorization import AuthorizationManagementClient
    return sdk.client(AuthorizationManagementClient, api_version='2022-04-01')


def test_role_definition_lifecycle(arm, play, rg, sdk):
    make_rg(sdk, rg)
    scope = f'/subscriptions/{sub_of(arm)}/resourceGroups/{rg}'
    name = f'{rg}-auto-join'
    task = {'role_definition': {'name': name, 'scope': scope, 'description': 'cloud auto-join reads', 'actions': AUTOJOIN}}
    m = mark(arm)
    r = ok(play(task, check=True))
    assert r['changed'] and r['changes'] == ['create'] and writes(arm, m) == []
    r = ok(play(task))
    assert r['changed'] and [w['method'] for w in writes(arm, m)] == ['PUT']
    role = r['role_definition']
    assert role['name'] == name and role['actions'] == AUTOJOIN and role['assignable_scopes'] == [scope]
    assert role['id'] == f'/subscriptions/{sub_of(arm)}/providers/Microsoft.Authorization/roleDefinitions/{role["guid"]}'
    stored = _authz(sdk).role_definitions.get(scope, role['guid'])
    assert stored.role_type == 'CustomRole' and stored.permissions[0].actions == AUTOJOIN

    # re-runs find it by its deterministic id: no write, also with other letter case and order
    m = mark(arm)
    r = ok(play(task))
    assert not r['changed'] and r['role_definition']['id'] == role['id'] and writes(arm, m) == []
    shuffled = dict(task['role_definition'], actions=[a.lower() for a in reversed(AUTOJOIN)])
    assert not ok(play({'role_definition': shuffled}))['changed'] and writes(arm, m) == []

    # an actions change: check mode shows it in the diff without writing, then it is applied
    task['role_definition']['actions'] = AUTOJOIN[:1]
    task['role_definition']['not_actions'] = ['Microsoft.Compute/virtualMachineScaleSets/delete']
    m = mark(arm)
    r = ok(play(task, check=True, diff=True))
    assert r['changed'] and writes(arm, m) == []
    assert r['diff']['before']['actions'] == AUTOJOIN and r['diff']['after']['actions'] == AUTOJOIN[:1]
    assert sorted(c.split(':')[0] for c in r['changes']) == ['actions', 'not_actions']
    assert any(x.startswith('-') and 'virtualMachines/read' in x for x in r['_stdout'].splitlines()), r['_stdout']
    r = ok(play(task))
    assert r['changed'] and [w['method'] for w in writes(arm, m)] == ['PUT']
    assert _authz(sdk).role_definitions.get(scope, role['guid']).permissions[0].not_actions == [
        'Microsoft.Compute/virtualMachineScaleSets/delete']
    m = mark(arm)
    assert not ok(play(task))['changed'] and writes(arm, m) == []

    # role_assignment takes the returned id
    principal = arm.endpoint['principal_id']
    assignment = {'role_assignment': {'scope': scope, 'role': role['id'], 'principal_id': principal,
                                      'principal_type': 'ServicePrincipal'}}
    r = ok(play(assignment))
    assert r['changed'] and r['role_assignment']['role_definition_id'].lower().endswith(role['guid'])
    m = mark(arm)
    assert not ok(play(assignment))['changed'] and writes(arm, m) == []

    # a role in use is not deleted, and the message says what to do
    absent = {'role_definition': {'name': name, 'scope': scope, 'state': 'absent'}}
    r = play(absent)
    assert r['failed'] and 'existing role assignments referencing role' in r['msg'], r['msg']
    assert 'delete the role assignments that use the role first' in r['msg'], r['msg']
    assignment['role_assignment']['state'] = 'absent'
    ok(play(assignment))
    m = mark(arm)
    r = ok(play(absent, check=True))
    assert r['changed'] and writes(arm, m) == []
    r = ok(play(absent))
    assert r['changed'] and r['role_definition'] == {} and [w['method'] for w in writes(arm, m)] == ['DELETE']
    m = mark(arm)
    assert not ok(play(absent))['changed'] and writes(arm, m) == []


def test_role_created_elsewhere_is_found_by_name(arm, play, rg, sdk):
    make_rg(sdk, rg)
    scope = f'/subscriptions/{sub_of(arm)}/resourceGroups/{rg}'
    name = f'{rg}-portal'
    other = str(uuid.uuid4())
    _authz(sdk).role_definitions.create_or_update(scope, other, {'properties': {
        'roleName': name, 'description': 'made in the portal', 'type': 'CustomRole', 'assignableScopes': [scope],
        'permissions': [{'actions': ['Microsoft.Compute/virtualMachineScaleSets/read']}]}})
    task = {'role_definition': {'name': name, 'scope': scope, 'actions': ['Microsoft.Compute/virtualMachineScaleSets/read']}}
    m = mark(arm)
    r = ok(play(task))
    assert not r['changed'] and r['role_definition']['guid'] == other and writes(arm, m) == []
    assert r['role_definition']['description'] == 'made in the portal'  # not managed when not given
    # a different id under the same name is the tenant-wide name conflict, explained
    r = play({'role_definition': dict(task['role_definition'], id=str(uuid.uuid4()))})
    assert r['failed'] and 'unique in the Microsoft Entra tenant' in r['msg'], r['msg']
    ok(play({'role_definition': dict(task['role_definition'], state='absent')}))
    assert [d for d in _authz(sdk).role_definitions.list(scope, filter="type eq 'CustomRole'") if d.role_name == name] == []


def test_role_definition_refusals(arm, play, rg, sdk):
    make_rg(sdk, rg)
    scope = f'/subscriptions/{sub_of(arm)}/resourceGroups/{rg}'
    base = {'name': f'{rg}-bad', 'scope': scope, 'actions': ['Microsoft.Compute/virtualMachineScaleSets/read']}
    m = mark(arm)
    r = play({'role_definition': dict(base, assignable_scopes=[f'/subscriptions/{sub_of(arm)}'])})
    assert r['failed'] and f'scope {scope} must be one of assignable_scopes' in r['msg']
    r = play({'role_definition': dict(base, actions=[])})
    assert r['failed'] and 'set actions or data_actions' in r['msg']
    r = play({'role_definition': dict(base, assignable_scopes=['/'])})
    assert r['failed'] and 'not / or wildcards' in r['msg']
    r = play({'role_definition': dict(base, actions=['Microsoft.*/*/read'])})
    assert r['failed'] and 'at most one *' in r['msg']
    assert writes(arm, m) == []
    # what only Azure knows comes back with its reason
    r = play({'role_definition': dict(base, actions=['Microsoft.Compute/virtualMachineScaleSets/readd'])})
    assert r['failed'] and 'InvalidActionOrNotAction' in r['msg'] and 'readd' in r['msg'], r['msg']
    r = play({'role_definition': dict(base, name='Reader')})
    assert r['failed'] and 'Reader is a built-in role' in r['msg'], r['msg']
