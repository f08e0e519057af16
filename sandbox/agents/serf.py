"""Serf-like gossip membership over HTTP (push/pull state sync + direct probing).

Members carry an incarnation (monotonic per process start, bumped to refute
suspicion or on tag changes) and a status: alive / leaving / left / failed.
A join/push-pull is refused when the cluster identity differs (datacenter, or
Nomad region) or the gossip keys differ; both sides log why.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .net import Response, RPCError, call

STATUS_CODE = {"none": 0, "alive": 1, "leaving": 2, "left": 3, "failed": 4}
_PRECEDENCE = {"alive": 0, "leaving": 1, "failed": 2, "left": 3}


class Serf:
    def __init__(self, *, name, addr, port, tags, key, cluster_field, cluster_value, log,
                 product, probe_interval=0.5, suspicion=2.0):
        self.name = name
        self.addr = addr
        self.port = port
        self.key = key or ""
        self.cluster_field = cluster_field  # "dc" (Consul) / "region" (Nomad)
        self.cluster_value = cluster_value
        self.log = log
        self.product = product
        self.probe_interval = probe_interval
        self.suspicion = suspicion
        self.lock = threading.RLock()
        self.incarnation = int(time.time() * 1000)
        self.members: dict[str, dict] = {}
        self.fail_since: dict[str, float] = {}
        self.members[name] = self._entry(name, addr, port, tags, "alive", self.incarnation)
        self.leaving = False
        self.stopped = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=16)
        self.on_change = []
        self._round = 0
        self.pruned: dict[str, int] = {}  # force-leave -prune: name -> incarnation no longer accepted

    @staticmethod
    def _entry(name, addr, port, tags, status, inc):
        return {"Name": name, "Addr": addr, "Port": port, "Tags": dict(tags), "Status": status, "Incarnation": inc}

    # ------------------------------------------------------------ identity / auth
    def _auth(self) -> str:
        if not self.key:
            return ""
        return hmac.new(self.key.encode(), b"serf-sandbox", hashlib.sha256).hexdigest()

    def _envelope(self, members=True) -> dict:
        env = {"from": self.name, "auth": self._auth(), "cluster": {self.cluster_field: self.cluster_value},
               "product": self.product}
        if members:
            with self.lock:
                env["members"] = [dict(m) for m in self.members.values()]
        return env

    def _check_envelope(self, env: dict) -> str | None:
        theirs = env.get("auth", "")
        mine = self._auth()
        if theirs != mine:
            if mine and not theirs:
                return "No installed keys could decrypt the message (remote node is not using gossip encryption)"
            if theirs and not mine:
                return "Encryption is configured but remote state is not encrypted (this agent has no gossip key)"
            return "No installed keys could decrypt the message"
        if env.get("product") != self.product:
            return f"remote node is not a {self.product} agent (got {env.get('product')!r} gossip)"
        cv = (env.get("cluster") or {}).get(self.cluster_field)
        if cv != self.cluster_value:
            word = "datacenter" if self.cluster_field == "dc" else "region"
            return f"Member '{env.get('from')}' part of wrong {word} '{cv}'"
        return None

    # ------------------------------------------------------------ API
    def local(self) -> dict:
        with self.lock:
            return dict(self.members[self.name])

    def set_tags(self, **tags):
        with self.lock:
            me = self.members[self.name]
            me["Tags"].update({k: str(v) for k, v in tags.items()})
            self.incarnation += 1
            me["Incarnation"] = self.incarnation

    def list(self) -> list[dict]:
        with self.lock:
            return [dict(m, Tags=dict(m["Tags"])) for m in sorted(self.members.values(), key=lambda m: m["Name"])]

    def join(self, addrs: list[str]) -> tuple[int, list[str]]:
        n, errs = 0, []
        for a in addrs:
            try:
                self._pushpull_addr(a)
                n += 1
            except RPCError as e:
                errs.append(f"Failed to join {a}: {e}")
        if errs:
            self.log("WARN", f"agent: (LAN) joining: error: {len(errs)} error(s) occurred: " + "; ".join(errs))
        if n:
            self.log("INFO", f"agent: (LAN) joined: number_of_nodes={n}")
        return n, errs

    def leave(self):
        """Graceful leave: tell every alive member that we left."""
        with self.lock:
            self.leaving = True
            self.incarnation += 1
            me = self.members[self.name]
            me["Status"] = "left"
            me["Incarnation"] = self.incarnation
            targets = [m for m in self.members.values() if m["Name"] != self.name and m["Status"] == "alive"]
        msg = self._envelope(members=False)
        msg["member"] = dict(me)
        futs = [self.pool.submit(self._send, m, "/serf/leave", msg) for m in targets]
        for f in futs:
            try:
                f.result(timeout=3)
            except Exception:  # noqa: BLE001
                pass
        self.log("INFO", "serf: EventMemberLeave: " + self.name)

    def force_leave(self, name: str, prune: bool = False):
        """Like serf's RemoveFailedNode(Prune): a failed member becomes left (pruned: forgotten entirely) on
        every member. An alive member is not touched (it would refute the leave intent), nor is this agent."""
        with self.lock:
            m = self.members.get(name)
            if m is None or name == self.name:
                return
            if m["Status"] == "alive":
                self.log("INFO", f"serf: force-leave of alive member {name} has no effect (it refutes the leave intent)")
                return
            m["Status"] = "left"
            member = dict(m)
            if prune:
                self.pruned[name] = m.get("Incarnation", 0)
                del self.members[name]
            targets = [x for x in self.members.values() if x["Name"] != self.name and x["Status"] == "alive"]
        msg = self._envelope(members=False)
        msg["member"], msg["prune"] = member, prune
        for t in targets:
            self.pool.submit(self._send, t, "/serf/leave", msg)
        self._event(name, "failed", "left")

    def stop(self):
        self.stopped.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def start(self):
        threading.Thread(target=self._loop, daemon=True, name="serf").start()

    # ------------------------------------------------------------ handlers (called by the HTTP router)
    def handle(self, path: str, body: dict) -> Response:
        why = self._check_envelope(body)
        if why:
            self.log("ERROR", f"memberlist: failed to receive from {body.get('from')}: {why}")
            return Response({"error": why}, status=403)
        if path == "/serf/pushpull":
            self._merge(body.get("members") or [])
            return Response(self._envelope())
        if path == "/serf/leave":
            m = body.get("member") or {}
            self._merge([m])
            if body.get("prune") and m.get("Name") and m["Name"] != self.name:
                with self.lock:
                    cur = self.members.get(m["Name"])
                    if cur is not None and cur["Status"] != "alive":
                        self.pruned[m["Name"]] = cur.get("Incarnation", 0)
                        del self.members[m["Name"]]
            return Response({"ok": True})
        return Response({"error": "not found"}, status=404)

    # ------------------------------------------------------------ internals
    def _send(self, m: dict, path: str, body: dict):
        return call(f"{m['Addr']}:{m['Port']}", path, body, timeout=1.0)

    def _pushpull_addr(self, addr: str):
        try:
            resp = call(addr, "/serf/pushpull", self._envelope(), timeout=2.0)
        except RPCError as e:
            if e.status == 403:
                self.log("ERROR", f"memberlist: Push/Pull with {addr} failed: {e}")
            raise
        why = self._check_envelope(resp)
        if why:
            self.log("ERROR", f"memberlist: Push/Pull with {addr} failed: {why}")
            raise RPCError(why, 403)
        self._merge(resp.get("members") or [])
        return resp

    def _merge(self, members: list[dict]):
        changed = []
        with self.lock:
            for m in members:
                name = m.get("Name")
                if not name:
                    continue
                if name == self.name:
                    if m.get("Status") != "alive" and not self.leaving and m.get("Incarnation", 0) >= self.incarnation:
                        # refute suspicion / stale "left"
                        self.incarnation = max(self.incarnation, m.get("Incarnation", 0)) + 1
                        self.members[name]["Incarnation"] = self.incarnation
                    continue
                if name in self.pruned:
                    if m.get("Incarnation", 0) <= self.pruned[name] or m.get("Status") != "alive":
                        continue
                    del self.pruned[name]  # it came back (a new incarnation): a member again
                cur = self.members.get(name)
                if cur is None:
                    self.members[name] = dict(m, Tags=dict(m.get("Tags") or {}))
                    changed.append((name, None, m["Status"]))
                    continue
                inc, cinc = m.get("Incarnation", 0), cur.get("Incarnation", 0)
                if inc > cinc or (inc == cinc and _PRECEDENCE.get(m["Status"], 0) > _PRECEDENCE.get(cur["Status"], 0)):
                    old = cur["Status"]
                    self.members[name] = dict(m, Tags=dict(m.get("Tags") or {}))
                    if old != m["Status"]:
                        changed.append((name, old, m["Status"]))
                    if m["Status"] == "alive":
                        self.fail_since.pop(name, None)
        for name, old, new in changed:
            self._event(name, old, new)

    def _event(self, name, old, new):
        ev = {"alive": "EventMemberJoin", "left": "EventMemberLeave", "failed": "EventMemberFailed",
              "leaving": "EventMemberLeave"}.get(new, "EventMemberUpdate")
        m = self.members.get(name, {})
        self.log("INFO", f"serf: {ev}: {name} {m.get('Addr', '')}")
        for cb in self.on_change:
            try:
                cb(name, old, new)
            except Exception as e:  # noqa: BLE001
                self.log("ERROR", f"serf: change callback failed: {e!r}")

    def _loop(self):
        while not self.stopped.wait(self.probe_interval):
            self._round += 1
            with self.lock:
                if self.leaving:
                    continue
                targets = [dict(m) for m in self.members.values() if m["Name"] != self.name and m["Status"] != "left"]
            targets = [m for m in targets if m["Status"] != "failed" or self._round % 4 == 0]
            random.shuffle(targets)
            for m in targets:
                self.pool.submit(self._probe, m)

    def _probe(self, m: dict):
        name = m["Name"]
        try:
            self._pushpull_addr(f"{m['Addr']}:{m['Port']}")
            self.fail_since.pop(name, None)
            with self.lock:
                cur = self.members.get(name)
                if cur and cur["Status"] == "failed":
                    # reachable again with the same incarnation
                    cur["Status"] = "alive"
                    changed = True
                else:
                    changed = False
            if changed:
                self._event(name, "failed", "alive")
        except RPCError:
            now = time.monotonic()
            first = self.fail_since.setdefault(name, now)
            if now - first >= self.suspicion:
                with self.lock:
                    cur = self.members.get(name)
                    if cur and cur["Status"] == "alive" and cur.get("Incarnation") == m.get("Incarnation"):
                        cur["Status"] = "failed"
                        flip = True
                    else:
                        flip = False
                if flip:
                    self.log("INFO", f"memberlist: Suspect {name} has failed, no acks received")
                    self._event(name, "alive", "failed")
        except Exception as e:  # noqa: BLE001
            self.log("DEBUG", f"serf: probe {name}: {e!r}")
