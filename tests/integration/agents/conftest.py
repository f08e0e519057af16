"""Fixtures for the Consul/Nomad stand-in tests: a built release tree, unpacked executables,
agent processes on private loopback addresses (127.x.y.z)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sandbox.agents.build import build, unpack

CONSUL_VERSIONS = ["1.20.1", "1.20.2"]
NOMAD_VERSIONS = ["1.9.3", "1.9.4"]
REF = Path("/work/shared/reference/hashicorp")


@pytest.fixture(scope="session")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    build(out, {"consul": CONSUL_VERSIONS, "nomad": NOMAD_VERSIONS})
    return out


@pytest.fixture(scope="session")
def bins(release, tmp_path_factory):
    """{("consul", "1.20.1"): Path(executable), ...}"""
    d = tmp_path_factory.mktemp("bin")
    out = {}
    for product, versions in (("consul", CONSUL_VERSIONS), ("nomad", NOMAD_VERSIONS)):
        for v in versions:
            vd = d / f"{product}-{v}"
            vd.mkdir()
            out[(product, v)] = unpack(release / product / v / f"{product}_{v}_linux_amd64.zip", vd)
    return out


@pytest.fixture(scope="session")
def consul(bins):
    return bins[("consul", CONSUL_VERSIONS[0])]


@pytest.fixture(scope="session")
def nomad(bins):
    return bins[("nomad", NOMAD_VERSIONS[0])]


def _free_block() -> str:
    """A 127.A.B.0/24 block nobody listens on (random, checked by binding)."""
    for _ in range(50):
        a, b = random.randint(100, 250), random.randint(1, 250)
        base = f"127.{a}.{b}"
        s = socket.socket()
        try:
            s.bind((f"{base}.1", 8500))
            s.close()
            return base
        except OSError:
            s.close()
    raise RuntimeError("no free loopback block")


@pytest.fixture
def net():
    """Per-test loopback block: net(1) -> '127.A.B.1'."""
    base = _free_block()
    return lambda i: f"{base}.{i}"


@pytest.fixture(scope="module")
def module_net():
    """A loopback block shared by the tests of a module (its shared cluster)."""
    base = _free_block()
    return lambda i: f"{base}.{i}"


class Agent:
    def __init__(self, exe: Path, args: list[str], workdir: Path, name: str, env: dict | None = None):
        self.exe, self.args, self.workdir, self.name = exe, args, workdir, name
        self.env = dict(os.environ, **(env or {}))
        self.proc: subprocess.Popen | None = None
        self.logfile = workdir / f"{name}.log"

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        fh = open(self.logfile, "ab")
        self.proc = subprocess.Popen(["/usr/bin/python3", str(self.exe), *self.args], stdout=fh, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.workdir, start_new_session=True)
        fh.close()
        return self

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill(self):
        return self.stop(signal.SIGKILL)

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def alive(self) -> bool:
        return bool(self.proc) and self.proc.poll() is None


def kill_allocs(data_dirs):
    """Kill allocation processes recorded by Nomad clients (they outlive a killed agent by design)."""
    for d in data_dirs:
        f = Path(d) / "client" / "allocs.json"
        if f.is_file():
            for r in json.loads(f.read_text()).values():
                pid = r.get("pid")
                if pid:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass


class AgentPool:
    """Factory: pool(exe, config_text, name, ext='hcl', product='consul') -> started Agent; close() kills them all
    (and the Nomad allocations they started)."""

    def __init__(self, root: Path):
        self.root, self.started, self.data_dirs = root, [], []

    def __call__(self, exe, config: str, name: str, ext: str = "hcl", product: str = "consul", extra=None, env=None,
                 start=True):
        wd = self.root / name
        cd = wd / "config"
        cd.mkdir(parents=True, exist_ok=True)
        (cd / f"agent.{ext}").write_text(config)
        self.data_dirs.append(wd / "data")
        if product == "consul":
            args = ["agent", "-config-dir", str(cd)]
        else:
            args = ["agent", "-config", str(cd)]
        a = Agent(exe, args + list(extra or []), wd, name, env)
        if start:
            a.start()
        self.started.append(a)
        return a

    def close(self):
        for a in self.started:
            a.stop(signal.SIGKILL)
        kill_allocs(self.data_dirs)


@pytest.fixture
def agents(tmp_path):
    """Agents of one test (see AgentPool)."""
    pool = AgentPool(tmp_path)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def module_agents(tmp_path_factory):
    """Agents shared by the tests of a module (one cluster, booted once)."""
    pool = AgentPool(tmp_path_factory.mktemp("agents"))
    yield pool
    pool.close()


def http(addr: str, path: str, method: str = "GET", body=None, timeout: float = 5.0, headers: bool = False):
    """(status, parsed JSON or text), or (status, body, headers) with headers=True."""
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{addr}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, status, hdrs = r.read(), r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        raw, status, hdrs = e.read(), e.code, dict(e.headers)
    try:
        out = json.loads(raw) if raw else None
    except ValueError:
        out = raw.decode(errors="replace")
    return (status, out, hdrs) if headers else (status, out)


def map_sample(s: dict) -> dict:
    """A documented response that is a map keyed by ids (agent/services, agent/checks): compare every entry
    against the sample's first one."""
    first = next(iter(s.values()))
    return {"00000000-0000-0000-0000-000000000000": first}


def wait_for(fn, timeout: float = 20.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (OSError, KeyError, ValueError, TypeError, IndexError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def run(exe, *args, env=None, timeout=30, input_text=None, cwd=None):
    return subprocess.run(["/usr/bin/python3", str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})), input=input_text, cwd=cwd)


@pytest.fixture(scope="session")
def cli_ref():
    return json.loads((REF / "cli.json").read_text())


@pytest.fixture(scope="session")
def api_samples():
    return {"consul": json.loads((REF / "consul-api-samples.json").read_text()),
            "nomad": json.loads((REF / "nomad-api-samples.json").read_text())}
