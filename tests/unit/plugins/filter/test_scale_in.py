"""Which instances a lower count in the spec removes, and when a server step would lose quorum
(filters hashistack.azure.scale_in and scale_in_quorum_error)."""

from __future__ import annotations

from ansible_collections.hashistack.azure.plugins.filter.scale_in import quorum_error, scale_in


def live(name, *ids, deleting=()):
    return {"name": name, "instances": [
        {"instance_id": str(i), "computer_name": f"{name}{int(i):06d}",
         "provisioning_state": "Deleting" if i in deleting else "Succeeded"} for i in ids]}


def want(name, capacity, role="client"):
    return {"name": name, "pool": name.split("-")[-1], "role": role, "capacity": capacity}


def ids(plan):
    return [(s["scale_set"], s["instance_id"]) for s in plan["steps"]]


def test_newest_first_by_instance_id():
    plan = scale_in([live("c-west", 2, 10, 7)], [want("c-west", 1)])
    assert plan["errors"] == []
    assert ids(plan) == [("c-west", "10"), ("c-west", "7")]  # numeric order, not text order
    assert plan["steps"][0]["computer_name"] == "c-west000010"


def test_nothing_to_remove_at_or_above_the_count():
    assert scale_in([live("c-west", 0, 1)], [want("c-west", 2)]) == {"steps": [], "errors": []}
    assert scale_in([live("c-west", 0, 1)], [want("c-west", 2)])["steps"] == []


def test_a_scale_set_not_created_yet_is_skipped():
    assert scale_in([], [want("c-west", 0)]) == {"steps": [], "errors": []}


def test_named_instances_go_first_then_the_newest():
    plan = scale_in([live("c-west", 0, 1, 2, 3)], [want("c-west", 1)], ["c-west000000"])
    assert ids(plan) == [("c-west", "0"), ("c-west", "3"), ("c-west", "2")]


def test_instances_already_deleting_do_not_count():
    plan = scale_in([live("c-west", 0, 1, 2, deleting=(2,))], [want("c-west", 1)])
    assert ids(plan) == [("c-west", "1")]


def test_servers_are_planned_like_pools_each_set_on_its_own():
    plan = scale_in([live("c-servers", 0, 1, 2, 3, 4), live("c-west", 0)],
                    [want("c-servers", 3, "server"), want("c-west", 1)])
    assert ids(plan) == [("c-servers", "4"), ("c-servers", "3")]
    assert {s["role"] for s in plan["steps"]} == {"server"}


def test_naming_more_than_the_spec_removes_is_refused():
    plan = scale_in([live("c-west", 0, 1, 2)], [want("c-west", 2)], ["0", "1"])
    assert plan["steps"] == []
    assert "names 2 instances of c-west (pool west) but the spec removes only 1" in plan["errors"][0]
    assert "Fix:" in plan["errors"][0]


def test_naming_an_instance_of_a_set_that_loses_none_is_refused():
    for name in ("c-west000001", "c-west/1"):
        plan = scale_in([live("c-west", 0, 1)], [want("c-west", 2)], [name])
        assert "nothing to remove" in plan["errors"][0] and "c-west" in plan["errors"][0]


def test_a_bare_instance_id_names_an_instance_of_the_set_being_scaled_in():
    # every scale set numbers its instances from 0: id 1 of the servers is not touched when west loses one
    plan = scale_in([live("c-servers", 0, 1, 2), live("c-west", 0, 1)],
                    [want("c-servers", 3, "server"), want("c-west", 1)], ["0"])
    assert plan["errors"] == [] and ids(plan) == [("c-west", "0")]
    plan = scale_in([live("c-servers", 0, 1, 2), live("c-west", 0, 1)],
                    [want("c-servers", 3, "server"), want("c-west", 1)], ["c-west/1"])
    assert plan["errors"] == [] and ids(plan) == [("c-west", "1")]


def test_a_bare_id_in_two_sets_being_scaled_in_is_refused():
    plan = scale_in([live("c-east", 0, 1), live("c-west", 0, 1)], [want("c-east", 1), want("c-west", 1)], ["0"])
    assert any("more than one scale set" in e and "SCALE_SET/ID" in e for e in plan["errors"])


def test_naming_an_unknown_instance_is_refused():
    plan = scale_in([live("c-west", 0, 1)], [want("c-west", 1)], ["9"])
    assert len(plan["errors"]) == 1 and "names 9, which no scale set" in plan["errors"][0]


def test_quorum():
    assert quorum_error(3, 3) == ""          # 3 -> 2, both healthy
    assert quorum_error(5, 5) == ""
    assert quorum_error(5, 4) == ""          # 4 left, 3 healthy = quorum of 4
    assert "below the quorum of 3" in quorum_error(5, 3)   # 4 left, only 2 healthy
    assert "below the quorum of 2" in quorum_error(3, 2)   # 2 left, 1 healthy
    assert "leaves none" in quorum_error(1, 1)
