"""The one sandbox cluster the end-to-end tests share: `scripts/sandbox.sh up` (the README's main
command) once per session, `down` at the end with no machine, network or process left behind.

Order: test_sandbox_main_job.py first (it asserts what `up` built and that a second `up` changes
nothing), then the other files that use the cluster (each leaves it in the spec's shape), then the tests
marked `upgrades_sandbox` (they leave it on newer versions than the spec's), and those marked
`destroys_sandbox` last."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess

import pytest

from .cluster import PYTHON, ROOT

MAIN_JOB = "test_sandbox_main_job.py"


def _can_boot() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("systemd-nspawn"):
        return "needs systemd-nspawn"
    return None


def pytest_collection_modifyitems(config, items):
    def rank(item):
        if "sandbox" not in getattr(item, "fixturenames", ()):
            return 0
        if item.get_closest_marker("destroys_sandbox"):
            return 4
        if item.get_closest_marker("upgrades_sandbox"):
            return 3
        return 1 if item.path.name == MAIN_JOB else 2

    items.sort(key=rank)  # stable: file order is kept inside each rank


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    reason = _can_boot()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("sandbox-state")
    env = dict(os.environ, HASHISTACK_SANDBOX_STATE=str(state))
    env.pop("HASHISTACK_SANDBOX_RUN", None)  # the script keeps the machines under its state dir
    script = str(ROOT / "scripts" / "sandbox.sh")

    def run(*args, check=True, timeout=1200):
        proc = subprocess.run([script, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"sandbox.sh {' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}")
        return proc

    try:
        up = run("up")
        exports = run("env").stdout
    except BaseException:
        run("down", check=False)  # a failed `up` must not leave its machines, networks and emulator behind
        raise
    shell_env = dict(env, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache/collections"), ANSIBLE_NOCOLOR="1")
    for line in exports.splitlines():
        for assignment in shlex.split(line)[1:]:  # export K=V [K=V ...]
            key, _, value = assignment.partition("=")
            shell_env[key] = value
    hosts_env = dict(env, HASHISTACK_SANDBOX_RUN=str(state / "arm" / "hosts-run"))
    yield {"up": up, "env": shell_env, "hosts_env": hosts_env, "state": state, "run": run}
    down = run("down", check=False)
    assert down.returncode == 0, down.stderr
    left = subprocess.run([PYTHON, "-m", "sandbox.hosts", "leftovers"], env=hosts_env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    leftovers = json.loads(left.stdout)  # kernel objects by kind: links, mounts, netns, nft, processes, ...
    assert leftovers and not any(leftovers.values()), leftovers
