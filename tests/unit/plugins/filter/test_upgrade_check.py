"""The upgrade rules of playbooks/upgrade.yml (filter hashistack.azure.upgrade_check)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.hashistack.azure.plugins.filter.upgrade_check import FilterModule, parse_version, upgrade_check


def test_patch_step_lists_what_is_left():
    plan = upgrade_check({"s1": "1.20.0", "s2": "1.20.1", "c1": "1.20.0"}, "1.20.1", "consul")
    assert plan["errors"] == []
    assert plan["todo"] == ["c1", "s1"]
    assert plan["done"] == ["s2"]


def test_completed_upgrade_has_nothing_to_do():
    plan = upgrade_check({"s1": "1.9.3", "s2": "1.9.3+ent"}, "1.9.3", "nomad")
    assert (plan["todo"], plan["done"], plan["errors"]) == ([], ["s1", "s2"], [])


def test_downgrade_refused_naming_hosts_and_fix():
    plan = upgrade_check({"s1": "1.20.1", "s2": "1.20.1", "s3": "1.20.0"}, "1.20.0", "consul")
    assert len(plan["errors"]) == 1
    msg = plan["errors"][0]
    assert "downgrade Consul on s1, s2 from 1.20.1 to 1.20.0" in msg
    assert "hashistack_upgrade_allow_downgrade=true" in msg
    assert plan["todo"] == ["s1", "s2"]


def test_downgrade_allowed_explicitly():
    plan = upgrade_check({"s1": "1.9.3"}, "1.9.2", "nomad", allow_downgrade=True)
    assert plan["errors"] == [] and plan["todo"] == ["s1"]


@pytest.mark.parametrize("product,cur,target,ok", [
    ("consul", "1.18.2", "1.20.1", True),    # 2 minor versions: the documented maximum
    ("consul", "1.17.0", "1.20.1", False),   # 3: refused
    ("nomad", "1.8.4", "1.9.3", True),       # 1 point release
    ("nomad", "1.7.7", "1.9.3", False),      # 2 point releases: untested and unsupported
    ("consul", "1.21.0", "2.0.0", False),    # major version
])
def test_jump_rules(product, cur, target, ok):
    plan = upgrade_check({"s1": cur}, target, product)
    assert (plan["errors"] == []) is ok
    if not ok:
        assert "s1" in plan["errors"][0] and "Fix:" in plan["errors"][0]


def test_jump_rule_names_the_rule_and_the_intermediate_step():
    msg = upgrade_check({"s1": "1.7.7"}, "1.9.3", "nomad")["errors"][0]
    assert "backward compatible for 1 point release" in msg
    assert "upgrade to the latest 1.8.x first" in msg
    msg = upgrade_check({"s1": "1.16.0"}, "1.20.1", "consul")["errors"][0]
    assert "at most 2 major versions" in msg and "latest 1.18.x first" in msg


def test_mixed_cluster_is_checked_from_each_members_version():
    # an interrupted earlier run left s2 on 1.9.2 and s1 on an old 1.7: the old one is refused by name
    plan = upgrade_check({"s1": "1.7.0", "s2": "1.9.2", "s3": "1.9.3"}, "1.9.3", "nomad")
    assert len(plan["errors"]) == 1 and "on s1 " in plan["errors"][0]


def test_unknown_version_is_an_error():
    plan = upgrade_check({"s1": None, "s2": "garbage", "s3": "1.20.0"}, "1.20.1", "consul")
    assert "s1, s2" in plan["errors"][0] and "unknown" in plan["errors"][0]
    assert plan["todo"] == ["s3"]


def test_bad_target_and_bad_input():
    assert "not a release version" in upgrade_check({"s1": "1.9.2"}, "latest", "nomad")["errors"][0]
    with pytest.raises(AnsibleFilterError, match="product"):
        upgrade_check({}, "1.0.0", "vault")
    with pytest.raises(AnsibleFilterError, match="dict"):
        upgrade_check(["1.0.0"], "1.0.0", "nomad")


def test_parse_version_and_registration():
    assert parse_version("v1.9.3") == (1, 9, 3)
    assert parse_version("1.20.1-beta1") == (1, 20, 1)
    assert parse_version("1.20") is None
    assert FilterModule().filters()["upgrade_check"] is upgrade_check
