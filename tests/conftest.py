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
  ``arm.reset()``, ``arm.identity_token(principal_id, resource=None)``, ``arm.instances()``, ``arm.wait_idle()``,
  ``arm.vault_env()`` (HTTPS_PROXY/NO_PROXY that take Key Vault data-plane clients to the emulator),
  and Scheduled Events as an instance sees them: ``arm.scheduled_events(instance_id)`` (polls, so it
  enables them for the scale set), ``arm.approve_events(instance_id, [event_id])``,
  ``arm.platform_event([instance_id], "Reboot"|"Redeploy"|"Freeze"|"Preempt", NotBeforeSeconds=...)``,
  ``arm.set_event_time_scale(f)`` (notices times f; shared emulator: set it back to 1).
  The emulator is shared: use unique resource group names per test and delete what you create
  (or call ``arm.reset()`` in a test that needs a clean subscription).
* ``arm_env`` (session scope): environment for Ansible / azure tooling against ``arm``:
  AZURE_CLIENT_ID, AZURE_SECRET, AZURE_CLIENT_SECRET, AZURE_TENANT, AZURE_TENANT_ID,
  AZURE_SUBSCRIPTION_ID, AZURE_CLOUD_ENVIRONMENT (= resource_manager URL), AZURE_AUTHORITY_HOST,
  REQUESTS_CA_BUNDLE, AZURE_CA_BUNDLE, SSL_CERT_FILE (= ca.pem).
* The api-version check of the whole run: every emulator the tests start (these fixtures, private
  ``ArmEmulator``s, ``sandbox.sh``) inherits ``SANDBOX_ARM_REQUEST_LOG`` set here and logs each
  request there; when the session ends, every request the collection sent (User-Agent
  ``hashistack…``: the modules and the inventory plugin) is compared with the emulator's api-version
  table and the run fails if one used a version the table lacks.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

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


def _is_controller(config) -> bool:
    return not hasattr(config, "workerinput")  # pytest-xdist workers carry workerinput


def pytest_configure(config):
    # set before xdist starts its workers, so they and every emulator they start share one directory
    if _is_controller(config) and not os.environ.get("SANDBOX_ARM_REQUEST_LOG"):
        config._arm_request_log = tempfile.mkdtemp(prefix="sandbox-arm-requests-")
        os.environ["SANDBOX_ARM_REQUEST_LOG"] = config._arm_request_log


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    directory = getattr(config, "_arm_request_log", None)
    if not directory or not _is_controller(config):
        return
    from sandbox.arm.testing import check_request_logs
    checked, problems = check_request_logs(directory)
    report = config.pluginmanager.get_plugin("terminalreporter")
    if report is not None and checked:
        report.write_line("")
        versions = sorted({(e.get("api_version") or "") for e in checked})
        report.write_line(f"api-versions: {len(checked)} ARM requests from the collection, all checked against "
                          f"the emulator's table; versions used: {', '.join(versions)}")
    if problems:
        if report is not None:
            report.write_line("api-versions the emulator's table (= azure-rest-api-specs) does not have:", red=True)
            for line in problems:
                report.write_line("  " + line, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        shutil.rmtree(directory, ignore_errors=True)
