"""The on-instance Scheduled Events service (roles/scheduled_events/files/hashistack_scheduled_events.py)
against a fake IMDS and fake Nomad / Consul HTTP APIs on loopback: which events it acts on, the
DocumentIncarnation, the drain deadline, the order drain -> leave -> approve, and eligibility after a
Reboot."""

from __future__ import annotations

import email.utils
import importlib.util
import json
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles/scheduled_events/files/hashistack_scheduled_events.py"
_spec = importlib.util.spec_from_file_location("hashistack_scheduled_events", SCRIPT)
se = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(se)

NOW = 1_800_000_000.0
ME = "web_3"
NODE = "5f4a2c1e-0000-4000-8000-000000000001"


def rfc1123(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


class Fake:
    """One loopback server playing IMDS, Nomad and Consul; every request lands in ``self.calls`` as
    (method, path, body, headers)."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.doc = {"DocumentIncarnation": 1, "Events": []}
        self.node = {"ID": NODE, "DrainStrategy": None, "SchedulingEligibility": "eligible"}
        self.client = True
        self.drain_polls = 1              # GETs of the node that still show the drain
        self.fail: dict[tuple, int] = {}  # (method, path) -> status to answer instead
        fake = self

        class H(BaseHTTPRequestHandler):
            def _do(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                path = urllib.parse.urlsplit(self.path).path
                fake.calls.append((self.command, path, body, dict(self.headers)))
                code, out = fake.fail.get((self.command, path)) or 0, None
                if not code:
                    code, out = fake.route(self.command, path, body, self.headers)
                data = (out if isinstance(out, str) else json.dumps(out)).encode() if out is not None else b""
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = _do

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.addr = f"127.0.0.1:{self.srv.server_address[1]}"

    def route(self, method, path, body, headers):
        if path.startswith("/metadata/"):
            if headers.get("Metadata") != "true":
                return 400, {"error": "Bad request. Required metadata header not specified"}
            if path == "/metadata/instance/compute/name":
                return 200, ME
            if method == "GET":
                return 200, self.doc
            ids = {e["EventId"] for e in self.doc["Events"]}
            if not all(r["EventId"] in ids for r in body["StartRequests"]):
                return 400, {"error": "Bad request"}
            for e in self.doc["Events"]:
                if any(r["EventId"] == e["EventId"] for r in body["StartRequests"]):
                    e["EventStatus"] = "Started"
            return 200, None
        if path == "/v1/agent/self":
            return 200, {"stats": {"client": {"node_id": NODE}} if self.client else {"nomad": {}}}
        if path == f"/v1/node/{NODE}/drain":
            self.node["DrainStrategy"] = body["DrainSpec"]
            self.node["SchedulingEligibility"] = "ineligible" if body["DrainSpec"] else "eligible"
            return 200, {"Index": 1}
        if path == f"/v1/node/{NODE}":
            if self.node["DrainStrategy"] and self.drain_polls > 0:
                self.drain_polls -= 1
            elif self.node["DrainStrategy"]:
                self.node["DrainStrategy"] = None   # drain complete
            return 200, self.node
        if path == f"/v1/node/{NODE}/eligibility":
            if self.node["DrainStrategy"]:
                return 400, "can not set node's scheduling eligibility to eligible while it is draining"
            self.node["SchedulingEligibility"] = body["Eligibility"]
            return 200, {"Index": 2}
        if path == "/v1/agent/leave" and method == "PUT":
            return 200, None
        return 404, {"error": "not found"}

    def event(self, kind="Terminate", resources=(ME,), status="Scheduled", not_before=NOW + 600, eid=None):
        e = {"EventId": eid or f"{kind}-{len(self.doc['Events'])}", "EventType": kind, "ResourceType": "VirtualMachine",
             "Resources": list(resources), "EventStatus": status, "NotBefore": rfc1123(not_before) if not_before else "",
             "Description": "", "EventSource": "Platform", "DurationInSeconds": -1}
        self.doc["Events"].append(e)
        self.doc["DocumentIncarnation"] += 1
        return e

    def actions(self):
        """The writes, in order, as short names."""
        names = {f"/v1/node/{NODE}/drain": "drain", f"/v1/node/{NODE}/eligibility": "eligible",
                 "/v1/agent/leave": "leave", "/metadata/scheduledevents": "approve"}
        return [names[p] for m, p, _b, _h in self.calls if m in ("PUT", "POST")]

    def bodies(self, name):
        path = {"drain": f"/v1/node/{NODE}/drain", "approve": "/metadata/scheduledevents"}[name]
        return [b for m, p, b, _h in self.calls if m in ("PUT", "POST") and p == path]


class Clock:
    def __init__(self):
        self.t = NOW

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


@pytest.fixture
def fake():
    f = Fake()
    yield f
    f.srv.shutdown()
    f.srv.server_close()


def service(fake, tmp_path, clock=None, **cfg):
    clock = clock or Clock()
    base = {"imds_address": fake.addr, "nomad_addr": f"http://{fake.addr}", "consul_addr": f"http://{fake.addr}",
            "state_file": str(tmp_path / "state" / "scheduled-events.json")}
    return se.Service(dict(base, **cfg), clock=clock, sleep=clock.sleep)


@pytest.mark.parametrize("left, margin, expected", [
    (600, 60, 540),          # the default 10-minute notice: drain for 9 minutes
    (900, 60, 840),
    (30, 60, 20),            # a Preempt's 30 s: the margin shrinks to a third of what is left
    (0.5, 60, -1),           # no time left: force
    (-20, 60, -1),           # NotBefore passed
])
def test_drain_deadline_is_shorter_than_the_notice(left, margin, expected):
    assert se.drain_deadline(NOW + left, NOW, margin) == pytest.approx(expected)
    assert se.drain_deadline(None, NOW, margin) == -1


def test_not_before_parsed_as_imds_writes_it():
    assert se.parse_not_before("Mon, 19 Sep 2016 18:29:47 GMT") == 1474309787
    assert se.parse_not_before("") is None and se.parse_not_before("garbage") is None


def test_terminate_drains_then_leaves_then_approves(fake, tmp_path):
    e = fake.event("Terminate")
    svc = service(fake, tmp_path)
    svc.step()
    assert fake.actions() == ["drain", "leave", "approve"]
    (drain,) = fake.bodies("drain")
    assert drain["DrainSpec"] == {"Deadline": 540 * 10**9, "IgnoreSystemJobs": False}
    assert e["EventId"] in drain["Meta"]["message"]
    assert fake.bodies("approve") == [{"StartRequests": [{"EventId": e["EventId"]}]}]
    # the approval came only after the node showed the drain complete
    writes = [(m, p) for m, p, _b, _h in fake.calls]
    assert writes.index(("GET", f"/v1/node/{NODE}")) < writes.index(("PUT", "/v1/agent/leave"))
    assert fake.node["DrainStrategy"] is None


def test_preempt_is_handled_like_terminate_with_its_short_notice(fake, tmp_path):
    fake.event("Preempt", not_before=NOW + 30)
    service(fake, tmp_path).step()
    assert fake.actions() == ["drain", "leave", "approve"]
    assert fake.bodies("drain")[0]["DrainSpec"]["Deadline"] == 20 * 10**9


def test_a_drain_that_does_not_finish_still_leaves_and_approves_before_not_before(fake, tmp_path):
    fake.event("Terminate", not_before=NOW + 120)
    fake.drain_polls = 10**6            # never completes
    clock = Clock()
    service(fake, tmp_path, clock=clock, margin_seconds=30).step()
    assert fake.actions() == ["drain", "leave", "approve"]
    assert fake.bodies("drain")[0]["DrainSpec"]["Deadline"] == 90 * 10**9
    assert NOW + 90 <= clock.t < NOW + 120   # waited out the drain deadline, approved before NotBefore


def test_events_for_other_instances_and_other_kinds_are_left_alone(fake, tmp_path):
    fake.event("Terminate", resources=("web_1",))
    fake.event("Freeze")
    service(fake, tmp_path).step()
    assert fake.actions() == []


def test_an_event_already_started_is_not_drained_for(fake, tmp_path):
    fake.event("Terminate", status="Started", not_before=None)
    service(fake, tmp_path).step()
    assert fake.actions() == []


def test_same_incarnation_is_not_acted_on_twice(fake, tmp_path):
    fake.event("Reboot")
    svc = service(fake, tmp_path)
    svc.step()
    svc.step()
    assert fake.actions() == ["drain", "approve"]
    # a restarted service reads the state file: still nothing twice
    service(fake, tmp_path).step()
    assert fake.actions() == ["drain", "approve"]
    # a new event (new incarnation) is acted on
    fake.event("Terminate", eid="t-2")
    svc.step()
    assert fake.actions() == ["drain", "approve", "drain", "leave", "approve"]


def test_failed_approval_is_retried_without_draining_again(fake, tmp_path):
    e = fake.event("Terminate")
    fake.fail[("POST", "/metadata/scheduledevents")] = 500
    svc = service(fake, tmp_path)
    svc.step()
    del fake.fail[("POST", "/metadata/scheduledevents")]
    svc.step()
    assert [b for b in fake.bodies("approve")] == [{"StartRequests": [{"EventId": e["EventId"]}]}] * 2
    assert fake.actions() == ["drain", "leave", "approve", "approve"]
    assert e["EventStatus"] == "Started"


def test_reboot_drains_approves_and_restores_eligibility_when_back(fake, tmp_path):
    e = fake.event("Reboot", not_before=NOW + 900)
    service(fake, tmp_path).step()
    assert fake.actions() == ["drain", "approve"]                 # no Consul leave: the node comes back
    assert fake.node["SchedulingEligibility"] == "ineligible"
    # still listed (Started) while the VM restarts: not eligible yet
    service(fake, tmp_path).step()
    assert fake.node["SchedulingEligibility"] == "ineligible"
    # back from the reboot (a new process, same state file); the event is gone
    fake.doc["Events"].remove(e)
    fake.doc["DocumentIncarnation"] += 1
    svc = service(fake, tmp_path)
    svc.step()
    assert fake.actions()[-1] == "eligible" and fake.node["SchedulingEligibility"] == "eligible"
    state = json.loads((tmp_path / "state" / "scheduled-events.json").read_text())
    assert state["restore"] is None and state["events"] == {}
    svc.step()
    assert fake.actions().count("eligible") == 1


def test_eligibility_restored_once_nomad_answers_again(fake, tmp_path):
    e = fake.event("Redeploy")
    service(fake, tmp_path).step()
    fake.doc["Events"].remove(e)
    fake.doc["DocumentIncarnation"] += 1
    fake.fail[("GET", f"/v1/node/{NODE}")] = 503               # agent not up yet after the redeploy
    svc = service(fake, tmp_path)
    svc.step()
    assert "eligible" not in fake.actions()
    del fake.fail[("GET", f"/v1/node/{NODE}")]
    svc.step()
    assert fake.actions()[-1] == "eligible"


def test_no_nomad_client_still_leaves_and_approves(fake, tmp_path):
    fake.client = False                      # a Nomad server instance
    fake.event("Terminate")
    service(fake, tmp_path).step()
    assert fake.actions() == ["leave", "approve"]


def test_unreachable_agents_do_not_hold_the_approval(fake, tmp_path):
    fake.event("Terminate")
    service(fake, tmp_path, nomad_addr="http://127.0.0.1:9", consul_addr="http://127.0.0.1:9").step()
    assert fake.actions() == ["approve"]


def test_tokens_are_read_from_files_and_sent_as_headers(fake, tmp_path):
    (tmp_path / "nomad.token").write_text("nomad-secret\n")
    (tmp_path / "consul.token").write_text("consul-secret\n")
    fake.event("Terminate")
    service(fake, tmp_path, nomad_token_file=str(tmp_path / "nomad.token"),
            consul_token_file=str(tmp_path / "consul.token")).step()
    sent = {p: h for m, p, _b, h in fake.calls if m == "PUT"}
    assert sent[f"/v1/node/{NODE}/drain"]["X-Nomad-Token"] == "nomad-secret"
    assert sent["/v1/agent/leave"]["X-Consul-Token"] == "consul-secret"
    assert all(h.get("Metadata") == "true" for m, p, _b, h in fake.calls if p.startswith("/metadata/"))


def test_config_errors_name_the_file_and_the_keys(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"nomad_address": "x"}))
    r = subprocess.run([sys.executable, str(SCRIPT), "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and str(cfg) in r.stdout and "nomad_address" in r.stdout and "nomad_addr" in r.stdout
    r = subprocess.run([sys.executable, str(SCRIPT), "--config", str(tmp_path / "missing.json")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "missing.json" in r.stdout


def test_restore_dropped_when_the_node_is_gone(fake, tmp_path, capsys):
    e = fake.event("Reboot")
    service(fake, tmp_path).step()
    fake.doc["Events"].remove(e)
    fake.doc["DocumentIncarnation"] += 1
    fake.fail[("GET", f"/v1/node/{NODE}")] = 404                # new data dir: a new node registered
    svc = service(fake, tmp_path)
    svc.step()
    svc.step()
    assert "eligible" not in fake.actions() and svc.state["restore"] is None
    assert capsys.readouterr().out.count(f"node {NODE} no longer exists") == 1


class Stop(Exception):
    pass


def test_imds_errors_logged_once_until_it_answers_again(fake, tmp_path, capsys):
    fake.fail[("GET", "/metadata/scheduledevents")] = 500
    svc = service(fake, tmp_path)
    polls = []

    def sleep(s):
        polls.append(s)
        if len(polls) == 3:
            del fake.fail[("GET", "/metadata/scheduledevents")]
        if len(polls) == 5:
            raise Stop

    svc.sleep = sleep
    with pytest.raises(Stop):
        svc.run()
    out = capsys.readouterr().out
    assert out.count("HTTP 500") == 1 and out.count("imds: answering again") == 1
    assert polls == [5.0] * 5


def test_event_naming_other_vms_too_is_drained_for_but_not_approved(fake, tmp_path):
    fake.event("Redeploy", resources=("web_1", ME))            # a platform event over several VMs
    svc = service(fake, tmp_path)
    svc.step()
    svc.step()
    assert fake.actions() == ["drain"]                          # approving would start it for web_1 too
