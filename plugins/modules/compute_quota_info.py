#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: compute_quota_info
short_description: Check Azure vCPU quota for planned VM sizes and counts before creating anything
version_added: 0.1.0
description:
  - For each location, adds up the vCPUs the planned VMs need per VM family (resolved from the resource SKU list)
    and compares them with the family quota and the regional total quota (usage list).
  - Returns per location and family the limit, usage, needed vCPUs and whether it fits, a top-level RV(fits) and a
    RV(message) naming the family, the region, how many vCPUs are missing and which of the given locations have room.
  - Planned scale sets that already exist can be named so only their growth is counted (re-runs stay green).
options:
  locations:
    description: Locations to report on. Planned items without a location are checked against each of them.
    type: list
    elements: str
    required: true
  planned:
    description: VMs you plan to create.
    type: list
    elements: dict
    required: true
    suboptions:
      vm_size:
        description: VM size, for example V(Standard_D2s_v3).
        type: str
        required: true
      count:
        description: Number of VMs.
        type: int
        required: true
      location:
        description: Location they go to. When not set, the item is counted in every location of O(locations).
        type: str
      name:
        description: Label used in the message (for example the pool name).
        type: str
      resource_group:
        description: With O(planned[].vmss_name), the resource group of an existing scale set.
        type: str
      vmss_name:
        description:
          - Name of the scale set these VMs belong to. If it exists with the same size, its current capacity is
            already in the usage, so only the difference is counted.
        type: str
extends_documentation_fragment:
  - hashistack.azure.azure
  - hashistack.azure.azure.attributes
  - hashistack.azure.azure.info_module
author:
  - hashistack.azure maintainers (@hashistack)
'''

EXAMPLES = r'''
- name: Check quota for the whole cluster
  hashistack.azure.compute_quota_info:
    locations: [westeurope, northeurope]
    planned:
      - {name: servers, vm_size: Standard_D2s_v3, count: 3, location: westeurope}
      - {name: clients-a, vm_size: Standard_D4s_v3, count: 5, location: westeurope}
      - {name: clients-b, vm_size: Standard_D4s_v3, count: 5, location: northeurope}
  register: quota

- name: Stop before creating anything
  ansible.builtin.fail:
    msg: "{{ quota.message }}"
  when: not quota.fits
'''

RETURN = r'''
fits:
  description: Whether every planned item fits its location's quotas.
  returned: always
  type: bool
  sample: false
message:
  description: Human summary. Names each shortfall (family, region, vCPUs short) and the locations with room.
  returned: always
  type: str
  sample: >-
    Not enough vCPU quota: standardDSv3Family in westeurope needs 26 vCPUs but the quota has 20 free (limit 20, usage 0):
    6 vCPUs short. Room for 26 standardDSv3Family vCPUs in: northeurope.
locations:
  description: Per location results.
  returned: always
  type: dict
  sample:
    westeurope:
      fits: false
      families:
        standardDSv3Family: {limit: 20, usage: 0, needed: 26, available: 20, fits: false, short: 6}
      total: {limit: 100, usage: 0, needed: 26, available: 100, fits: true, short: 0}
  contains:
    fits:
      description: Everything planned for this location fits.
      type: bool
    families:
      description: Per VM family - limit, usage, needed, available, fits, short (vCPUs).
      type: dict
    total:
      description: The regional total vCPU quota (C(cores)) - limit, usage, needed, available, fits, short.
      type: dict
shortfalls:
  description: One entry per family or regional total that does not fit.
  returned: always
  type: list
  elements: dict
  sample: [{location: westeurope, family: standardDSv3Family, needed: 26, limit: 20, usage: 0, short: 6, room_in: [northeurope]}]
'''

from ansible_collections.hashistack.azure.plugins.module_utils._module import AzureModule
from ansible_collections.hashistack.azure.plugins.module_utils._sdk import to_dict


def vcpus_of(sku):
    for cap in sku.get('capabilities') or []:
        if (cap.get('name') or '').lower() == 'vcpus':
            try:
                return int(cap.get('value'))
            except (TypeError, ValueError):
                return None
    return None


def usage_map(usages):
    """usage list -> {lower name: (name, limit, usage)}."""
    out = {}
    for u in usages:
        name = (u.get('name') or {}).get('value')
        if name:
            out[name.lower()] = (name, int(u.get('limit') or 0), int(u.get('currentValue') or 0))
    return out


def evaluate(locations, items, sizes, usages):
    """Pure computation.

    items: [{vm_size, count, location or None, name}]; sizes: {location: {lower size: (family, vcpus)}};
    usages: {location: usage_map}. Returns (fits, per_location, shortfalls).
    """
    per = {}
    for loc in locations:
        needed = {}
        total = 0
        for item in items:
            if item.get('location') and item['location'].lower() != loc.lower():
                continue
            family, vcpus = sizes[loc][item['vm_size'].lower()]
            n = vcpus * max(0, item['count'])
            needed[family] = needed.get(family, 0) + n
            total += n
        fam_out = {}
        for family, n in needed.items():
            name, limit, usage = usages[loc].get(family.lower(), (family, 0, 0))
            avail = max(0, limit - usage)
            fam_out[name] = dict(limit=limit, usage=usage, needed=n, available=avail, fits=n <= avail, short=max(0, n - avail))
        _n, tlimit, tusage = usages[loc].get('cores', ('cores', 0, 0))
        tavail = max(0, tlimit - tusage)
        tot = dict(limit=tlimit, usage=tusage, needed=total, available=tavail, fits=total <= tavail, short=max(0, total - tavail))
        per[loc] = dict(families=fam_out, total=tot, fits=tot['fits'] and all(f['fits'] for f in fam_out.values()))
    shortfalls = []
    for loc in locations:
        entries = sorted(per[loc]['families'].items()) + [('regional total vCPUs (cores)', per[loc]['total'])]
        for fam, v in entries:
            if v['fits']:
                continue
            room = []
            for other in locations:
                if other == loc:
                    continue
                if fam.startswith('regional total'):
                    spare = per[other]['total']['available'] - per[other]['total']['needed']
                else:
                    o_name, o_limit, o_usage = usages[other].get(fam.lower(), (fam, 0, 0))
                    o_need = per[other]['families'].get(o_name, {}).get('needed', 0)
                    spare = min(max(0, o_limit - o_usage) - o_need,
                                per[other]['total']['available'] - per[other]['total']['needed'])
                if spare >= v['needed']:
                    room.append(other)
            shortfalls.append(dict(location=loc, family=fam, needed=v['needed'], limit=v['limit'], usage=v['usage'], short=v['short'], room_in=room))
    fits = all(per[loc]['fits'] for loc in locations)
    return fits, per, shortfalls


def message_for(fits, shortfalls, per):
    if fits:
        return 'All planned VMs fit the vCPU quotas in %s.' % ', '.join(
            '%s (%d of %d regional vCPUs free, %d needed)' % (loc, v['total']['available'], v['total']['limit'], v['total']['needed'])
            for loc, v in sorted(per.items()))
    parts = []
    for s in shortfalls:
        text = ('%s in %s needs %d vCPUs but the quota has %d free (limit %d, usage %d): %d vCPUs short.'
                % (s['family'], s['location'], s['needed'], s['limit'] - s['usage'] if s['limit'] >= s['usage'] else 0,
                   s['limit'], s['usage'], s['short']))
        if s['room_in']:
            text += ' Room for %d %s vCPUs in: %s.' % (s['needed'], s['family'], ', '.join(s['room_in']))
        else:
            text += ' None of the other given locations has room for them either.'
        parts.append(text)
    return 'Not enough vCPU quota: ' + ' '.join(parts) + ' Request a quota increase or move pools to a location with room.'


def main():
    m = AzureModule(dict(
        locations=dict(type='list', elements='str', required=True),
        planned=dict(type='list', elements='dict', required=True, options=dict(
            vm_size=dict(type='str', required=True),
            count=dict(type='int', required=True),
            location=dict(type='str'),
            name=dict(type='str'),
            resource_group=dict(type='str'),
            vmss_name=dict(type='str'),
        )),
    ))
    p = m.params
    locations = [loc.replace(' ', '').lower() for loc in p['locations']]
    if not locations:
        m.fail('locations must name at least one location')
    items = []
    for item in p['planned']:
        if item['count'] < 0:
            m.fail('planned %s: count must be 0 or more, got %d' % (item.get('name') or item['vm_size'], item['count']))
        loc = item['location'].replace(' ', '').lower() if item.get('location') else None
        if loc and loc not in locations:
            m.fail('planned %s goes to %s, which is not in locations (%s)' % (item.get('name') or item['vm_size'], loc, ', '.join(locations)))
        items.append(dict(item, location=loc))
    client = m.client('compute')

    # Existing scale sets: only count growth.
    for item in items:
        if item.get('vmss_name') and item.get('resource_group'):
            rest = to_dict(m.get('reading scale set %s' % item['vmss_name'], client.virtual_machine_scale_sets.get, item['resource_group'], item['vmss_name']))
            if rest and ((rest.get('sku') or {}).get('name') or '').lower() == item['vm_size'].lower():
                if not item['location'] or (rest.get('location') or '').lower() == item['location']:
                    item['count'] = max(0, item['count'] - int((rest.get('sku') or {}).get('capacity') or 0))

    sizes = {}
    usages = {}
    for loc in locations:
        skus = m.call('listing VM sizes in %s' % loc, lambda loc=loc: [to_dict(s) for s in client.resource_skus.list(filter="location eq '%s'" % loc)])
        table = {}
        for sku in skus:
            if (sku.get('resourceType') or '').lower() != 'virtualmachines':
                continue
            if sku.get('locations') and loc not in [x.lower() for x in sku['locations']]:
                continue
            vcpus = vcpus_of(sku)
            if sku.get('name') and sku.get('family') and vcpus:
                table[sku['name'].lower()] = (sku['family'], vcpus)
        for item in items:
            if item['location'] in (None, loc) and item['vm_size'].lower() not in table:
                m.fail('VM size %s (planned %s) is not offered in %s; cannot compute its vCPUs and family. Pick another size or location.'
                       % (item['vm_size'], item.get('name') or item['vm_size'], loc))
        sizes[loc] = table
        usages[loc] = usage_map(m.call('reading compute usage in %s' % loc, lambda loc=loc: [to_dict(u) for u in client.usage.list(loc)]))
    fits, per, shortfalls = evaluate(locations, items, sizes, usages)
    m.exit(changed=False, fits=fits, locations=per, shortfalls=shortfalls, message=message_for(fits, shortfalls, per))


if __name__ == '__main__':
    main()
