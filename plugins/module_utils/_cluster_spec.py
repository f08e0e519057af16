# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The cluster spec (``hashistack_spec``): schema, defaults, validation and derivation (private API).

This is the one home of the cluster contract: the module ``hashistack.azure.cluster_spec``, the
inventory plugin, the ``azure_infra`` role and the consul/nomad roles all use it.

``OPTIONS``           the schema, an Ansible argument spec (the module's ``spec`` suboptions)
``normalize(spec)``   user spec -> normalized cluster (see the module's RETURN), or raises ``SpecError``
``pool_nomad_datacenter(pool, location)``  the pool -> Nomad datacenter rule
``TAG_*`` / ``CLUSTER_TAGS``  the tags written on every scale set (read back by the inventory plugin)
"""

from __future__ import annotations

import hashlib
import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.hashistack.azure.plugins.module_utils import _network
from ansible_collections.hashistack.azure.plugins.module_utils._ids import GUID_RE
from ansible_collections.hashistack.azure.plugins.module_utils._vmss import parse_image, validate_params as vmss_errors

# ---------------------------------------------------------------------------------------------- tags
TAG_CLUSTER = 'hashistack_cluster'
TAG_ROLE = 'hashistack_role'
TAG_POOL = 'hashistack_pool'
TAG_CONSUL_DC = 'hashistack_consul_datacenter'
TAG_NOMAD_REGION = 'hashistack_nomad_region'
TAG_NOMAD_DC = 'hashistack_nomad_datacenter'
CLUSTER_TAGS = (TAG_CLUSTER, TAG_ROLE, TAG_POOL, TAG_CONSUL_DC, TAG_NOMAD_REGION, TAG_NOMAD_DC)

# ---------------------------------------------------------------------------------------------- names, defaults
SERVER_POOL = 'servers'
ROLE_SERVER = 'server'
ROLE_CLIENT = 'client'
SUBNET_NAME = 'nodes'
NSG_SUFFIX = 'nodes'
# Key Vault secret names of the gossip keys: azure_infra stores them, the boot path reads them.
GOSSIP_SECRETS = {'consul': 'consul-gossip-key', 'nomad': 'nomad-gossip-key'}
# the versions the collection is tested with (the newer pair of the sandbox release mirror)
CONSUL_VERSION = '1.20.1'
NOMAD_VERSION = '1.9.3'
VM_SIZE = 'Standard_B2s'
IMAGE = 'Debian:debian-12:12-gen2:latest'
ADMIN_USER = 'azureuser'
# derived address spaces: 10.77.0.0/16 for the first location, 10.78.0.0/16 for the next, ...
# (away from the 10.0.x ranges most networks already use, so peering with them stays possible)
DERIVED_SECOND_OCTET = 77
VALID_SERVER_COUNTS = (1, 3, 5, 7)
SPEC_NAME = 'hashistack_spec'
DOCS = 'ansible-doc hashistack.azure.cluster_spec'

NAME_RE = re.compile(r'^[a-z0-9][a-z0-9-]{0,30}$')             # cluster and pool names (part of Azure names)
CONSUL_DC_RE = re.compile(r'^[a-z0-9][a-z0-9_-]{0,63}$')
NOMAD_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$')  # Nomad region and datacenter
LOCATION_RE = re.compile(r'^[a-z][a-z0-9]{1,39}$')
RESOURCE_GROUP_RE = re.compile(r'^[-\w.()]{0,89}[-\w()]$')
VERSION_RE = re.compile(r'^\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$')
NODE_CLASS_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$')

# ---------------------------------------------------------------------------------------------- schema
# Every default the schema can state is here; defaults that depend on other fields (resource group,
# locations, pool sizes, networks, ssh_sources, node_class) are filled in by normalize().
OPTIONS = dict(
    cluster=dict(type='str', required=True),
    azure=dict(type='dict', required=True, options=dict(
        subscription_id=dict(type='str'),
        resource_group=dict(type='str'),
        location=dict(type='str', required=True),
    )),
    consul_datacenter=dict(type='str', default='dc1'),
    nomad_region=dict(type='str', default='global'),
    consul_version=dict(type='str', default=CONSUL_VERSION),
    nomad_version=dict(type='str', default=NOMAD_VERSION),
    image=dict(type='str', default=IMAGE),
    admin_user=dict(type='str', default=ADMIN_USER),
    ssh_public_keys=dict(type='list', elements='str', default=[], no_log=False),
    ssh_sources=dict(type='list', elements='str'),
    servers=dict(type='dict', default={}, apply_defaults=True, options=dict(
        count=dict(type='int', default=3),
        vm_size=dict(type='str', default=VM_SIZE),
        location=dict(type='str'),
        zones=dict(type='list', elements='str', default=[]),
    )),
    pools=dict(type='list', elements='dict', default=[], options=dict(
        name=dict(type='str', required=True),
        count=dict(type='int', default=1),
        vm_size=dict(type='str'),
        location=dict(type='str'),
        zones=dict(type='list', elements='str', default=[]),
        nomad_datacenter=dict(type='str'),
        node_class=dict(type='str'),
        # in the schema only to be refused with the reason (a pool never leaves the cluster's DC/region)
        consul_datacenter=dict(type='str'),
        nomad_region=dict(type='str'),
    )),
    networks=dict(type='dict'),
)


class SpecError(Exception):
    """The spec is invalid; the message lists every problem (field, cause, fix)."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__('%s is not valid (schema: %s):\n- %s' % (SPEC_NAME, DOCS, '\n- '.join(self.errors)))


def pool_nomad_datacenter(nomad_datacenter, location):
    """THE pool -> Nomad datacenter rule: the pool's own nomad_datacenter, else its location."""
    return nomad_datacenter or location


def scale_set_name(cluster, pool):
    return '%s-%s' % (cluster, pool)


def network_name(cluster, location):
    return '%s-%s' % (cluster, location)


def nsg_name(cluster, location):
    # one per location: Azure attaches an NSG only to NICs of its own region
    return '%s-%s-%s' % (cluster, NSG_SUFFIX, location)


def key_vault_name(cluster, subscription_id, resource_group):
    """Vault names are global DNS labels (3-24 letters, digits, single hyphens, starting with a letter): the
    cluster name cut short, plus a hash of where the cluster lives so two subscriptions' 'prod' do not collide."""
    stem = re.sub('-+', '-', cluster).strip('-')[:12].strip('-')
    digest = hashlib.sha256(('%s/%s/%s' % (subscription_id or '', resource_group, cluster)).encode()).hexdigest()[:8]
    return 'hs-%s-%s' % (stem, digest) if stem else 'hs-%s' % digest


def _drop_none(value):
    """YAML's empty values (``pools:``) mean 'not set', as for module options."""
    if isinstance(value, dict):
        return dict((k, _drop_none(v)) for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _schema_errors(spec):
    """Types, required keys and unknown keys, by Ansible's own argument spec validator."""
    result = ArgumentSpecValidator(OPTIONS).validate(spec)
    errors = []
    for err in result.errors:
        if isinstance(err, UnsupportedError):
            # the message starts with the unknown keys ('a, pools.b. Supported parameters include: ...')
            keys = err.msg.split('. Supported parameters include')[0].split(', ')
            errors.append('unknown key(s) %s: remove them or fix their spelling (schema: %s)'
                          % (', '.join('%s.%s' % (SPEC_NAME, k) for k in keys), DOCS))
        else:
            errors.append('%s: %s' % (SPEC_NAME, err.msg))
    return result.validated_parameters, errors


def _check(errors, value, regex, field, what):
    if value is not None and not regex.match(str(value)):
        errors.append('%s.%s %r is not a valid %s' % (SPEC_NAME, field, value, what))


def _server_count_error(count):
    field = '%s.servers.count' % SPEC_NAME
    if count < 1:
        return ('%s is %d: a cluster needs servers to elect a leader; set 3 (tolerates one failure), '
                'or 1 for a test cluster' % (field, count))
    if count > max(VALID_SERVER_COUNTS):
        return ('%s is %d: more than 7 servers slow down every write (each one must be replicated to a '
                'majority); set 5 or 7 and add client pools for capacity' % (field, count))
    if count % 2 == 0:
        return ('%s is %d, an even number: %d servers tolerate no more failures than %d (a majority of %d is %d) '
                'and can split a vote in half; set %d or %d'
                % (field, count, count, count - 1, count, count // 2 + 1, count - 1, count + 1))
    return None


def _pools(p, errors):
    """User pools -> [(name, pool dict with the defaults applied)], the server pool first."""
    servers = p['servers']
    location = p['azure']['location']
    pools = [(SERVER_POOL, dict(role=ROLE_SERVER, count=servers['count'], vm_size=servers['vm_size'],
                                location=servers.get('location') or location, zones=servers['zones'],
                                nomad_datacenter=None, node_class=None))]
    seen = set()
    for i, pool in enumerate(p['pools']):
        name = pool.get('name')
        field = 'pools[%d] (%s)' % (i, name)
        for key, value, what in (('consul_datacenter', p['consul_datacenter'], 'Consul datacenter'),
                                 ('nomad_region', p['nomad_region'], 'Nomad region')):
            if pool.get(key) is not None:
                errors.append('%s.%s.%s is set (%r): a pool cannot have its own %s - every pool is in the cluster\'s '
                              '%s.%s (%r), which spans all locations; remove it (to give the pool its own Nomad '
                              'datacenter, set nomad_datacenter)' % (SPEC_NAME, field, key, pool[key], what, SPEC_NAME, key, value))
        if name == SERVER_POOL:
            errors.append('%s.%s.name: %r is the server group\'s name; configure the servers under %s.servers and '
                          'give the client pool another name' % (SPEC_NAME, field, name, SPEC_NAME))
            continue
        if not NAME_RE.match(name or ''):
            errors.append('%s.%s.name %r is not a valid pool name: 1-31 lowercase letters, digits and -, starting with '
                          'a letter or digit (it is part of the scale set name)' % (SPEC_NAME, field, name))
            continue
        if name in seen:
            errors.append('%s.%s.name: pool %r is defined twice; give each pool a unique name' % (SPEC_NAME, field, name))
            continue
        seen.add(name)
        if pool['count'] < 0:
            errors.append('%s.%s.count is %d: set 0 (an empty pool) or more' % (SPEC_NAME, field, pool['count']))
        pools.append((name, dict(role=ROLE_CLIENT, count=pool['count'], vm_size=pool.get('vm_size') or servers['vm_size'],
                                 location=pool.get('location') or location, zones=pool['zones'],
                                 nomad_datacenter=pool.get('nomad_datacenter'), node_class=pool.get('node_class'))))
    for name, pool in pools:
        field = 'servers' if name == SERVER_POOL else 'pools (%s)' % name
        _check(errors, pool['location'], LOCATION_RE, field + '.location',
               'Azure location name: use the short lowercase name, for example westeurope (az account list-locations -o table)')
        pool['nomad_datacenter'] = pool_nomad_datacenter(pool['nomad_datacenter'], pool['location'])
        _check(errors, pool['nomad_datacenter'], NOMAD_NAME_RE, field + '.nomad_datacenter',
               'Nomad datacenter: letters, digits, _ and -, starting with a letter or digit')
        pool['node_class'] = pool['node_class'] or name
        _check(errors, pool['node_class'], NODE_CLASS_RE, field + '.node_class', 'Nomad node class: letters, digits, _ . -')
        for err in vmss_errors(dict(vm_size=pool['vm_size'], zones=pool['zones'])):
            errors.append('%s.%s: %s' % (SPEC_NAME, field, err))
        pool['zones'] = [str(z) for z in pool['zones']]
    return pools


def _locations(pools):
    """Locations in order: the servers', then each pool's in the order of the pools."""
    out = []
    for dummy, pool in pools:
        if pool['location'] not in out:
            out.append(pool['location'])
    return out


def _networks(given, locations, errors):
    """{location: canonical CIDR}: the given address spaces, or derived ones when none is given."""
    if not given:
        if len(locations) + DERIVED_SECOND_OCTET > 255:
            errors.append('%s.networks: too many locations to derive address spaces; give them' % SPEC_NAME)
            return {}
        return dict((loc, '10.%d.0.0/16' % (DERIVED_SECOND_OCTET + i)) for i, loc in enumerate(locations))
    spaces = {}
    for loc, cidr in given.items():
        if loc not in locations:
            errors.append('%s.networks.%s: no server group or pool is in %s; remove it or put a pool there (locations in '
                          'use: %s)' % (SPEC_NAME, loc, loc, ', '.join(locations)))
            continue
        try:
            spaces[loc] = _network.validate_prefix(cidr, '%s.networks.%s' % (SPEC_NAME, loc))
        except ValueError as exc:
            errors.append('%s; give an address space like 10.77.0.0/16' % exc)
            continue
        if _network.netaddr.IPNetwork(spaces[loc]).size < 256:
            errors.append('%s.networks.%s: %s is smaller than a /24, the size of the nodes subnet; give a /24 or larger'
                          % (SPEC_NAME, loc, spaces[loc]))
    missing = [loc for loc in locations if loc not in given]
    if missing:
        errors.append('%s.networks has no address space for %s (used by the servers or a pool): add one per location, '
                      'or leave networks out to derive them all' % (SPEC_NAME, ', '.join(missing)))
    nets = [(loc, _network.netaddr.IPNetwork(cidr)) for loc, cidr in spaces.items()]
    for i, (loc_a, a) in enumerate(nets):
        for loc_b, b in nets[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                errors.append('%s.networks: %s (%s) and %s (%s) overlap; peered networks need disjoint address spaces, '
                              'give each location its own range' % (SPEC_NAME, loc_a, a, loc_b, b))
    return spaces


def _first_24(cidr):
    net = _network.netaddr.IPNetwork(cidr)
    return str(_network.netaddr.IPNetwork('%s/%d' % (net.network, max(net.prefixlen, 24))).cidr)


def normalize(spec):
    """User spec -> normalized cluster (the module's RV(cluster)); raises SpecError listing every problem."""
    if not _network.HAS_NETADDR:
        raise SpecError(['the netaddr Python library is needed on the controller: pip install netaddr'])
    if not isinstance(spec, dict):
        raise SpecError(['%s must be a dict, got %s' % (SPEC_NAME, type(spec).__name__)])
    p, errors = _schema_errors(_drop_none(spec))
    if errors:
        raise SpecError(errors)

    _check(errors, p['cluster'], NAME_RE, 'cluster', 'cluster name: 1-31 lowercase letters, digits and -, starting with a '
           'letter or digit (it is part of every Azure resource name)')
    azure = p['azure']
    resource_group = azure.get('resource_group') or 'hashistack-%s' % p['cluster']
    _check(errors, resource_group, RESOURCE_GROUP_RE, 'azure.resource_group',
           'resource group name: 1-90 letters, digits, _ . ( ) -, not ending with .')
    _check(errors, azure.get('subscription_id'), GUID_RE, 'azure.subscription_id',
           'subscription id: a GUID (az account show --query id -o tsv)')
    _check(errors, p['consul_datacenter'], CONSUL_DC_RE, 'consul_datacenter',
           'Consul datacenter: lowercase letters, digits, _ and -, starting with a letter or digit')
    _check(errors, p['nomad_region'], NOMAD_NAME_RE, 'nomad_region',
           'Nomad region: letters, digits, _ and -, starting with a letter or digit')
    for key in ('consul_version', 'nomad_version'):
        _check(errors, p[key], VERSION_RE, key, 'release version like 1.20.1 (no leading v)')
    try:
        parse_image(p['image'])
    except ValueError as exc:
        errors.append('%s.image: %s; use publisher:offer:sku[:version], for example %s' % (SPEC_NAME, exc, IMAGE))
    for err in vmss_errors(dict(admin_username=p['admin_user'], ssh_public_keys=p['ssh_public_keys'])):
        errors.append('%s: %s' % (SPEC_NAME, err.replace('admin_username', 'admin_user')))
    count_error = _server_count_error(p['servers']['count'])
    if count_error:
        errors.append(count_error)

    pools = _pools(p, errors)
    locations = _locations(pools)
    spaces = _networks(p['networks'], locations, errors)
    ssh_sources = p['ssh_sources']
    for i, cidr in enumerate(ssh_sources or []):
        try:
            _network.validate_prefix(cidr, '%s.ssh_sources[%d]' % (SPEC_NAME, i))
        except ValueError as exc:
            errors.append('%s; give CIDRs like 203.0.113.0/24 (a single address is /32)' % exc)
    if errors:
        raise SpecError(errors)

    cluster = p['cluster']
    networks = dict((loc, dict(name=network_name(cluster, loc), location=loc, address_space=spaces[loc],
                               subnet=_first_24(spaces[loc]), subnet_name=SUBNET_NAME,
                               security_group=nsg_name(cluster, loc))) for loc in locations)
    out_pools = {}
    scale_sets = []
    for name, pool in pools:
        pool.update(scale_set=scale_set_name(cluster, name), network=networks[pool['location']]['name'])
        out_pools[name] = pool
        scale_sets.append(dict(
            name=pool['scale_set'], pool=name, role=pool['role'], location=pool['location'], vm_size=pool['vm_size'],
            capacity=pool['count'], zones=pool['zones'], network=pool['network'],
            tags={TAG_CLUSTER: cluster, TAG_ROLE: pool['role'], TAG_POOL: name, TAG_CONSUL_DC: p['consul_datacenter'],
                  TAG_NOMAD_REGION: p['nomad_region'], TAG_NOMAD_DC: pool['nomad_datacenter']}))
    return dict(
        cluster=cluster,
        azure=dict(subscription_id=azure.get('subscription_id'), resource_group=resource_group, location=azure['location']),
        consul_datacenter=p['consul_datacenter'],
        nomad_region=p['nomad_region'],
        consul_version=p['consul_version'],
        nomad_version=p['nomad_version'],
        image=p['image'],
        admin_user=p['admin_user'],
        ssh_public_keys=p['ssh_public_keys'],
        ssh_sources=ssh_sources if ssh_sources is not None else [spaces[loc] for loc in locations],
        server_pool=SERVER_POOL,
        server_count=p['servers']['count'],
        pools=out_pools,
        locations=locations,
        networks=networks,
        scale_sets=scale_sets,
        tags={TAG_CLUSTER: cluster},
        key_vault=dict(name=key_vault_name(cluster, azure.get('subscription_id'), resource_group),
                       gossip_secrets=dict(GOSSIP_SECRETS)),
    )
