"""A compact Raft-style consensus among server processes (over HTTP).

Not real Raft log replication: the leader replicates its whole (small) state machine
snapshot tagged (index, last_term).  Terms, pre-vote, votes with the up-to-date rule,
leader stickiness, heartbeats, check-quorum step-down, majority-acknowledged writes,
leadership transfer (TimeoutNow) and autopilot (non-voters promoted after
server_stabilization_time, left/dead server cleanup, health) are implemented.
"""

from __future__ import annotations

import copy
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .config import format_duration
from .net import RPCError, call


class NotLeader(RPCError):
    def __init__(self, msg="No cluster leader"):
        super().__init__(msg, 500)


class Raft:
    def __init__(self, *, node_id, name, rpc_addr, data_dir, log, apply_fn, initial_state,
                 bootstrap_expect=0, multiplier=1, stabilization=10.0, last_contact_threshold=0.2,
                 max_trailing=250, cleanup_dead=True, min_quorum=0, version="", members_fn=None,
                 meta_fn=None):
        self.id = node_id
        self.name = name
        self.addr = rpc_addr
        self.dir = Path(data_dir) / "raft"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.apply_fn = apply_fn  # (state, op) -> result, mutates state
        self.bootstrap_expect = bootstrap_expect
        self.mult = max(1, int(multiplier or 1))
        self.hb = 0.1 * self.mult
        self.election_base = 1.0 * self.mult
        self.stabilization = stabilization
        self.lct = max(last_contact_threshold, 3 * self.hb)
        self.max_trailing = max_trailing
        self.cleanup_dead = cleanup_dead
        self.min_quorum = min_quorum
        self.version = version
        self.members_fn = members_fn or (lambda: [])  # serf view: [{id,name,addr,status,version}]
        self.lock = threading.RLock()
        self.write_lock = threading.Lock()
        self.stopped = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=16)
        # persistent
        self.term = 0
        self.voted_for = None
        self.index = 0
        self.last_term = 0
        self.state = copy.deepcopy(initial_state)
        self.config: dict[str, dict] = {}  # id -> {name, addr, voter}
        self.config_index = 0
        self._load()
        # volatile
        self.role = "follower"
        self.leader_id = None
        self.leader_addr = None
        self.last_leader_contact = 0.0
        self.election_deadline = self._new_deadline(initial=True)
        self.peer_acked: dict[str, tuple[int, int]] = {}
        self.peer_contact: dict[str, float] = {}
        self.peer_inflight: set[str] = set()
        self.stable_since: dict[str, float] = {}
        self.health_prev: dict[str, bool] = {}
        self.failed_since: dict[str, float] = {}
        self.transfer_until = 0.0
        self.commit_cv = threading.Condition(self.lock)
        self.changed = threading.Condition(self.lock)  # notified whenever the state machine changes
        self.commit_index = self.index
        self.leader_since = 0.0
        self.on_leader = []  # callbacks(bool)

    # ------------------------------------------------------------ persistence
    def _path(self):
        return self.dir / "state.json"

    def _load(self):
        p = self._path()
        if p.is_file():
            d = json.loads(p.read_text())
            self.term, self.voted_for = d["term"], d.get("voted_for")
            self.index, self.last_term = d["index"], d["last_term"]
            self.state = d["state"]
            self.config, self.config_index = d.get("config", {}), d.get("config_index", 0)

    def _save(self):
        d = {"term": self.term, "voted_for": self.voted_for, "index": self.index, "last_term": self.last_term,
             "state": self.state, "config": self.config, "config_index": self.config_index}
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(d))
        os.replace(tmp, self._path())

    # ------------------------------------------------------------ helpers
    def _new_deadline(self, initial=False):
        base = self.election_base * (2 if initial else 1)
        return time.monotonic() + base + random.uniform(0, self.election_base)

    def voters(self) -> list[str]:
        return sorted(i for i, c in self.config.items() if c.get("voter"))

    def quorum(self) -> int:
        return len(self.voters()) // 2 + 1

    def is_leader(self) -> bool:
        return self.role == "leader"

    def leader(self) -> tuple[str | None, str | None]:
        with self.lock:
            if self.role == "leader":
                return self.id, self.addr
            if self.leader_id and time.monotonic() - self.last_leader_contact < self.election_base * 2:
                return self.leader_id, self.leader_addr
            return None, None

    def start(self):
        threading.Thread(target=self._ticker, daemon=True, name="raft").start()

    def stop(self):
        self.stopped.set()
        with self.lock:
            self._set_role("follower")
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _set_role(self, role):
        was = self.role == "leader"
        self.role = role
        if role == "leader" and not was:
            self.leader_since = time.monotonic()
            self.log("INFO", f"agent.server.raft: entering leader state: leader=\"Node at {self.addr} [Leader]\" term={self.term}")
        if was != (role == "leader"):
            for cb in self.on_leader:
                threading.Thread(target=cb, args=(role == "leader",), daemon=True).start()

    # ------------------------------------------------------------ main loop
    def _ticker(self):
        while not self.stopped.wait(self.hb):
            try:
                self._tick()
            except Exception as e:  # noqa: BLE001
                self.log("ERROR", f"agent.server.raft: tick failed: {e!r}")

    def _tick(self):
        with self.lock:
            role = self.role
        if role == "leader":
            self._lead_tick()
            return
        self._maybe_bootstrap()
        with self.lock:
            if self.id not in self.voters() or time.monotonic() < self.election_deadline:
                return
            if time.monotonic() < self.transfer_until:
                return
        self._election(prevote=True)

    def _maybe_bootstrap(self):
        if self.config or not self.bootstrap_expect:
            return
        servers = [m for m in self.members_fn() if m["status"] == "alive"]
        if len(servers) < self.bootstrap_expect:
            return
        # someone may already lead a cluster; adopt its configuration from heartbeats instead
        if any(m.get("has_leader") for m in servers):
            return
        servers = sorted(servers, key=lambda m: m["id"])[: max(self.bootstrap_expect, len(servers))]
        with self.lock:
            if self.config:
                return
            self.config = {m["id"]: {"name": m["name"], "addr": m["addr"], "voter": True} for m in servers}
            self.config_index = 1
            self._save()
            self.election_deadline = self._new_deadline()
        self.log("INFO", f"agent.server: found expected number of peers, attempting bootstrap: peers={','.join(m['addr'] for m in servers)}")

    # ------------------------------------------------------------ elections
    def _election(self, prevote: bool, transfer: bool = False):
        with self.lock:
            voters = self.voters()
            term = self.term + 1
            req = {"term": term, "candidate": self.id, "addr": self.addr, "index": self.index,
                   "last_term": self.last_term, "prevote": prevote, "transfer": transfer}
            if not prevote:
                self.term = term
                self.voted_for = self.id
                self.role = "candidate"
                self._save()
                self.log("INFO", f"agent.server.raft: entering candidate state: node=\"Node at {self.addr} [Candidate]\" term={term}")
            self.election_deadline = self._new_deadline()
            peers = [(i, self.config[i]["addr"]) for i in voters if i != self.id]
        votes = 1
        futs = [self.pool.submit(self._rpc, a, "/raft/vote", req) for _i, a in peers]
        for f in futs:
            try:
                r = f.result(timeout=self.election_base)
            except Exception:  # noqa: BLE001
                continue
            if r.get("term", 0) > term and not prevote:
                with self.lock:
                    self._step_down(r["term"])
                return
            if r.get("granted"):
                votes += 1
        need = len(voters) // 2 + 1
        if prevote:
            if votes >= need:
                self._election(prevote=False, transfer=transfer)
            return
        with self.lock:
            if self.role != "candidate" or self.term != term:
                return
            if votes >= need:
                self.leader_id, self.leader_addr = self.id, self.addr
                self.peer_acked = {}
                self.peer_contact = {i: time.monotonic() for i in self.config}
                self._set_role("leader")
            else:
                self.role = "follower"
        if self.role == "leader":
            try:
                self.apply({"op": "noop"})
            except RPCError as e:
                self.log("WARN", f"agent.server.raft: leader barrier failed: {e}")

    def _step_down(self, term):
        if term > self.term:
            self.term = term
            self.voted_for = None
            self._save()
        if self.role == "leader":
            self.log("INFO", "agent.server.raft: stepping down from leader")
        self._set_role("follower")
        self.election_deadline = self._new_deadline()

    def handle_vote(self, req: dict) -> dict:
        with self.lock:
            now = time.monotonic()
            sticky = (self.role == "leader" or (self.leader_id and now - self.last_leader_contact < self.election_base)) and not req.get("transfer")
            if req["term"] < self.term:
                return {"term": self.term, "granted": False}
            uptodate = (req["last_term"], req["index"]) >= (self.last_term, self.index)
            if req.get("prevote"):
                return {"term": self.term, "granted": bool(uptodate and not sticky and req["candidate"] in self.config)}
            if sticky:
                return {"term": self.term, "granted": False}
            if req["term"] > self.term:
                self._step_down(req["term"])
            if self.voted_for in (None, req["candidate"]) and uptodate:
                self.voted_for = req["candidate"]
                self._save()
                self.election_deadline = self._new_deadline()
                return {"term": self.term, "granted": True}
            return {"term": self.term, "granted": False}

    # ------------------------------------------------------------ replication
    def handle_append(self, req: dict) -> dict:
        with self.lock:
            if req["term"] < self.term:
                return {"term": self.term, "success": False, "index": self.index, "last_term": self.last_term}
            if req["term"] > self.term or self.role != "follower":
                self._step_down(req["term"])
            self.leader_id, self.leader_addr = req["leader"], req["leader_addr"]
            self.last_leader_contact = time.monotonic()
            self.election_deadline = self._new_deadline()
            dirty = False
            if req.get("config") is not None and req["config_index"] != self.config_index:
                self.config, self.config_index = req["config"], req["config_index"]
                dirty = True
            stale = req["term"] == self.term and (req["last_term"], req["index"]) < (self.last_term, self.index) \
                and self.last_term == self.term
            if "state" in req and not stale:
                # (a lower index from the current term's leader is a reordered, older message: ignore it)
                self.state, self.index, self.last_term = req["state"], req["index"], req["last_term"]
                self.changed.notify_all()
                dirty = True
            self.commit_index = min(self.index, max(self.commit_index, req.get("commit", 0)))
            if dirty:
                self._save()
            return {"term": self.term, "success": True, "index": self.index, "last_term": self.last_term}

    def handle_timeout_now(self, req: dict) -> dict:
        self.log("INFO", "agent.server.raft: received leadership transfer request, starting election")
        threading.Thread(target=self._election, kwargs={"prevote": False, "transfer": True}, daemon=True).start()
        return {"ok": True}

    def _rpc(self, addr, path, body, timeout=None):
        return call(addr, path, body, timeout=timeout or max(0.5, self.election_base / 2))

    def _lead_tick(self):
        now = time.monotonic()
        with self.lock:
            if self.role != "leader":
                return
            peers = [(i, c["addr"]) for i, c in self.config.items() if i != self.id]
            # check quorum: step down if a majority of voters has not been heard from recently
            voters = self.voters()
            recent = 1 + sum(1 for i in voters if i != self.id and now - self.peer_contact.get(i, 0) < self.election_base * 1.5)
            if self.id in voters and recent < self.quorum() and now - self.leader_since > self.election_base:
                self.log("WARN", "agent.server.raft: failed to contact quorum of nodes, stepping down")
                self._step_down(self.term)
                self.leader_id = None
                return
        for pid, addr in peers:
            if pid not in self.peer_inflight:
                self.peer_inflight.add(pid)
                self.pool.submit(self._replicate, pid, addr)
        self._autopilot()

    def _append_req(self, pid):
        with self.lock:
            req = {"term": self.term, "leader": self.id, "leader_addr": self.addr, "index": self.index,
                   "last_term": self.last_term, "config": self.config, "config_index": self.config_index,
                   "commit": self.commit_index}
            if self.peer_acked.get(pid) != (self.index, self.last_term):
                req["state"] = self.state
            return json.loads(json.dumps(req))

    def _append_to(self, pid, addr):
        """One AppendEntries round trip to a peer; records its contact and acknowledged index."""
        r = self._rpc(addr, "/raft/append", self._append_req(pid))
        with self.lock:
            if r["term"] > self.term:
                self._step_down(r["term"])
                return
            self.peer_contact[pid] = time.monotonic()
            self.peer_acked[pid] = (r["index"], r["last_term"])
            self.commit_cv.notify_all()

    def _replicate(self, pid, addr):
        try:
            self._append_to(pid, addr)
        except RPCError:
            pass
        except Exception as e:  # noqa: BLE001
            self.log("DEBUG", f"raft: replicate to {addr}: {e!r}")
        finally:
            self.peer_inflight.discard(pid)

    def apply(self, op: dict, timeout: float | None = None):
        """Leader only: apply op, replicate, wait for a majority. Raises NotLeader / RPCError."""
        with self.write_lock:
            with self.lock:
                if self.role != "leader":
                    raise NotLeader()
                new_state = copy.deepcopy(self.state)
                result = self.apply_fn(new_state, op, self.index + 1)
                self.state = new_state
                self.index += 1
                self.last_term = self.term
                self._save()
                self.changed.notify_all()
                target = (self.index, self.last_term)
                peers = [(i, c["addr"]) for i, c in self.config.items() if i != self.id]
            for pid, addr in peers:
                self.pool.submit(self._replicate_now, pid, addr)
            deadline = time.monotonic() + (timeout or max(2.0, 2 * self.election_base))
            with self.lock:
                while True:
                    acks = sum(1 for i in self.voters() if i == self.id or self.peer_acked.get(i) == target)
                    if acks >= self.quorum() and self.role == "leader" and self.term == target[1]:
                        self.commit_index = max(self.commit_index, target[0])
                        return result
                    if self.role != "leader":
                        raise RPCError("leadership lost while committing log", 500)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise RPCError("timed out enqueuing operation (no quorum: could not replicate to a majority of servers)", 500)
                    self.commit_cv.wait(min(left, self.hb))

    def _replicate_now(self, pid, addr):
        # separate from the heartbeat path so writes are not delayed by an in-flight heartbeat
        try:
            self._append_to(pid, addr)
        except Exception:  # noqa: BLE001
            pass

    def read(self):
        with self.lock:
            return copy.deepcopy(self.state)

    def snapshot(self):
        """The current state machine without a copy: every write replaces the state object, so this one never
        changes; callers must not modify it."""
        with self.lock:
            return self.state, self.index

    def wait_change(self, seen_index: int, timeout: float):
        """Block until the state machine moves past seen_index (a write applied or replicated here) or timeout."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.index == seen_index and not self.stopped.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.changed.wait(min(left, 1.0))

    def last_contact(self) -> float:
        """Seconds since this server last heard from the leader (0 on the leader)."""
        with self.lock:
            if self.role == "leader" or not self.last_leader_contact:
                return 0.0
            return time.monotonic() - self.last_leader_contact

    # ------------------------------------------------------------ leadership transfer
    def transfer_leadership(self, target_id: str | None = None):
        with self.lock:
            if self.role != "leader":
                raise NotLeader()
            cands = [i for i in self.voters() if i != self.id]
            if target_id:
                if target_id not in cands:
                    raise RPCError(f"cannot find peer {target_id}", 400)
                cands = [target_id]
            cands.sort(key=lambda i: self.peer_acked.get(i, (0, 0)), reverse=True)
            if not cands:
                raise RPCError("cannot find peer", 500)
            tid = cands[0]
            addr = self.config[tid]["addr"]
        # bring target up to date, then ask it to start an election now
        self._replicate_now(tid, addr)
        with self.lock:
            self._set_role("follower")
            self.leader_id = None
            self.transfer_until = time.monotonic() + self.election_base * 2
            self.election_deadline = self._new_deadline()
        try:
            self._rpc(addr, "/raft/timeout_now", {"term": self.term})
        except RPCError as e:
            raise RPCError(f"failed to transfer leadership: {e}", 500) from e
        return tid

    # ------------------------------------------------------------ autopilot
    def _autopilot(self):
        now = time.monotonic()
        members = {m["id"]: m for m in self.members_fn()}
        changed = False
        with self.lock:
            if self.role != "leader":
                return
            # add newly seen servers as non-voters
            for mid, m in members.items():
                if m["status"] == "alive" and mid not in self.config:
                    self.config[mid] = {"name": m["name"], "addr": m["addr"], "voter": False}
                    self.stable_since[mid] = now
                    changed = True
                    self.log("INFO", f"agent.server.autopilot: adding server: id={mid} address={m['addr']} name={m['name']}")
                elif mid in self.config and self.config[mid]["addr"] != m["addr"] and m["status"] == "alive":
                    self.config[mid]["addr"] = m["addr"]
                    changed = True
            health = self._health_locked(members)
            # promote stable non-voters
            for mid, c in self.config.items():
                h = health.get(mid)
                if not c["voter"] and h and h["Healthy"] and now - self.stable_since.get(mid, now) >= self.stabilization:
                    c["voter"] = True
                    changed = True
                    self.log("INFO", f"agent.server.autopilot: promoting server: id={mid} name={c['name']}")
            # remove servers that left; clean up failed ones without risking quorum
            voters = self.voters()
            failed = []
            for mid, c in list(self.config.items()):
                m = members.get(mid)
                st = m["status"] if m else "failed"
                if mid == self.id:
                    continue
                if st == "left":
                    del self.config[mid]
                    changed = True
                    self.log("INFO", f"agent.server.autopilot: removing server that left: id={mid} name={c['name']}")
                elif st == "failed":
                    self.failed_since.setdefault(mid, now)
                    if now - self.failed_since[mid] > self.election_base * 2:
                        failed.append(mid)
                else:
                    self.failed_since.pop(mid, None)
            if self.cleanup_dead and failed:
                fvoters = [f for f in failed if f in voters]
                remaining = len(voters) - len(fvoters)
                if len(fvoters) < (len(voters) + 1) // 2 and remaining >= max(self.min_quorum, 1):
                    for mid in failed:
                        self.log("INFO", f"agent.server.autopilot: removing dead server: id={mid} name={self.config[mid]['name']}")
                        del self.config[mid]
                        changed = True
            if changed:
                self.config_index += 1
                self._save()

    def _health_locked(self, members: dict) -> dict:
        now = time.monotonic()
        out = {}
        for mid, c in self.config.items():
            m = members.get(mid) or {}
            serf = m.get("status", "failed") if mid != self.id else "alive"
            if mid == self.id:
                lc, idx, lt = 0.0, self.index, self.last_term
                last_term = self.term
            else:
                lc = now - self.peer_contact.get(mid, 0) if mid in self.peer_contact else None
                idx, lt = self.peer_acked.get(mid, (0, 0))
                last_term = lt
            healthy = serf == "alive" and (mid == self.id or (lc is not None and lc < self.lct)) \
                and (self.index - idx) <= self.max_trailing and (mid == self.id or (idx, lt) == (self.index, self.last_term) or self.index - idx <= self.max_trailing)
            if self.health_prev.get(mid) != healthy:
                self.health_prev[mid] = healthy
                self.stable_since[mid] = now
            out[mid] = {"ID": mid, "Name": c["name"], "Address": c["addr"], "SerfStatus": serf,
                        "Version": m.get("version", self.version if mid == self.id else ""),
                        "Leader": mid == self.id, "LastContact": format_duration(lc) if lc is not None else "never",
                        "LastTerm": last_term if mid == self.id else (lt or 0), "LastIndex": idx,
                        "Healthy": bool(healthy), "Voter": bool(c["voter"]),
                        "StableSince": _rfc3339(time.time() - (now - self.stable_since.get(mid, now)))}
        return out

    def autopilot_health(self) -> dict:
        members = {m["id"]: m for m in self.members_fn()}
        with self.lock:
            if self.role != "leader":
                raise NotLeader()
            h = self._health_locked(members)
            voters = self.voters()
            healthy_voters = sum(1 for v in voters if h.get(v, {}).get("Healthy"))
            servers = [h[i] for i in sorted(h, key=lambda i: (h[i]["Name"]))]
            return {"Healthy": all(s["Healthy"] for s in servers),
                    "FailureTolerance": max(0, healthy_voters - (len(voters) // 2 + 1)),
                    "Servers": servers, "Leader": self.id, "Voters": voters}

    def autopilot_state(self) -> dict:
        """GET /v1/operator/autopilot/state (Consul)."""
        h = self.autopilot_health()
        servers = {}
        for sv in h["Servers"]:
            status = "leader" if sv["Leader"] else ("voter" if sv["Voter"] else "non-voter")
            servers[sv["ID"]] = {"ID": sv["ID"], "Name": sv["Name"], "Address": sv["Address"], "NodeStatus": sv["SerfStatus"],
                                 "Version": sv["Version"], "LastContact": sv["LastContact"], "LastTerm": sv["LastTerm"],
                                 "LastIndex": sv["LastIndex"], "Healthy": sv["Healthy"], "StableSince": sv["StableSince"],
                                 "ReadReplica": False, "Status": status, "Meta": {"build": sv["Version"]},
                                 "RedundancyZone": "", "UpgradeVersion": sv["Version"],
                                 "NodeType": "voter" if sv["Voter"] else "non-voter"}
        voters = h["Voters"]
        healthy_voters = sum(1 for v in voters if servers.get(v, {}).get("Healthy"))
        return {"Healthy": h["Healthy"], "FailureTolerance": h["FailureTolerance"],
                "OptimisticFailureTolerance": max(0, healthy_voters - (len(voters) // 2 + 1)),
                "Servers": servers, "Leader": h["Leader"], "Voters": voters, "ReadReplicas": [],
                "RedundancyZones": {}, "Upgrade": {}}

    def configuration(self) -> dict:
        with self.lock:
            lid, _ = self.leader()
            return {"Servers": [{"ID": i, "Node": c["name"], "Address": c["addr"], "Leader": i == lid,
                                 "Voter": bool(c["voter"])} for i, c in sorted(self.config.items(), key=lambda x: x[1]["name"])],
                    "Index": self.config_index}

    def remove_peer(self, peer_id: str | None = None, address: str | None = None):
        """operator raft remove-peer: drop a server from the configuration (by ID or IP:port)."""
        with self.lock:
            if self.role != "leader":
                raise NotLeader()
            if peer_id:
                if peer_id not in self.config:
                    raise RPCError(f'id "{peer_id}" was not found in the Raft configuration', 500)
                target = peer_id
            else:
                target = next((i for i, c in self.config.items() if c["addr"] == address), None)
                if target is None:
                    raise RPCError(f'address "{address}" was not found in the Raft configuration', 500)
            if target == self.id:
                raise RPCError("cannot remove the current leader: transfer leadership first", 500)
            c = self.config.pop(target)
            self.config_index += 1
            self._save()
            self.log("INFO", f"agent.server.raft: removed peer: id={target} address={c['addr']}")
            return True

    def remove_self_gracefully(self):
        """On leave as leader: hand leadership over first so the rest keeps quorum."""
        if self.is_leader() and len(self.voters()) > 1:
            try:
                self.transfer_leadership()
            except RPCError:
                pass

    def stats(self) -> dict:
        with self.lock:
            lid, laddr = self.leader()
            return {"state": self.role.capitalize(), "term": str(self.term), "last_log_index": str(self.index),
                    "last_log_term": str(self.last_term), "commit_index": str(self.commit_index), "applied_index": str(self.index),
                    "num_peers": str(max(0, len(self.voters()) - 1)), "leader_addr": laddr or "",
                    "last_contact": "0" if self.role == "leader" else (format_duration(time.monotonic() - self.last_leader_contact) if self.last_leader_contact else "never"),
                    "latest_configuration_index": str(self.config_index),
                    "latest_configuration": "[" + " ".join(f"{{Suffrage:{'Voter' if c['voter'] else 'Nonvoter'} ID:{i} Address:{c['addr']}}}" for i, c in self.config.items()) + "]",
                    "fsm_pending": "0", "last_snapshot_index": "0", "last_snapshot_term": "0", "snapshot_version_max": "1",
                    "protocol_version": "3", "protocol_version_max": "3", "protocol_version_min": "0"}


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
