"""The emulator's scale-in choice against the documented examples (virtual-machine-scale-sets-scale-in-policy.md,
"Usage examples": six scale-ins of a zone-spanning scale set under each policy)."""
from __future__ import annotations

import pytest

from sandbox.arm.resources.compute import pick_scale_in

ZONES = {"1": [3, 4, 5, 10], "2": [2, 6, 9, 11], "3": [1, 7, 8]}   # "Initial" row of both tables


def instances(zones, protected=()):
    return [{"seq": seq, "zone": zone, "protected": seq in protected} for zone, seqs in zones.items() for seq in seqs]


@pytest.mark.parametrize(("rule", "documented"), [
    ("OldestVM", [2, 3, 1, 4, 6, 5]),    # the "Scale-in Selection" column, top to bottom
    ("NewestVM", [11, 10, 9, 8, 5, 7]),
])
def test_documented_zone_balanced_scale_ins(rule, documented):
    picked = pick_scale_in(instances(ZONES), 6, rule, zonal=True)
    assert [i["seq"] for i in picked] == documented
    for one_at_a_time in range(1, 7):   # one scale-in after another chooses the same
        assert [i["seq"] for i in pick_scale_in(instances(ZONES), one_at_a_time, rule, zonal=True)] == \
            documented[:one_at_a_time]


def test_protected_instances_are_skipped_but_count_for_the_balance():
    # "if VM_0 (oldest VM in the scale set) is protected from scale-in ... VM_0 will not be considered"
    flat = {"": [0, 1, 2, 3]}
    assert [i["seq"] for i in pick_scale_in(instances(flat, protected={0}), 2, "OldestVM", zonal=False)] == [1, 2]
    # zone 1 has the most instances, but only protected ones: the next most populated zone gives one
    zones = {"1": [1, 2, 3], "2": [4, 5]}
    assert [i["seq"] for i in pick_scale_in(instances(zones, protected={1, 2, 3}), 1, "NewestVM", zonal=True)] == [5]
    assert pick_scale_in(instances(flat, protected={0, 1, 2, 3}), 1, "Default", zonal=False) == []


def test_default_balances_fault_domains_then_takes_the_highest_id():
    # fault domain = instance id % 5; balanced: the highest id goes first
    assert [i["seq"] for i in pick_scale_in(instances({"": list(range(7))}), 3, "Default", zonal=False)] == [6, 5, 4]
    # 0 and 5 share fault domain 0, 9 is alone in 4: Default evens the domains, NewestVM takes the newest
    assert [i["seq"] for i in pick_scale_in(instances({"": [0, 5, 9]}), 1, "Default", zonal=False)] == [5]
    assert [i["seq"] for i in pick_scale_in(instances({"": [0, 5, 9]}), 1, "NewestVM", zonal=False)] == [9]
