# Copyright: (c) 2026, hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``scale_in``: which instances a lower count in the cluster spec removes from each scale set, in the
order they go (documentation: scale_in.yml beside this file)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def _order_key(instance_id):
    """Newest first: Uniform instance ids grow with creation; other ids sort after, by name."""
    iid = str(instance_id)
    return (0, -int(iid), '') if iid.isdigit() else (1, 0, iid)


def scale_in(live_sets, wanted_sets, remove=None):
    """live_sets: scale sets as hashistack.azure.vmss_info returns them (with instances). wanted_sets: the
    normalized spec's scale_sets (name, pool, role, capacity). remove: computer names, SCALE_SET/ID, or bare
    instance ids (of a scale set this run scales in) to take first. Returns {steps: [{scale_set, pool, role, instance_id, computer_name}], errors}."""
    if not isinstance(live_sets, list) or not isinstance(wanted_sets, list):
        raise AnsibleFilterError('scale_in: expects the list of live scale sets and the list of the spec\'s scale sets')
    named = [str(r) for r in (remove or [])]
    live = dict((s.get('name'), s) for s in live_sets)
    steps, errors, used = [], [], {}
    for want in wanted_sets:
        current = live.get(want['name'])
        if current is None:
            continue
        instances = [i for i in current.get('instances') or [] if (i.get('provisioning_state') or '') != 'Deleting']
        extra = len(instances) - int(want['capacity'])
        picked_named = []
        for i in instances:
            # a computer name or SCALE_SET/ID is unique in the cluster; a bare instance id only names an
            # instance of a scale set that this run scales in (every scale set numbers its own from 0)
            keys = {i.get('computer_name') or '', f"{want['name']}/{i['instance_id']}"}
            hits = [r for r in named if r in keys or (extra > 0 and r == str(i['instance_id']))]
            if hits:
                picked_named.append(i)
                for r in hits:
                    used.setdefault(r, []).append(want['name'])
        if extra <= 0:
            if picked_named:
                names = ', '.join(str(i['instance_id']) for i in picked_named)
                errors.append(f"{want['name']} (pool {want['pool']}) has {len(instances)} instances and the spec wants "
                              f"{want['capacity']}: nothing to remove, yet azure_infra_remove_instances names {names}. "
                              "Fix: lower the pool's count in the spec, or drop those names")
            continue
        if len(picked_named) > extra:
            errors.append(f"azure_infra_remove_instances names {len(picked_named)} instances of {want['name']} (pool "
                          f"{want['pool']}) but the spec removes only {extra} ({len(instances)} -> {want['capacity']}). "
                          f"Fix: name {extra}, or lower the count to {len(instances) - len(picked_named)}")
            continue
        rest = sorted((i for i in instances if i not in picked_named), key=lambda i: _order_key(i['instance_id']))
        for i in picked_named + rest[:extra - len(picked_named)]:
            steps.append(dict(scale_set=want['name'], pool=want['pool'], role=want['role'],
                              instance_id=str(i['instance_id']), computer_name=i.get('computer_name')))
    ambiguous = [r for r in named if len(used.get(r, ())) > 1]
    if ambiguous:
        errors.append(f"azure_infra_remove_instances names instance ids {', '.join(ambiguous)}, which more than one "
                      "scale set that this run scales in has. Fix: name them SCALE_SET/ID or by computer name")
    unknown = [r for r in named if r not in used]
    if unknown:
        errors.append(f"azure_infra_remove_instances names {', '.join(unknown)}, which no scale set of the cluster "
                      "has. Fix: use the instance ids or computer names the inventory shows (azure_instance_id, "
                      "azure_computer_name)")
    return dict(steps=steps, errors=errors)


def quorum_error(voters, healthy, removing=1):
    """Why removing ``removing`` server(s) from a raft of ``voters`` with ``healthy`` of them healthy would lose
    quorum (the removed ones are assumed healthy and leave first), or '' when it keeps it."""
    voters, healthy, removing = int(voters), int(healthy), int(removing)
    left = voters - removing
    if left < 1:
        return f'removing {removing} of {voters} servers leaves none'
    need = left // 2 + 1
    if healthy - removing < need:
        return (f'{healthy} of {voters} servers are healthy: after removing {removing}, {healthy - removing} healthy '
                f'of {left} would be below the quorum of {need}')
    return ''


class FilterModule:
    def filters(self):
        return {'scale_in': scale_in, 'scale_in_quorum_error': quorum_error}
