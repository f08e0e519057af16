# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The lifecycle of one Azure resource in a module (private API).

``AzureResource`` runs read -> (absent: delete | missing: create | present: compare -> update) -> exit, with
check mode (nothing is sent), diff and the ``changes`` list from the difference tracker (``_diff.ModelDiff``).
A module says what its resource is and supplies only its model, body and comparison::

    class VirtualNetwork(AzureResource):
        noun = 'virtual network'                 # messages: "creating virtual network v in resource group rg"
        result_key = 'virtual_network'           # the module result's key for the model
        argument_spec = dict(resource_group=..., name=..., location=..., address_prefixes=...)
        default_timeout = 600                    # adds wait/timeout (doc fragment hashistack.azure.azure.wait)
        manages_tags = True                      # adds tags/purge_tags (hashistack.azure.azure.tags)
        location_from_resource_group = True      # create: no location given -> the resource group's
        required_to_create = ('address_prefixes',)
        immutable = (('location', 'location'),)  # refused on an existing resource when they differ

        client_name = 'network'                  # self.client (client_options() for its keyword arguments)

        def read(self):                  # REST dict or None
            return self.get(self.client.virtual_networks.get, self.resource_group, self.name)
        def to_model(self, rest): ...    # REST -> model (the module's vocabulary), None stays None
        def desired(self): ...           # params -> model; None = not managed
        def compare(self, d, current, desired): ...   # d.compare(...), self.compare_tags(d, desired)
        def put(self, verb, model):      # create and update ('creating'/'updating'); or define create and update
            return self.lro(verb, lambda: self.client.virtual_networks.begin_create_or_update(rg, name, body(model)))
        def delete(self, current):
            self.lro('deleting', lambda: self.client.virtual_networks.begin_delete(rg, name))

    def main():
        VirtualNetwork.main()

Optional hooks: ``validate()`` (input errors, before any request), ``prepare_create(model)`` (defaults and
prerequisite reads, also in check mode), ``before_delete(current)``, ``difference(current, desired)`` (when a
model module already compares), ``describe()``. ``apply()`` returns the result without exiting, for modules
that manage more than one resource (``virtual_network_peering``).
"""

from __future__ import annotations

from ansible_collections.hashistack.azure.plugins.module_utils._diff import ModelDiff, immutable_errors
from ansible_collections.hashistack.azure.plugins.module_utils._module import STATE_ARGSPEC, TAGS_ARGSPEC, AzureModule, wait_argspec
from ansible_collections.hashistack.azure.plugins.module_utils._sdk import to_dict


class AzureResource:
    """One ARM resource: the module declares it and supplies model, body and comparison (see the module docstring)."""

    noun = 'resource'
    result_key = 'resource'
    client_name = None
    argument_spec = {}
    module_kwargs = {}
    default_timeout = None
    manages_tags = False
    location_from_resource_group = False
    required_to_create = ()
    immutable = ()
    immutable_hints = {}

    @classmethod
    def module_argument_spec(cls):
        spec = dict(cls.argument_spec)
        spec.update(STATE_ARGSPEC)
        if cls.manages_tags:
            spec.update(TAGS_ARGSPEC)
        if cls.default_timeout is not None:
            spec.update(wait_argspec(cls.default_timeout))
        return spec

    @classmethod
    def main(cls):
        cls(AzureModule(cls.module_argument_spec(), **cls.module_kwargs)).run()

    def __init__(self, module, name=None, resource_group=None):
        self.m = module
        self.params = module.params
        self.name = self.params.get('name') if name is None else name
        self.resource_group = self.params.get('resource_group') if resource_group is None else resource_group
        self.what = self.describe()
        self._current = None
        self._read = False

    # ------------------------------------------------------------------ what a module supplies

    def describe(self):
        where = ' in resource group %s' % self.resource_group if self.resource_group else ''
        return '%s %s%s' % (self.noun, self.name, where)

    def validate(self):
        """Errors in the parameters, found without talking to Azure (state=present)."""
        return []

    def read(self):
        raise NotImplementedError

    def to_model(self, rest):
        raise NotImplementedError

    def desired(self):
        raise NotImplementedError

    def compare(self, d, current, desired):
        """Record the differences in ``d``; return refusals (changes that cannot be made)."""
        return []

    def prepare_create(self, model):
        return model

    def put(self, verb, model):
        """Create or replace the whole resource from ``model`` (an ARM PUT); the default create and update."""
        raise NotImplementedError

    def create(self, model):
        return self.put('creating', model)

    def update(self, d, current):
        """Send the change; ``d.after`` is the whole model after it, ``d.changed_keys`` what changed."""
        return self.put('updating', d.after)

    def before_delete(self, current):
        """Refuse a deletion by failing (reads only)."""

    def delete(self, current):
        raise NotImplementedError

    def difference(self, current, desired):
        """(ModelDiff, refusals): the immutable fields, then ``compare``."""
        d = ModelDiff(current)
        errors = immutable_errors(current, desired, self.immutable, self.noun, self.immutable_hints)
        errors.extend(self.compare(d, current, desired) or [])
        return d, errors

    # ------------------------------------------------------------------ helpers for the above

    def client_options(self):
        """Keyword arguments for the client (e.g. ``subscription_id``, ``api_version``)."""
        return {}

    @property
    def client(self):
        """The SDK client named by ``client_name`` ('network', 'compute', 'resource', 'authorization')."""
        return self.m.client(self.client_name, **self.client_options())

    def get(self, fn, *args, **kwargs):
        """Read with ``fn(*args)``; REST dict, or None when it does not exist."""
        return to_dict(self.m.get('reading ' + self.what, fn, *args, **kwargs))

    def call(self, verb, fn, *args, **kwargs):
        """A synchronous write, e.g. ``self.call('creating', client.x.create_or_update, ...)``; REST dict."""
        return to_dict(self.m.call('%s %s' % (verb, self.what), fn, *args, **kwargs))

    def lro(self, verb, starter):
        """A long-running write started by ``starter()``, waited for per the wait/timeout options; REST dict or None."""
        return to_dict(self.m.lro('%s %s' % (verb, self.what), starter, self.params['timeout'], wait=self.params['wait']))

    def compare_tags(self, d, desired):
        d.compare_tags(desired.get('tags'), self.params['purge_tags'])

    def resource_group_location(self):
        group = to_dict(self.m.get('reading resource group %s' % self.resource_group,
                                   self.m.client('resource').resource_groups.get, self.resource_group))
        if group is None:
            self.m.fail('Resource group %s does not exist: create it first (hashistack.azure.resource_group) before %s.'
                        % (self.resource_group, self.what))
        return group['location']

    # ------------------------------------------------------------------ the lifecycle

    def current(self):
        """The resource's model as it is in Azure (read once), None when it does not exist."""
        if not self._read:
            self._current = self.to_model(self.read())
            self._read = True
        return self._current

    def run(self):
        if self.params['state'] == 'present':
            errors = self.validate()
            if errors:
                self.m.fail('Invalid parameters for %s: %s' % (self.what, '; '.join(sorted(set(errors), key=errors.index))))
        result = self.apply()
        self.m.exit(changed=result['changed'], changes=result['changes'], diff=result['diff'], **{self.result_key: result['model']})

    def apply(self):
        """Bring the resource to the wanted state; dict(changed, model, changes, diff)."""
        current = self.current()
        if self.params['state'] == 'absent':
            return self._absent(current)
        if current is None:
            return self._create()
        return self._update(current)

    def _absent(self, current):
        d = ModelDiff(current)
        if current is not None:
            self.before_delete(current)
            d.mark_absent()
            if not self.m.check_mode:
                self.delete(current)
        return self._result(d, {})

    def _create(self):
        missing = [k for k in self.required_to_create if self.params.get(k) in (None, '', [])]
        if missing:
            self.m.fail('To create %s set %s.' % (self.what, ', '.join(missing)))
        model = self.desired()
        if self.manages_tags and model.get('tags') is None:
            model['tags'] = {}
        if self.location_from_resource_group and not model.get('location'):
            model['location'] = self.resource_group_location()
        model = self.prepare_create(model)
        d = ModelDiff(None)
        d.set_all(model)
        result = d.after
        if not self.m.check_mode:
            result = self.to_model(self.create(model)) or d.after
        return self._result(d, result)

    def _update(self, current):
        d, errors = self.difference(current, self.desired())
        if errors:
            self.m.fail('Cannot update %s: %s.' % (self.what, '; '.join(errors)))
        result = d.after
        if d.changed and not self.m.check_mode:
            result = self.to_model(self.update(d, current)) or d.after
        return self._result(d, result)

    @staticmethod
    def _result(d, model):
        return dict(changed=d.changed, model=model, changes=d.changes, diff=d.diff)
