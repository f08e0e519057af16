"""Scheduled Events: the document a VM reads at IMDS ``/metadata/scheduledevents`` and the waits behind it.

As the Azure docs describe it (scheduled-events.md, virtual-machine-scale-sets-terminate-notification.md;
copies of the facts the tests check are in tests/integration/arm/reference/imds):

* Events are delivered to every VM of the scale set's placement group (the emulator has one per scale
  set) or to the VM alone when it is in no scale set; ``Resources`` names the VMs an event affects, so a
  VM must look for its own name (``{scale set}_{instance id}`` for Uniform scale sets).
* ``DocumentIncarnation`` increases whenever the events array changes; an event is ``Scheduled`` (with
  ``NotBefore``, RFC 1123) until it is approved (``StartRequests`` from any VM that sees it) or
  ``NotBefore`` passes, then ``Started`` (``NotBefore`` blank) while the operation runs, then removed.
* Terminate (terminate notification on): every pending delete of the scale set waits for the others —
  an approved Terminate starts only when no other Terminate event of the group is still waiting, unless
  its own ``NotBefore`` passed ("Approve all pending deletes", "Mandatory delete at timeout").
* User-initiated restart / redeploy post Reboot / Redeploy (15 / 10 minutes of notice) only while the
  scale set is enrolled: Scheduled Events is enabled by the first request for events and disabled after
  24 hours without one. ``scheduledEventsPolicy.userInitiatedReboot|Redeploy.automaticallyApprove``
  skips the Scheduled state.

The events live in the state file (``store.data["scheduled_events"]``) and the operations waiting for
them are LRO jobs, so both resume after a restart. ``Config.event_time_scale`` (``serve
--event-time-scale``, ``PUT /_sandbox/scheduled-events/time-scale``) shortens every notice for tests; it
is a sandbox knob, never something a client can ask ARM for.
"""
from __future__ import annotations

import threading
import time
import uuid
from email.utils import formatdate

from .lro import Interrupted

# Minimum notice per event type ("Event scheduling" table); Terminate's is the scale set's notBeforeTimeout.
MIN_NOTICE = {"Freeze": 900, "Reboot": 900, "Redeploy": 600, "Preempt": 30}
EVENT_TYPES = ("Freeze", "Reboot", "Redeploy", "Preempt", "Terminate")
ENROLMENT_SECONDS = 24 * 3600
_POLL_PERSIST_SECONDS = 600  # a poll is written to the state file at most this often (the window is 24 h)
_DOC_KEYS = ("EventId", "EventStatus", "EventType", "ResourceType", "Resources")


def group_of(rec: dict) -> str:
    """Events of a scale set's instances are broadcast to the whole set (its placement group)."""
    return (rec["x"].get("vmss_id") or rec["body"]["id"]).lower()


def render(event: dict) -> dict:
    """One event as IMDS shows it (newest api-version; key order of the documented example)."""
    out = {k: event[k] for k in _DOC_KEYS}
    out["NotBefore"] = formatdate(event["x"]["deadline"], usegmt=True) if event["EventStatus"] == "Scheduled" else ""
    out.update(Description=event["Description"], EventSource=event["EventSource"],
               DurationInSeconds=event["DurationInSeconds"])
    return out


class ScheduledEvents:
    def __init__(self, app):
        self.app = app
        self._cv = threading.Condition()
        self._gen = 0  # bumped on every change, so waiting jobs re-check without missing a notification
        self._closing = False

    # -- state ---------------------------------------------------------------------------------------
    @property
    def _data(self) -> dict:
        data = self.app.store.data.setdefault("scheduled_events", {})
        data.setdefault("groups", {})
        data.setdefault("polls", {})
        return data

    def _group(self, key: str) -> dict:
        return self._data["groups"].setdefault(key, {"incarnation": 1, "events": []})

    def close(self) -> None:
        """The emulator stops: operations waiting for events leave off (they resume after the restart)."""
        with self._cv:
            self._closing = True
            self._gen += 1
            self._cv.notify_all()

    def _changed(self) -> None:
        with self._cv:
            self._gen += 1
            self._cv.notify_all()

    # -- what the platform posts ----------------------------------------------------------------------
    def schedule(self, targets: list[dict], event_type: str, notice: float, source: str, description: str = "",
                 duration: int = -1, started: bool = False) -> str:
        """Post one event for ``targets`` (instance records of one group) and return its EventId. An event of
        the same type already pending for the same instances is reused (a second delete waits for it)."""
        store = self.app.store
        ids = [r["body"]["id"].lower() for r in targets]
        now = time.time()
        with store.lock:
            group = self._group(group_of(targets[0]))
            for event in group["events"]:
                if event["EventType"] == event_type and event["x"]["targets"] == ids:
                    return event["EventId"]
            event = {"EventId": str(uuid.uuid4()), "EventStatus": "Started" if started else "Scheduled",
                     "EventType": event_type, "ResourceType": "VirtualMachine",
                     "Resources": [r["body"]["name"] for r in targets], "Description": description,
                     "EventSource": source, "DurationInSeconds": duration,
                     "x": {"targets": ids, "created": now, "approved": started, "runner": None,
                           "deadline": now + notice * self.app.config.event_time_scale}}
            group["events"].append(event)
            group["incarnation"] += 1
            store.touch()
        self._changed()
        return event["EventId"]

    def forget_instance(self, rid: str) -> None:
        """An instance is gone: it leaves the events that named it (events naming nobody else disappear)."""
        rid = rid.lower()
        store = self.app.store
        changed = False
        with store.lock:
            for group in self._data["groups"].values():
                touched = False
                for event in group["events"]:
                    if rid in event["x"]["targets"]:
                        i = event["x"]["targets"].index(rid)
                        del event["x"]["targets"][i]
                        del event["Resources"][i]
                        touched = True
                if touched:
                    group["events"] = [e for e in group["events"] if e["x"]["targets"]]
                    group["incarnation"] += 1
                    changed = True
            if changed:
                store.touch()
        if changed:
            self._changed()

    def cancel_all(self) -> None:
        """Every event is canceled (removed, as Azure removes a canceled event); waiting operations go on."""
        with self.app.store.lock:
            for group in self._data["groups"].values():
                if group["events"]:
                    group["events"] = []
                    group["incarnation"] += 1
            self.app.store.touch()
        self._changed()

    # -- what a VM sees and does -----------------------------------------------------------------------
    def document(self, rid: str) -> dict | None:
        """The instance's Scheduled Events document, or None when there is no such instance."""
        store = self.app.store
        with store.lock:
            rec = store.get(rid)
            if rec is None:
                return None
            group = self._data["groups"].get(group_of(rec)) or {"incarnation": 1, "events": []}
            return {"DocumentIncarnation": group["incarnation"], "Events": [render(e) for e in group["events"]]}

    def documents(self) -> dict:
        """Every group's document, keyed by the group (scale set id, or VM id)."""
        with self.app.store.lock:
            return {key: {"DocumentIncarnation": g["incarnation"], "Events": [render(e) for e in g["events"]]}
                    for key, g in self._data["groups"].items()}

    def polled(self, rid: str) -> None:
        """The instance asked for its events: Scheduled Events is enabled for its scale set (24 hours)."""
        store = self.app.store
        with store.lock:
            rec = store.get(rid)
            if rec is None:
                return
            polls = self._data["polls"]
            key, now = group_of(rec), time.time()
            before = polls.get(key, 0)
            polls[key] = now
            if now - before > _POLL_PERSIST_SECONDS:
                store.touch()

    def enrolled(self, rec: dict) -> bool:
        return time.time() - self._data["polls"].get(group_of(rec), 0) < ENROLMENT_SECONDS

    def approve(self, rid: str, event_ids: list[str]) -> None:
        """``StartRequests`` from instance ``rid``: any event in its document may be approved (approval lets the
        event proceed for all its Resources). Raises KeyError (the unknown ids) and approves nothing then."""
        store = self.app.store
        with store.lock:
            rec = store.get(rid)
            group = self._data["groups"].get(group_of(rec)) if rec else None
            events = {e["EventId"].lower(): e for e in (group or {}).get("events", [])}
            unknown = [i for i in event_ids if str(i).lower() not in events]
            if unknown:
                raise KeyError(unknown)
            for i in event_ids:
                events[str(i).lower()]["x"]["approved"] = True
            store.touch()
        self._changed()

    # -- the operations that wait ----------------------------------------------------------------------
    @staticmethod
    def _may_start(group: dict, event: dict, now: float) -> bool:
        if now >= event["x"]["deadline"]:
            return True
        if not event["x"]["approved"]:
            return False
        if event["EventType"] != "Terminate":
            return True
        return all(other["x"]["approved"] or now >= other["x"]["deadline"] for other in group["events"]
                   if other["EventType"] == "Terminate" and other["EventStatus"] == "Scheduled")

    def run(self, runner: str, event_ids: list[str], impact) -> None:
        """Called from an LRO job (``runner``: its operation id): wait until each event may start, mark it
        Started, call ``impact(instance records)`` and remove it. Resumable: an event this runner had started
        before a restart is carried out again; one another operation started is waited for."""
        store = self.app.store
        pending = {str(i).lower() for i in event_ids}
        while pending:
            with self._cv:
                if self._closing:
                    raise Interrupted()
                gen = self._gen
            mine, wait = [], 1.0
            with store.lock:
                now = time.time()
                found = {e["EventId"].lower(): (g, e) for g in self._data["groups"].values() for e in g["events"]
                         if e["EventId"].lower() in pending}
                pending = set(found)
                bumped = set()
                for group, event in found.values():
                    if event["EventStatus"] == "Scheduled" and self._may_start(group, event, now):
                        event["EventStatus"] = "Started"
                        event["x"]["runner"] = runner
                        if id(group) not in bumped:
                            group["incarnation"] += 1
                            bumped.add(id(group))
                    if event["EventStatus"] == "Started" and event["x"]["runner"] in (runner, None):
                        event["x"]["runner"] = runner
                        mine.append((group, event))
                    elif event["EventStatus"] == "Scheduled":
                        wait = min(wait, event["x"]["deadline"] - now)
                if bumped or mine:
                    store.touch()
            if not pending:
                return
            if not mine:
                with self._cv:
                    self._cv.wait_for(lambda seen=gen: self._gen != seen, timeout=max(0.02, wait))
                continue
            self._changed()
            try:
                impact([r for _, e in mine for r in (store.get(t) for t in list(e["x"]["targets"])) if r])
            finally:
                self._remove([e["EventId"] for _, e in mine])
            pending -= {e["EventId"].lower() for _, e in mine}

    def _remove(self, event_ids: list[str]) -> None:
        gone = {i.lower() for i in event_ids}
        changed = False
        with self.app.store.lock:
            for group in self._data["groups"].values():
                keep = [e for e in group["events"] if e["EventId"].lower() not in gone]
                if len(keep) != len(group["events"]):
                    group["events"] = keep
                    group["incarnation"] += 1
                    changed = True
            if changed:
                self.app.store.touch()
        if changed:
            self._changed()
