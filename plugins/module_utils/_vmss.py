# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The scale set model of the vmss module, also read by vmss_info and vmss_instance (private API).

``model_from_rest(rest)``      REST scale set -> module model (what the modules return and compare)
``desired_from_params(p)``     module params -> desired model (None = not managed)
``validate_params(p)``         list of input errors, checked before any request
``compare(current, desired)``  -> (ModelDiff, immutable_errors)
``create_body(desired)``       desired model -> REST body for PUT
``patch_body(current, diff)``  changed keys -> REST merge-patch body

Instances are read by ``_vmss_readers``.
"""

from __future__ import annotations

import base64
import hashlib
import re

from ansible_collections.hashistack.azure.plugins.module_utils._diff import ModelDiff, immutable_errors
from ansible_collections.hashistack.azure.plugins.module_utils._ids import parse_resource_id

CUSTOM_DATA_TAG = 'hashistack_custom_data_sha256'
MAX_CUSTOM_DATA_BYTES = 65535
# terminate notification delay Azure accepts (notBeforeTimeout PT5M..PT15M)
NOTICE_MIN, NOTICE_MAX = 5, 15

IMMUTABLE = (
    ('location', 'location'),
    ('orchestration_mode', 'ci'),
    ('zones', 'set'),
    ('platform_fault_domain_count', 'exact'),
    ('admin_username', 'exact'),
    ('computer_name_prefix', 'exact'),
    ('ssh_public_keys', 'set'),
    ('os_disk_type', 'ci'),
)
IMMUTABLE_HINT = {
    'ssh_public_keys': 'manage authorized_keys on the instances with Ansible instead, or recreate the scale set',
    'zones': 'create a new scale set in the wanted zones and move capacity to it',
}
NOUN = 'scale set'

SIZE_RE = re.compile(r'^(Standard|Basic)_[A-Za-z0-9_-]+$')


def custom_data_hash(text):
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def parse_image(value):
    """Image parameter (dict, URN string or id) -> dict(publisher, offer, sku, version) or dict(id)."""
    if value is None:
        return None
    if isinstance(value, dict):
        if value.get('id'):
            return dict(id=value['id'])
        missing = [k for k in ('publisher', 'offer', 'sku') if not value.get(k)]
        if missing:
            raise ValueError('image needs publisher, offer and sku (missing %s) or id' % ', '.join(missing))
        return dict(publisher=value['publisher'], offer=value['offer'], sku=value['sku'], version=str(value.get('version') or 'latest'))
    value = str(value)
    if value.startswith('/'):
        return dict(id=value)
    parts = value.split(':')
    if len(parts) not in (3, 4) or not all(parts):
        raise ValueError('image %r is neither publisher:offer:sku[:version], a dict, nor an image id' % value)
    return dict(publisher=parts[0], offer=parts[1], sku=parts[2], version=parts[3] if len(parts) == 4 else 'latest')


def image_from_rest(ref):
    ref = ref or {}
    if ref.get('id'):
        return dict(id=ref['id'])
    if not ref:
        return None
    return dict(publisher=ref.get('publisher'), offer=ref.get('offer'), sku=ref.get('sku'), version=ref.get('version') or 'latest')


def image_to_rest(image):
    if image.get('id'):
        return dict(id=image['id'])
    return dict(publisher=image['publisher'], offer=image['offer'], sku=image['sku'], version=image['version'])


def _primary(items):
    items = items or []
    for item in items:
        if (item.get('properties') or {}).get('primary'):
            return item
    return items[0] if items else {}


def model_from_rest(rest):
    if rest is None:
        return None
    props = rest.get('properties') or {}
    profile = props.get('virtualMachineProfile') or {}
    storage = profile.get('storageProfile') or {}
    os_profile = profile.get('osProfile') or {}
    linux = os_profile.get('linuxConfiguration') or {}
    nic = _primary((profile.get('networkProfile') or {}).get('networkInterfaceConfigurations'))
    nic_props = nic.get('properties') or {}
    ipconf = _primary(nic_props.get('ipConfigurations'))
    sku = rest.get('sku') or {}
    identity = rest.get('identity') or {}
    tags = dict(rest.get('tags') or {})
    data_hash = tags.pop(CUSTOM_DATA_TAG, None)
    os_disk = storage.get('osDisk') or {}
    return dict(
        id=rest.get('id'),
        name=rest.get('name'),
        location=rest.get('location'),
        vm_size=sku.get('name'),
        capacity=sku.get('capacity'),
        zones=sorted(rest.get('zones') or []),
        orchestration_mode=props.get('orchestrationMode') or 'Uniform',
        image=image_from_rest(storage.get('imageReference')),
        subnet_id=((ipconf.get('properties') or {}).get('subnet') or {}).get('id'),
        network_security_group=(nic_props.get('networkSecurityGroup') or {}).get('id'),
        admin_username=os_profile.get('adminUsername'),
        computer_name_prefix=os_profile.get('computerNamePrefix'),
        ssh_public_keys=sorted(k.get('keyData') for k in (linux.get('ssh') or {}).get('publicKeys') or []),
        custom_data_sha256=data_hash,
        tags=tags,
        identity=identity.get('type') or 'None',
        principal_id=identity.get('principalId'),
        upgrade_policy=(props.get('upgradePolicy') or {}).get('mode'),
        overprovision=bool(props.get('overprovision', False)),
        platform_fault_domain_count=props.get('platformFaultDomainCount'),
        os_disk_type=(os_disk.get('managedDisk') or {}).get('storageAccountType'),
        os_disk_size_gb=os_disk.get('diskSizeGB'),
        terminate_notification_minutes=_notice_minutes(profile),
        scale_in_policy=((props.get('scaleInPolicy') or {}).get('rules') or ['Default'])[0],
        provisioning_state=props.get('provisioningState'),
        unique_id=props.get('uniqueId'),
    )


def desired_from_params(p):
    """Desired model from module params; None means "leave as it is"."""
    image = parse_image(p.get('image'))
    return dict(
        name=p['name'],
        location=p.get('location'),
        vm_size=p.get('vm_size'),
        capacity=p.get('capacity'),
        zones=sorted(str(z) for z in p['zones']) if p.get('zones') is not None else None,
        orchestration_mode=p.get('orchestration_mode'),
        image=image,
        subnet_id=p.get('subnet_id'),
        network_security_group=p.get('network_security_group'),
        admin_username=p.get('admin_username'),
        computer_name_prefix=p.get('computer_name_prefix'),
        ssh_public_keys=sorted(k.strip() for k in p['ssh_public_keys']) if p.get('ssh_public_keys') is not None else None,
        custom_data_sha256=custom_data_hash(p['custom_data']) if p.get('custom_data') is not None else None,
        tags=p.get('tags'),
        identity=p.get('identity'),
        upgrade_policy=p.get('upgrade_policy'),
        overprovision=p.get('overprovision'),
        platform_fault_domain_count=p.get('platform_fault_domain_count'),
        os_disk_type=p.get('os_disk_type'),
        os_disk_size_gb=p.get('os_disk_size_gb'),
        terminate_notification_minutes=p.get('terminate_notification_minutes'),
        scale_in_policy=p.get('scale_in_policy'),
    )


def validate_params(p):
    """Errors in the parameters, found without talking to Azure."""
    errors = []
    if p.get('capacity') is not None and p['capacity'] < 0:
        errors.append('capacity must be 0 or more, got %s' % p['capacity'])
    if p.get('vm_size') is not None and not SIZE_RE.match(p['vm_size']):
        errors.append('vm_size %r is not an Azure VM size name like Standard_D2s_v3' % p['vm_size'])
    for zone in p.get('zones') or []:
        if str(zone) not in ('1', '2', '3'):
            errors.append('zones: %r is not one of 1, 2, 3' % zone)
    try:
        parse_image(p.get('image'))
    except ValueError as exc:
        errors.append(str(exc))
    if p.get('subnet_id') is not None:
        parts = parse_resource_id(p['subnet_id'])
        if (parts.get('type') or '').lower() != 'virtualnetworks/subnets' or not parts.get('resource_group'):
            errors.append('subnet_id %r is not a subnet id like /subscriptions/<sub>/resourceGroups/<rg>/providers/'
                          'Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>' % p['subnet_id'])
    for key in p.get('ssh_public_keys') or []:
        if not re.match(r'^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-\S+|sk-\S+) [A-Za-z0-9+/=]+', key.strip()):
            errors.append('ssh_public_keys: %r... is not an OpenSSH public key' % key.strip()[:30])
    if p.get('custom_data') is not None and len(p['custom_data'].encode('utf-8')) > MAX_CUSTOM_DATA_BYTES:
        errors.append('custom_data is %d bytes; Azure accepts at most %d' % (len(p['custom_data'].encode('utf-8')), MAX_CUSTOM_DATA_BYTES))
    if p.get('admin_username') is not None and not re.match(r'^[a-z_][a-z0-9_-]{0,63}$', p['admin_username']):
        errors.append('admin_username %r is not a valid Linux user name' % p['admin_username'])
    if p.get('orchestration_mode') == 'Flexible' and p.get('overprovision'):
        errors.append('overprovision is not supported with orchestration_mode=Flexible')
    minutes = p.get('terminate_notification_minutes')
    if minutes is not None and minutes != 0 and not NOTICE_MIN <= minutes <= NOTICE_MAX:
        errors.append('terminate_notification_minutes must be 0 (off) or %d to %d (Azure\'s notBeforeTimeout range), got %s'
                      % (NOTICE_MIN, NOTICE_MAX, minutes))
    return errors


def compare(current, desired, purge_tags=False):
    """Return (ModelDiff, list of immutable-field errors)."""
    d = ModelDiff(current)
    errors = immutable_errors(current, desired, IMMUTABLE, NOUN, IMMUTABLE_HINT)
    d.compare('vm_size', desired.get('vm_size'), 'ci')
    d.compare('capacity', desired.get('capacity'))
    d.compare('image', desired.get('image'), 'dict')
    d.compare('subnet_id', desired.get('subnet_id'), 'ci')
    d.compare('network_security_group', desired.get('network_security_group'), 'ci')
    d.compare('custom_data_sha256', desired.get('custom_data_sha256'))
    d.compare('identity', desired.get('identity'), 'ci')
    d.compare('upgrade_policy', desired.get('upgrade_policy'), 'ci')
    d.compare('overprovision', desired.get('overprovision'))
    d.compare('os_disk_size_gb', desired.get('os_disk_size_gb'))
    d.compare('terminate_notification_minutes', desired.get('terminate_notification_minutes'))
    d.compare('scale_in_policy', desired.get('scale_in_policy'), 'ci')
    d.compare_tags(desired.get('tags'), purge_tags)
    return d, errors


def _nic_config(model, name):
    nic = dict(primary=True, ipConfigurations=[dict(name='%s-ipconfig' % name, properties=dict(primary=True, subnet=dict(id=model['subnet_id'])))])
    if model.get('network_security_group'):
        nic['networkSecurityGroup'] = dict(id=model['network_security_group'])
    return [dict(name='%s-nic' % name, properties=nic)]


def _notice_minutes(profile):
    """Minutes of the terminate notification in a VM profile; 0 when it is off."""
    notice = (profile.get('scheduledEventsProfile') or {}).get('terminateNotificationProfile') or {}
    if not notice.get('enable', True if notice.get('notBeforeTimeout') else False):
        return 0
    match = re.match(r'^PT(\d+)M$', notice.get('notBeforeTimeout') or 'PT5M')   # Azure's default is PT5M
    return int(match.group(1)) if match else 0


def _events_profile(minutes):
    if not minutes:
        return dict(terminateNotificationProfile=dict(enable=False))
    return dict(terminateNotificationProfile=dict(enable=True, notBeforeTimeout='PT%dM' % minutes))


def _tags_body(model):
    tags = dict(model.get('tags') or {})
    if model.get('custom_data_sha256'):
        tags[CUSTOM_DATA_TAG] = model['custom_data_sha256']
    return tags


def create_body(model, custom_data):
    """REST body for creating a scale set from a complete desired model."""
    name = model['name']
    flexible = model['orchestration_mode'] == 'Flexible'
    os_profile = dict(
        computerNamePrefix=model['computer_name_prefix'],
        adminUsername=model['admin_username'],
        linuxConfiguration=dict(
            disablePasswordAuthentication=True,
            ssh=dict(publicKeys=[dict(path='/home/%s/.ssh/authorized_keys' % model['admin_username'], keyData=k)
                                 for k in model['ssh_public_keys']]),
        ),
    )
    if custom_data is not None:
        os_profile['customData'] = base64.b64encode(custom_data.encode('utf-8')).decode('ascii')
    os_disk = dict(createOption='FromImage', caching='ReadWrite', managedDisk=dict(storageAccountType=model['os_disk_type']))
    if model.get('os_disk_size_gb'):
        os_disk['diskSizeGB'] = model['os_disk_size_gb']
    network = dict(networkInterfaceConfigurations=_nic_config(model, name))
    if flexible:
        network['networkApiVersion'] = '2020-11-01'
    props = dict(
        orchestrationMode=model['orchestration_mode'],
        upgradePolicy=dict(mode=model['upgrade_policy']),
        virtualMachineProfile=dict(
            storageProfile=dict(imageReference=image_to_rest(model['image']), osDisk=os_disk),
            osProfile=os_profile,
            networkProfile=network,
        ),
    )
    if model.get('terminate_notification_minutes'):
        props['virtualMachineProfile']['scheduledEventsProfile'] = _events_profile(model['terminate_notification_minutes'])
    if model.get('scale_in_policy'):
        props['scaleInPolicy'] = dict(rules=[model['scale_in_policy']])
    if not flexible:
        props['overprovision'] = bool(model['overprovision'])
    if model.get('platform_fault_domain_count') is not None:
        props['platformFaultDomainCount'] = model['platform_fault_domain_count']
    body = dict(location=model['location'], tags=_tags_body(model), sku=dict(name=model['vm_size'], tier='Standard', capacity=model['capacity']),
                properties=props)
    if model.get('zones'):
        body['zones'] = model['zones']
    if model.get('identity') and model['identity'] != 'None':
        body['identity'] = dict(type=model['identity'])
    return body


def patch_body(after, changed_keys, custom_data, before=None):
    """Merge-patch (RFC 7396, as ARM PATCH) body carrying only the changed parts.

    ``after`` is the complete model after the change; tags removed relative to ``before`` are sent as null.
    """
    body = {}
    props = {}
    profile = {}
    keys = set(changed_keys)
    if keys & set(['vm_size', 'capacity']):
        body['sku'] = dict(name=after['vm_size'], capacity=after['capacity'], tier='Standard')
    if 'tags' in keys or 'custom_data_sha256' in keys:
        body['tags'] = _tags_body(after)
        for key in (before or {}).get('tags') or {}:
            if key not in body['tags']:
                body['tags'][key] = None
    if 'identity' in keys:
        body['identity'] = dict(type=after['identity'])
    if 'upgrade_policy' in keys:
        props['upgradePolicy'] = dict(mode=after['upgrade_policy'])
    if 'overprovision' in keys:
        props['overprovision'] = after['overprovision']
    if 'scale_in_policy' in keys:
        props['scaleInPolicy'] = dict(rules=[after['scale_in_policy']])
    if 'terminate_notification_minutes' in keys:
        profile['scheduledEventsProfile'] = _events_profile(after['terminate_notification_minutes'])
    if 'image' in keys:
        profile.setdefault('storageProfile', {})['imageReference'] = image_to_rest(after['image'])
    if 'os_disk_size_gb' in keys:
        profile.setdefault('storageProfile', {})['osDisk'] = dict(diskSizeGB=after['os_disk_size_gb'])
    if 'custom_data_sha256' in keys and custom_data is not None:
        profile['osProfile'] = dict(customData=base64.b64encode(custom_data.encode('utf-8')).decode('ascii'))
    if keys & set(['subnet_id', 'network_security_group']):
        profile['networkProfile'] = dict(networkInterfaceConfigurations=_nic_config(after, after['name']))
    if profile:
        props['virtualMachineProfile'] = profile
    if props:
        body['properties'] = props
    return body
