# -*- coding: utf-8 -*-
# Copyright: (c) 2026, hashistack.azure maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: vmss
short_description: Azure Virtual Machine Scale Set instances, grouped for Consul and Nomad
version_added: 0.1.0
description:
  - Builds an inventory of every instance of the Azure Virtual Machine Scale Sets selected by subscription,
    resource group and tags, in both orchestration modes (Uniform scale-set VMs and Flexible standalone VMs
    that belong to a scale set).
  - Makes a constant number of Azure Resource Manager calls per scale set, whatever its size.
    Per Uniform scale set it lists the instances once (with their instance view, for the power state)
    and the scale set's network interfaces once (and its public IP addresses once when public IPs are wanted).
    Per Flexible scale set it lists the member VMs once (filtered on the scale set, with instance view);
    the network interfaces (and public IPs) of a resource group are listed once and shared by all Flexible
    scale sets of that resource group. Scale sets are listed once per resource group (or once per subscription).
    It never makes one call per instance.
  - Independent calls run concurrently (see O(max_workers)), result pages are followed, and throttling
    (HTTP 429, with C(Retry-After)) and transient errors are retried by the collection's shared Azure client code.
  - Scale sets and instances are read exactly like the M(hashistack.azure.vmss_info) module reads them (the same
    requests, power states, addresses and tag filter).
  - Authentication is shared with the modules of this collection (the same options, environment variables,
    credential sources and cloud settings).
  - Config file names must end with C(vmss.yml) or C(vmss.yaml).
  - "Host variables are all prefixed C(azure_): C(azure_id) (ARM id of the instance), C(azure_name) (ARM name),
    C(azure_computer_name), C(azure_instance_id) (scale-set instance id; the VM name for Flexible instances),
    C(azure_vm_id) (VM unique id), C(azure_vmss_name), C(azure_vmss_id), C(azure_orchestration_mode)
    (V(Uniform) or V(Flexible)), C(azure_subscription_id), C(azure_resource_group), C(azure_location), C(azure_zone),
    C(azure_vm_size), C(azure_private_ip), C(azure_private_ips), C(azure_public_ip), C(azure_public_ips),
    C(azure_power_state) (for example V(running), V(stopped), V(deallocated); V(unknown) without instance view),
    C(azure_provisioning_state), C(azure_latest_model) (Uniform only, V(null) for Flexible), C(azure_tags) (the
    instance's tags), C(azure_vmss_tags) (the scale set's tags), and the cluster fields read from tags:
    C(azure_cluster), C(azure_role), C(azure_pool), C(azure_consul_datacenter), C(azure_nomad_region),
    C(azure_nomad_datacenter) (V(null) when the tag is absent)."
  - "Cluster tags (written by the C(hashistack.azure.azure_infra) role on each scale set):
    C(hashistack_cluster), C(hashistack_role) (V(server) or V(client)), C(hashistack_pool),
    C(hashistack_consul_datacenter), C(hashistack_nomad_region), C(hashistack_nomad_datacenter).
    They are read from the scale set's tags; a tag missing there is taken from the instance's own tags."
  - "Flat host variables for the roles, set only when the corresponding tag is present (so group or role
    defaults still apply otherwise): C(hashistack_role), C(hashistack_pool),
    C(consul_datacenter), C(nomad_region), C(nomad_datacenter). The cluster name is only C(azure_cluster):
    C(hashistack_cluster) is the normalized cluster the roles set as a fact (M(hashistack.azure.cluster_spec))."
  - "Default groups (see O(default_groups)): C(consul_servers) (role V(server)), C(consul_clients) (every other
    instance: a Consul agent runs on every node), C(nomad_servers) (role V(server)), C(nomad_clients)
    (role V(client)), C(pool_<pool>) and C(location_<location>), with names sanitized for Ansible."
  - Every string that comes from Azure (names, tags, ids, addresses) is marked unsafe, so a tag value containing
    a Jinja expression stays literal text and is never templated.
  - With O(cache) enabled, the raw API results are cached (the key is derived from the config file path and the
    options that select what is fetched); groups and host variables are rebuilt from them on every load,
    so changes to O(compose), O(keyed_groups), O(groups), O(hostnames) or the power-state filters need no new
    API calls.
  - A scale set deleted while the inventory is listed is skipped with a warning. A subscription or resource group
    that cannot be read for lack of permission (HTTP 403) is skipped with a warning unless O(strict_permissions)
    is set; the inventory fails when no subscription at all could be read. Any other error fails the inventory
    naming the resource, rather than returning an incomplete inventory silently.
author:
  - hashistack.azure maintainers (@hashistack)
requirements:
  - azure-identity
  - azure-mgmt-core (installed with the azure-mgmt-* packages the collection requires)
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.tag_filter
  - constructed
  - inventory_cache
options:
  plugin:
    description: Token that ensures this is a source file for this plugin.
    type: str
    required: true
    choices: ['hashistack.azure.vmss']
  subscriptions:
    description:
      - Subscription ids to list scale sets in.
      - When empty, the subscription of the credential is used (O(subscription_id), E(AZURE_SUBSCRIPTION_ID),
        E(ARM_SUBSCRIPTION_ID) or the Azure CLI's default subscription).
    type: list
    elements: str
    default: []
  resource_groups:
    description:
      - Resource groups to list scale sets in (in every selected subscription).
      - When empty, scale sets are listed across the whole subscription with a single call.
      - A resource group that does not exist is skipped with a warning.
    type: list
    elements: str
    default: []
  scale_sets:
    description:
      - Only include scale sets whose name matches one of these shell-style patterns (for example V(prod-*)).
      - When empty, all scale sets that match O(tags) are included.
    type: list
    elements: str
    default: []
  include_power_states:
    description:
      - Only include instances in one of these power states (for example V(running)). Empty means all.
      - Power states are the suffix of Azure's C(PowerState/...) status code, V(unknown) when Azure does not report one.
    type: list
    elements: str
    default: []
  exclude_power_states:
    description:
      - Leave out instances in any of these power states (for example V(deallocated)).
    type: list
    elements: str
    default: []
  hostnames:
    description:
      - How to name each host, in order of preference; the first one that gives a non-empty value not already
        used by another instance is taken.
      - Each entry is one of V(computer_name) (the OS computer name), V(name) (the ARM name, for example
        V(web_3) for Uniform instances), V(vmss_instance) (V(<scale set>_<instance id>)), V(instance_id),
        V(vm_id), V(private_ip), V(public_ip), or a Jinja2 expression evaluated against the host variables.
      - When none gives a usable name, V(<scale set>_<instance id>) is used and a warning is shown.
    type: list
    elements: str
    default: ['computer_name', 'vmss_instance']
  use_public_ip:
    description:
      - Set C(ansible_host) to the instance's public IP address instead of its private one (instances without a
        public IP keep their private address). Implies O(include_public_ips).
    type: bool
    default: false
  include_public_ips:
    description:
      - Also list public IP addresses (one more call per Uniform scale set, one per resource group with Flexible
        scale sets) to fill C(azure_public_ip) and C(azure_public_ips).
    type: bool
    default: false
  default_groups:
    description:
      - Create the default groups C(consul_servers), C(consul_clients), C(nomad_servers), C(nomad_clients),
        C(pool_<pool>) and C(location_<location>).
    type: bool
    default: true
  max_workers:
    description:
      - How many Azure requests may be in flight at the same time.
    type: int
    default: 8
  strict_permissions:
    description:
      - Fail when a subscription or resource group cannot be read for lack of permission (HTTP 403),
        instead of skipping it with a warning.
    type: bool
    default: false
"""

EXAMPLES = r"""
# prod.vmss.yml: every instance of the "prod" cluster, addressed by private IP
plugin: hashistack.azure.vmss
resource_groups:
  - hashistack-prod
tags:
  hashistack_cluster: prod
exclude_power_states:
  - deallocated
  - stopped

---
# Group by scale set and by Nomad datacenter, add a variable, cache the API results for an hour
plugin: hashistack.azure.vmss
subscriptions:
  - 00000000-0000-0000-0000-000000000000
tags:
  hashistack_cluster: [prod, staging]
hostnames:
  - name
  - "azure_vmss_name ~ '-' ~ azure_instance_id"
keyed_groups:
  - key: azure_vmss_name
    prefix: vmss
  - key: nomad_datacenter
    prefix: nomad_dc
groups:
  outdated: not azure_latest_model
compose:
  ansible_user: "'azureuser'"
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/hashistack-inventory
cache_timeout: 3600

---
# Reach the instances over their public IPs, explicit service principal from the environment
plugin: hashistack.azure.vmss
auth_source: env
use_public_ip: true
"""

import fnmatch
from concurrent.futures import ThreadPoolExecutor

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_native
from ansible.utils.unsafe_proxy import wrap_var
from ansible_collections.hashistack.azure.plugins.module_utils._cluster_spec import (
    ROLE_CLIENT, ROLE_SERVER, TAG_CLUSTER, TAG_CONSUL_DC, TAG_NOMAD_DC, TAG_NOMAD_REGION, TAG_POOL, TAG_ROLE)
from ansible_collections.hashistack.azure.plugins.module_utils._ids import parse_resource_id
from ansible_collections.hashistack.azure.plugins.module_utils._vmss_readers import (
    index_nics, instance_from_rest, instances_request, members, network_key, network_requests, orchestration_mode,
    scale_sets_request, tags_match)
from ansible_collections.hashistack.azure.plugins.plugin_utils._inventory import AzureInventoryBase
from ansible_collections.hashistack.azure.plugins.plugin_utils._session import Skipped, list_or_skip

# ---------------------------------------------------------------------------------------------- cluster tags
# The tags the azure_infra role writes on each scale set (named in _cluster_spec), and the host variables
# read from them: tag -> (namespaced host variable, flat host variable for the roles).
HOSTVARS_FROM_TAGS = (
    (TAG_CLUSTER, 'azure_cluster', None),  # no flat one: the roles' fact hashistack_cluster is the whole cluster
    (TAG_ROLE, 'azure_role', 'hashistack_role'),
    (TAG_POOL, 'azure_pool', 'hashistack_pool'),
    (TAG_CONSUL_DC, 'azure_consul_datacenter', 'consul_datacenter'),
    (TAG_NOMAD_REGION, 'azure_nomad_region', 'nomad_region'),
    (TAG_NOMAD_DC, 'azure_nomad_datacenter', 'nomad_datacenter'),
)


def cluster_hostvars(set_tags, instance_tags):
    """Host variables from the cluster tags: the scale set's tag, else the instance's own (names case-insensitive).

    Every namespaced variable is set (None when the tag is absent); a flat one only when its tag has a value, so
    group and role defaults still apply otherwise.
    """
    on_set = dict((k.lower(), v) for k, v in (set_tags or {}).items())
    on_instance = dict((k.lower(), v) for k, v in (instance_tags or {}).items())
    hostvars = {}
    for tag, namespaced, flat in HOSTVARS_FROM_TAGS:
        value = on_set.get(tag, on_instance.get(tag))
        hostvars[namespaced] = value
        if flat and value is not None and value != '':
            hostvars[flat] = value
    return hostvars


# ---------------------------------------------------------------------------------------------- host variables

CACHE_FORMAT = 1

# instance facts (module_utils/_vmss_readers.py) published as azure_<name>
HOSTVAR_FACTS = ('id', 'name', 'computer_name', 'instance_id', 'vm_id', 'vmss_name', 'vmss_id', 'orchestration_mode',
                 'subscription_id', 'resource_group', 'location', 'zone', 'vm_size', 'private_ip', 'private_ips',
                 'public_ip', 'public_ips', 'power_state', 'provisioning_state', 'tags')


def instance_hostvars(scale_set, instance, nic_index, subscription_id=None):
    """Host variables (plain, not yet marked unsafe) for one instance of a scale set."""
    facts = instance_from_rest(instance, nic_index, scale_set)
    hostvars = dict(('azure_' + key, facts[key]) for key in HOSTVAR_FACTS)
    hostvars['azure_subscription_id'] = facts['subscription_id'] or subscription_id
    hostvars['azure_latest_model'] = facts['latest_model_applied']
    hostvars['azure_vmss_tags'] = dict(scale_set.get('tags') or {})
    hostvars.update(cluster_hostvars(scale_set.get('tags'), instance.get('tags')))
    return hostvars


def default_group_names(hostvars):
    """Unsanitized default group names for one host."""
    groups = []
    role = (hostvars.get('azure_role') or '').lower()
    if role == ROLE_SERVER:
        groups.extend(['consul_servers', 'nomad_servers'])
    else:
        groups.append('consul_clients')
        if role == ROLE_CLIENT:
            groups.append('nomad_clients')
    if hostvars.get('azure_pool'):
        groups.append('pool_%s' % hostvars['azure_pool'])
    if hostvars.get('azure_location'):
        groups.append('location_%s' % hostvars['azure_location'])
    return groups


def _vmss_instance(hostvars):
    if hostvars.get('azure_orchestration_mode') == 'Flexible':
        return hostvars.get('azure_name')
    return '%s_%s' % (hostvars.get('azure_vmss_name'), hostvars.get('azure_instance_id'))


# the named entries of the hostnames option (anything else is a Jinja2 expression)
HOSTNAMES = dict(
    computer_name=lambda hv: hv.get('azure_computer_name'),
    name=lambda hv: hv.get('azure_name'),
    vmss_instance=_vmss_instance,
    instance_id=lambda hv: hv.get('azure_instance_id'),
    vm_id=lambda hv: hv.get('azure_vm_id'),
    private_ip=lambda hv: hv.get('azure_private_ip'),
    public_ip=lambda hv: hv.get('azure_public_ip'),
)


def iter_instances(raw):
    """Yield (scale_set, instance, nic_index, subscription_id) from a raw (cached) fetch result, in a stable order."""
    network = raw.get('network') or {}
    indexes = {}
    for entry in raw.get('scale_sets') or []:
        key = entry.get('network_key')
        if key not in indexes:
            net = network.get(key) or {}
            indexes[key] = index_nics(net.get('nics'), net.get('public_ips'))
        for instance in members(entry['scale_set'], entry.get('instances') or []):
            yield entry['scale_set'], instance, indexes[key], entry.get('subscription_id')


# ---------------------------------------------------------------------------------------------- fetching

def name_matches(name, patterns):
    return not patterns or any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def settled(tasks):
    """(task, items, error) for each task (a tuple ending in its future), in order; error is a Skipped or AnsibleError."""
    for task in tasks:
        try:
            yield task, task[-1].result(), None
        except (Skipped, AnsibleError) as exc:
            yield task, None, exc


class Fetcher:
    """Runs the fetch plan of module_utils/_vmss_readers.py and returns the raw (JSON-serializable) result.

    ``session`` must provide ``prepare(subscription_id)`` (called once per subscription before the workers start),
    ``list_pages(subscription_id, path, params)`` returning every item of an ARM list operation (HTTP errors raised
    as azure-core ``HttpResponseError``) and ``retry(fn)`` (the operation-level retry); see plugin_utils/_session.py.
    """

    def __init__(self, session, resource_groups=None, scale_set_patterns=None, tag_filters=None,
                 public_ips=False, max_workers=8, strict_permissions=False, warn=None):
        self.session = session
        self.resource_groups = list(resource_groups or [])
        self.scale_set_patterns = list(scale_set_patterns or [])
        self.tag_filters = dict(tag_filters or {})
        self.public_ips = public_ips
        self.max_workers = max(1, int(max_workers or 1))
        self.strict_permissions = strict_permissions
        self.warn = warn or (lambda msg: None)

    def _list(self, sub, request):
        return list_or_skip(self.session, sub, request)

    def _forbidden(self, exc):
        if self.strict_permissions:
            raise AnsibleError('%s (strict_permissions is set; set it to false to skip what cannot be read)' % to_native(exc))
        self.warn('Skipping %s: %s' % (exc.what, to_native(exc)))

    def fetch(self, subscriptions):
        result = {'format': CACHE_FORMAT, 'scale_sets': [], 'network': {}}
        for sub in subscriptions:
            # create the clients up front (in this thread): the workers only use them
            self.session.prepare(sub)
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix='vmss-inventory') as pool:
            selected = self._select_scale_sets(pool, subscriptions)
            gone = self._fetch_members(pool, selected, result)
        kept = []
        for entry in result['scale_sets']:
            if id(entry) in gone:
                self.warn('Scale set %s (resource group %s) was deleted while the inventory was being listed; skipped.'
                          % (entry['scale_set'].get('name'), parse_resource_id(entry['scale_set'].get('id')).get('resource_group')))
                if entry['network_key'].startswith('vmss:'):
                    result['network'].pop(entry['network_key'], None)
                continue
            kept.append(entry)
        result['scale_sets'] = kept
        return result

    def _select_scale_sets(self, pool, subscriptions):
        """Phase 1: the scale sets, one paged call per subscription (or per resource group), filtered here."""
        listings = []
        for sub in subscriptions:
            for rg in (self.resource_groups or [None]):
                listings.append((sub, rg, pool.submit(self._list, sub, scale_sets_request(sub, rg))))
        readable = set()
        selected = []
        for (sub, rg, _future), sets, error in settled(listings):
            if isinstance(error, AnsibleError):
                raise error
            if error is not None:
                if rg is not None and error.code == 'resourcegroupnotfound':
                    self.warn('Resource group %s not found in subscription %s; skipped.' % (rg, sub))
                    readable.add(sub)
                else:
                    # 403: no permission; 404 SubscriptionNotFound: not visible to this identity
                    self._forbidden(error)
                continue
            readable.add(sub)
            selected.extend((sub, scale_set) for scale_set in sets
                            if name_matches(scale_set.get('name') or '', self.scale_set_patterns)
                            and tags_match(scale_set.get('tags'), self.tag_filters))
        if subscriptions and not readable:
            raise AnsibleError('None of the subscriptions (%s) could be read. Check that the identity has at least the Reader '
                               'role there and that the subscription ids are right.' % ', '.join(subscriptions))
        selected.sort(key=lambda item: (item[0].lower(), (item[1].get('id') or '').lower()))
        return selected

    def _fetch_members(self, pool, selected, result):
        """Phase 2: a constant number of calls per scale set (+ calls per resource group shared by its Flexible sets).

        Returns the ids (python id()) of the entries whose scale set vanished (404) meanwhile.
        """
        seen = set()
        tasks = []
        for sub, scale_set in selected:
            set_id = (scale_set.get('id') or '').lower()
            if set_id in seen:
                continue
            seen.add(set_id)
            key = network_key(sub, scale_set)
            entry = {'subscription_id': sub, 'scale_set': scale_set, 'instances': [], 'network_key': key}
            tasks.append(('instances', entry, pool.submit(self._list, sub, instances_request(sub, scale_set))))
            if key not in result['network']:
                result['network'][key] = {'nics': [], 'public_ips': []}
                tasks.extend((kind, entry, pool.submit(self._list, sub, request))
                             for kind, request in network_requests(sub, scale_set, self.public_ips))
            result['scale_sets'].append(entry)

        gone = set()
        failures = []
        for (kind, entry, _future), items, error in settled(tasks):
            if isinstance(error, Skipped) and error.vanished:
                if orchestration_mode(entry['scale_set']) == 'Flexible' and kind != 'instances':
                    # the resource group of these Flexible scale sets is gone
                    gone.update(id(e) for e in result['scale_sets'] if e['network_key'] == entry['network_key'])
                else:
                    gone.add(id(entry))
            elif isinstance(error, Skipped) and error.status == 403:
                try:
                    self._forbidden(error)
                except AnsibleError as err:
                    failures.append(to_native(err))
            elif error is not None:
                failures.append(to_native(error))
            elif kind == 'instances':
                entry['instances'] = items
            else:
                result['network'][entry['network_key']][kind] = items
        if failures:
            unique = sorted(set(failures), key=failures.index)
            raise AnsibleError('The scale-set inventory was not built because it would be incomplete: %s' % ' | '.join(unique))
        return gone


# ---------------------------------------------------------------------------------------------- the plugin

class InventoryModule(AzureInventoryBase):

    NAME = 'hashistack.azure.vmss'
    INVENTORY_FILE_SUFFIXES = ('vmss.yml', 'vmss.yaml')
    CACHE_FORMAT = CACHE_FORMAT

    def fetch_options(self):
        return {
            'subscriptions': list(self.get_option('subscriptions') or []),
            'resource_groups': list(self.get_option('resource_groups') or []),
            'scale_sets': list(self.get_option('scale_sets') or []),
            'tags': self.get_option('tags') or {},
            'public_ips': bool(self.get_option('include_public_ips') or self.get_option('use_public_ip')),
        }

    def _fetch(self):
        options = self.fetch_options()

        def fetch(session):
            fetcher = Fetcher(session, resource_groups=options['resource_groups'], scale_set_patterns=options['scale_sets'],
                              tag_filters=options['tags'], public_ips=options['public_ips'],
                              max_workers=self.get_option('max_workers'), strict_permissions=self.get_option('strict_permissions'),
                              warn=self.display.warning)
            return fetcher.fetch(options['subscriptions'] or [session.default_subscription()])
        return self.with_session(fetch)

    def _populate(self, raw):
        strict = self.get_option('strict')
        include = [s.lower() for s in self.get_option('include_power_states') or []]
        exclude = [s.lower() for s in self.get_option('exclude_power_states') or []]
        use_public = self.get_option('use_public_ip')
        used_names = {}
        for scale_set, instance, nic_index, sub in iter_instances(raw):
            hostvars = instance_hostvars(scale_set, instance, nic_index, sub)
            state = hostvars['azure_power_state']
            if (include and state not in include) or state in exclude:
                continue
            address = hostvars['azure_private_ip']
            if use_public and hostvars['azure_public_ip']:
                address = hostvars['azure_public_ip']
            if address:
                hostvars['ansible_host'] = address
            hostvars = wrap_var(hostvars)
            hostname = self.choose_hostname(hostvars, self.get_option('hostnames'), HOSTNAMES, _vmss_instance, used_names, strict)
            used_names[hostname] = hostvars['azure_id']
            groups = default_group_names(hostvars) if self.get_option('default_groups') else []
            self.add_host(hostname, hostvars, groups, strict)
