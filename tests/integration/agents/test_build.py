"""Release build: official layout, reproducible archives, verifiable signatures, mirror."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.request
import zipfile

from sandbox.agents.build import build

from .conftest import run


def test_layout_and_index(release):
    for product, v in (("consul", "1.20.1"), ("nomad", "1.9.4")):
        d = release / product / v
        z = d / f"{product}_{v}_linux_amd64.zip"
        with zipfile.ZipFile(z) as zf:
            infos = zf.infolist()
            assert [i.filename for i in infos] == [product]
            assert (infos[0].external_attr >> 16) & 0o777 == 0o755
            assert zf.read(product).startswith(b"#!/usr/bin/env python3\n")
        sums = (d / f"{product}_{v}_SHA256SUMS").read_text().splitlines()
        assert sums == [f"{subprocess.check_output(['sha256sum', str(z)], text=True).split()[0]}  {z.name}"]
        vi = json.loads((d / "index.json").read_text())
        assert vi["name"] == product and vi["version"] == v
        assert vi["shasums"] == f"{product}_{v}_SHA256SUMS"
        assert vi["shasums_signature"] == f"{product}_{v}_SHA256SUMS.sig"
        assert vi["builds"] == [{"name": product, "version": v, "os": "linux", "arch": "amd64",
                                 "filename": z.name, "url": f"https://releases.hashicorp.com/{product}/{v}/{z.name}"}]
        pi = json.loads((release / product / "index.json").read_text())
        assert pi["name"] == product and pi["versions"][v] == vi


def test_reproducible(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build(a, {"consul": ["1.20.1"], "nomad": []})
    build(b, {"consul": ["1.20.1"], "nomad": []})
    for name in ("consul_1.20.1_SHA256SUMS", "consul_1.20.1_linux_amd64.zip"):
        assert (a / "consul/1.20.1" / name).read_bytes() == (b / "consul/1.20.1" / name).read_bytes()
    # a different version is a different executable
    build(b, {"consul": ["1.20.2"], "nomad": []})
    assert (b / "consul/1.20.2/consul_1.20.2_SHA256SUMS").read_text().split()[0] != \
        (a / "consul/1.20.1/consul_1.20.1_SHA256SUMS").read_text().split()[0]


def test_signature_verifies_with_exported_key(release, tmp_path):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch"]
    subprocess.run(gpg + ["--import", str(release / "sandbox-release-key.asc")], check=True, capture_output=True)
    d = release / "consul" / "1.20.2"
    ok = subprocess.run(gpg + ["--verify", str(d / "consul_1.20.2_SHA256SUMS.sig"), str(d / "consul_1.20.2_SHA256SUMS")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "Good signature" in ok.stderr
    tampered = tmp_path / "SUMS"
    tampered.write_text((d / "consul_1.20.2_SHA256SUMS").read_text().replace("0", "1", 1))
    bad = subprocess.run(gpg + ["--verify", str(d / "consul_1.20.2_SHA256SUMS.sig"), str(tampered)], capture_output=True, text=True)
    assert bad.returncode != 0
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)


def test_executables_report_their_version(bins, cli_ref):
    r = run(bins[("consul", "1.20.2")], "version")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0] == "Consul v1.20.2"
    assert lines[1].startswith("Revision ")
    assert lines[-1].startswith("Protocol 2 spoken by default, understands 2 to 3")
    j = json.loads(run(bins[("consul", "1.20.1")], "version", "-format=json").stdout)
    assert set(cli_ref["consul"]["version"]["docs_sample_json"]) <= set(j) and j["Version"] == "1.20.1"
    r = run(bins[("nomad", "1.9.4")], "version")
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "Nomad v1.9.4"
    assert r.stdout.splitlines()[1].startswith("BuildDate ") and r.stdout.splitlines()[2].startswith("Revision ")


def test_executable_is_self_contained(bins, tmp_path):
    """Runs through its shebang with Debian's python3 only (no source tree, no venv), from any directory."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for product, v in (("consul", "1.20.1"), ("nomad", "1.9.3")):
        r = subprocess.run([str(bins[(product, v)]), "version"], capture_output=True, text=True, env=env, cwd="/", timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[0] == f"{product.capitalize()} v{v}"
    cfgdir = tmp_path / "c"
    cfgdir.mkdir()
    (cfgdir / "x.hcl").write_text('data_dir = "/tmp/x"\nserver = true\nbootstrap_expect = 1\n')
    r = subprocess.run([str(bins[("consul", "1.20.1")]), "validate", str(cfgdir)], capture_output=True, text=True, env=env,
                       cwd="/", timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "Configuration is valid!", r.stderr


def test_mirror_serves_tree(release):
    import functools
    import http.server

    from sandbox.agents.mirror import _Handler

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(release)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        idx = json.loads(urllib.request.urlopen(f"{base}/consul/index.json", timeout=5).read())
        assert set(idx["versions"]) == {"1.20.1", "1.20.2"}
        data = urllib.request.urlopen(f"{base}/consul/1.20.1/consul_1.20.1_linux_amd64.zip", timeout=5).read()
        assert data == (release / "consul/1.20.1/consul_1.20.1_linux_amd64.zip").read_bytes()
    finally:
        srv.shutdown()
        srv.server_close()


def test_mirror_cli(release):
    import socket
    import sys
    import time

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.Popen([sys.executable, "-m", "sandbox.agents", "mirror", "--dir", str(release), "--port", str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "serving" in p.stdout.readline()
        for _ in range(50):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/nomad/1.9.3/index.json", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        assert json.loads(body)["version"] == "1.9.3"
    finally:
        p.terminate()
        p.wait(10)
