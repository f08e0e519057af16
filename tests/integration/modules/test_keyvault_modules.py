"""keyvault and keyvault_secret through ansible-playbook against the ARM emulator (its Key Vault data plane reached
through the emulator's proxy, HTTPS_PROXY, as a controller behind a proxy reaches the real one): create, re-run with
zero writes, check mode with zero writes, diff, update, immutable settings, delete and recover, a principal without
the data role, and the secret value kept out of results, diffs and output."""

from __future__ import annotations

import uuid

import pytest
from conftest import make_rg, mark, ok, writes


@pytest.fixture
def kvplay(play, arm):
    def run(task, **kw):
        kw['extra_env'] = dict(arm.vault_env(), **(kw.get('extra_env') or {}))
        return play(task, **kw)
    return run


def vault_name():
    return 'hs' + uuid.uuid4().hex[:12]


def test_keyvault_lifecycle(arm, kvplay, rg, sdk):
    make_rg(sdk, rg)
    name = vault_name()
    task = {'keyvault': {'resource_group': rg, 'name': name, 'soft_delete_retention_days': 7, 'tags': {'env': 'a'}}}
    m = mark(arm)
    r = ok(kvplay(task, check=True))
    assert r['changed'] and r['changes'] == ['create'] and writes(arm, m) == []
    r = ok(kvplay(task))
    vault = r['keyvault']
    assert r['changed'] and vault['vault_uri'] == f'https://{name}.vault.azure.net/'
    assert vault['enable_rbac_authorization'] is True and vault['soft_delete_retention_days'] == 7
    assert vault['tenant_id'] == arm.endpoint['tenant_id'] and vault['location'] == 'westeurope'
    assert [w['method'] for w in writes(arm, m)] == ['PUT']
    m = mark(arm)
    r = ok(kvplay(task))
    assert not r['changed'] and writes(arm, m) == []
    # diff in check mode, then the update
    task['keyvault']['tags'] = {'env': 'b'}
    task['keyvault']['enable_purge_protection'] = True
    m = mark(arm)
    r = ok(kvplay(task, check=True, diff=True))
    assert r['changed'] and writes(arm, m) == []
    assert r['diff']['before']['tags'] == {'env': 'a'} and r['diff']['after']['tags'] == {'env': 'b'}
    assert 'enable_purge_protection: false -> true' in r['changes']
    r = ok(kvplay(task))
    assert r['keyvault']['enable_purge_protection'] is True and r['keyvault']['tags'] == {'env': 'b'}
    # refused before any write: retention is fixed at creation, purge protection is irreversible
    m = mark(arm)
    r = kvplay({'keyvault': dict(task['keyvault'], soft_delete_retention_days=30)})
    assert r['failed'] and 'soft_delete_retention_days cannot change from 7 to 30' in r['msg'] and writes(arm, m) == []
    r = kvplay({'keyvault': dict(task['keyvault'], enable_purge_protection=False)})
    assert r['failed'] and 'irreversible' in r['msg'] and writes(arm, m) == []
    r = kvplay({'keyvault': {'resource_group': rg, 'name': 'bad--name'}})
    assert r['failed'] and 'consecutive hyphens' in r['msg'] and writes(arm, m) == []
    # delete: the vault goes to the soft-deleted state; creating it again recovers it (or says how to purge it)
    r = ok(kvplay({'keyvault': {'resource_group': rg, 'name': name, 'state': 'absent'}}))
    assert r['changed']
    m = mark(arm)
    r = ok(kvplay({'keyvault': {'resource_group': rg, 'name': name, 'state': 'absent'}}))
    assert not r['changed'] and writes(arm, m) == []
    r = kvplay({'keyvault': dict(task['keyvault'], recover=False)})
    assert r['failed'] and 'soft-deleted' in r['msg'] and 'az keyvault purge' in r['msg'] and writes(arm, m) == []
    r = ok(kvplay(task, check=True))
    assert r['changes'] == ['recover soft-deleted vault'] and writes(arm, m) == []
    r = ok(kvplay(task))
    assert r['changed'] and r['changes'] == ['recover soft-deleted vault']
    assert r['keyvault']['soft_delete_retention_days'] == 7 and r['keyvault']['tags'] == {'env': 'b'}
    m = mark(arm)
    assert not ok(kvplay(task))['changed'] and writes(arm, m) == []


def test_keyvault_secret_lifecycle(arm, kvplay, rg, sdk):
    make_rg(sdk, rg)
    vault = ok(kvplay({'keyvault': {'resource_group': rg, 'name': vault_name()}}))['keyvault']
    url = vault['vault_uri']
    value = 'gossip-' + uuid.uuid4().hex
    task = {'keyvault_secret': {'vault_url': url, 'name': 'consul-gossip-key', 'value': value,
                                'content_type': 'text/plain'}}
    # Owner of the subscription has no data action on an RBAC vault: a clear error naming the role to assign
    m = mark(arm)
    r = kvplay(task)
    assert r['failed'] and 'Key Vault Secrets Officer' in r['msg'] and 'getSecret' in r['msg'], r['msg']
    assert arm.endpoint['principal_id'] in r['msg'] and vault['id'].lower() in r['msg'].lower()
    assert writes(arm, m) == []
    ok(kvplay({'role_assignment': {'scope': vault['id'], 'role': 'Key Vault Secrets Officer',
                                   'principal_id': arm.endpoint['principal_id'], 'principal_type': 'ServicePrincipal'}}))
    m = mark(arm)
    r = ok(kvplay(task, check=True))
    assert r['changed'] and writes(arm, m) == []
    r = ok(kvplay(task, diff=True))
    assert r['changed'] and r['secret']['content_type'] == 'text/plain' and 'value' not in r['secret']
    assert value not in r['_stdout'] and value not in str(r['diff']) and value not in str(r['changes'])
    first = r['secret']['version']
    assert [(w['method'], w.get('vault')) for w in writes(arm, m)] == [('PUT', url.split('//')[1].split('.')[0])]
    m = mark(arm)
    r = ok(kvplay(task))
    assert not r['changed'] and writes(arm, m) == [] and r['secret']['version'] == first
    # content type only: the properties change, no new version
    r = ok(kvplay({'keyvault_secret': dict(task['keyvault_secret'], content_type='application/octet-stream')}))
    assert r['changed'] and r['secret']['version'] == first and [w['method'] for w in writes(arm, m)] == ['PATCH']
    # a new value: a new version, the change named without the value (check mode first: zero writes)
    task['keyvault_secret'].update(value=value + '-2', content_type='application/octet-stream')
    m = mark(arm)
    r = ok(kvplay(task, check=True, diff=True))
    assert r['changed'] and r['changes'] == ['value: changed (not shown)'] and writes(arm, m) == []
    r = ok(kvplay(task))
    assert r['changed'] and r['secret']['version'] != first and value not in r['_stdout']
    # read only, the value returned on request
    r = ok(kvplay({'keyvault_secret': {'vault_url': url, 'name': 'consul-gossip-key', 'return_value': True}}))
    assert not r['changed'] and r['secret']['value'] == value + '-2'
    r = kvplay({'keyvault_secret': {'vault_url': url, 'name': 'missing'}})
    assert r['failed'] and 'does not exist' in r['msg']
    # delete, then setting it again recovers the soft-deleted secret first
    r = ok(kvplay({'keyvault_secret': {'vault_url': url, 'name': 'consul-gossip-key', 'state': 'absent'}}))
    assert r['changed']
    m = mark(arm)
    r = ok(kvplay({'keyvault_secret': {'vault_url': url, 'name': 'consul-gossip-key', 'state': 'absent'}}))
    assert not r['changed'] and writes(arm, m) == []
    r = ok(kvplay(task))
    assert r['changed'] and r['changes'] == ['recover deleted secret', 'create new version']
    r = ok(kvplay({'keyvault_secret': {'vault_url': url, 'name': 'consul-gossip-key', 'return_value': True}}))
    assert r['secret']['value'] == value + '-2'
    r = kvplay({'keyvault_secret': {'vault_url': 'http://nope', 'name': 'bad_name', 'value': 'x'}})
    assert r['failed'] and 'letters, digits and hyphens' in r['msg'] and 'https URL' in r['msg']
