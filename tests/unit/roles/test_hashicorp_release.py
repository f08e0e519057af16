"""hashicorp_release on the controller itself (connection local): verified install from an
air-gapped archive directory and from a mirror, tampering and wrong keys rejected, versioned
directory + link switch; and hashicorp_agent's gossip keys kept once, cluster spec validation and join targets.

The release tree is built by sandbox.agents (official layout, signed with the sandbox key)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def release_tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("releases")
    subprocess.run([sys.executable, "-m", "sandbox.agents", "build", "--consul", "1.20.0", "--consul", "1.20.1",
                    "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    return out


def _play(tmp_path: Path, tasks: str, extra: dict) -> subprocess.CompletedProcess:
    pb = tmp_path / "play.yml"
    pb.write_text(textwrap.dedent("""\
        - hosts: localhost
          connection: local
          gather_facts: false
          tasks:
        """) + textwrap.indent(textwrap.dedent(tasks), "    "))
    ev = tmp_path / "extra.json"
    ev.write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"),
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_DISPLAY_ARGS_TO_STDOUT="false", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    env.pop("ANSIBLE_COLLECTIONS_PATHS", None)
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(pb),
                           "-e", "@" + str(ev)], capture_output=True, text=True, env=env, cwd=tmp_path)


INSTALL = """\
- name: Install
  ansible.builtin.include_role:
    name: hashistack.azure.hashicorp_release
  vars:
    hashicorp_release_product: consul
- name: Show
  ansible.builtin.copy:
    content: "{{ hashicorp_release_result | to_json }}"
    dest: result.json
    mode: "0600"
"""


def _vars(tmp_path, release_tree, **kw):
    v = {"hashicorp_release_version": "1.20.1",
         "hashicorp_release_archive_dir": str(release_tree),
         "hashicorp_release_gpg_key": (release_tree / "sandbox-release-key.asc").read_text(),
         "hashicorp_release_gpg_fingerprint": "",
         "hashicorp_release_cache_dir": str(tmp_path / "cache"),
         "hashicorp_release_install_root": str(tmp_path / "opt"),
         "hashicorp_release_bin_dir": str(tmp_path / "bin")}
    (tmp_path / "bin").mkdir(exist_ok=True)
    v.update(kw)
    return v


def _result(proc) -> dict:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    res = Path(proc.args[3]).parent / "result.json"
    data = json.loads(res.read_text())
    res.unlink()
    return data


def _failure(proc) -> str:
    assert proc.returncode != 0, proc.stdout[-3000:]
    return " ".join((proc.stdout + proc.stderr).split())


def test_verified_install_link_switch_and_no_redownload(tmp_path, release_tree):
    r = _result(_play(tmp_path, INSTALL, _vars(tmp_path, release_tree)))
    binary = tmp_path / "opt" / "consul" / "1.20.1" / "consul"
    assert r["installed"] and r["changed"] and r["binary"] == str(binary)
    assert os.readlink(tmp_path / "bin" / "consul") == str(binary)
    assert stat.S_IMODE(binary.stat().st_mode) == 0o755
    assert b"Consul v1.20.1" in subprocess.run([str(tmp_path / "bin" / "consul"), "version"], capture_output=True).stdout

    # same version again: nothing downloaded, nothing changed
    shutil.rmtree(tmp_path / "cache")
    r = _result(_play(tmp_path, INSTALL, _vars(tmp_path, release_tree)))
    assert not r["installed"] and not r["changed"]
    assert not (tmp_path / "cache" / "consul" / "1.20.1").exists()

    # another version sits beside it; going back is a link switch
    r = _result(_play(tmp_path, INSTALL, _vars(tmp_path, release_tree, hashicorp_release_version="1.20.0")))
    assert r["installed"] and r["changed"]
    assert binary.exists()
    r = _result(_play(tmp_path, INSTALL, _vars(tmp_path, release_tree)))
    assert not r["installed"] and r["changed"]
    assert os.readlink(tmp_path / "bin" / "consul") == str(binary)


def test_tampered_archive_is_rejected(tmp_path, release_tree):
    bad = tmp_path / "bad"
    shutil.copytree(release_tree / "consul" / "1.20.1", bad)
    z = bad / "consul_1.20.1_linux_amd64.zip"
    z.write_bytes(z.read_bytes() + b"\0")
    msg = _failure(_play(tmp_path, INSTALL, _vars(tmp_path, release_tree, hashicorp_release_archive_dir=str(bad))))
    assert "does not match the signed checksum" in msg or "tampered" in msg
    assert not (tmp_path / "opt" / "consul" / "1.20.1" / "consul").exists()


def test_tampered_sums_fail_the_signature(tmp_path, release_tree):
    bad = tmp_path / "bad"
    shutil.copytree(release_tree / "consul" / "1.20.1", bad)
    sums = bad / "consul_1.20.1_SHA256SUMS"
    sums.write_text(sums.read_text().replace(sums.read_text()[:8], "00000000"))
    msg = _failure(_play(tmp_path, INSTALL, _vars(tmp_path, release_tree, hashicorp_release_archive_dir=str(bad))))
    assert "no valid signature" in msg
    assert not (tmp_path / "opt" / "consul").exists()


def test_hashicorp_key_rejects_other_signers(tmp_path, release_tree):
    """With the shipped HashiCorp key (the default), a sandbox-signed release does not verify."""
    v = _vars(tmp_path, release_tree)
    del v["hashicorp_release_gpg_key"]
    del v["hashicorp_release_gpg_fingerprint"]
    msg = _failure(_play(tmp_path, INSTALL, v))
    assert "no valid signature by C874011F0AB405110D02105534365D9472D7468F" in msg


def test_wrong_fingerprint_is_rejected(tmp_path, release_tree):
    msg = _failure(_play(tmp_path, INSTALL, _vars(tmp_path, release_tree,
                                                  hashicorp_release_gpg_fingerprint="C874011F0AB405110D02105534365D9472D7468F")))
    assert "no valid signature" in msg


def test_shipped_key_is_hashicorps():
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"hr-key-{os.getpid()}"
    home.mkdir(mode=0o700)
    try:
        out = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--with-colons", "--show-keys",
                              str(ROOT / "roles" / "hashicorp_release" / "files" / "hashicorp.asc")],
                             capture_output=True, text=True, check=True).stdout
    finally:
        shutil.rmtree(home, ignore_errors=True)
    fprs = [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]
    assert fprs[0] == "C874011F0AB405110D02105534365D9472D7468F"


GOSSIP = """\
- name: Key
  ansible.builtin.include_role:
    name: hashistack.azure.hashicorp_agent
    tasks_from: gossip_key
  vars:
    hashicorp_agent_product: consul
    hashicorp_agent_gossip_key: ""
    hashicorp_agent_gossip_fact: the_key
- name: Show
  ansible.builtin.debug:
    msg: "{{ the_key | length }}"
"""


def test_gossip_key_generated_once_private_never_logged(tmp_path):
    secrets = tmp_path / "secrets"
    p1 = _play(tmp_path, GOSSIP, {"hashistack_secrets_dir": str(secrets), "hashistack_spec": {"cluster": "t"}})
    assert p1.returncode == 0, p1.stdout[-3000:]
    keyfile = secrets / "consul-gossip.key"
    key = keyfile.read_text().strip()
    assert len(key) == 44
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert key not in p1.stdout and key not in p1.stderr
    p2 = _play(tmp_path, GOSSIP, {"hashistack_secrets_dir": str(secrets), "hashistack_spec": {"cluster": "t"}})
    assert p2.returncode == 0
    assert keyfile.read_text().strip() == key
    assert key not in p2.stdout


SPEC = """\
- name: Spec
  ansible.builtin.include_role:
    name: hashistack.azure.hashicorp_agent
    tasks_from: cluster_spec
- name: Show
  ansible.builtin.debug:
    msg: "{{ hashistack_host_pool }} {{ hashistack_host_nomad_datacenter }}"
"""

GOOD_SPEC = {"cluster": "prod", "consul_datacenter": "dc1", "nomad_region": "global", "server_count": 3,
             "server_pool": "servers",
             "pools": {"servers": {"location": "westeurope"}, "batch": {"location": "northeurope"}}}


@pytest.mark.parametrize("change, fragment", [
    ({"consul_datacenter": "DC 1"}, "consul_datacenter 'DC 1'"),
    ({"nomad_region": "eu/west"}, "nomad_region 'eu/west'"),
    ({"server_count": 0}, "server_count 0"),
    ({"pools": {"servers": {"location": "westeurope"}, "batch": {"location": "northeurope", "nomad_region": "other"}}},
     "set their own consul_datacenter/nomad_region"),
    ({"pools": {"servers": {"location": "westeurope"}, "batch": {}}}, "invalid nomad_datacenter or location: ['batch']"),
])
def test_cluster_spec_rejects(tmp_path, change, fragment):
    spec = dict(GOOD_SPEC, **change)
    msg = _failure(_play(tmp_path, SPEC, {"hashistack_spec": spec, "hashistack_pool": "batch"}))
    assert fragment in msg


def test_cluster_spec_pool_datacenter_and_tag_mismatch(tmp_path):
    ok = _play(tmp_path, SPEC, {"hashistack_spec": GOOD_SPEC, "hashistack_pool": "batch"})
    assert ok.returncode == 0, ok.stdout[-3000:]
    assert "batch northeurope" in ok.stdout
    msg = _failure(_play(tmp_path, SPEC, {"hashistack_spec": GOOD_SPEC, "hashistack_pool": "batch",
                                          "nomad_region": "northeurope"}))
    assert "tags disagree with the cluster spec" in msg


JOIN = """\
- name: Two servers in the inventory
  ansible.builtin.add_host:
    name: "{{ item.name }}"
    groups: consul_servers
    azure_private_ip: "{{ item.ip }}"
  loop: [{name: s2, ip: 10.0.0.12}, {name: s1, ip: 10.0.0.11}]
- name: Join
  ansible.builtin.include_role:
    name: hashistack.azure.hashicorp_agent
    tasks_from: join
  vars:
    hashicorp_agent_product: consul
    hashicorp_agent_join_fact: the_join
    hashicorp_agent_servers_group: consul_servers
- name: Show
  ansible.builtin.copy:
    content: "{{ the_join | to_json }}"
    dest: result.json
    mode: "0600"
"""

BY_TAG = {"tag_name": "hashistack_cluster", "tag_value": "prod", "resource_group": "", "scale_set": ""}


@pytest.mark.parametrize("extra, expected", [
    ({"hashicorp_agent_join_method": "azure"},
     ["provider=azure tag_name=hashistack_cluster tag_value=prod subscription_id=sub-1"]),
    ({"hashicorp_agent_join_method": "azure", "hashicorp_agent_azure_join": dict(BY_TAG, resource_group="rg", scale_set="srv")},
     ["provider=azure resource_group=rg vm_scale_set=srv subscription_id=sub-1"]),
    ({"hashicorp_agent_join_method": "inventory"}, ["10.0.0.11", "10.0.0.12"]),
    ({"hashicorp_agent_join_method": "azure", "hashicorp_agent_retry_join": ["10.9.9.9"]}, ["10.9.9.9"]),
])
def test_join_targets(tmp_path, extra, expected):
    v = {"hashistack_spec": dict(GOOD_SPEC, azure={"subscription_id": "sub-1"}), "hashicorp_agent_azure_join": BY_TAG}
    v.update(extra)
    assert _result(_play(tmp_path, JOIN, v)) == expected


def test_join_azure_needs_a_subscription(tmp_path):
    msg = _failure(_play(tmp_path, JOIN, {"hashistack_spec": GOOD_SPEC, "hashicorp_agent_azure_join": BY_TAG,
                                          "hashicorp_agent_join_method": "azure"}))
    assert "azure needs hashistack_spec.azure.subscription_id" in msg
