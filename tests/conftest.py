"""Shared pytest fixtures (owned by the ARM emulator work, issue 2).

* ``sys.path`` gets the repository root (``import sandbox...``) and ``.cache/collections``
  (``import ansible_collections.hashistack.azure...``).
* ``arm`` (session scope): one ``sandbox.arm.testing.ArmEmulator`` per test session (per xdist
  worker), HTTPS on a free loopback port, fast provisioning (0.2 s). Useful members:
  ``arm.endpoint`` (resource_manager, authority, tenant_id, subscription_id, client_id,
  client_secret, principal_id), ``arm.ca_path``, ``arm.credential()``, ``arm.client_kwargs()``
  (base_url/credential_scopes/connection_verify for any azure-mgmt client), ``arm.requests(since)``,
  ``arm.mark()``, ``arm.writes(since)``, ``arm.fault(status, path=regex, method=, count=, retry_after=)``,
  ``arm.clear_faults()``, ``arm.set_quotas({loc: {family|"cores": limit}})``, ``arm.set_latency(ms)``,
  ``arm.reset()``, ``arm.identity_token(principal_id)``, ``arm.instances()``, ``arm.wait_idle()``.
  The emulator is shared: use unique resource group names per test and delete what you create
  (or call ``arm.reset()`` in a test that needs a clean subscription).
* ``arm_env`` (session scope): environment for Ansible / azure tooling against ``arm``:
  AZURE_CLIENT_ID, AZURE_SECRET, AZURE_CLIENT_SECRET, AZURE_TENANT, AZURE_TENANT_ID,
  AZURE_SUBSCRIPTION_ID, AZURE_CLOUD_ENVIRONMENT (= resource_manager URL), AZURE_AUTHORITY_HOST,
  REQUESTS_CA_BUNDLE, AZURE_CA_BUNDLE, SSL_CERT_FILE (= ca.pem).
"""
from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (os.path.join(ROOT, ".cache", "collections"), ROOT):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from sandbox.arm.testing import ArmEmulator  # noqa: E402


@pytest.fixture(scope="session")
def arm():
    emulator = ArmEmulator(provisioning_seconds=0.2).start()
    yield emulator
    emulator.cleanup()


@pytest.fixture(scope="session")
def arm_env(arm):
    return arm.env()
