"""Terminate notification, Scheduled Events, scale-in policy and instance protection in the emulator (issue 13).

Driven through the Azure SDK as a client would; what an instance sees is read with the admin API
``GET /_sandbox/scheduled-events?instance=ID`` (exactly what the sandbox IMDS serves, see
tests/integration/hosts/test_imds_scheduled_events.py). A private emulator with the recording backend
shows what happens to the instances; its ``gate`` file holds deletes and restarts so the Started state
can be looked at. Nothing here depends on timing: an operation that must wait has minutes of notice,
so "still waiting" is checked long before it could end, and the one test of a notice running out
shortens it with the sandbox's time-scale knob.
"""
from __future__ import annotations

import json
import os
import re
import time
import uuid
from email.utils import parsedate_to_datetime

import pytest
from azure.core.exceptions import HttpResponseError

from sandbox.arm.scheduled_events import MIN_NOTICE
from sandbox.arm.testing import ArmEmulator

from .armwire import Clients, Wire, compare
from .test_sdk_flows import network, vmss_model

LOC = "westeurope"
REF = os.path.join(os.path.dirname(__file__), "reference", "imds")
RFC1123 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                     r"\d{4} \d{2}:\d{2}:\d{2} GMT$")


def reference(name):
    with open(os.path.join(REF, name), encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    d = tmp_path_factory.mktemp("events")
    arm = ArmEmulator(provisioning_seconds=0.1, extra_args=[
        "--backend", "tests.integration.arm.recording_backend:RecordingBackend",
        "--hosts-opt", f"log={d / 'calls.jsonl'}", "--hosts-opt", f"gate={d / 'gate'}"]).start()
    arm.calls, arm.gate = d / "calls.jsonl", d / "gate"
    yield arm
    arm.cleanup()


@pytest.fixture(scope="module")
def az(emu):
    return Clients(emu)


def calls(emu, event, rg):
    """The recording backend's calls of one kind for instances of resource group ``rg``."""
    if not emu.calls.exists():
        return []
    return [c["payload"] for c in map(json.loads, emu.calls.read_text().splitlines())
            if c["event"] == event and c["payload"].get("resource_group") == rg]


def until(cond, timeout=60.0, what="condition"):
    deadline = time.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.time() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def scale_set(az, rg, name="ss", capacity=3, timeout="PT15M", policy="Manual", props=None, profile=None):
    subnet = network(az, rg)
    model = vmss_model(subnet.id, capacity, policy=policy)
    if timeout:
        model["properties"]["virtualMachineProfile"]["scheduledEventsProfile"] = {
            "terminateNotificationProfile": {"enable": True, "notBeforeTimeout": timeout}}
    model["properties"].update(props or {})
    model["properties"]["virtualMachineProfile"].update(profile or {})
    az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, name, model).result()
    return {v.instance_id: v for v in az.compute.virtual_machine_scale_set_vms.list(rg, name)}


def ids(az, rg, name="ss"):
    return sorted(v.instance_id for v in az.compute.virtual_machine_scale_set_vms.list(rg, name))


# -- the profile --------------------------------------------------------------------------------------------
def test_profile_round_trip_and_what_is_refused(emu, az, rg):
    scale_set(az, rg, capacity=1, timeout="PT5M")
    vmss = az.compute.virtual_machine_scale_sets
    got = vmss.get(rg, "ss").virtual_machine_profile.scheduled_events_profile.terminate_notification_profile
    assert (got.enable, got.not_before_timeout) == (True, "PT5M")
    vmss.begin_update(rg, "ss", {"properties": {"virtualMachineProfile": {"scheduledEventsProfile": {
        "terminateNotificationProfile": {"enable": True, "notBeforeTimeout": "PT15M"}}}}}).result()
    assert vmss.get(rg, "ss").virtual_machine_profile.scheduled_events_profile.terminate_notification_profile \
        .not_before_timeout == "PT15M"

    def refused(profile, props=None):
        body = {"properties": {"virtualMachineProfile": profile, **(props or {})}}
        with pytest.raises(HttpResponseError) as err:
            vmss.begin_update(rg, "ss", body)
        return err.value.status_code, err.value.error.code, err.value.error.message

    facts = reference("ScheduledEvents_Facts.json")["terminate_notification"]
    assert "between 5 and 15 minutes in ISO 8601" in facts["notBeforeTimeout"]
    for bad in ("PT4M", "PT15M1S", "PT1H", "10", "5 minutes"):
        status, code, message = refused({"scheduledEventsProfile": {"terminateNotificationProfile": {
            "enable": True, "notBeforeTimeout": bad}}})
        assert (status, code) == (400, "InvalidParameter") and bad in message
    assert refused({"priority": "Spot", "scheduledEventsProfile": {"terminateNotificationProfile": {
        "enable": True}}})[:2] == (400, "InvalidParameter")          # "cannot be enabled on Spot instances"
    assert refused({"scheduledEventsProfile": {"osImageNotificationProfile": {"enable": True}}})[1] == \
        "SandboxNotImplemented"                                       # refused loudly, not ignored
    assert refused({}, {"scaleInPolicy": {"rules": []}})[2] == \
        "Virtual Machine Scale Sets scale in policy must contain at least one rule."
    assert refused({}, {"scaleInPolicy": {"rules": ["Random"]}})[1] == "InvalidParameter"
    # before 2019-03-01 the members do not exist (the docs' troubleshooting answer)
    w = Wire(emu)
    path = f"/subscriptions/{emu.subscription_id}/resourceGroups/{rg}/providers/Microsoft.Compute/" \
           "virtualMachineScaleSets/ss"
    old = w.call("PATCH", path, {"properties": {"virtualMachineProfile": {"scheduledEventsProfile": {}}}},
                 api_version="2018-10-01")
    assert old.status_code == 400 and old.json()["error"] == {
        "code": "BadRequest", "message": "Could not find member 'scheduledEventsProfile' on object of type "
                                         "'VirtualMachineProfile'."}
    assert facts["minimum_api_version"] == "2019-03-01"
    assert w.call("GET", path, api_version="2018-10-01").status_code == 200  # a read of such a set is fine


def test_profile_change_reaches_an_instance_with_the_latest_model(emu, az, rg):
    vms = scale_set(az, rg, capacity=2, timeout=None)
    az.compute.virtual_machine_scale_sets.begin_update(rg, "ss", {"properties": {"virtualMachineProfile": {
        "scheduledEventsProfile": {"terminateNotificationProfile": {"enable": True, "notBeforeTimeout": "PT15M"}}}}}
    ).result()
    listed = az.compute.virtual_machine_scale_set_vms.list(rg, "ss")
    assert [v.latest_model_applied for v in listed] == [False, False]   # Manual policy: a model change
    az.compute.virtual_machine_scale_sets.begin_update_instances(rg, "ss", {"instanceIds": ["1"]}).result()
    # instance 0 still runs the old model: deleted at once, no event
    az.compute.virtual_machine_scale_set_vms.begin_delete(rg, "ss", "0").result()
    assert emu.scheduled_events(vms["1"].id)["Events"] == []
    poller = az.compute.virtual_machine_scale_set_vms.begin_delete(rg, "ss", "1")
    events = emu.scheduled_events(vms["1"].id)["Events"]
    assert [(e["EventType"], e["Resources"]) for e in events] == [("Terminate", ["ss_1"])]
    emu.approve_events(vms["1"].id, [events[0]["EventId"]])
    poller.result()
    assert ids(az, rg) == []


# -- terminate notification ---------------------------------------------------------------------------------
def test_delete_posts_terminate_and_waits_for_the_approval(emu, az, rg):
    vms = scale_set(az, rg, capacity=3)
    vm0, vm1, vm2 = (vms[i].id for i in "012")
    before = emu.scheduled_events(vm0)
    assert before == {"DocumentIncarnation": before["DocumentIncarnation"], "Events": []}
    asked = time.time()
    poller = az.compute.virtual_machine_scale_set_vms.begin_delete(rg, "ss", "1")
    doc = emu.scheduled_events(vm1)
    assert doc["DocumentIncarnation"] == before["DocumentIncarnation"] + 1
    # the shape of the documented example (scheduled-events.md, "Example responses")
    example = reference("ScheduledEvents_ExampleResponses.json")
    assert compare(example[1], doc) == []
    event = doc["Events"][0]
    assert list(event) == list(example[1]["Events"][0])
    facts = reference("ScheduledEvents_Facts.json")
    assert uuid.UUID(event["EventId"]) and event["EventType"] in facts["EventType"]
    assert (event["EventType"], event["ResourceType"], event["EventStatus"], event["Resources"]) == \
        ("Terminate", "VirtualMachine", "Scheduled", ["ss_1"])    # "{scale-set-name}_{instance-id}"
    assert event["EventSource"] in facts["EventSource"] and event["DurationInSeconds"] == -1
    assert RFC1123.match(event["NotBefore"]) and RFC1123.match(facts["NotBefore_example"])
    not_before = parsedate_to_datetime(event["NotBefore"]).timestamp()
    assert asked + 15 * 60 - 2 <= not_before <= time.time() + 15 * 60   # PT15M from the request
    # broadcast to the scale set: every instance sees the same document
    assert emu.scheduled_events(vm0) == emu.scheduled_events(vm2) == doc
    # the delete waits: the instance is still there, Deleting
    time.sleep(1.5)
    assert not poller.done() and calls(emu, "instance_deleted", rg) == []
    assert az.compute.virtual_machine_scale_set_vms.get(rg, "ss", "1").provisioning_state == "Deleting"
    # an unknown id approves nothing; the event's id from any instance that sees it does
    with pytest.raises(Exception, match="400"):
        emu.approve_events(vm0, [str(uuid.uuid4()), event["EventId"]])
    assert not poller.done()
    emu.gate.touch()   # hold the delete itself, to see the Started state
    try:
        emu.approve_events(vm0, [event["EventId"].upper()])
        started = until(lambda: emu.scheduled_events(vm0)["Events"][0]["EventStatus"] == "Started" and
                        emu.scheduled_events(vm0))
        assert started["DocumentIncarnation"] == doc["DocumentIncarnation"] + 1
        assert compare(example[2], started) == [] and started["Events"][0]["NotBefore"] == ""
        emu.approve_events(vm2, [event["EventId"]])   # already started: still a valid id (200)
    finally:
        emu.gate.unlink()
    poller.result()
    assert ids(az, rg) == ["0", "2"]
    assert emu.scheduled_events(vm0) == {"DocumentIncarnation": doc["DocumentIncarnation"] + 2, "Events": []}
    assert az.compute.virtual_machine_scale_sets.get(rg, "ss").sku.capacity == 2


def test_not_before_passing_deletes_without_an_approval(emu, az, rg):
    vms = scale_set(az, rg, capacity=2, timeout="PT5M")    # the shortest allowed notice ...
    emu.set_event_time_scale(0.01)                          # ... 3 seconds here (a sandbox knob)
    try:
        poller = az.compute.virtual_machine_scale_set_vms.begin_delete(rg, "ss", "0")
        event = emu.scheduled_events(vms["1"].id)["Events"][0]
        assert parsedate_to_datetime(event["NotBefore"]).timestamp() <= time.time() + 5
        poller.result()
    finally:
        emu.set_event_time_scale(1)
    assert ids(az, rg) == ["1"] and emu.scheduled_events(vms["1"].id)["Events"] == []


def test_batch_delete_and_scale_in_wait_for_every_pending_delete(emu, az, rg):
    vms = scale_set(az, rg, capacity=4)
    vmss = az.compute.virtual_machine_scale_sets
    batch = vmss.begin_delete_instances(rg, "ss", {"instanceIds": ["0", "1"]})
    scale_in = vmss.begin_update(rg, "ss", {"sku": {"capacity": 1}})   # Default policy: the newest of 2, 3
    events = {e["Resources"][0]: e["EventId"] for e in emu.scheduled_events(vms["2"].id)["Events"]}
    assert sorted(events) == ["ss_0", "ss_1", "ss_3"]
    # "Approve all pending deletes": approved ones wait while another delete of the set is unapproved
    emu.approve_events(vms["2"].id, [events["ss_0"], events["ss_1"]])
    time.sleep(1.5)
    assert not batch.done() and not scale_in.done() and ids(az, rg) == ["0", "1", "2", "3"]
    emu.approve_events(vms["3"].id, [events["ss_3"]])
    batch.result()
    scale_in.result()
    assert ids(az, rg) == ["2"] and emu.scheduled_events(vms["2"].id)["Events"] == []


def test_without_the_notification_deletes_go_ahead_at_once(emu, az, rg):
    vms = scale_set(az, rg, capacity=3, timeout=None)
    az.compute.virtual_machine_scale_set_vms.begin_delete(rg, "ss", "2").result()
    az.compute.virtual_machine_scale_sets.begin_update(rg, "ss", {"sku": {"capacity": 1}}).result()
    assert ids(az, rg) == ["0"] and emu.scheduled_events(vms["0"].id)["Events"] == []


def test_flexible_member_delete_posts_terminate_for_its_vm_name(emu, az, rg):
    subnet = network(az, rg)
    model = vmss_model(subnet.id, 2, mode="Flexible")
    model["properties"]["virtualMachineProfile"]["scheduledEventsProfile"] = {
        "terminateNotificationProfile": {"enable": True}}              # notBeforeTimeout defaults to PT5M
    vmss = az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "flex", model).result()
    vms = sorted(az.compute.virtual_machines.list(rg, filter=f"'virtualMachineScaleSet/id' eq '{vmss.id}'"),
                 key=lambda v: v.name)
    asked = time.time()
    poller = az.compute.virtual_machines.begin_delete(rg, vms[0].name)
    event = emu.scheduled_events(vms[1].id)["Events"][0]              # the other member sees it too
    assert (event["EventType"], event["Resources"]) == ("Terminate", [vms[0].name])
    assert parsedate_to_datetime(event["NotBefore"]).timestamp() <= time.time() + 5 * 60
    assert parsedate_to_datetime(event["NotBefore"]).timestamp() >= asked + 5 * 60 - 2
    emu.approve_events(vms[0].id, [event["EventId"]])
    poller.result()
    assert [v.name for v in az.compute.virtual_machines.list(rg)] == [vms[1].name]


def test_pending_events_survive_an_emulator_restart(tmp_path):
    emu = ArmEmulator(state_dir=str(tmp_path), provisioning_seconds=0.1).start()
    try:
        az = Clients(emu)
        az.resource.resource_groups.create_or_update("keep", {"location": LOC})
        vms = scale_set(az, "keep", capacity=2)
        w = Wire(emu)
        resp = w.call("DELETE", vms["1"].id)
        assert resp.status_code == 202
        doc = emu.scheduled_events(vms["0"].id)
        emu.restart()
        w = Wire(emu)
        assert emu.scheduled_events(vms["0"].id) == doc         # same events, same incarnation
        assert w.get(resp.headers["Azure-AsyncOperation"]).json()["status"] == "InProgress"
        emu.approve_events(vms["1"].id, [doc["Events"][0]["EventId"]])
        assert w.wait(resp)["status"] == "Succeeded"
        assert ids(Clients(emu), "keep") == ["0"]
    finally:
        emu.cleanup()


# -- scale-in policy and instance protection ------------------------------------------------------------------
@pytest.mark.parametrize(("rule", "left"), [(None, ["0", "1"]), ("NewestVM", ["0", "1"]), ("OldestVM", ["2", "3"])])
def test_capacity_decrease_picks_by_the_scale_in_policy(az, rg, rule, left):
    props = {"scaleInPolicy": {"rules": [rule]}} if rule else None
    scale_set(az, rg, capacity=4, timeout=None, props=props)
    az.compute.virtual_machine_scale_sets.begin_update(rg, "ss", {"sku": {"capacity": 2}}).result()
    assert ids(az, rg) == left


def test_protected_instances_are_never_picked_but_can_be_deleted(emu, az, rg):
    vms = scale_set(az, rg, capacity=3, timeout=None, props={"scaleInPolicy": {"rules": ["OldestVM"]}})
    vmvms = az.compute.virtual_machine_scale_set_vms
    vmvms.begin_update(rg, "ss", "0", {"location": LOC, "properties": {"protectionPolicy": {
        "protectFromScaleIn": True}}}).result()
    vmvms.begin_update(rg, "ss", "1", {"location": LOC, "properties": {"protectionPolicy": {
        "protectFromScaleIn": True, "protectFromScaleSetActions": True}}}).result()
    az.compute.virtual_machine_scale_sets.begin_update(rg, "ss", {"sku": {"capacity": 2}}).result()
    assert ids(az, rg) == ["0", "1"]                 # the oldest unprotected one went
    with pytest.raises(HttpResponseError) as err:    # only protected instances left to scale in
        az.compute.virtual_machine_scale_sets.begin_update(rg, "ss", {"sku": {"capacity": 1}})
    assert err.value.status_code == 409 and err.value.error.code == "OperationNotAllowed"
    refused = az.compute.virtual_machine_scale_sets.get(rg, "ss")  # a refused request changes nothing
    assert refused.sku.capacity == 2 and refused.provisioning_state == "Succeeded"
    vmvms.begin_delete(rg, "ss", "0").result()       # "can be manually deleted by the user at any time"
    assert ids(az, rg) == ["1"]
    assert vms["1"].id


def test_protection_from_scale_set_actions(emu, az, rg):
    vms = scale_set(az, rg, capacity=2, timeout=None, policy="Automatic")
    vmvms = az.compute.virtual_machine_scale_set_vms
    with pytest.raises(HttpResponseError) as err:    # "You can't specify protectFromScaleIn: false ..."
        vmvms.begin_update(rg, "ss", "0", {"location": LOC, "properties": {"protectionPolicy": {
            "protectFromScaleIn": False, "protectFromScaleSetActions": True}}})
    assert err.value.status_code == 400 and err.value.error.code == "InvalidParameter"
    vmvms.begin_update(rg, "ss", "0", {"location": LOC, "properties": {"protectionPolicy": {
        "protectFromScaleIn": True, "protectFromScaleSetActions": True}}}).result()
    before = len(calls(emu, "instance_restarted", rg))
    az.compute.virtual_machine_scale_sets.begin_restart(rg, "ss").result()    # a scale-set action
    restarted = [c["instance_id"] for c in calls(emu, "instance_restarted", rg)[before:]]
    assert restarted == ["1"]
    az.compute.virtual_machine_scale_sets.begin_update(rg, "ss", {"tags": {"model": "v2"}, "properties": {
        "virtualMachineProfile": {"userData": "djI="}}}).result()               # a model change, Automatic
    assert {v.instance_id: v.latest_model_applied for v in vmvms.list(rg, "ss")} == {"0": False, "1": True}
    vmvms.begin_restart(rg, "ss", "0").result()      # an instance operation is not blocked
    assert calls(emu, "instance_restarted", rg)[-1]["instance_id"] == "0"
    assert vms["0"].id


# -- Reboot / Redeploy / platform events -----------------------------------------------------------------------
def test_restart_posts_reboot_only_once_the_scale_set_polls(emu, az, rg):
    facts = reference("ScheduledEvents_Facts.json")["user_initiated"]
    vms = scale_set(az, rg, capacity=2, timeout=None)
    vm0 = vms["0"].id
    vmvms = az.compute.virtual_machine_scale_set_vms
    vmvms.begin_restart(rg, "ss", "0").result()      # nobody asked for events: Scheduled Events is off,
    assert calls(emu, "instance_restarted", rg)[-1]["instance_id"] == "0"   # the restart went ahead at once
    emu.scheduled_events(vm0)                         # the first request enables it for the scale set
    for action, event_type in (("restart", "Reboot"), ("redeploy", "Redeploy")):
        before = len(calls(emu, "instance_restarted", rg))
        poller = getattr(vmvms, f"begin_{action}")(rg, "ss", "1")
        event = emu.scheduled_events(vm0)["Events"][0]
        assert (event["EventType"], event["EventSource"], event["Resources"]) == (event_type, "User", ["ss_1"])
        if event_type == "Reboot":
            assert event["Description"] == facts["Reboot_description"]
        time.sleep(1.0)
        assert not poller.done() and len(calls(emu, "instance_restarted", rg)) == before
        emu.approve_events(vms["1"].id, [event["EventId"]])
        poller.result()
        assert calls(emu, "instance_restarted", rg)[-1]["instance_id"] == "1"
        assert emu.scheduled_events(vm0)["Events"] == []
    assert MIN_NOTICE["Reboot"] == 15 * 60 and MIN_NOTICE["Redeploy"] == 10 * 60  # the documented notice


def test_automatically_approved_restart_skips_the_scheduled_state(emu, az, rg):
    vms = scale_set(az, rg, capacity=1, timeout=None, props={"scheduledEventsPolicy": {
        "userInitiatedReboot": {"automaticallyApprove": True}}})
    vm0 = vms["0"].id
    emu.scheduled_events(vm0)
    emu.gate.touch()
    try:
        poller = az.compute.virtual_machine_scale_set_vms.begin_restart(rg, "ss", "0")
        events = emu.scheduled_events(vm0)["Events"]
        assert [(e["EventType"], e["EventStatus"], e["NotBefore"]) for e in events] == [("Reboot", "Started", "")]
    finally:
        emu.gate.unlink()
    poller.result()
    assert emu.scheduled_events(vm0)["Events"] == []


def test_platform_events_of_the_admin_api(emu, az, rg):
    vms = scale_set(az, rg, capacity=3, timeout=None, profile={"priority": "Spot", "evictionPolicy": "Delete"})
    vm0, vm1, vm2 = (vms[i].id for i in "012")
    freeze = emu.platform_event([vm0, vm1], "Freeze")
    assert (freeze["EventSource"], freeze["Resources"], freeze["DurationInSeconds"]) == \
        ("Platform", ["ss_0", "ss_1"], 5)
    emu.approve_events(vm2, [freeze["EventId"]])      # one approval lets it go on for all its Resources
    until(lambda: emu.scheduled_events(vm2)["Events"] == [], what="freeze done")
    preempt = emu.platform_event([vm2], "Preempt")
    assert preempt["EventType"] == "Preempt"
    emu.approve_events(vm2, [preempt["EventId"]])
    until(lambda: ids(az, rg) == ["0", "1"], what="evicted")  # evictionPolicy Delete
    assert az.compute.virtual_machine_scale_sets.get(rg, "ss").sku.capacity == 2
    before = len(calls(emu, "instance_restarted", rg))
    reboot = emu.platform_event([vm0], "Reboot", NotBeforeSeconds=1)   # not approved: goes ahead at NotBefore
    assert reboot["Description"] == "Host server is undergoing maintenance."
    until(lambda: len(calls(emu, "instance_restarted", rg)) > before, what="platform reboot")
    assert calls(emu, "instance_restarted", rg)[-1]["instance_id"] == "0"
