"""The one long-running-operation mechanism.

A write that ARM runs asynchronously creates an operation record and queues a *job* (a named
function plus JSON arguments, so an operation interrupted by a restart is resumed from the
state file). The request answers at once with ``Azure-AsyncOperation`` (+ ``Location`` for
DELETE/POST) and ``Retry-After``; the job runs in a worker thread (this is where the
InstanceBackend is called) and the operation goes InProgress -> Succeeded/Failed.
"""
from __future__ import annotations

import logging
import math
import threading
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor

from .errors import ArmError
from .router import Response
from .util import now_iso

LOG = logging.getLogger("sandbox.arm.lro")
JOBS: dict = {}


class Interrupted(Exception):
    """Raised by a job that stops waiting because the emulator shuts down: its operation stays InProgress
    in the state file and the job runs again after the restart (``Lro.resume``)."""


def job(name: str):
    def deco(fn):
        JOBS[name] = fn
        return fn
    return deco


class Lro:
    def __init__(self, app, workers: int = 64):
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lro")
        self._inflight = set()
        self._cv = threading.Condition()

    @property
    def ops(self) -> dict:
        return self.app.store.data["operations"]

    def start(self, req, namespace: str, location: str, kind: str, args: dict, resource_id: str = "",
              settle: float = 0.0, path: str | None = None) -> dict:
        """Create the operation and queue its job; ``settle`` waits that long for a quick job to finish
        (near-instant network writes), so the client's first poll already sees the end state. ``path``:
        the status URL's path (before ``/{operation id}``) when it is not the provider's operations URL."""
        op_id = str(uuid.uuid4())
        sub = self.app.identity["subscription_id"]
        op = {"name": op_id, "status": "InProgress", "startTime": now_iso(), "namespace": namespace,
              "location": location, "subscription": sub, "resource_id": resource_id,
              "api_version": req.api_version or "2024-07-01", "base": getattr(req, "base", ""), "job": {"kind": kind, "args": args}}
        if path:
            op["path"] = path
        with self.app.store.lock:
            self.ops[op_id] = op
            self.app.store.touch()
        self._submit(op_id)
        if settle:
            with self._cv:
                self._cv.wait_for(lambda: op_id not in self._inflight, timeout=settle)
        return op

    def _submit(self, op_id: str) -> None:
        with self._cv:
            self._inflight.add(op_id)
        self.pool.submit(self._run, op_id)

    def resume(self) -> None:
        """Re-queue operations that were still running when the previous process stopped."""
        for op_id, op in list(self.ops.items()):
            if op["status"] == "InProgress":
                self._submit(op_id)

    def _run(self, op_id: str) -> None:
        op = self.ops.get(op_id)
        try:
            if op is None:
                return
            result = JOBS[op["job"]["kind"]](self.app, op, **op["job"]["args"])
            self._finish(op, "Succeeded", result=result)
        except Interrupted:
            LOG.info("job %s interrupted by the shutdown; resumed at the next start", op["job"]["kind"])
        except ArmError as exc:
            self._finish(op, "Failed", error=exc.as_operation_error())
        except Exception as exc:  # noqa: BLE001 - any failure becomes a Failed operation, as in ARM
            LOG.error("job %s failed: %s", op["job"]["kind"] if op else "?", traceback.format_exc())
            self._finish(op, "Failed", error={"code": "InternalExecutionError",
                                              "message": f"An internal execution error occurred. {exc}"})
        finally:
            with self._cv:
                self._inflight.discard(op_id)
                self._cv.notify_all()

    def _finish(self, op: dict, status: str, result=None, error=None) -> None:
        with self.app.store.lock:
            op["status"] = status
            op["endTime"] = now_iso()
            if result is not None:
                op["result"] = result
            if error is not None:
                op["error"] = error
            self.app.store.touch()

    def drain(self, timeout: float) -> None:
        with self._cv:
            self._cv.wait_for(lambda: not self._inflight, timeout=timeout)

    def idle(self) -> bool:
        with self._cv:
            return not self._inflight

    # -- wire -----------------------------------------------------------------------------------
    def url(self, op: dict, monitor: bool = False) -> str:
        return self._url(op, monitor)

    def _url(self, op: dict, monitor: bool = False) -> str:
        kind = "operations"
        base = op.get("base") or self.app.base
        if op.get("path"):
            return f"{base}{op['path']}/{op['name']}?api-version={op['api_version']}"
        q = f"?monitor=true&api-version={op['api_version']}" if monitor else f"?api-version={op['api_version']}"
        if op["namespace"] == "Microsoft.Resources":
            return f"{base}/subscriptions/{op['subscription']}/operationresults/{op['name']}{q}"
        return (f"{base}/subscriptions/{op['subscription']}/providers/{op['namespace']}/locations/"
                f"{op['location']}/{kind}/{op['name']}{q}")

    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.app.config.retry_after)))

    def headers(self, op: dict, location: bool) -> dict:
        """Headers of the initial answer: Azure-AsyncOperation (+ Location) and Retry-After."""
        h = {"Retry-After": self.retry_after()}
        if op["namespace"] != "Microsoft.Resources":
            h["Azure-AsyncOperation"] = self._url(op)
            h["Azure-AsyncNotification"] = "Enabled"
        if location:
            h["Location"] = self._url(op, monitor=op["namespace"] != "Microsoft.Resources")
        return h

    def accepted(self, op: dict) -> Response:
        """202 Accepted for DELETE/POST (empty body)."""
        return Response(202, None, self.headers(op, location=True))

    def status_response(self, op_id: str, monitor: bool) -> Response:
        op = self.ops.get(op_id) or self.ops.get(op_id.lower())
        if op is None:
            raise ArmError(404, "NotFound", "The entity was not found in this Azure location.")
        running = op["status"] == "InProgress"
        if monitor or op["namespace"] == "Microsoft.Resources":
            # Location semantics: 202 while running; 200 (result or empty) when done, error body on failure.
            if running:
                return Response(202, None, {"Location": self._url(op, monitor=op["namespace"] != "Microsoft.Resources"),
                                            "Retry-After": self.retry_after()})
            if op["status"] == "Failed":
                err = op.get("error", {})
                status = 409 if err.get("code") == "OperationNotAllowed" else 400
                return Response(status, {"error": err})
            result = op.get("result")
            return Response(200, result.get("output") if isinstance(result, dict) and "output" in result else None)
        if op["namespace"] == "Microsoft.Network":
            body = {"status": op["status"]}
        else:
            body = {"startTime": op["startTime"], "status": op["status"], "name": op["name"]}
            if not running:
                body = {"startTime": op["startTime"], "endTime": op["endTime"], "status": op["status"]}
                if isinstance(op.get("result"), dict) and op["result"]:
                    body["properties"] = op["result"]
                body["name"] = op["name"]
        if op.get("error"):
            body["error"] = op["error"]
        return Response(200, body, {"Retry-After": self.retry_after()} if running else {})
