# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reading scale sets and their instances from ARM's REST shapes (private API; pure, no SDK needed).

One behaviour for everything that reads instances: the ``vmss_info`` and ``vmss_instance`` modules and the
``vmss`` inventory plugin.

The fetch plan (what to list, never one call per instance):
``scale_sets_request(sub, rg=None)``          the scale sets of a resource group, or of the subscription.
``scale_set_request(sub, rg, name)``          one scale set (a GET).
``instances_request(sub, scale_set)``         Uniform: the set's VMs; Flexible: the resource group's VMs filtered on
                                              the server to this set. Both with instance view (power state).
``network_key(sub, scale_set)`` / ``network_requests(sub, scale_set, public_ips)``
                                              Uniform: the set's NIC (and public IP) views; Flexible: the resource
                                              group's NICs (and public IPs), listed once for all its Flexible sets.

The readers:
``tags_match(tags, wanted)``                  the tag filter rule users rely on (see below).
``orchestration_mode(scale_set)``             'Uniform' or 'Flexible'.
``power_state(vm)``                           suffix of the PowerState/... status, lower case; 'unknown' without one.
``provisioning_state(vm)``                    the VM's provisioningState (or its instance view status).
``index_nics(nics, public_ips)``              NIC list -> index of private and public IPs by VM (primary first).
``members(scale_set, vms)``                   the VMs that belong to the set, in instance-id order.
``instance_from_rest(vm, nic_index, scale_set=None)``  one instance's facts.

Tag matching: a scale set matches when it carries every wanted tag. Tag names match case-insensitively (Azure
treats them so); values match exactly (case-sensitive); a list of values accepts any of them; a null value only
requires the tag to exist.
"""

from __future__ import annotations

from collections import namedtuple
from urllib.parse import quote

from ansible_collections.hashistack.azure.plugins.module_utils._ids import parse_resource_id

# ARM API versions of the reads (all GET).
COMPUTE_API_VERSION = '2024-11-01'
NETWORK_API_VERSION = '2024-05-01'
VMSS_NETWORK_API_VERSION = '2018-10-01'   # the scale-set NIC / public IP views only exist in this version

ListRequest = namedtuple('ListRequest', 'path params what')


def _props(resource):
    return (resource or {}).get('properties') or {}


# ---------------------------------------------------------------------------------------------- the fetch plan

def _rg_path(sub, rg):
    return '/subscriptions/%s/resourceGroups/%s/providers' % (quote(sub, safe=''), quote(rg, safe=''))


def _set_path(sub, rg, name):
    return _rg_path(sub, rg) + '/Microsoft.Compute/virtualMachineScaleSets/%s' % quote(name, safe='')


def _where(scale_set):
    """(resource group, name) of a scale set (REST dict)."""
    return parse_resource_id(scale_set.get('id')).get('resource_group'), scale_set.get('name')


def scale_sets_request(sub, rg=None):
    if rg is None:
        return ListRequest('/subscriptions/%s/providers/Microsoft.Compute/virtualMachineScaleSets' % quote(sub, safe=''),
                           {'api-version': COMPUTE_API_VERSION}, 'listing the scale sets of subscription %s' % sub)
    return ListRequest(_rg_path(sub, rg) + '/Microsoft.Compute/virtualMachineScaleSets', {'api-version': COMPUTE_API_VERSION},
                       'listing the scale sets of resource group %s (subscription %s)' % (rg, sub))


def scale_set_request(sub, rg, name):
    return ListRequest(_set_path(sub, rg, name), {'api-version': COMPUTE_API_VERSION},
                       'reading scale set %s in resource group %s' % (name, rg))


def instances_request(sub, scale_set):
    rg, name = _where(scale_set)
    if orchestration_mode(scale_set) == 'Uniform':
        return ListRequest(_set_path(sub, rg, name) + '/virtualMachines',
                           {'api-version': COMPUTE_API_VERSION, '$expand': 'instanceView'},
                           'listing the instances of scale set %s (resource group %s)' % (name, rg))
    return ListRequest(_rg_path(sub, rg) + '/Microsoft.Compute/virtualMachines',
                       {'api-version': COMPUTE_API_VERSION, '$expand': 'instanceView',
                        '$filter': "'virtualMachineScaleSet/id' eq '%s'" % scale_set.get('id')},
                       'listing the VMs of Flexible scale set %s (resource group %s)' % (name, rg))


def network_key(sub, scale_set):
    """Scale sets with the same key share one NIC (and public IP) listing."""
    if orchestration_mode(scale_set) == 'Uniform':
        return 'vmss:%s' % (scale_set.get('id') or '').lower()
    return 'rg:%s/%s' % (sub.lower(), _where(scale_set)[0].lower())


def network_requests(sub, scale_set, public_ips=False):
    """[(kind, ListRequest)] with kind 'nics' or 'public_ips'."""
    rg, name = _where(scale_set)
    if orchestration_mode(scale_set) == 'Uniform':
        base, version, of = _set_path(sub, rg, name), VMSS_NETWORK_API_VERSION, 'scale set %s (resource group %s)' % (name, rg)
        paths = dict(nics=base + '/networkInterfaces', public_ips=base + '/publicipaddresses')
    else:
        base, version, of = _rg_path(sub, rg), NETWORK_API_VERSION, 'resource group %s (subscription %s)' % (rg, sub)
        paths = dict(nics=base + '/Microsoft.Network/networkInterfaces', public_ips=base + '/Microsoft.Network/publicIPAddresses')
    plan = [('nics', ListRequest(paths['nics'], {'api-version': version}, 'listing the network interfaces of ' + of))]
    if public_ips:
        plan.append(('public_ips', ListRequest(paths['public_ips'], {'api-version': version}, 'listing the public IP addresses of ' + of)))
    return plan


# ---------------------------------------------------------------------------------------------- the readers

def tags_match(tags, wanted):
    """True when ``tags`` carry every wanted tag (the rule in the module docstring)."""
    if not wanted:
        return True
    lowered = dict((k.lower(), v) for k, v in (tags or {}).items())
    for name, value in wanted.items():
        key = name.lower()
        if key not in lowered:
            return False
        if value is None:
            continue
        accepted = value if isinstance(value, (list, tuple)) else [value]
        if lowered[key] not in [str(v) for v in accepted]:
            return False
    return True


def orchestration_mode(scale_set):
    mode = _props(scale_set).get('orchestrationMode') or 'Uniform'
    return 'Flexible' if mode.lower() == 'flexible' else 'Uniform'


def _statuses(vm):
    return (_props(vm).get('instanceView') or {}).get('statuses') or []


def power_state(vm):
    for status in _statuses(vm):
        code = status.get('code') or ''
        if code.lower().startswith('powerstate/'):
            return code.split('/', 1)[1].lower()
    return 'unknown'


def provisioning_state(vm):
    state = _props(vm).get('provisioningState')
    if state:
        return state
    for status in _statuses(vm):
        code = status.get('code') or ''
        if code.lower().startswith('provisioningstate/'):
            return code.split('/', 1)[1]
    return None


def _index_public_ips(public_ips):
    """Lower-cased public IP id and ip configuration id -> address."""
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


def _primary_first(items):
    return sorted(items or [], key=lambda item: 0 if _props(item).get('primary') else 1)


def index_nics(nics, public_ips=None):
    """Lower-cased VM id -> {'private_ips': [...], 'public_ips': [...]} (primary NIC and configuration first).

    Also indexes by ('nic', lower-cased NIC id), so an instance can be matched from its networkProfile when the
    NIC does not name its VM.
    """
    public_by_id = _index_public_ips(public_ips)
    index = {}
    for nic in _primary_first(nics):
        private, public = [], []
        for config in _primary_first(_props(nic).get('ipConfigurations')):
            cprops = _props(config)
            if cprops.get('privateIPAddress'):
                private.append(cprops['privateIPAddress'])
            pip = cprops.get('publicIPAddress') or {}
            address = (_props(pip).get('ipAddress') or public_by_id.get((pip.get('id') or '').lower())
                       or public_by_id.get((config.get('id') or '').lower()))
            if address:
                public.append(address)
        keys = []
        vm_id = (_props(nic).get('virtualMachine') or {}).get('id')
        if vm_id:
            keys.append(vm_id.lower())
        if nic.get('id'):
            keys.append(('nic', nic['id'].lower()))
        for key in keys:
            entry = index.setdefault(key, {'private_ips': [], 'public_ips': []})
            entry['private_ips'].extend(private)
            entry['public_ips'].extend(public)
    return index


def _addresses(vm, nic_index):
    entry = nic_index.get((vm.get('id') or '').lower())
    if entry is not None:
        return list(entry['private_ips']), list(entry['public_ips'])
    private, public = [], []
    for ref in _primary_first((_props(vm).get('networkProfile') or {}).get('networkInterfaces')):
        found = nic_index.get(('nic', (ref.get('id') or '').lower()))
        if found:
            private.extend(found['private_ips'])
            public.extend(found['public_ips'])
    return private, public


def _instance_id(vm):
    """The scale-set instance id; Flexible VMs have none and are known by their name."""
    return vm.get('instanceId') if vm.get('instanceId') is not None else vm.get('name')


def _sort_key(vm):
    iid = _instance_id(vm)
    if iid is not None and str(iid).isdigit():
        return (0, int(iid), '')
    return (1, 0, str(iid or '').lower())


def members(scale_set, vms):
    """The VMs of ``vms`` that belong to ``scale_set`` (a Flexible listing is checked again), sorted by instance id."""
    if orchestration_mode(scale_set) == 'Flexible':
        set_id = (scale_set.get('id') or '').lower()
        vms = [vm for vm in vms if ((_props(vm).get('virtualMachineScaleSet') or {}).get('id') or '').lower() == set_id]
    return sorted(vms, key=_sort_key)


def instance_from_rest(vm, nic_index, scale_set=None):
    """One instance's facts from its REST VM (with instance view when listed so), the NIC index and its scale set."""
    scale_set = scale_set or {}
    props = _props(vm)
    mode = orchestration_mode(scale_set)
    ids = parse_resource_id(vm.get('id') or scale_set.get('id'))
    private, public = _addresses(vm, nic_index)
    view = props.get('instanceView') or {}
    instance_id = _instance_id(vm)
    protection = props.get('protectionPolicy') or {}
    set_hardware = (_props(scale_set).get('virtualMachineProfile') or {}).get('hardwareProfile') or {}
    return dict(
        id=vm.get('id'),
        name=vm.get('name'),
        instance_id=str(instance_id) if instance_id is not None else None,
        computer_name=(props.get('osProfile') or {}).get('computerName') or view.get('computerName'),
        vm_id=props.get('vmId'),
        vmss_name=scale_set.get('name'),
        vmss_id=scale_set.get('id'),
        orchestration_mode=mode,
        subscription_id=ids.get('subscription'),
        resource_group=ids.get('resource_group'),
        location=vm.get('location') or scale_set.get('location'),
        zone=(vm.get('zones') or [None])[0],
        vm_size=((vm.get('sku') or {}).get('name') or (props.get('hardwareProfile') or {}).get('vmSize')
                 or (scale_set.get('sku') or {}).get('name') or set_hardware.get('vmSize')),
        private_ip=private[0] if private else None,
        private_ips=private,
        public_ip=public[0] if public else None,
        public_ips=public,
        power_state=power_state(vm),
        provisioning_state=provisioning_state(vm),
        latest_model_applied=props.get('latestModelApplied') if mode == 'Uniform' else None,
        protect_from_scale_in=bool(protection.get('protectFromScaleIn', False)),
        protect_from_scale_set_actions=bool(protection.get('protectFromScaleSetActions', False)),
        tags=dict(vm.get('tags') or {}),
    )
