"""Fixtures for the sandbox/hosts tests: an isolated sandbox (own run dir) per module."""

from __future__ import annotations

import shutil

import pytest
from hosts_helpers import CLEAN, can_boot_hosts, make_sandbox


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
