# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Address validation and Azure network id helpers (private API).

``validate_prefix(text, what)`` -> canonical CIDR string or raises ``ValueError`` with a message.
``validate_address_space(address_prefixes, subnets)`` -> list of error strings (empty when valid):
  every prefix is a network address, address space prefixes do not overlap, each subnet lies
  inside one address space prefix, subnets do not overlap, subnet names are unique.
``require_netaddr(module)`` fails the module when netaddr is missing.
``nsg_id(value, subscription, resource_group)`` -> the id of a network security group given by id or name.
"""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.hashistack.azure.plugins.module_utils._ids import resource_id

NETADDR_IMPORT_ERROR = None
try:
    import netaddr
    HAS_NETADDR = True
except ImportError:
    NETADDR_IMPORT_ERROR = traceback.format_exc()
    HAS_NETADDR = False


def require_netaddr(module):
    if not HAS_NETADDR:
        module.fail(missing_required_lib('netaddr'), exception=NETADDR_IMPORT_ERROR)


def validate_prefix(text, what):
    """Return the canonical form of an IPv4/IPv6 CIDR or raise ValueError naming ``what``."""
    if not isinstance(text, str) or '/' not in text:
        raise ValueError('%s: %r is not a CIDR prefix like 10.0.0.0/16' % (what, text))
    try:
        net = netaddr.IPNetwork(text.strip())
    except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
        raise ValueError('%s: %r is not a valid CIDR prefix (%s)' % (what, text, exc))
    if net.ip != net.network:
        raise ValueError('%s: %s has host bits set; the network is %s' % (what, text, net.cidr))
    return str(net.cidr)


def validate_address_space(address_prefixes, subnets):
    """Validate an address space and its subnets; return a list of error messages."""
    errors = []
    space = []
    for prefix in address_prefixes or []:
        try:
            space.append(netaddr.IPNetwork(validate_prefix(prefix, 'address_prefixes')))
        except ValueError as exc:
            errors.append(str(exc))
    for i, a in enumerate(space):
        for b in space[i + 1:]:
            if a in b or b in a or (a.first <= b.last and b.first <= a.last):
                errors.append('address_prefixes: %s and %s overlap' % (a, b))
    seen = {}
    nets = []
    for subnet in subnets or []:
        name = subnet.get('name')
        if not name:
            errors.append('subnets: every subnet needs a name')
            continue
        if name in seen:
            errors.append('subnets: name %s is used twice' % name)
            continue
        seen[name] = True
        prefix = subnet.get('address_prefix')
        try:
            net = netaddr.IPNetwork(validate_prefix(prefix, 'subnet %s address_prefix' % name))
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if space and not any(net in s for s in space):
            errors.append('subnet %s: %s is outside the address space %s' % (name, net, ', '.join(str(s) for s in space)))
        for other_name, other in nets:
            if net.first <= other.last and other.first <= net.last:
                errors.append('subnets %s (%s) and %s (%s) overlap' % (other_name, other, name, net))
        nets.append((name, net))
    return errors


def nsg_id(value, subscription, resource_group):
    """Accept an NSG id or a name in ``resource_group``; return its id (None stays None)."""
    if not value:
        return value
    if value.startswith('/'):
        return value
    return resource_id(subscription, resource_group, 'Microsoft.Network/networkSecurityGroups', value)
