"""Thread-safe resource store, persisted as JSON to the state directory.

Every ARM object (resource groups, networks, scale sets, instances, role assignments ...) is a
record ``{"body": <ARM JSON as returned on GET>, "x": <internal fields>}`` keyed by its lower-cased
ARM id. Long-running operations, quotas, counters and the instances' Scheduled Events live in the
same document so a restart
of ``serve --state DIR`` loses nothing.
"""
from __future__ import annotations

import json
import os
import threading


class Store:
    def __init__(self, path: str | None):
        self.path = path
        self.lock = threading.RLock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self.data = self._empty()
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                loaded = json.load(fh)
            self.data.update(loaded)
        self._index = {}
        for rid, rec in self.data["resources"].items():
            self._index.setdefault(rec["body"]["type"].lower(), set()).add(rid)
        self._flusher = None
        if path:
            self._flusher = threading.Thread(target=self._flush_loop, name="state-flusher", daemon=True)
            self._flusher.start()

    @staticmethod
    def _empty() -> dict:
        return {"resources": {}, "operations": {}, "quotas": {}, "counters": {}, "settings": {},
                "scheduled_events": {}}

    # -- records ------------------------------------------------------------------------------
    def get(self, rid: str) -> dict | None:
        with self.lock:
            return self.data["resources"].get(rid.lower())

    def put(self, body: dict, x: dict | None = None) -> dict:
        with self.lock:
            key = body["id"].lower()
            old = self.data["resources"].get(key)
            rec = {"body": body, "x": x if x is not None else (old["x"] if old else {})}
            self.data["resources"][key] = rec
            self._index.setdefault(body["type"].lower(), set()).add(key)
            self.touch()
            return rec

    def delete(self, rid: str) -> dict | None:
        with self.lock:
            rec = self.data["resources"].pop(rid.lower(), None)
            if rec:
                self._index.get(rec["body"]["type"].lower(), set()).discard(rid.lower())
                self.touch()
            return rec

    def of_type(self, rtype: str, prefix: str | None = None) -> list[dict]:
        """Records of one type (optionally under an id prefix), ordered by id."""
        with self.lock:
            ids = self._index.get(rtype.lower(), ())
            if prefix:
                p = prefix.lower().rstrip("/") + "/"
                ids = [i for i in ids if i.startswith(p)]
            return [self.data["resources"][i] for i in sorted(ids, key=_natural)]

    def under(self, prefix: str) -> list[dict]:
        p = prefix.lower().rstrip("/") + "/"
        with self.lock:
            return [r for k, r in self.data["resources"].items() if k.startswith(p)]

    def counter(self, name: str) -> int:
        with self.lock:
            value = self.data["counters"].get(name, 0)
            self.data["counters"][name] = value + 1
            self.touch()
            return value

    # -- persistence --------------------------------------------------------------------------
    def touch(self) -> None:
        self._dirty.set()

    def reset(self) -> None:
        with self.lock:
            self.data = self._empty()
            self._index = {}
            self.touch()

    def flush(self) -> None:
        if not self.path:
            return
        with self.lock:
            self._dirty.clear()
            text = json.dumps(self.data)
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, self.path)

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            if self._dirty.wait(0.5):
                self.flush()
                self._stop.wait(0.2)

    def close(self) -> None:
        self._stop.set()
        self.flush()


def _natural(key: str):
    """Sort ids so that .../virtualMachines/10 comes after .../virtualMachines/9."""
    head, _, tail = key.rpartition("/")
    return (head, int(tail) if tail.isdigit() else 0, tail)
