"""Admin API under /_sandbox/ (no auth; the server only listens on 127.0.0.1).

GET  /_sandbox/requests?since=N      request log {"requests": [...], "next": N}
POST /_sandbox/faults                {"method","path"(regex),"status","count","retry_after","code","message"}
GET/DELETE /_sandbox/faults          list / clear injected faults
GET/PUT /_sandbox/quotas             {location: {family: limit, "cores": regional limit}} (merged)
PUT  /_sandbox/latency               {"ms": N}
PUT  /_sandbox/provisioning          {"seconds": S} (scale-set provisioning time)
POST /_sandbox/reset                 forget every resource, fault, quota override and the request log
POST /_sandbox/identity-token        {"principal_id", "resource"?} -> managed identity token (IMDS shape)
GET  /_sandbox/instances             the backend instance dicts of every instance (debugging, hosts)
GET  /_sandbox/health                {"ok": true, "idle": <no LRO running>}
GET  /_sandbox/scheduled-events?instance=ID   that instance's Scheduled Events document, as IMDS serves it
                                     (counts as the instance polling: enrols its scale set); without
                                     instance: {"documents": {group: document}} (no enrolment)
POST /_sandbox/scheduled-events?instance=ID   {"StartRequests": [{"EventId"}]}: approval sent by that instance
POST /_sandbox/scheduled-events/platform      {"instances": [ID], "EventType": Freeze|Reboot|Redeploy|Preempt,
                                     "NotBeforeSeconds"?, "Description"?, "DurationInSeconds"?}: platform event
PUT  /_sandbox/scheduled-events/time-scale    {"scale": F}: every new event's notice times F (tests)
"""
from __future__ import annotations

import time
import uuid

from . import quotas, registry
from .auth import aad_error
from .errors import ArmError
from .resources import compute, resources
from .router import Response, route


@route("GET", r"/_sandbox/requests", auth=False)
def get_requests(app, req):
    since = int(req.q("since") or 0)
    with app.log_lock:
        entries = app.log[since:]
        nxt = len(app.log)
    return Response(200, {"requests": entries, "next": nxt})


@route("POST", r"/_sandbox/faults", auth=False)
def add_fault(app, req):
    spec = req.body or {}
    if "status" not in spec:
        raise ArmError(400, "BadRequest", "fault needs at least 'status'")
    fault = {"id": str(uuid.uuid4()), "method": spec.get("method"), "path": spec.get("path"),
             "status": int(spec["status"]), "count": int(spec.get("count", 1)),
             "retry_after": spec.get("retry_after"), "code": spec.get("code"), "message": spec.get("message"),
             "hits": 0}
    with app.fault_lock:
        app.faults.append(fault)
    return Response(201, fault)


@route("GET", r"/_sandbox/faults", auth=False)
def list_faults(app, req):
    with app.fault_lock:
        return Response(200, {"faults": list(app.faults)})


@route("DELETE", r"/_sandbox/faults", auth=False)
def clear_faults(app, req):
    with app.fault_lock:
        app.faults.clear()
    return Response(204)


def fault_response(app, fault: dict, req) -> Response:
    status = fault["status"]
    headers = {}
    if fault.get("retry_after") is not None:
        headers["Retry-After"] = str(fault["retry_after"])
    code, message = fault.get("code"), fault.get("message")
    if status == 429 and not code:
        if "/microsoft.compute/" in req.path.lower():
            now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
            body = {"error": {"code": "OperationNotAllowed",
                              "message": "The server rejected the request because too many requests have been "
                                         "received for this subscription.",
                              "details": [{"code": "TooManyRequests", "target": "HighCostGetVMScaleSet30Min",
                                           "message": '{"operationGroup":"HighCostGetVMScaleSet30Min","startTime":"'
                                           + now + '","endTime":"' + now + '","allowedRequestCount":900,'
                                           '"measuredRequestCount":901}'}]}}
            return Response(429, body, headers)
        code = "SubscriptionRequestsThrottled"
        message = (f"Number of '{'read' if req.method == 'GET' else 'write'}' requests for subscription "
                   f"'{app.sub}' actor '{app.identity['principal_id']}' exceeded. Please try again after "
                   f"'{fault.get('retry_after') or 1}' seconds after additional tokens are available. Refer to "
                   "https://aka.ms/arm-throttling for additional information.")
    if status >= 500 and not code:
        code = "InternalServerError"
        message = ("Encountered internal server error. Diagnostic information: timestamp "
                   f"'{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}', subscription id '{app.sub}', tracking id "
                   f"'{uuid.uuid4()}', request correlation id '{uuid.uuid4()}'.")
    return Response(status, {"error": {"code": code or "InjectedFault", "message": message or "Injected fault."}},
                    headers)


@route("GET", r"/_sandbox/quotas", auth=False)
def get_quotas(app, req):
    return Response(200, quotas.effective_limits(app))


@route("PUT", r"/_sandbox/quotas", auth=False)
def put_quotas(app, req):
    if not isinstance(req.body, dict):
        raise ArmError(400, "BadRequest", "expected {location: {family: limit}}")
    quotas.set_limits(app, req.body)
    return Response(200, quotas.effective_limits(app))


@route("PUT", r"/_sandbox/latency", auth=False)
def put_latency(app, req):
    app.config.latency_ms = float((req.body or {}).get("ms", 0))
    return Response(200, {"ms": app.config.latency_ms})


@route("PUT", r"/_sandbox/provisioning", auth=False)
def put_provisioning(app, req):
    app.config.provisioning_seconds = float((req.body or {}).get("seconds", app.config.provisioning_seconds))
    return Response(200, {"seconds": app.config.provisioning_seconds})


@route("POST", r"/_sandbox/reset", auth=False)
def reset(app, req):
    app.events.cancel_all()  # operations waiting for Scheduled Events end now (everything is deleted anyway)
    app.lro.drain(timeout=60)
    for rec in app.store.of_type(resources.RG_TYPE):
        resources.delete_group_now(app, rec["body"]["id"])
    app.store.reset()
    with app.fault_lock:
        app.faults.clear()
    with app.log_lock:
        app.log.clear()
    app.config.latency_ms = app.initial_latency
    app.config.event_time_scale = app.initial_event_time_scale
    app.ensure_owner_assignment()
    return Response(200, {"reset": True})


@route("POST", r"/_sandbox/identity-token", auth=False)
def identity_token(app, req):
    principal = (req.body or {}).get("principal_id")
    owner = registry.principals(app).get(principal) if principal else None
    if not owner:
        raise ArmError(404, "NotFound", f"No managed identity with principal id '{principal}'.")
    resource = (req.body or {}).get("resource")
    try:
        return Response(200, app.auth.managed_identity_token(principal, owner["clientId"], owner["resourceId"], resource))
    except ValueError:  # IMDS passes Entra ID's answer for a resource it does not know
        raise aad_error(400, "invalid_resource", 500011,
                        f"The resource principal named {resource} was not found in the tenant named "
                        f"{app.identity['tenant_id']}. This can happen if the application has not been installed by "
                        "the administrator of the tenant or consented to by any user in the tenant. You might have "
                        "sent your authentication request to the wrong tenant.") from None


@route("GET", r"/_sandbox/instances", auth=False)
def instances(app, req):
    return Response(200, {"instances": compute.all_instance_dicts(app)})


@route("GET", r"/_sandbox/health", auth=False)
def health(app, req):
    return Response(200, {"ok": True, "idle": app.lro.idle(), "port": app.config.port})


@route("GET", r"/_sandbox/scheduled-events", auth=False)
def scheduled_events(app, req):
    rid = req.q("instance")
    if not rid:
        return Response(200, {"documents": app.events.documents()})
    doc = app.events.document(rid)
    if doc is None:
        raise ArmError(404, "NotFound", f"No instance '{rid}'.")
    app.events.polled(rid)
    return Response(200, doc)


@route("POST", r"/_sandbox/scheduled-events", auth=False)
def approve_scheduled_events(app, req):
    rid = req.q("instance") or ""
    body = req.body if isinstance(req.body, dict) else {}
    starts = body.get("StartRequests")
    if not isinstance(starts, list) or not all(isinstance(s, dict) and isinstance(s.get("EventId"), str)
                                               for s in starts):
        raise ArmError(400, "BadRequest", 'expected {"StartRequests": [{"EventId": "..."}]}')
    if app.store.get(rid) is None:
        raise ArmError(404, "NotFound", f"No instance '{rid}'.")
    try:
        app.events.approve(rid, [s["EventId"] for s in starts])
    except KeyError as exc:
        raise ArmError(400, "UnknownEventId", f"No event {', '.join(exc.args[0])} in the Scheduled Events of "
                                              f"'{rid}'.") from None
    return Response(200, {})


@route("POST", r"/_sandbox/scheduled-events/platform", auth=False)
def platform_scheduled_event(app, req):
    event, op = compute.post_platform_event(app, req)
    return Response(201, {"event": event, "operation": app.lro.url(op)})


@route("PUT", r"/_sandbox/scheduled-events/time-scale", auth=False)
def put_event_time_scale(app, req):
    scale = float((req.body or {}).get("scale", 1.0))
    if not scale > 0:
        raise ArmError(400, "BadRequest", "scale must be > 0")
    app.config.event_time_scale = scale
    return Response(200, {"scale": scale})
