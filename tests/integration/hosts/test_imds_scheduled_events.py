"""The sandbox IMDS ``/metadata/scheduledevents`` against the ARM emulator, without booting hosts.

The IMDS server runs in-process over a hosts state file whose "hosts" are loopback addresses
(127.0.0.1-3) mapped to instances of the session emulator, so each request is identified as the
instance it would come from inside a host. What the tests check is the wire contract of the
Scheduled Events docs (tests/integration/arm/reference/imds); the events themselves are the
emulator's (tests/integration/arm/test_scheduled_events.py).
"""
from __future__ import annotations

import http.client
import json
import os
import threading
import time
import uuid
from http.server import ThreadingHTTPServer

import pytest

from sandbox.hosts import imds_events, imds_server

pytest.importorskip("azure.mgmt.compute")
from tests.integration.arm.armwire import Clients  # noqa: E402
from tests.integration.arm.test_sdk_flows import network, vmss_model  # noqa: E402

REF = os.path.join(os.path.dirname(__file__), "..", "arm", "reference", "imds")
SE = "/metadata/scheduledevents"


@pytest.fixture(scope="module")
def cluster(arm):
    """Two scale sets in the session emulator: 'web' (2 instances, terminate notification PT15M) and 'other'."""
    az = Clients(arm)
    rg = f"imds-se-{uuid.uuid4().hex[:8]}"
    az.resource.resource_groups.create_or_update(rg, {"location": "westeurope"})
    subnet = network(az, rg)
    model = vmss_model(subnet.id, 2)
    model["properties"]["virtualMachineProfile"]["scheduledEventsProfile"] = {
        "terminateNotificationProfile": {"enable": True, "notBeforeTimeout": "PT15M"}}
    az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "web", model).result()
    az.compute.virtual_machine_scale_sets.begin_create_or_update(rg, "other", vmss_model(subnet.id, 1)).result()
    vms = {f"{s}_{v.instance_id}": v.id for s in ("web", "other")
           for v in az.compute.virtual_machine_scale_set_vms.list(rg, s)}
    yield az, rg, vms
    az.resource.resource_groups.begin_delete(rg).result()


@pytest.fixture
def imds(tmp_path, arm, cluster):
    _, _, vms = cluster
    state = {"hosts": {"h0": {"ip": "127.0.0.1", "arm_id": vms["web_0"]},
                       "h1": {"ip": "127.0.0.2", "arm_id": vms["web_1"]},
                       "hx": {"ip": "127.0.0.3", "arm_id": vms["other_0"]}},
             "arm": {"url": arm.endpoint["authority"], "ca": arm.ca_path}}
    (tmp_path / "state.json").write_text(json.dumps(state))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), imds_server.Handler)
    srv.state = imds_server._State(tmp_path)
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    def call(method="GET", version="2020-07-01", source="127.0.0.1", body=None, headers=None, path=SE):
        c = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], source_address=(source, 0), timeout=30)
        query = f"?api-version={version}" if version else ""
        c.request(method, path + query, body=json.dumps(body) if body is not None else None,
                  headers={"Metadata": "true"} if headers is None else headers)
        r = c.getresponse()
        raw = r.read()
        c.close()
        return r.status, json.loads(raw) if raw else None

    call.state_file = tmp_path / "state.json"
    yield call
    srv.shutdown()


def facts():
    with open(os.path.join(REF, "ScheduledEvents_Facts.json"), encoding="utf-8") as fh:
        return json.load(fh)


def test_requests_refused_as_imds_refuses_them(imds):
    assert imds_events.VERSIONS == sorted(facts()["versions"])            # the documented versions
    assert imds(headers={}) == (400, {"error": "Bad request. Required metadata header not specified"})
    assert imds(method="POST", headers={}, body={"StartRequests": []})[0] == 400
    assert imds(headers={"Metadata": "true", "X-Forwarded-For": "10.0.0.1"})[0] == 400
    code, body = imds(version=None)
    assert code == 400 and body["newest-versions"] == ["2020-07-01", "2019-08-01", "2019-04-01"]
    code, body = imds(version="2021-02-01")                               # an instance-metadata version
    assert code == 400 and "api-version is invalid" in body["error"]
    assert imds(method="PUT")[0] == 405
    assert imds(source="127.0.0.4")[0] == 404                             # not a VM of this sandbox
    code, body = imds()
    assert code == 200 and set(body) == {"DocumentIncarnation", "Events"}


def test_terminate_seen_per_api_version_and_approved_through_imds(imds, cluster):
    az, rg, vms = cluster
    poller = az.compute.virtual_machine_scale_set_vms.begin_delete(rg, "web", "1")
    code, doc = imds()
    assert code == 200
    event = next(e for e in doc["Events"] if e["EventType"] == "Terminate")
    assert event["Resources"] == ["web_1"] and set(event) == {
        "EventId", "EventStatus", "EventType", "ResourceType", "Resources", "NotBefore", "Description",
        "EventSource", "DurationInSeconds"}
    assert imds(source="127.0.0.2")[1] == doc                             # the other VM of the set: the same
    old = imds(version="2019-01-01")[1]["Events"]                         # before Description/EventSource/Duration
    assert set(old[0]) == {"EventId", "EventStatus", "EventType", "ResourceType", "Resources", "NotBefore"}
    assert imds(version="2017-11-01")[1]["Events"] == []                  # before Terminate existed
    assert imds(version="2017-03-01")[1]["DocumentIncarnation"] == doc["DocumentIncarnation"]
    assert imds(source="127.0.0.3")[1]["Events"] == []                    # another scale set sees nothing
    start = {"StartRequests": [{"EventId": event["EventId"]}]}
    assert imds("POST", source="127.0.0.3", body=start)[0] == 400        # not an event it has
    assert imds("POST", body={"StartRequests": [{"EventId": str(uuid.uuid4())}]})[0] == 400
    assert imds("POST", body={"StartRequest": []})[0] == 400              # malformed
    time.sleep(1.0)
    assert not poller.done()
    assert imds("POST", body=start) == (200, None)
    poller.result()
    assert [v.instance_id for v in az.compute.virtual_machine_scale_set_vms.list(rg, "web")] == ["0"]
    assert imds()[1]["Events"] == []


def test_polling_through_imds_enables_reboot_events(imds, cluster):
    az, rg, vms = cluster
    assert imds(source="127.0.0.3")[0] == 200                            # 'other' asks for events once
    poller = az.compute.virtual_machine_scale_set_vms.begin_restart(rg, "other", "0")
    code, doc = imds(source="127.0.0.3")
    reboot = doc["Events"][0]
    assert (reboot["EventType"], reboot["EventSource"], reboot["EventStatus"]) == ("Reboot", "User", "Scheduled")
    assert imds("POST", source="127.0.0.3", body={"StartRequests": [{"EventId": reboot["EventId"]}]})[0] == 200
    poller.result()
    assert imds(source="127.0.0.3")[1]["Events"] == []


def test_last_document_served_while_the_emulator_is_unreachable(imds, cluster):
    code, doc = imds()
    assert code == 200
    state = json.loads(imds.state_file.read_text())
    state["arm"]["url"] = "https://127.0.0.1:9"                          # nothing listens there
    imds.state_file.write_text(json.dumps(state))
    os.utime(imds.state_file, ns=(time.time_ns(), time.time_ns() + 1))
    assert imds() == (200, doc)
    assert imds("POST", body={"StartRequests": [{"EventId": str(uuid.uuid4())}]})[0] == 500
