"""IMDS ``/metadata/scheduledevents`` of the sandbox (scheduled-events.md, "Use the API").

The events are the ARM emulator's: the IMDS server asks it for the caller's document
(``GET /_sandbox/scheduled-events?instance=<ARM id>``, which also enrols the scale set as a real
first request does) and forwards approvals (``POST`` with ``{"StartRequests": [{"EventId"}]}``), at the
emulator URL the hosts backend registered (``host.set_arm``) — the same link as identity tokens. The
emulator keeps the events in its state file, so a restarted emulator serves the same documents; while
it is unreachable the last document a host saw is served again.

On the wire, as the docs describe:

- ``api-version`` is mandatory and one of ``VERSIONS``; older versions leave out what came later
  (Terminate 2019-01-01, Description 2019-04-01, EventSource 2019-08-01, DurationInSeconds 2020-07-01,
  Preempt 2017-11-01; 2017-03-01 prefixes resource names with ``_``).
- ``Metadata: true`` on every request (checked by the server before it gets here).
- ``POST``: 200 for event ids in the caller's document (even ones already approved or started); 400
  for a malformed body or an id the caller does not have.
"""
from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
from urllib.parse import quote

PATH = "/metadata/scheduledevents"
VERSIONS = ["2017-03-01", "2017-08-01", "2017-11-01", "2019-01-01", "2019-04-01", "2019-08-01", "2020-07-01"]
NEWEST = VERSIONS[:-4:-1]
# field or event type -> the first version that has it ("Version and region availability" table)
_SINCE_TYPE = {"Preempt": "2017-11-01", "Terminate": "2019-01-01"}
_SINCE_FIELD = {"Description": "2019-04-01", "EventSource": "2019-08-01", "DurationInSeconds": "2020-07-01"}
EMPTY = {"DocumentIncarnation": 1, "Events": []}

_last: dict = {}  # ARM id -> last document served (emulator restarting)
_last_lock = threading.Lock()


def version_error(version: str | None) -> dict | None:
    """The 400 body for a missing or unsupported api-version, None when it is fine."""
    if not version:
        return {"error": "Bad request. api-version was not specified in the request. For more information refer "
                         "to aka.ms/azureimds", "newest-versions": NEWEST}
    if version not in VERSIONS:
        return {"error": "Bad request. api-version is invalid or was not specified in the request. For more "
                         "information refer to aka.ms/azureimds", "newest-versions": NEWEST}
    return None


def for_version(doc: dict, version: str) -> dict:
    """The emulator's document (newest shape) as api-version ``version`` shows it."""
    events = []
    for event in doc.get("Events", []):
        if version < _SINCE_TYPE.get(event.get("EventType"), "0"):
            continue
        event = {k: v for k, v in event.items() if version >= _SINCE_FIELD.get(k, "0")}
        if version < "2017-08-01":
            event["Resources"] = ["_" + r for r in event.get("Resources", [])]
        events.append(event)
    return {"DocumentIncarnation": doc.get("DocumentIncarnation", 1), "Events": events}


def _call(arm: dict, arm_id: str, body: dict | None = None) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=arm.get("ca")) if arm.get("ca") else None
    url = f"{arm['url']}/_sandbox/scheduled-events?instance={quote(arm_id, safe='')}"
    req = urllib.request.Request(url, method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=15) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw) if raw else {}
        except ValueError:
            return e.code, {}


def get(arm: dict, host: dict, version: str) -> tuple[int, dict]:
    """(status, body) of ``GET /metadata/scheduledevents`` for the calling host."""
    arm_id = host.get("arm_id")
    if not (arm_id and arm.get("url")):
        return 200, for_version(EMPTY, version)  # a host without an emulator: nothing is ever scheduled
    try:
        status, doc = _call(arm, arm_id)
    except (OSError, ValueError):
        status, doc = 0, {}
    with _last_lock:
        if status == 200:
            _last[arm_id.lower()] = doc
        else:
            doc = _last.get(arm_id.lower())
    if doc is None:
        return 500, {"error": "Internal server error"}
    return 200, for_version(doc, version)


def post(arm: dict, host: dict, raw: bytes) -> tuple[int, dict | None]:
    """(status, body) of the approval ``POST`` from the calling host; body None means an empty answer."""
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None
    starts = body.get("StartRequests") if isinstance(body, dict) else None
    if not isinstance(starts, list) or not starts or not all(
            isinstance(s, dict) and isinstance(s.get("EventId"), str) for s in starts):
        return 400, {"error": "Bad request. The request body must be {\"StartRequests\": [{\"EventId\": ...}]}."}
    arm_id = host.get("arm_id")
    if not (arm_id and arm.get("url")):
        return 400, {"error": "Bad request. Unknown EventId."}
    try:
        status, answer = _call(arm, arm_id, {"StartRequests": starts})
    except (OSError, ValueError):
        return 500, {"error": "Internal server error"}
    if status == 200:
        return 200, None
    if status in (400, 404):
        return 400, {"error": "Bad request. Unknown EventId."}
    return 500, {"error": "Internal server error"}
