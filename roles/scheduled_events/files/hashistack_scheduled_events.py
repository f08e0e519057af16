# Copyright: hashistack.azure maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hashistack-scheduled-events: drain this instance before Azure deletes, evicts, reboots or redeploys it.

Polls the instance's Azure IMDS Scheduled Events. On a Terminate or Preempt naming this VM it drains
the local Nomad node (deadline shorter than the notice), makes the local Consul agent leave and then
approves the event, so the delete proceeds at once instead of waiting out the notice. On a Reboot or
Redeploy it drains, approves, and makes the node eligible again once the event is over (recorded in
the state file, so that survives the reboot). Every action is a line on stdout (the journal).

python3 standard library only: the roles and the boot path install this same file. Config: a JSON
file (``--config``, keys as in DEFAULTS).
"""

from __future__ import annotations

import argparse
import email.utils
import json
import os
import sys
import time
import urllib.error
import urllib.request

API_VERSION = "2020-07-01"
DEFAULTS = {
    "imds_address": "169.254.169.254",   # Azure's fixed IMDS address
    "nomad_addr": "http://127.0.0.1:4646",
    "nomad_token_file": "",              # read at each use (ACL tokens may be written later)
    "consul_addr": "http://127.0.0.1:8500",
    "consul_token_file": "",
    "poll_seconds": 5.0,
    # The drain deadline is the notice left minus this margin (at most a third of the notice), so that
    # the Consul leave and the approval happen before NotBefore.
    "margin_seconds": 60.0,
    "state_file": "/var/lib/hashistack/scheduled-events.json",
    "timeout_seconds": 10.0,
}
DRAIN_EVENTS = ("Terminate", "Preempt")       # the instance goes away: drain, leave, approve
RETURN_EVENTS = ("Reboot", "Redeploy")        # it comes back: drain, approve, eligible again after


def log(message: str) -> None:
    print(message, flush=True)


class HttpError(Exception):
    """An HTTP call that failed: no answer (status None), or a status other than 2xx."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def call(method: str, url: str, body=None, headers=None, timeout: float = 10.0):
    """JSON request; returns the decoded body (None when empty). Raises HttpError."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace").strip()
        raise HttpError(f"{method} {url}: HTTP {exc.code} {detail}", exc.code) from None
    except (OSError, ValueError) as exc:
        raise HttpError(f"{method} {url}: {exc}") from None
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def read_token(path: str) -> str:
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def parse_not_before(value) -> float | None:
    """NotBefore (RFC 1123, e.g. 'Mon, 19 Sep 2016 18:29:47 GMT') as epoch seconds; None when empty."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def drain_deadline(not_before: float | None, now: float, margin: float) -> float:
    """Seconds the Nomad drain may take: the notice left minus the margin (at most a third of the notice
    left, so a short Preempt notice still drains for most of it). -1 (force at once) when no time is left."""
    if not_before is None:
        return -1.0
    left = not_before - now
    deadline = left - min(margin, left / 3.0)
    return deadline if deadline >= 1.0 else -1.0


def own_events(doc: dict, me: str) -> list[dict]:
    """The events of the document that name this VM among their Resources."""
    return [e for e in (doc.get("Events") or []) if me in (e.get("Resources") or [])]


class Imds:
    def __init__(self, address: str, timeout: float):
        self.base = f"http://{address}/metadata"
        self.timeout = timeout

    def _call(self, method, path, body=None):
        return call(method, self.base + path, body, {"Metadata": "true"}, self.timeout)

    def name(self) -> str:
        return str(self._call("GET", "/instance/compute/name?api-version=2021-02-01&format=text")).strip()

    def document(self) -> dict:
        return self._call("GET", f"/scheduledevents?api-version={API_VERSION}")

    def approve(self, event_id: str) -> None:
        self._call("POST", f"/scheduledevents?api-version={API_VERSION}", {"StartRequests": [{"EventId": event_id}]})


class Agent:
    """The local Nomad or Consul HTTP API (token from a file, sent only as a header)."""

    def __init__(self, addr: str, token_file: str, header: str, timeout: float):
        self.addr, self.token_file, self.header, self.timeout = addr.rstrip("/"), token_file, header, timeout

    def __call__(self, method: str, path: str, body=None):
        token = read_token(self.token_file)
        return call(method, self.addr + path, body, {self.header: token} if token else {}, self.timeout)


class Service:
    def __init__(self, cfg: dict, clock=time.time, sleep=time.sleep):
        self.cfg = dict(DEFAULTS, **cfg)
        timeout = float(self.cfg["timeout_seconds"])
        self.imds = Imds(self.cfg["imds_address"], timeout)
        self.nomad = Agent(self.cfg["nomad_addr"], self.cfg["nomad_token_file"], "X-Nomad-Token", timeout)
        self.consul = Agent(self.cfg["consul_addr"], self.cfg["consul_token_file"], "X-Consul-Token", timeout)
        self.clock, self.sleep = clock, sleep
        self.me: str | None = None
        # incarnation: last document fully handled; events: EventId -> what was done ("approved"; "drained":
        # approval still to send; "unapproved", "ignored", "missed"); restore: a Reboot/Redeploy after which
        # the node must become eligible again.
        self.state = {"incarnation": None, "events": {}, "restore": None}
        self._load()

    # ------------------------------------------------------------------ state file
    def _load(self):
        try:
            with open(self.cfg["state_file"], encoding="utf-8") as fh:
                self.state.update(json.load(fh))
        except (OSError, ValueError):
            pass

    def _save(self):
        path = self.cfg["state_file"]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.state, fh)
        os.replace(tmp, path)

    # ------------------------------------------------------------------ Nomad / Consul
    def node_id(self) -> str | None:
        try:
            info = self.nomad("GET", "/v1/agent/self") or {}
        except HttpError as exc:
            log(f"nomad: agent unreachable, nothing to drain ({exc})")
            return None
        nid = ((info.get("stats") or {}).get("client") or {}).get("node_id")
        if not nid:
            log("nomad: this agent runs no client, nothing to drain")
        return nid or None

    def drain(self, event: dict) -> str | None:
        """Drains the local Nomad node and waits until the drain is over or the time for it is up."""
        nid = self.node_id()
        if nid is None:
            return None
        now = self.clock()
        not_before = parse_not_before(event.get("NotBefore"))
        deadline = drain_deadline(not_before, now, float(self.cfg["margin_seconds"]))
        spec = {"Deadline": int(deadline * 1e9) if deadline > 0 else -1, "IgnoreSystemJobs": False}
        meta = {"message": f"Azure {event['EventType']} {event['EventId']}", "drained_by": "hashistack-scheduled-events"}
        try:
            self.nomad("PUT", f"/v1/node/{nid}/drain", {"NodeID": nid, "DrainSpec": spec, "Meta": meta})
        except HttpError as exc:
            log(f"nomad: drain of node {nid} failed: {exc}")
            return nid
        log(f"nomad: draining node {nid} with deadline {'force' if deadline < 0 else f'{deadline:.0f}s'}")
        # stop waiting with half the margin left for the leave and the approval
        drain_for = max(deadline, 0.0)
        until = now + drain_for + (0.0 if not_before is None else max(0.0, (not_before - now - drain_for) / 2))
        while True:
            try:
                node = self.nomad("GET", f"/v1/node/{nid}") or {}
                if not node.get("DrainStrategy"):
                    log(f"nomad: node {nid} drained")
                    return nid
            except HttpError as exc:
                log(f"nomad: reading node {nid} failed: {exc}")
            if self.clock() >= until:
                log(f"nomad: node {nid} still draining when the notice runs out; going on")
                return nid
            self.sleep(1.0)

    def consul_leave(self) -> None:
        try:
            self.consul("PUT", "/v1/agent/leave")
            log("consul: agent left the cluster")
        except HttpError as exc:
            log(f"consul: leave failed: {exc}")

    def restore(self) -> bool:
        """Makes the node eligible again after a Reboot/Redeploy; True when done."""
        nid = self.state["restore"]["node_id"]
        try:
            node = self.nomad("GET", f"/v1/node/{nid}") or {}
            if node.get("DrainStrategy"):       # drain still on (deadline not reached): end it
                self.nomad("PUT", f"/v1/node/{nid}/drain", {"NodeID": nid, "DrainSpec": None, "MarkEligible": True})
            else:
                self.nomad("PUT", f"/v1/node/{nid}/eligibility", {"NodeID": nid, "Eligibility": "eligible"})
        except HttpError as exc:
            if exc.status == 404:          # the node is gone (a new data dir registers a new node)
                log(f"nomad: node {nid} no longer exists, nothing to make eligible")
                return True
            log(f"nomad: node {nid} not eligible yet, will retry: {exc}")
            return False
        log(f"nomad: node {nid} eligible again after {self.state['restore']['event_type']} "
            f"{self.state['restore']['event_id']}")
        return True

    # ------------------------------------------------------------------ events
    def approve(self, event: dict) -> None:
        eid = event["EventId"]
        try:
            self.imds.approve(eid)
        except HttpError as exc:
            log(f"imds: approval of {event['EventType']} {eid} failed, will retry: {exc}")
            return
        self.state["events"][eid] = "approved"
        log(f"imds: approved {event['EventType']} {eid}")

    def handle(self, event: dict) -> None:
        kind, eid = event["EventType"], event["EventId"]
        log(f"imds: {kind} {eid} for {self.me}, not before {event.get('NotBefore') or 'now'}")
        nid = self.drain(event)
        if kind in DRAIN_EVENTS:
            self.consul_leave()
        elif nid:
            self.state["restore"] = {"event_id": eid, "event_type": kind, "node_id": nid}
        others = [r for r in event.get("Resources") or [] if r != self.me]
        if others:
            # An approval starts the event for every VM it names, and those may still be draining.
            log(f"imds: {kind} {eid} also names {', '.join(others)}: not approved, Azure starts it at NotBefore")
            self.state["events"][eid] = "unapproved"
            self._save()
            return
        self.state["events"][eid] = "drained"
        self._save()
        self.approve(event)

    def step(self) -> None:
        """One poll of the Scheduled Events document."""
        if self.me is None:
            self.me = self.imds.name()
            log(f"imds: watching Scheduled Events for {self.me}")
        doc = self.imds.document()
        ids = {e.get("EventId") for e in doc.get("Events") or []}
        restore = self.state.get("restore")
        if restore and restore["event_id"] not in ids and self.restore():
            self.state["restore"] = None
            self._save()
        pending = [e for e in own_events(doc, self.me) if self.state["events"].get(e["EventId"]) == "drained"]
        for event in pending:                  # drained before, the approval did not go through
            self.approve(event)
        if doc.get("DocumentIncarnation") == self.state["incarnation"]:
            return                              # nothing new since the last document
        for event in own_events(doc, self.me):
            kind, eid = event.get("EventType"), event.get("EventId")
            if eid in self.state["events"]:
                continue
            if kind not in DRAIN_EVENTS + RETURN_EVENTS:
                log(f"imds: {kind} {eid} for {self.me}: nothing to do")
                self.state["events"][eid] = "ignored"
            elif event.get("EventStatus") != "Scheduled":
                log(f"imds: {kind} {eid} for {self.me} already {event.get('EventStatus')}: too late to drain")
                self.state["events"][eid] = "missed"
            else:
                self.handle(event)
        # forget events Azure no longer lists (keeps the state file small)
        self.state["events"] = {k: v for k, v in self.state["events"].items() if k in ids}
        self.state["incarnation"] = doc.get("DocumentIncarnation")
        self._save()

    def run(self) -> None:
        last_error = None
        while True:
            try:
                self.step()
                if last_error:
                    log("imds: answering again")
                last_error = None
            except HttpError as exc:
                if str(exc) != last_error:     # once per distinct error, not every poll
                    log(f"imds: {exc}; retrying every {self.cfg['poll_seconds']}s")
                last_error = str(exc)
            self.sleep(float(self.cfg["poll_seconds"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--config", default="/etc/hashistack/scheduled-events.json")
    args = ap.parse_args(argv)
    try:
        with open(args.config, encoding="utf-8") as fh:
            cfg = json.load(fh)
    except (OSError, ValueError) as exc:
        log(f"config {args.config}: {exc}; fix or rewrite it (the hashistack roles write it)")
        return 2
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        log(f"config {args.config}: unknown keys {unknown}; known: {sorted(DEFAULTS)}")
        return 2
    Service(cfg).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
