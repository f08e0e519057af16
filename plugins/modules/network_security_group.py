#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: network_security_group
short_description: Manage an Azure network security group and its rules
version_added: 0.1.0
description:
  - Create, update or delete one network security group.
  - Can generate the inbound rules a Consul and Nomad cluster needs, limited to the cluster's
    address space, and an SSH rule limited to given sources.
  - Sends no write request when the rules already match.
options:
  resource_group:
    description: Resource group of the network security group.
    type: str
    required: true
  name:
    description: Name of the network security group.
    type: str
    required: true
  location:
    description: Location. Defaults to the location of the resource group when creating. Immutable.
    type: str
  rules:
    description: Security rules besides the generated ones.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Rule name, unique in the group.
        type: str
        required: true
      priority:
        description: Priority, 100 to 4096, unique per direction; lower wins.
        type: int
        required: true
      direction:
        description: Traffic direction.
        type: str
        choices: [Inbound, Outbound]
        default: Inbound
      access:
        description: Allow or deny.
        type: str
        choices: [Allow, Deny]
        default: Allow
      protocol:
        description: Protocol.
        type: str
        choices: [Tcp, Udp, Icmp, '*']
        default: Tcp
      source_address_prefixes:
        description: Source CIDRs or service tags.
        type: list
        elements: str
        default: ['*']
      source_port_ranges:
        description: Source ports or ranges.
        type: list
        elements: str
        default: ['*']
      destination_address_prefixes:
        description: Destination CIDRs or service tags.
        type: list
        elements: str
        default: ['*']
      destination_port_ranges:
        description: Destination ports or ranges such as V(22) or V(8300-8302).
        type: list
        elements: str
        default: ['*']
      description:
        description: Free text.
        type: str
  purge_rules:
    description:
      - Remove rules that are neither in O(rules) nor generated. Defaults to true so the group holds
        exactly what the task describes (least privilege).
    type: bool
    default: true
  cluster_address_prefixes:
    description:
      - The address space of the cluster (all its virtual networks). Generated Consul and Nomad rules
        allow traffic only from and to these prefixes. Required with O(consul_ports) or O(nomad_ports).
    type: list
    elements: str
  consul_ports:
    description:
      - Generate rules for Consul inside O(cluster_address_prefixes) - TCP 8300-8302, 8500, 8600 and
        UDP 8301-8302, 8600 (rules C(consul-tcp) and C(consul-udp)).
    type: bool
    default: false
  nomad_ports:
    description:
      - Generate rules for Nomad inside O(cluster_address_prefixes) - TCP 4646-4648 and UDP 4648
        (rules C(nomad-tcp) and C(nomad-udp)).
    type: bool
    default: false
  ssh_sources:
    description:
      - Generate rule C(ssh) allowing TCP 22 only from these CIDRs or service tags.
      - No SSH rule is generated when empty.
    type: list
    elements: str
    default: []
  generated_rules_priority:
    description:
      - Priority of the first generated rule; the others follow (C(ssh) +0, C(consul-tcp) +10, C(consul-udp) +11,
        C(nomad-tcp) +20, C(nomad-udp) +21).
    type: int
    default: 1000
  timeout:
    default: 600
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.state
  - hashistack.azure.azure.wait
  - hashistack.azure.azure.tags
  - hashistack.azure.azure.attributes
  - hashistack.azure.azure.full_support
author:
  - hashistack.azure maintainers (@hashistack)
'''

EXAMPLES = r'''
- name: Cluster NSG - Consul and Nomad inside the cluster, SSH from the bastion subnet only
  hashistack.azure.network_security_group:
    resource_group: hashistack-prod
    name: hashistack-nodes
    cluster_address_prefixes: [10.10.0.0/16, 10.20.0.0/16]
    consul_ports: true
    nomad_ports: true
    ssh_sources: [10.0.0.0/24]
    rules:
      - name: nomad-http-from-lb
        priority: 300
        source_address_prefixes: [AzureLoadBalancer]
        destination_port_ranges: ['4646']
'''

RETURN = r'''
network_security_group:
  description: The group after the task (empty when absent).
  returned: always
  type: dict
  contains:
    id:
      description: ARM id.
      type: str
      sample: /subscriptions/0000/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/hashistack-nodes
    name:
      description: Name.
      type: str
      sample: hashistack-nodes
    location:
      description: Location.
      type: str
      sample: westeurope
    rules:
      description: Security rules, normalised like the O(rules) option.
      type: list
      elements: dict
      sample: [{name: ssh, priority: 1000, direction: Inbound, access: Allow, protocol: Tcp}]
    tags:
      description: Tags.
      type: dict
      sample: {}
changes:
  description: Human readable list of the changes made (or that would be made in check mode).
  returned: always
  type: list
  elements: str
  sample: ["rules: ..."]
'''

from ansible_collections.hashistack.azure.plugins.module_utils._diff import values_equal
from ansible_collections.hashistack.azure.plugins.module_utils._lifecycle import AzureResource
from ansible_collections.hashistack.azure.plugins.module_utils._network import require_netaddr, validate_prefix


CONSUL_TCP = ['8300-8302', '8500', '8600']
CONSUL_UDP = ['8301-8302', '8600']
NOMAD_TCP = ['4646-4648']
NOMAD_UDP = ['4648']
_PROTOCOLS = {'tcp': 'Tcp', 'udp': 'Udp', 'icmp': 'Icmp', '*': '*', 'any': '*'}


def _plural(props, single, plural):
    values = props.get(plural) or []
    if not values and props.get(single):
        values = [props[single]]
    return sorted(str(v) for v in values)


def rule_from_rest(rest):
    props = rest.get('properties') or {}
    return dict(
        name=rest.get('name'),
        priority=props.get('priority'),
        direction=props.get('direction'),
        access=props.get('access'),
        protocol=_PROTOCOLS.get(str(props.get('protocol')).lower(), props.get('protocol')),
        source_address_prefixes=_plural(props, 'sourceAddressPrefix', 'sourceAddressPrefixes'),
        source_port_ranges=_plural(props, 'sourcePortRange', 'sourcePortRanges'),
        destination_address_prefixes=_plural(props, 'destinationAddressPrefix', 'destinationAddressPrefixes'),
        destination_port_ranges=_plural(props, 'destinationPortRange', 'destinationPortRanges'),
        description=props.get('description'),
    )


def normalize_rule(rule):
    return dict(
        name=rule['name'],
        priority=rule['priority'],
        direction=rule.get('direction') or 'Inbound',
        access=rule.get('access') or 'Allow',
        protocol=_PROTOCOLS.get(str(rule.get('protocol') or 'Tcp').lower(), rule.get('protocol')),
        source_address_prefixes=sorted(str(x) for x in rule.get('source_address_prefixes') or ['*']),
        source_port_ranges=sorted(str(x) for x in rule.get('source_port_ranges') or ['*']),
        destination_address_prefixes=sorted(str(x) for x in rule.get('destination_address_prefixes') or ['*']),
        destination_port_ranges=sorted(str(x) for x in rule.get('destination_port_ranges') or ['*']),
        description=rule.get('description'),
    )


def rule_to_rest(rule):
    props = dict(priority=rule['priority'], direction=rule['direction'], access=rule['access'], protocol=rule['protocol'])
    for key, single, plural in (('source_address_prefixes', 'sourceAddressPrefix', 'sourceAddressPrefixes'),
                                ('source_port_ranges', 'sourcePortRange', 'sourcePortRanges'),
                                ('destination_address_prefixes', 'destinationAddressPrefix', 'destinationAddressPrefixes'),
                                ('destination_port_ranges', 'destinationPortRange', 'destinationPortRanges')):
        values = rule[key]
        if len(values) == 1:
            props[single] = values[0]
        else:
            props[plural] = values
    if rule.get('description'):
        props['description'] = rule['description']
    return dict(name=rule['name'], properties=props)


def generated_rules(params):
    """Rules generated from consul_ports / nomad_ports / ssh_sources."""
    base = params['generated_rules_priority']
    space = params['cluster_address_prefixes'] or []
    rules = []

    def add(name, offset, protocol, ports, sources, dests, description):
        rules.append(normalize_rule(dict(name=name, priority=base + offset, protocol=protocol, source_address_prefixes=sources,
                                         destination_address_prefixes=dests, destination_port_ranges=ports, description=description)))
    if params['ssh_sources']:
        add('ssh', 0, 'Tcp', ['22'], params['ssh_sources'], ['*'], 'SSH from the allowed sources only')
    if params['consul_ports']:
        add('consul-tcp', 10, 'Tcp', CONSUL_TCP, space, space, 'Consul RPC, Serf, HTTP and DNS inside the cluster')
        add('consul-udp', 11, 'Udp', CONSUL_UDP, space, space, 'Consul Serf gossip and DNS inside the cluster')
    if params['nomad_ports']:
        add('nomad-tcp', 20, 'Tcp', NOMAD_TCP, space, space, 'Nomad HTTP, RPC and Serf inside the cluster')
        add('nomad-udp', 21, 'Udp', NOMAD_UDP, space, space, 'Nomad Serf gossip inside the cluster')
    return rules


def validate(params):
    errors = []
    if (params['consul_ports'] or params['nomad_ports']) and not params['cluster_address_prefixes']:
        errors.append('cluster_address_prefixes is required with consul_ports or nomad_ports')
    for prefix in params['cluster_address_prefixes'] or []:
        try:
            validate_prefix(prefix, 'cluster_address_prefixes')
        except ValueError as exc:
            errors.append(str(exc))
    for src in params['ssh_sources'] or []:
        if '/' in src or src[:1].isdigit():
            try:
                validate_prefix(src if '/' in src else src + '/32', 'ssh_sources')
            except ValueError as exc:
                errors.append(str(exc))
    rules = [normalize_rule(r) for r in params['rules']] + generated_rules(params)
    names = {}
    prios = {}
    for rule in rules:
        if rule['name'] in names:
            errors.append('rule name %s is used twice' % rule['name'])
        names[rule['name']] = True
        if not 100 <= (rule['priority'] or 0) <= 4096:
            errors.append('rule %s: priority %s is outside 100-4096' % (rule['name'], rule['priority']))
        key = (rule['direction'], rule['priority'])
        if key in prios:
            errors.append('rules %s and %s have the same %s priority %s' % (prios[key], rule['name'], rule['direction'], rule['priority']))
        prios[key] = rule['name']
    return rules, errors


def model_from_rest(rest):
    if rest is None:
        return None
    props = rest.get('properties') or {}
    return dict(
        id=rest.get('id'),
        name=rest.get('name'),
        location=rest.get('location'),
        rules=sorted((rule_from_rest(r) for r in props.get('securityRules') or []), key=lambda r: r['name']),
        tags=rest.get('tags') or {},
    )


RULE_SPEC = dict(
    name=dict(type='str', required=True),
    priority=dict(type='int', required=True),
    direction=dict(type='str', choices=['Inbound', 'Outbound'], default='Inbound'),
    access=dict(type='str', choices=['Allow', 'Deny'], default='Allow'),
    protocol=dict(type='str', choices=['Tcp', 'Udp', 'Icmp', '*'], default='Tcp'),
    source_address_prefixes=dict(type='list', elements='str', default=['*']),
    source_port_ranges=dict(type='list', elements='str', default=['*']),
    destination_address_prefixes=dict(type='list', elements='str', default=['*']),
    destination_port_ranges=dict(type='list', elements='str', default=['*']),
    description=dict(type='str'),
)


def rule_changes(have_rules, want_rules):
    """One line per added, removed or changed rule."""
    have = dict((r['name'], r) for r in have_rules)
    new = dict((r['name'], r) for r in want_rules)
    return (['rule %s: add' % n for n in sorted(set(new) - set(have))]
            + ['rule %s: remove' % n for n in sorted(set(have) - set(new))]
            + ['rule %s: %s' % (n, ', '.join('%s %s -> %s' % (k, have[n][k], new[n][k]) for k in sorted(new[n]) if have[n][k] != new[n][k]))
               for n in sorted(set(have) & set(new)) if not values_equal(new[n], have[n])])


class NetworkSecurityGroup(AzureResource):
    noun = 'network security group'
    client_name = 'network'
    result_key = 'network_security_group'
    argument_spec = dict(
        resource_group=dict(type='str', required=True),
        name=dict(type='str', required=True),
        location=dict(type='str'),
        rules=dict(type='list', elements='dict', options=RULE_SPEC, default=[]),
        purge_rules=dict(type='bool', default=True),
        cluster_address_prefixes=dict(type='list', elements='str'),
        consul_ports=dict(type='bool', default=False),
        nomad_ports=dict(type='bool', default=False),
        ssh_sources=dict(type='list', elements='str', default=[]),
        generated_rules_priority=dict(type='int', default=1000),
    )
    default_timeout = 600
    manages_tags = True
    location_from_resource_group = True
    immutable = (('location', 'location'),)

    def validate(self):
        require_netaddr(self.m)
        return validate(self.params)[1]

    def read(self):
        return self.get(self.client.network_security_groups.get, self.resource_group, self.name)

    def to_model(self, rest):
        return model_from_rest(rest)

    def desired(self):
        rules = sorted(validate(self.params)[0], key=lambda r: r['name'])
        return dict(name=self.name, location=self.params['location'], rules=rules, tags=self.params['tags'])

    def compare(self, d, current, desired):
        want = desired['rules']
        if not self.params['purge_rules']:
            names = set(r['name'] for r in want)
            want = sorted(want + [r for r in current['rules'] if r['name'] not in names], key=lambda r: r['name'])
        if d.compare('rules', want, kind='set'):
            d.changes[-1:] = rule_changes(current['rules'], want)
        self.compare_tags(d, desired)

    def put(self, verb, model):
        body = dict(location=model['location'], tags=model['tags'], properties=dict(securityRules=[rule_to_rest(r) for r in model['rules']]))
        return self.lro(verb, lambda: self.client.network_security_groups.begin_create_or_update(self.resource_group, self.name, body))

    def delete(self, current):
        self.lro('deleting', lambda: self.client.network_security_groups.begin_delete(self.resource_group, self.name))


def main():
    NetworkSecurityGroup.main()


if __name__ == '__main__':
    main()
