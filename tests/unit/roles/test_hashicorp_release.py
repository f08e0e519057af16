"""hashicorp_release on the controller itself (connection local): verified install from an
air-gapped archive directory and from a mirror, tampering and wrong keys rejected, versioned
directory + link switch.

The release tree is built by sandbox.agents (official layout, signed with the sandbox key)."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from localplay import ROOT, _failure, _play, _result  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def release_tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("releases")
    subprocess.run([sys.executable, "-m", "sandbox.agents", "build", "--consul", "1.20.0", "--consul", "1.20.1",
                    "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    return out


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


def test_host_mode_takes_the_archive_dir_and_downloads_nothing(tmp_path, release_tree):
    """download_on: host with an archive directory: the host gets the files from the controller and verifies them."""
    v = _vars(tmp_path, release_tree, hashicorp_release_download_on="host",
              hashicorp_release_base_url="http://127.0.0.1:9/nothing-listens-here")
    r = _result(_play(tmp_path, INSTALL, v))
    binary = tmp_path / "opt" / "consul" / "1.20.1" / "consul"
    assert r["installed"] and r["binary"] == str(binary)
    assert b"Consul v1.20.1" in subprocess.run([str(tmp_path / "bin" / "consul"), "version"], capture_output=True).stdout
    assert not (tmp_path / "cache").exists()   # nothing went through the controller cache either

    bad = tmp_path / "bad"
    shutil.copytree(release_tree / "consul" / "1.20.0", bad)
    z = bad / "consul_1.20.0_linux_amd64.zip"
    z.write_bytes(z.read_bytes() + b"\0")
    msg = _failure(_play(tmp_path, INSTALL, dict(v, hashicorp_release_archive_dir=str(bad), hashicorp_release_version="1.20.0")))
    assert "does not match the signed checksum" in msg
    assert not (tmp_path / "opt" / "consul" / "1.20.0").exists()


def test_host_mode_downloads_from_a_mirror_and_verifies_on_the_host(tmp_path, release_tree):
    """download_on: host with a base URL (a mirror of the release site): the host fetches and verifies on its own."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(release_tree))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        v = _vars(tmp_path, release_tree, hashicorp_release_download_on="host", hashicorp_release_archive_dir="",
                  hashicorp_release_base_url=f"http://127.0.0.1:{server.server_address[1]}/")
        r = _result(_play(tmp_path, INSTALL, v))
    finally:
        server.shutdown()
    assert r["installed"] and r["changed"]
    assert b"Consul v1.20.1" in subprocess.run([str(tmp_path / "bin" / "consul"), "version"], capture_output=True).stdout
    assert not (tmp_path / "cache").exists()   # the controller cache was not used


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
