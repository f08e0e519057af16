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
    defaults still apply otherwise): C(hashistack_cluster), C(hashistack_role), C(hashistack_pool),
    C(consul_datacenter), C(nomad_region), C(nomad_datacenter)."
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
  tags:
    description:
      - Only include scale sets carrying all of these tags (matched on the scale set's own tags).
      - The value may be a string (exact match), a list of strings (any of them), or V(null) (the tag must exist,
        any value). Tag names are matched case-insensitively, values case-sensitively.
      - "Example: C({hashistack_cluster: prod})."
    type: dict
    default: {}
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
import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlencode

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var


def load_azure():
    """Return (azure.core.exceptions, the shared _azure module), imported on first use.

    The Azure SDK and the shared Azure code are only needed to call Azure: an inventory served from the cache
    imports neither (a large part of a cache hit's time otherwise).
    """
    # pylint: disable=import-outside-toplevel
    try:
        from azure.core import exceptions as azure_exceptions
        import azure.mgmt.core  # noqa: F401 pylint: disable=unused-import
    except ImportError as exc:
        raise AnsibleParserError('The hashistack.azure.vmss inventory plugin needs the Azure SDK for Python '
                                 '(azure-identity, azure-mgmt-core; see the collection requirements.txt): %s' % to_native(exc))
    try:
        from ansible_collections.hashistack.azure.plugins.module_utils import _azure
    except ImportError as exc:
        raise AnsibleParserError('Cannot load the shared Azure code of hashistack.azure: %s' % to_native(exc))
    return azure_exceptions, _azure


CACHE_FORMAT = 1

# ARM API versions of the list operations used (all GET).
COMPUTE_API_VERSION = '2024-11-01'
NETWORK_API_VERSION = '2024-05-01'
VMSS_NETWORK_API_VERSION = '2018-10-01'   # the scale-set NIC / public IP views only exist in this version

TAG_CLUSTER = 'hashistack_cluster'
TAG_ROLE = 'hashistack_role'
TAG_POOL = 'hashistack_pool'
TAG_CONSUL_DC = 'hashistack_consul_datacenter'
TAG_NOMAD_REGION = 'hashistack_nomad_region'
TAG_NOMAD_DC = 'hashistack_nomad_datacenter'

# tag -> (namespaced hostvar, flat hostvar for the roles)
CLUSTER_TAGS = (
    (TAG_CLUSTER, 'azure_cluster', 'hashistack_cluster'),
    (TAG_ROLE, 'azure_role', 'hashistack_role'),
    (TAG_POOL, 'azure_pool', 'hashistack_pool'),
    (TAG_CONSUL_DC, 'azure_consul_datacenter', 'consul_datacenter'),
    (TAG_NOMAD_REGION, 'azure_nomad_region', 'nomad_region'),
    (TAG_NOMAD_DC, 'azure_nomad_datacenter', 'nomad_datacenter'),
)

# 404 error codes meaning "this resource (or its parent) does not exist"
VANISHED_CODES = ('', 'resourcenotfound', 'notfound', 'resourcegroupnotfound', 'parentresourcenotfound')

HOSTNAME_CHOICES = ('computer_name', 'name', 'vmss_instance', 'instance_id', 'vm_id', 'private_ip', 'public_ip')

_ID_RE = re.compile(r'^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/', re.IGNORECASE)


# ---------------------------------------------------------------------------
# Pure helpers working on REST-shaped dicts (what ARM returns on the wire).
# ---------------------------------------------------------------------------

def _lower(value):
    return value.lower() if isinstance(value, str) else value


def _props(resource):
    return (resource or {}).get('properties') or {}


def parse_resource_id(resource_id):
    """Return (subscription_id, resource_group) of an ARM id, (None, None) when it is not one."""
    match = _ID_RE.match(resource_id or '')
    if not match:
        return None, None
    return match.group('sub'), match.group('rg')


def orchestration_mode(scale_set):
    mode = _props(scale_set).get('orchestrationMode') or 'Uniform'
    return 'Flexible' if mode.lower() == 'flexible' else 'Uniform'


def tags_match(tags, wanted):
    """True when tags (dict) carry every wanted tag; names case-insensitive, values exact, list = any, None = exists."""
    if not wanted:
        return True
    lowered = dict((_lower(k), v) for k, v in (tags or {}).items())
    for name, value in wanted.items():
        key = _lower(name)
        if key not in lowered:
            return False
        if value is None:
            continue
        accepted = value if isinstance(value, (list, tuple)) else [value]
        if lowered[key] not in [str(v) for v in accepted]:
            return False
    return True


def name_matches(name, patterns):
    if not patterns:
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _statuses(instance):
    view = _props(instance).get('instanceView') or {}
    return view.get('statuses') or []


def power_state(instance):
    for status in _statuses(instance):
        code = status.get('code') or ''
        if code.lower().startswith('powerstate/'):
            return code.split('/', 1)[1].lower()
    return 'unknown'


def provisioning_state(instance):
    state = _props(instance).get('provisioningState')
    if state:
        return state
    for status in _statuses(instance):
        code = status.get('code') or ''
        if code.lower().startswith('provisioningstate/'):
            return code.split('/', 1)[1]
    return None


def index_public_ips(public_ips):
    """Map lower-cased public IP id and lower-cased ip configuration id -> address."""
    by_id = {}
    for pip in public_ips or []:
        address = _props(pip).get('ipAddress')
        if not address:
            continue
        if pip.get('id'):
            by_id[pip['id'].lower()] = address
        ip_config = (_props(pip).get('ipConfiguration') or {}).get('id')
        if ip_config:
            by_id[ip_config.lower()] = address
    return by_id


def index_nics(nics, public_ips=None):
    """Map lower-cased VM id -> {'private_ips': [...], 'public_ips': [...], 'nic_ids': [...]} (primary NIC first).

    Also indexes by lower-cased NIC id under the key ('nic', id) so an instance can be matched from its
    networkProfile when the NIC does not name its VM.
    """
    public_by_id = index_public_ips(public_ips)
    index = {}
    ordered = sorted(nics or [], key=lambda nic: 0 if _props(nic).get('primary') else 1)
    for nic in ordered:
        props = _props(nic)
        private, public = [], []
        configs = sorted(props.get('ipConfigurations') or [], key=lambda c: 0 if _props(c).get('primary') else 1)
        for config in configs:
            cprops = _props(config)
            if cprops.get('privateIPAddress'):
                private.append(cprops['privateIPAddress'])
            pip = cprops.get('publicIPAddress') or {}
            address = _props(pip).get('ipAddress')
            if not address and pip.get('id'):
                address = public_by_id.get(pip['id'].lower())
            if not address and config.get('id'):
                address = public_by_id.get(config['id'].lower())
            if address:
                public.append(address)
        entry = {'private_ips': private, 'public_ips': public, 'nic_ids': [nic.get('id')]}
        keys = []
        vm_id = (props.get('virtualMachine') or {}).get('id')
        if vm_id:
            keys.append(vm_id.lower())
        if nic.get('id'):
            keys.append(('nic', nic['id'].lower()))
        for key in keys:
            if key in index:
                index[key]['private_ips'].extend(private)
                index[key]['public_ips'].extend(public)
                index[key]['nic_ids'].extend(entry['nic_ids'])
            else:
                index[key] = {'private_ips': list(private), 'public_ips': list(public), 'nic_ids': list(entry['nic_ids'])}
    return index


def instance_addresses(instance, nic_index):
    entry = nic_index.get((instance.get('id') or '').lower())
    if entry is None:
        private, public = [], []
        nic_refs = (_props(instance).get('networkProfile') or {}).get('networkInterfaces') or []
        for ref in sorted(nic_refs, key=lambda r: 0 if _props(r).get('primary') else 1):
            found = nic_index.get(('nic', (ref.get('id') or '').lower()))
            if found:
                private.extend(found['private_ips'])
                public.extend(found['public_ips'])
        return private, public
    return list(entry['private_ips']), list(entry['public_ips'])


def _instance_sort_key(instance):
    iid = instance.get('instanceId')
    if iid is not None and str(iid).isdigit():
        return (0, int(iid), '')
    return (1, 0, (instance.get('name') or '').lower())


def instance_hostvars(scale_set, instance, nic_index, subscription_id=None):
    """Host variables (plain, not yet marked unsafe) for one instance of a scale set."""
    props = _props(instance)
    set_props = _props(scale_set)
    mode = orchestration_mode(scale_set)
    sub, rg = parse_resource_id(instance.get('id') or scale_set.get('id'))
    private, public = instance_addresses(instance, nic_index)
    view = props.get('instanceView') or {}
    computer_name = (props.get('osProfile') or {}).get('computerName') or view.get('computerName')
    instance_id = instance.get('instanceId')
    if instance_id is None:
        instance_id = instance.get('name')
    zones = instance.get('zones') or []
    vm_size = ((instance.get('sku') or {}).get('name') or (props.get('hardwareProfile') or {}).get('vmSize')
               or (scale_set.get('sku') or {}).get('name')
               or ((set_props.get('virtualMachineProfile') or {}).get('hardwareProfile') or {}).get('vmSize'))
    latest = props.get('latestModelApplied') if mode == 'Uniform' else None
    set_tags = dict(scale_set.get('tags') or {})
    own_tags = dict(instance.get('tags') or {})

    hostvars = {
        'azure_id': instance.get('id'),
        'azure_name': instance.get('name'),
        'azure_computer_name': computer_name,
        'azure_instance_id': str(instance_id) if instance_id is not None else None,
        'azure_vm_id': props.get('vmId'),
        'azure_vmss_name': scale_set.get('name'),
        'azure_vmss_id': scale_set.get('id'),
        'azure_orchestration_mode': mode,
        'azure_subscription_id': sub or subscription_id,
        'azure_resource_group': rg,
        'azure_location': instance.get('location') or scale_set.get('location'),
        'azure_zone': zones[0] if zones else None,
        'azure_vm_size': vm_size,
        'azure_private_ip': private[0] if private else None,
        'azure_private_ips': private,
        'azure_public_ip': public[0] if public else None,
        'azure_public_ips': public,
        'azure_power_state': power_state(instance),
        'azure_provisioning_state': provisioning_state(instance),
        'azure_latest_model': latest,
        'azure_tags': own_tags,
        'azure_vmss_tags': set_tags,
    }
    lowered_set = dict((k.lower(), v) for k, v in set_tags.items())
    lowered_own = dict((k.lower(), v) for k, v in own_tags.items())
    for tag, namespaced, flat in CLUSTER_TAGS:
        value = lowered_set.get(tag, lowered_own.get(tag))
        hostvars[namespaced] = value
        if value is not None and value != '':
            hostvars[flat] = value
    return hostvars


def default_group_names(hostvars):
    """Unsanitized default group names for one host."""
    groups = []
    role = (hostvars.get('azure_role') or '').lower()
    if role == 'server':
        groups.extend(['consul_servers', 'nomad_servers'])
    else:
        groups.append('consul_clients')
        if role == 'client':
            groups.append('nomad_clients')
    if hostvars.get('azure_pool'):
        groups.append('pool_%s' % hostvars['azure_pool'])
    if hostvars.get('azure_location'):
        groups.append('location_%s' % hostvars['azure_location'])
    return groups


def hostname_candidate(choice, hostvars):
    """Value of a named hostname choice, or None for an unknown choice (a Jinja2 expression)."""
    if choice == 'computer_name':
        return hostvars.get('azure_computer_name')
    if choice == 'name':
        return hostvars.get('azure_name')
    if choice == 'vmss_instance':
        if hostvars.get('azure_orchestration_mode') == 'Flexible':
            return hostvars.get('azure_name')
        return '%s_%s' % (hostvars.get('azure_vmss_name'), hostvars.get('azure_instance_id'))
    if choice == 'instance_id':
        return hostvars.get('azure_instance_id')
    if choice == 'vm_id':
        return hostvars.get('azure_vm_id')
    if choice == 'private_ip':
        return hostvars.get('azure_private_ip')
    if choice == 'public_ip':
        return hostvars.get('azure_public_ip')
    return None


def iter_instances(raw):
    """Yield (scale_set, instance, nic_index, subscription_id) from a raw (cached) fetch result, in a stable order."""
    network = raw.get('network') or {}
    indexes = {}
    for entry in raw.get('scale_sets') or []:
        key = entry.get('network_key')
        if key not in indexes:
            net = network.get(key) or {}
            indexes[key] = index_nics(net.get('nics'), net.get('public_ips'))
        scale_set = entry['scale_set']
        set_id = (scale_set.get('id') or '').lower()
        members = []
        for instance in entry.get('instances') or []:
            if orchestration_mode(scale_set) == 'Flexible':
                owner = ((_props(instance).get('virtualMachineScaleSet') or {}).get('id') or '').lower()
                if owner != set_id:
                    continue
            members.append(instance)
        for instance in sorted(members, key=_instance_sort_key):
            yield scale_set, instance, indexes[key], entry.get('subscription_id')


# ---------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------

class _Skipped(Exception):
    """A call whose target vanished (404) or is not readable (403); the caller decides what to do."""

    def __init__(self, status, what, message, code=None):
        super().__init__(message)
        self.status = status
        self.what = what
        self.code = (code or '').lower()

    @property
    def vanished(self):
        """404 because the resource (or its resource group) does not exist (not e.g. an unknown resource type)."""
        return self.status == 404 and self.code in VANISHED_CODES


def _explain(exc, what, session):
    _azure = load_azure()[1]
    peek = getattr(session, 'peek_session', None)
    return _azure.explain_error(exc, what, peek() if peek else None)


class Fetcher:
    """Runs the fetch plan against Azure and returns the raw (JSON-serializable) result.

    ``session`` must provide ``prepare(subscription_id)`` (called once per subscription before the workers start)
    and ``list_pages(subscription_id, path, params)`` returning every item of an ARM list operation, following
    ``nextLink``; HTTP errors are raised as azure-core ``HttpResponseError``. ``retry(fn)`` runs ``fn`` under the
    shared operation-level retry policy (the per-request retries, honouring Retry-After, happen in the pipeline).
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

    # every task below is exactly one (paged) list operation
    def _list(self, sub, path, params, what):
        errors, _azure = load_azure()

        def run():
            return self.session.list_pages(sub, path, params)
        try:
            return self.session.retry(run)
        except errors.ClientAuthenticationError as exc:
            raise AnsibleError(_explain(exc, what, self.session))
        except errors.HttpResponseError as exc:
            status, code, _message = _azure.error_parts(exc)
            if status in (403, 404):
                raise _Skipped(status, what, _explain(exc, what, self.session), code)
            raise AnsibleError(_explain(exc, what, self.session))
        except errors.AzureError as exc:
            raise AnsibleError(_explain(exc, what, self.session))

    @staticmethod
    def _rg_path(sub, rg):
        return '/subscriptions/%s/resourceGroups/%s/providers' % (quote(sub, safe=''), quote(rg, safe=''))

    def _task_scale_sets(self, sub, rg):
        if rg is None:
            return self._list(sub, '/subscriptions/%s/providers/Microsoft.Compute/virtualMachineScaleSets' % quote(sub, safe=''),
                              {'api-version': COMPUTE_API_VERSION}, 'listing the scale sets of subscription %s' % sub)
        return self._list(sub, self._rg_path(sub, rg) + '/Microsoft.Compute/virtualMachineScaleSets',
                          {'api-version': COMPUTE_API_VERSION},
                          'listing the scale sets of resource group %s (subscription %s)' % (rg, sub))

    def _set_path(self, sub, rg, name):
        return self._rg_path(sub, rg) + '/Microsoft.Compute/virtualMachineScaleSets/%s' % quote(name, safe='')

    def _task_uniform_instances(self, sub, rg, name):
        return self._list(sub, self._set_path(sub, rg, name) + '/virtualMachines',
                          {'api-version': COMPUTE_API_VERSION, '$expand': 'instanceView'},
                          'listing the instances of scale set %s (resource group %s)' % (name, rg))

    def _task_flexible_instances(self, sub, rg, name, set_id):
        return self._list(sub, self._rg_path(sub, rg) + '/Microsoft.Compute/virtualMachines',
                          {'api-version': COMPUTE_API_VERSION, '$expand': 'instanceView',
                           '$filter': "'virtualMachineScaleSet/id' eq '%s'" % set_id},
                          'listing the VMs of Flexible scale set %s (resource group %s)' % (name, rg))

    def _task_set_nics(self, sub, rg, name):
        return self._list(sub, self._set_path(sub, rg, name) + '/networkInterfaces',
                          {'api-version': VMSS_NETWORK_API_VERSION},
                          'listing the network interfaces of scale set %s (resource group %s)' % (name, rg))

    def _task_set_public_ips(self, sub, rg, name):
        return self._list(sub, self._set_path(sub, rg, name) + '/publicipaddresses',
                          {'api-version': VMSS_NETWORK_API_VERSION},
                          'listing the public IP addresses of scale set %s (resource group %s)' % (name, rg))

    def _task_rg_nics(self, sub, rg):
        return self._list(sub, self._rg_path(sub, rg) + '/Microsoft.Network/networkInterfaces',
                          {'api-version': NETWORK_API_VERSION},
                          'listing the network interfaces of resource group %s (subscription %s)' % (rg, sub))

    def _task_rg_public_ips(self, sub, rg):
        return self._list(sub, self._rg_path(sub, rg) + '/Microsoft.Network/publicIPAddresses',
                          {'api-version': NETWORK_API_VERSION},
                          'listing the public IP addresses of resource group %s (subscription %s)' % (rg, sub))

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
                          % (entry['scale_set'].get('name'), parse_resource_id(entry['scale_set'].get('id'))[1]))
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
                listings.append((sub, rg, pool.submit(self._task_scale_sets, sub, rg)))
        readable = set()
        selected = []
        for sub, rg, future in listings:
            try:
                sets = future.result()
            except _Skipped as exc:
                if rg is not None and exc.code == 'resourcegroupnotfound':
                    self.warn('Resource group %s not found in subscription %s; skipped.' % (rg, sub))
                    readable.add(sub)
                elif exc.status in (403, 404):
                    # 403: no permission; 404 SubscriptionNotFound: not visible to this identity
                    self._forbidden(exc)
                continue
            readable.add(sub)
            for scale_set in sets:
                if not name_matches(scale_set.get('name') or '', self.scale_set_patterns):
                    continue
                if not tags_match(scale_set.get('tags'), self.tag_filters):
                    continue
                selected.append((sub, scale_set))
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
            set_id = scale_set.get('id') or ''
            if set_id.lower() in seen:
                continue
            seen.add(set_id.lower())
            rg = parse_resource_id(set_id)[1]
            name = scale_set.get('name')
            entry = {'subscription_id': sub, 'scale_set': scale_set, 'instances': []}
            if orchestration_mode(scale_set) == 'Uniform':
                entry['network_key'] = key = 'vmss:%s' % set_id.lower()
                result['network'][key] = {'nics': [], 'public_ips': []}
                tasks.append(('instances', entry, pool.submit(self._task_uniform_instances, sub, rg, name)))
                tasks.append(('nics', entry, pool.submit(self._task_set_nics, sub, rg, name)))
                if self.public_ips:
                    tasks.append(('public_ips', entry, pool.submit(self._task_set_public_ips, sub, rg, name)))
            else:
                entry['network_key'] = key = 'rg:%s/%s' % (sub.lower(), rg.lower())
                tasks.append(('instances', entry, pool.submit(self._task_flexible_instances, sub, rg, name, set_id)))
                if key not in result['network']:
                    result['network'][key] = {'nics': [], 'public_ips': []}
                    tasks.append(('nics', entry, pool.submit(self._task_rg_nics, sub, rg)))
                    if self.public_ips:
                        tasks.append(('public_ips', entry, pool.submit(self._task_rg_public_ips, sub, rg)))
            result['scale_sets'].append(entry)

        gone = set()
        failures = []
        for kind, entry, future in tasks:
            try:
                items = future.result()
            except _Skipped as exc:
                shared = entry['network_key'].startswith('rg:') and kind != 'instances'
                if exc.vanished and shared:
                    # the resource group of these Flexible scale sets is gone
                    gone.update(id(e) for e in result['scale_sets'] if e['network_key'] == entry['network_key'])
                elif exc.vanished:
                    gone.add(id(entry))
                elif exc.status == 403:
                    try:
                        self._forbidden(exc)
                    except AnsibleError as err:
                        failures.append(to_native(err))
                else:
                    failures.append(to_native(exc))
                continue
            except AnsibleError as exc:
                failures.append(to_native(exc))
                continue
            if kind == 'instances':
                entry['instances'] = items
            else:
                result['network'][entry['network_key']][kind] = items
        if failures:
            unique = []
            for failure in failures:
                if failure not in unique:
                    unique.append(failure)
            raise AnsibleError('The scale-set inventory was not built because it would be incomplete: %s' % ' | '.join(unique))
        return gone


# ---------------------------------------------------------------------------
# The plugin
# ---------------------------------------------------------------------------

class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = 'hashistack.azure.vmss'

    def verify_file(self, path):
        if super().verify_file(path):
            return path.endswith(('vmss.yml', 'vmss.yaml'))
        return False

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path)
        self._read_config_data(path)

        use_cache = bool(self.get_option('cache'))
        cache_key = self._cache_key(path)
        raw = None
        if use_cache and cache:
            try:
                raw = self._cache[cache_key]
            except KeyError:
                raw = None
            if not isinstance(raw, dict) or raw.get('format') != CACHE_FORMAT:
                raw = None
        if raw is None:
            raw = self._fetch()
            if use_cache:
                self._cache[cache_key] = raw

        self._populate(raw)

    # -- fetch --------------------------------------------------------------

    def _fetch_options(self):
        return {
            'subscriptions': list(self.get_option('subscriptions') or []),
            'resource_groups': list(self.get_option('resource_groups') or []),
            'scale_sets': list(self.get_option('scale_sets') or []),
            'tags': self.get_option('tags') or {},
            'public_ips': bool(self.get_option('include_public_ips') or self.get_option('use_public_ip')),
        }

    def _cache_key(self, path):
        digest = hashlib.sha256(json.dumps(self._fetch_options(), sort_keys=True, default=str).encode('utf-8')).hexdigest()[:12]
        return '%s_%s' % (self.get_cache_key(path), digest)

    def _open_session(self, subscriptions):
        return _SessionAdapter(self.get_option, subscriptions)

    def _fetch(self):
        errors, _azure = load_azure()
        options = self._fetch_options()
        session = self._open_session(options['subscriptions'])
        try:
            subscriptions = options['subscriptions'] or [session.default_subscription()]
            fetcher = Fetcher(session,
                              resource_groups=options['resource_groups'],
                              scale_set_patterns=options['scale_sets'],
                              tag_filters=options['tags'],
                              public_ips=options['public_ips'],
                              max_workers=self.get_option('max_workers'),
                              strict_permissions=self.get_option('strict_permissions'),
                              warn=self.display.warning)
            return fetcher.fetch(subscriptions)
        except _azure.AzureModuleError as exc:
            raise AnsibleParserError('hashistack.azure.vmss: %s' % to_native(exc))
        except errors.AzureError as exc:
            raise AnsibleParserError('hashistack.azure.vmss: %s' % _explain(exc, 'setting up Azure authentication', session))
        except AnsibleError as exc:
            raise AnsibleParserError('hashistack.azure.vmss: %s' % to_native(exc))
        finally:
            session.close()

    # -- populate -----------------------------------------------------------

    def _populate(self, raw):
        strict = self.get_option('strict')
        include = [s.lower() for s in self.get_option('include_power_states') or []]
        exclude = [s.lower() for s in self.get_option('exclude_power_states') or []]
        use_public = self.get_option('use_public_ip')
        used_names = {}

        for scale_set, instance, nic_index, sub in iter_instances(raw):
            hostvars = instance_hostvars(scale_set, instance, nic_index, sub)
            state = hostvars['azure_power_state']
            if include and state not in include:
                continue
            if state in exclude:
                continue
            address = hostvars['azure_private_ip']
            if use_public and hostvars['azure_public_ip']:
                address = hostvars['azure_public_ip']
            if address:
                hostvars['ansible_host'] = address
            hostvars = wrap_var(hostvars)

            hostname = self._hostname(hostvars, used_names, strict)
            used_names[hostname] = hostvars['azure_id']
            self.inventory.add_host(hostname)
            for key, value in hostvars.items():
                self.inventory.set_variable(hostname, key, value)

            if self.get_option('default_groups'):
                for group in default_group_names(hostvars):
                    group = self.inventory.add_group(self._sanitize_group_name(group))
                    self.inventory.add_child(group, hostname)

            self._set_composite_vars(self.get_option('compose'), hostvars, hostname, strict=strict)
            self._add_host_to_composed_groups(self.get_option('groups'), hostvars, hostname, strict=strict)
            self._add_host_to_keyed_groups(self.get_option('keyed_groups'), hostvars, hostname, strict=strict)

    def _hostname(self, hostvars, used_names, strict):
        for choice in self.get_option('hostnames') or []:
            if choice in HOSTNAME_CHOICES:
                candidate = hostname_candidate(choice, hostvars)
            else:
                try:
                    candidate = self._compose(choice, hostvars)
                except Exception as exc:
                    if strict:
                        raise AnsibleParserError('Could not evaluate hostname expression %r for %s: %s'
                                                 % (choice, hostvars['azure_id'], to_native(exc)))
                    continue
            if candidate is None or candidate == '':
                continue
            candidate = wrap_var(to_native(candidate))
            if candidate in used_names and used_names[candidate] != hostvars['azure_id']:
                self.display.warning('Hostname %s (from %r) is already used by %s; trying the next hostnames entry for %s.'
                                     % (candidate, choice, used_names[candidate], hostvars['azure_id']))
                continue
            return candidate
        fallback = wrap_var(hostname_candidate('vmss_instance', hostvars))
        self.display.warning('No usable hostname from the hostnames option for %s; using %s.' % (hostvars['azure_id'], fallback))
        return fallback


class ArmPipeline:
    """A minimal ARM client: the azure-core / azure-mgmt-core policy stack of the generated management clients.

    The shared ``AzureSession.client()`` constructs it like any azure-mgmt client (credential, base URL and token
    scope of the cloud, CA bundle, and the collection's retry settings: ``retry_total``, backoff, Retry-After
    honoured by azure-core's RetryPolicy), so authentication and retries stay defined in one place. The inventory
    only sends GETs of list operations, and importing a full management client (its models and operations) would
    cost more start-up time than the whole fetch.
    """

    def __init__(self, credential, subscription_id, base_url='https://management.azure.com/', credential_scopes=None,
                 **kwargs):
        # pylint: disable=import-outside-toplevel
        from azure.core.pipeline import policies
        from azure.mgmt.core import ARMPipelineClient
        from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy

        self.subscription_id = subscription_id
        kwargs.pop('polling_interval', None)
        scopes = list(credential_scopes or [base_url.rstrip('/') + '/.default'])
        user_agent = kwargs.pop('user_agent', None)
        stack = [
            policies.RequestIdPolicy(**kwargs),
            policies.HeadersPolicy(**kwargs),
            policies.UserAgentPolicy(user_agent, sdk_moniker='hashistack-azure-vmss', **kwargs),
            policies.ProxyPolicy(**kwargs),
            policies.ContentDecodePolicy(**kwargs),
            policies.RedirectPolicy(**kwargs),
            policies.RetryPolicy(**kwargs),
            ARMChallengeAuthenticationPolicy(credential, *scopes, **kwargs),
            policies.CustomHookPolicy(**kwargs),
            policies.NetworkTraceLoggingPolicy(**kwargs),
            policies.SensitiveHeaderCleanupPolicy(**kwargs),
            ARMHttpLoggingPolicy(**kwargs),
        ]
        self._client = ARMPipelineClient(base_url=base_url, policies=stack, **kwargs)

    def send_request(self, request, **kwargs):
        request.url = self._client.format_url(request.url)
        return self._client.send_request(request, **kwargs)

    def close(self):
        self._client.close()


class _SessionAdapter:
    """The only place that talks to the shared Azure code (plugins/module_utils/_azure.py).

    The shared ``AzureSession`` (credential, cloud, client options including the per-request retry
    policy that honours Retry-After) is created lazily, so an inventory served from the cache makes no
    request at all. The session builds one ``ArmPipeline`` per subscription with its usual client options;
    the raw JSON of the ARM list requests is kept as is: no per-item model (de)serialization, and the same REST
    shapes as the Azure REST API reference.
    """

    def __init__(self, get_option, subscriptions):
        self._get_option = get_option
        self._subscriptions = list(subscriptions or [])
        self._session = None
        self._clients = {}
        self._retry = None

    @property
    def azure_session(self):
        if self._session is None:
            _azure = load_azure()[1]
            options = _azure.auth_options_from_plugin(self._get_option)
            self._session = _azure.AzureSession(options)
            self._retry = _azure.RetryPolicy(attempts=3, deadline=300)
        return self._session

    def peek_session(self):
        """The shared AzureSession if it was created (never creates it)."""
        return self._session

    def default_subscription(self):
        return self.azure_session.subscription_id

    def prepare(self, subscription_id):
        self._client(subscription_id)

    def _client(self, subscription_id):
        if subscription_id not in self._clients:
            session = self.azure_session
            self._clients[subscription_id] = session.client(ArmPipeline, subscription_id=subscription_id)
        return self._clients[subscription_id]

    def list_pages(self, subscription_id, path, params):
        from azure.core.rest import HttpRequest  # pylint: disable=import-outside-toplevel
        client = self._client(subscription_id)
        url = '%s?%s' % (path, urlencode(params, quote_via=quote, safe="/'"))
        items = []
        seen = set()
        while url:
            response = client.send_request(HttpRequest('GET', url))
            response.raise_for_status()
            body = response.json() or {}
            items.extend(body.get('value') or [])
            url = body.get('nextLink')
            if url in seen:   # a server repeating a nextLink must not loop forever
                break
            seen.add(url)
        return items

    def retry(self, fn):
        if self._retry is None:
            return fn()
        return self._retry.call(fn)

    def close(self):
        for client in self._clients.values():
            close = getattr(client, 'close', None)
            if close is not None:
                close()
        self._clients = {}
