"""Unit tests for the resource lifecycle base (plugins/module_utils/_lifecycle.py) with a fake module and a fake
resource held in memory: what is sent in check mode, create with the resource group's location, refusals, diff."""

from __future__ import annotations

import pytest
from ansible_collections.hashistack.azure.plugins.module_utils._lifecycle import AzureResource


class Failed(Exception):
    pass


class Exited(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


class FakeModule:
    """The parts of AzureModule the lifecycle uses; records every write."""

    def __init__(self, params, check_mode=False, groups=None):
        self.params = dict(dict(state='present', wait=True, timeout=60, tags=None, purge_tags=False), **params)
        self.check_mode = check_mode
        self.groups = groups or {}
        self.sent = []

    def get(self, what, fn, *args):
        return fn(*args)

    def call(self, what, fn, *args):
        self.sent.append(what)
        return fn(*args)

    def lro(self, what, starter, timeout, wait=True):
        self.sent.append(what)
        result = starter()
        return result if wait else None

    def client(self, name):
        assert name == 'resource'
        groups = self.groups

        class ResourceGroups:
            @staticmethod
            def get(rg):
                return groups.get(rg)
        return type('Client', (), {'resource_groups': ResourceGroups})

    def fail(self, msg, **kwargs):
        raise Failed(msg)

    def exit(self, **kwargs):
        raise Exited(kwargs)


class Vault(AzureResource):
    """A made-up resource kept in ``store``: the smallest module a lifecycle needs."""

    noun = 'vault'
    result_key = 'vault'
    default_timeout = 60
    manages_tags = True
    location_from_resource_group = True
    required_to_create = ('sku',)
    immutable = (('location', 'location'),)

    def __init__(self, module, store):
        self.store = store
        super().__init__(module)

    def read(self):
        return self.get(self.store.get, self.name)

    def to_model(self, rest):
        return None if rest is None else dict(name=rest['name'], location=rest['location'], sku=rest['sku'], tags=rest['tags'])

    def desired(self):
        return dict(name=self.name, location=self.params.get('location'), sku=self.params.get('sku'), tags=self.params['tags'])

    def compare(self, d, current, desired):
        d.compare('sku', desired['sku'], 'ci')
        self.compare_tags(d, desired)

    def put(self, verb, model):
        def send():
            self.store[self.name] = dict(model)
            return dict(model)
        return self.lro(verb, send)

    def delete(self, current):
        self.lro('deleting', lambda: self.store.pop(self.name))


def run(store, check_mode=False, groups=None, **params):
    module = FakeModule(dict(dict(name='v1', resource_group='rg'), **params), check_mode=check_mode, groups=groups)
    with pytest.raises((Exited, Failed)) as outcome:
        Vault(module, store).run()
    return module, outcome.value


def test_create_takes_the_resource_group_location_and_check_mode_sends_nothing():
    groups = {'rg': {'location': 'westeurope'}}
    store = {}
    module, out = run(store, check_mode=True, groups=groups, sku='standard')
    assert out.result['changed'] and out.result['changes'] == ['create'] and module.sent == [] and store == {}
    assert out.result['diff'] == {'before': {}, 'after': {'name': 'v1', 'location': 'westeurope', 'sku': 'standard', 'tags': {}}}
    module, out = run(store, groups=groups, sku='standard')
    assert module.sent == ['creating vault v1 in resource group rg']
    assert out.result['vault'] == store['v1'] == {'name': 'v1', 'location': 'westeurope', 'sku': 'standard', 'tags': {}}


def test_create_needs_the_required_options_and_an_existing_resource_group():
    _module, out = run({}, groups={'rg': {'location': 'x'}})
    assert isinstance(out, Failed) and str(out) == 'To create vault v1 in resource group rg set sku.'
    _module, out = run({}, sku='standard')
    assert isinstance(out, Failed) and 'Resource group rg does not exist: create it first' in str(out)


def test_no_change_sends_nothing_and_a_change_is_one_update_with_diff():
    store = {'v1': dict(name='v1', location='westeurope', sku='standard', tags={'a': '1'})}
    module, out = run(store, sku='Standard', location='West Europe')
    assert not out.result['changed'] and module.sent == [] and out.result['changes'] == []
    module, out = run(store, check_mode=True, sku='premium', tags={'b': '2'})
    assert out.result['changes'] == ['sku: standard -> premium', 'tags: {"a": "1"} -> {"a": "1", "b": "2"}'] and module.sent == []
    module, out = run(store, sku='premium', tags={'b': '2'}, purge_tags=True)
    assert module.sent == ['updating vault v1 in resource group rg']
    assert store['v1']['tags'] == {'b': '2'} and out.result['diff']['before']['sku'] == 'standard'


def test_immutable_fields_are_refused_before_any_write():
    store = {'v1': dict(name='v1', location='westeurope', sku='standard', tags={})}
    module, out = run(store, location='eastus')
    assert isinstance(out, Failed) and module.sent == []
    assert str(out).startswith('Cannot update vault v1 in resource group rg: location cannot change from westeurope to eastus')
    assert 'Fix: delete the vault first' in str(out)


def test_absent_deletes_once():
    store = {'v1': dict(name='v1', location='westeurope', sku='standard', tags={})}
    module, out = run(store, check_mode=True, state='absent')
    assert out.result['changed'] and out.result['changes'] == ['delete'] and module.sent == [] and 'v1' in store
    module, out = run(store, state='absent')
    assert out.result['vault'] == {} and module.sent == ['deleting vault v1 in resource group rg'] and store == {}
    module, out = run(store, state='absent')
    assert not out.result['changed'] and module.sent == []


def test_argument_spec_adds_state_wait_and_tags():
    spec = Vault.module_argument_spec()
    assert spec['state']['default'] == 'present' and spec['timeout']['default'] == 60
    assert spec['purge_tags']['default'] is False and 'tags' in spec
