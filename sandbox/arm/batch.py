"""ARM's batch endpoint, ``POST /batch`` (what the portal and azure.azcollection's azure_rm inventory
use to send many reads in one round trip).

Shape and limits as ARM answers (Microsoft has not published a spec for this tenant-level endpoint;
sources: https://maciejporebski.github.io/azure-management-batch-api, the consumer code of
azure.azcollection plugins/inventory/azure_rm.py and Azure/azure-sdk-for-python#9271):

* request ``{"requests": [{"httpMethod", "name", "url" | "relativeUrl", "requestHeaderDetails", "content"}]}``;
* at most 500 requests, at most 20 of them with a body;
* up to 20 requests: 200 ``{"responses": [{"name", "httpStatusCode", "headers", "content",
  "contentLength"}]}`` in request order; more: 202 + ``Location`` + ``Retry-After``, the Location
  answering 202 while the batch runs and then 200 with the same ``responses`` body.

Each inner request goes through the normal pipeline (api-version check, RBAC, faults) as the caller
of the batch, and is logged on its own. The error code for a batch over its limits is not documented;
the emulator answers ARM's generic 400 ``InvalidRequestContent``.
"""
from __future__ import annotations

import json
import time
import uuid
from urllib.parse import parse_qsl, urlsplit

from .errors import ArmError
from .lro import job
from .router import Request, Response, route

MAX_REQUESTS = 500
MAX_WITH_BODY = 20
SYNC_REQUESTS = 20
ARM_PATHS = ("/subscriptions", "/providers", "/tenants", "/resources", "/locations")  # what a batch may carry


def _invalid(message: str) -> ArmError:
    return ArmError(400, "InvalidRequestContent", f"The request content was invalid and could not be deserialized: "
                                                  f"'{message}'.")


def _items(body) -> list[dict]:
    items = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise _invalid("Required property 'requests' not found in JSON.")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("httpMethod") or not (item.get("url") or item.get("relativeUrl")):
            raise _invalid(f"Request {i} needs 'httpMethod' and 'url' or 'relativeUrl'.")
        if not urlsplit(item.get("url") or item.get("relativeUrl")).path.lower().startswith(ARM_PATHS):
            raise _invalid(f"Request {i}: '{item.get('url') or item.get('relativeUrl')}' is not an Azure Resource "
                           "Manager request.")
    with_body = len([i for i in items if i.get("content")])
    if len(items) > MAX_REQUESTS or with_body > MAX_WITH_BODY:
        raise _invalid(f"The batch has {len(items)} requests, {with_body} of them with a body; a batch takes at most "
                       f"{MAX_REQUESTS} requests, at most {MAX_WITH_BODY} with a body.")
    return items


def run(app, items: list[dict], principal: dict, base: str, user_agent: str) -> dict:
    """Send every item through the app as ``principal``; ARM's ``responses`` body."""
    out = []
    for item in items:
        started = time.time()
        split = urlsplit(item.get("url") or item.get("relativeUrl"))
        path = split.path.rstrip("/") or "/"
        headers = {k.lower(): str(v) for k, v in (item.get("requestHeaderDetails") or {}).items()}
        headers.setdefault("user-agent", user_agent)
        content = item.get("content") or None
        req = Request(item["httpMethod"].upper(), path, {k.lower(): v for k, v in parse_qsl(split.query, True)},
                      headers, body=content, raw_body=json.dumps(content).encode() if content else b"", base=base)
        resp = app.handle(req, principal=principal)
        app.record(req, resp.status, started, batch_item=item.get("name") or "")
        answer = {"name": item.get("name", ""), "httpStatusCode": resp.status,
                  "headers": {"x-ms-request-id": str(uuid.uuid4()), **resp.headers}}
        if resp.body is not None:
            answer["headers"]["Content-Type"] = "application/json; charset=utf-8"
            answer["content"] = resp.body
        answer["contentLength"] = len(json.dumps(resp.body)) if resp.body is not None else 0
        out.append(answer)
    return {"responses": out}


@route("POST", r"/batch", auth="tenant")
def post_batch(app, req):
    items = _items(req.body)
    agent = req.headers.get("user-agent", "")
    if len(items) <= SYNC_REQUESTS:
        return Response(200, run(app, items, req.principal, req.base, agent))
    op = app.lro.start(req, "Microsoft.Resources", "", "batch",
                       {"items": items, "principal": req.principal, "agent": agent}, path="/batch/operationresults")
    return Response(202, None, {"Location": app.lro.url(op, monitor=True), "Retry-After": app.lro.retry_after()})


@job("batch")
def batch_job(app, op, items, principal, agent):
    return {"output": run(app, items, principal, op.get("base") or app.base, agent)}


@route("GET", r"/batch/operationresults/(?P<op>[^/]+)", auth="tenant")
def batch_result(app, req, op):
    return app.lro.status_response(op, monitor=True)
