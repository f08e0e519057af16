"""Fixtures for the sandbox/hosts tests: an isolated sandbox (own run dir) per module, or an ARM emulator
whose scale-set instances are machines of its own sandbox (`emu`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hosts_helpers import CLEAN, Sandbox, can_boot_hosts, make_sandbox


@pytest.fixture(scope="module")
def sandbox():
    reason = can_boot_hosts()
    if reason:
        pytest.skip(reason)
    sb = make_sandbox()
    sb.cli("image", "build", timeout=900)
    yield sb
    sb.cli("down", "--all")
    left = sb.leftovers()
    shutil.rmtree(sb.run, ignore_errors=True)
    assert left == CLEAN


@pytest.fixture(scope="module")
def emu():
    """(ARM emulator with --hosts, the Sandbox of its instances); nothing left behind afterwards."""
    reason = can_boot_hosts()
    if reason:
        pytest.skip(reason)
    from sandbox.arm.testing import ArmEmulator
    arm = ArmEmulator(provisioning_seconds=0.1, extra_args=["--hosts"]).start()
    sb = Sandbox(Path(arm.state_dir) / "hosts-run")
    try:
        yield arm, sb
    finally:
        arm.stop()
        left = sb.leftovers()
        arm.cleanup()
        assert left == CLEAN
