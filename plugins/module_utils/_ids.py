# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""ARM resource ids (private API; pure, no SDK needed).

``parse_resource_id(id)``  -> dict(subscription, resource_group, provider, type, name, names); keys that the id
                              does not have are left out.
``resource_id(subscription, resource_group, provider_type, name, *children)`` builds an ARM id.
``same_id(a, b)``           ARM ids compare case-insensitively.
``is_guid(value)``          a GUID such as role definition and assignment names.
``scoped_guid(namespace, scope, *parts)`` the deterministic GUID (UUID 5) naming a resource by its scope and
                              parts, case-insensitively, so a re-run finds what an earlier run created.
"""

from __future__ import annotations

import re
import uuid

GUID_RE = re.compile(r'^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$')


def is_guid(value):
    return bool(GUID_RE.match(value or ''))


def scoped_guid(namespace, scope, *parts):
    """UUID 5 of 'scope|part|...' (lower case, scope without a trailing slash) in the given namespace UUID."""
    key = '|'.join((scope.rstrip('/').lower(),) + tuple(p.lower() for p in parts))
    return str(uuid.uuid5(uuid.UUID(namespace), key))


def parse_resource_id(resource_id):
    """Split an ARM id into dict(subscription, resource_group, provider, type, name, names); missing parts left out."""
    parts = [p for p in (resource_id or '').split('/') if p]
    result = {}
    i = 0
    while i + 1 < len(parts):
        key = parts[i].lower()
        value = parts[i + 1]
        if key == 'subscriptions':
            result['subscription'] = value
        elif key == 'resourcegroups':
            result['resource_group'] = value
        elif key == 'providers':
            result['provider'] = value
            i += 2
            types = []
            names = []
            while i + 1 < len(parts):
                types.append(parts[i])
                names.append(parts[i + 1])
                i += 2
            if types:
                result['type'] = '/'.join(types)
                result['name'] = names[-1]
                result['names'] = names
            break
        i += 2
    return result


def resource_id(subscription, resource_group, provider_type, name, *children):
    """/subscriptions/S/resourceGroups/RG/providers/Provider/type/name[/childType/childName...]."""
    rid = '/subscriptions/%s/resourceGroups/%s/providers/%s/%s' % (subscription, resource_group, provider_type, name)
    for i in range(0, len(children) - 1, 2):
        rid += '/%s/%s' % (children[i], children[i + 1])
    return rid


def same_id(a, b):
    """ARM ids compare case-insensitively."""
    return (a or '').rstrip('/').lower() == (b or '').rstrip('/').lower()
