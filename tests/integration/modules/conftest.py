"""Run hashistack.azure modules through ansible-playbook against the ARM emulator.

``play(task, check=False, diff=False)`` writes a one-play playbook for localhost with the task (a dict
``{module: args}`` - the FQCN is added), runs ``ansible-playbook`` with the emulator's environment and returns
the registered result (``failed``/``msg`` included, the play itself never fails). ``writes(arm, since)`` lists the
ARM write requests (PUT/PATCH/POST/DELETE on the ARM API - token and admin endpoints excluded) since a log index.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
BIN = os.path.join(ROOT, '.venv', 'bin')
SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHashistackModulesTestKeyOnlyNotARealKey0000000 test@hashistack'
WRITE_METHODS = ('PUT', 'PATCH', 'POST', 'DELETE')
# requests that are not ARM API calls (token service, cloud metadata, admin API)
_NOT_ARM = re.compile(r'^/(_sandbox/|metadata/endpoints|[^/]+/(v2\.0/)?\.well-known/|[^/]+/oauth2/|[^/]+/discovery/|common/)', re.I)


def arm_requests(arm, since=0):
    """ARM API requests logged since ``since`` (token, metadata and admin requests left out)."""
    return [e for e in arm.requests(since) if not _NOT_ARM.match(e['path'])]


def writes(arm, since=0):
    return [e for e in arm_requests(arm, since) if e['method'].upper() in WRITE_METHODS]


def mark(arm):
    return arm.mark()


class Player:
    def __init__(self, tmp_path, arm_env):
        self.tmp = tmp_path
        self.env = dict(os.environ)
        self.env.update(arm_env)
        self.env.update({
            'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS,
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'tmp'),
            'ANSIBLE_PYTHON_INTERPRETER': os.path.join(BIN, 'python'),
            'ANSIBLE_DEPRECATION_WARNINGS': 'false',
            'PATH': BIN + os.pathsep + self.env.get('PATH', ''),
        })
        self.count = 0

    def __call__(self, task, check=False, diff=False, extra_env=None, module_defaults=None, drop_env=()):
        self.count += 1
        out = self.tmp / f'result{self.count}.json'
        (module, args), = task.items()
        if '.' not in module:
            module = 'hashistack.azure.' + module
        playbook = [{
            'hosts': 'localhost', 'gather_facts': False, 'connection': 'local',
            'tasks': [
                {'name': 'under test', module: args, 'register': 'r', 'ignore_errors': True},
                {'name': 'save', 'ansible.builtin.copy': {'content': '{{ r | to_json }}', 'dest': str(out)},
                 'check_mode': False, 'diff': False},
            ],
        }]
        if module_defaults:
            playbook[0]['module_defaults'] = module_defaults
        path = self.tmp / f'play{self.count}.yml'
        path.write_text(yaml.safe_dump(playbook, sort_keys=False))
        cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', 'localhost,', str(path)]
        if check:
            cmd.append('--check')
        if diff:
            cmd.append('--diff')
        env = dict(self.env)
        for name in drop_env:
            env.pop(name, None)
        env.update(extra_env or {})
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
        if not out.exists():
            raise AssertionError(f'ansible-playbook produced no result ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}')
        result = json.loads(out.read_text())
        result['_stdout'] = proc.stdout
        return result


@pytest.fixture
def play(tmp_path, arm_env):
    return Player(tmp_path, arm_env)


def ok(result):
    assert not result.get('failed'), result.get('msg') or result
    return result


def sub_of(arm):
    return arm.endpoint['subscription_id']


@pytest.fixture
def sdk(arm_env):
    """The collection's own session for setup and teardown (no module involved)."""
    import sys
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)
    from ansible_collections.hashistack.azure.plugins.module_utils import _auth
    return _auth.AzureSession({}, env=dict(arm_env))


@pytest.fixture
def rg(request, sdk):
    """A fresh resource group name for the test; deleted (with content) afterwards."""
    from azure.mgmt.resource.resources import ResourceManagementClient
    name = 'hsmod-' + re.sub(r'[^a-z0-9]+', '-', request.node.name.lower())[:40].strip('-')
    client = sdk.client(ResourceManagementClient, polling_interval=0.2)
    yield name
    try:
        if client.resource_groups.check_existence(name):
            client.resource_groups.begin_delete(name).result()
    except Exception:  # noqa: BLE001 - best effort cleanup
        pass


def make_rg(sdk, name, location='westeurope'):
    from azure.mgmt.resource.resources import ResourceManagementClient
    sdk.client(ResourceManagementClient).resource_groups.create_or_update(name, {'location': location})
