"""An InstanceBackend for tests: appends every call as a JSON line to ``log`` and can be slow.

``gate``: a file path; while that file exists, restarts, stops and deletes wait (a test can look at an
operation while it is being carried out, e.g. a Scheduled Event in the Started state)."""
from __future__ import annotations

import json
import os
import threading
import time

from sandbox.arm.backend import InstanceBackend


class RecordingBackend(InstanceBackend):
    def __init__(self, log: str, delay: str = "0", gate: str = ""):
        self.path = log
        self.delay = float(delay)
        self.gate = gate
        self.lock = threading.Lock()

    def _wait_gate(self) -> None:
        while self.gate and os.path.exists(self.gate):
            time.sleep(0.02)

    def _log(self, event: str, payload) -> None:
        with self.lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"event": event, "payload": payload, "time": time.time()}) + "\n")

    def network_created(self, network_id, address_prefixes):
        self._log("network_created", [network_id, address_prefixes])

    def network_deleted(self, network_id):
        self._log("network_deleted", network_id)

    def networks_peered(self, a, b):
        self._log("networks_peered", [a, b])

    def networks_unpeered(self, a, b):
        self._log("networks_unpeered", [a, b])

    def vault_hosts(self, names):
        self._log("vault_hosts", names)

    def instance_created(self, instance):
        time.sleep(self.delay)
        if instance["tags"].get("fail-boot") == instance["instance_id"]:  # lets a test make one boot fail
            raise RuntimeError(f"instance {instance['instance_id']} did not boot")
        self._log("instance_created", instance)

    def instance_restarted(self, instance):
        self._wait_gate()
        self._log("instance_restarted", instance)

    def instance_reimaged(self, instance):
        self._log("instance_reimaged", instance)

    def instance_stopped(self, instance, deallocated=False):
        self._wait_gate()
        self._log("instance_stopped", dict(instance, deallocated=deallocated))

    def instance_deleted(self, instance):
        self._wait_gate()
        self._log("instance_deleted", instance)
