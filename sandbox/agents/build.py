"""Build official-style release trees for the stand-in agents.

DIR/<product>/<V>/<product>_<V>_linux_amd64.zip   (one executable named <product>)
DIR/<product>/<V>/<product>_<V>_SHA256SUMS
DIR/<product>/<V>/<product>_<V>_SHA256SUMS.sig   (detached binary GPG signature)
DIR/<product>/<V>/index.json, DIR/<product>/index.json, DIR/index.json
DIR/sandbox-release-key.asc                       (public key of the sandbox signing key)

Zips are byte-reproducible: fixed timestamps and permissions, sorted entries.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

PKG_DIR = Path(__file__).resolve().parent
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
KEY_UID = "HashiStack Sandbox Release Signing <release-sandbox@hashistack.invalid>"
BASE_URL = "https://releases.hashicorp.com"
PRODUCTS = ("consul", "nomad")


def _zinfo(name: str, mode: int) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    zi.compress_type = zipfile.ZIP_DEFLATED
    zi.create_system = 3
    zi.external_attr = (0o100000 | mode) << 16
    return zi


def _package_files() -> list[tuple[str, bytes]]:
    files = [("sandbox/__init__.py", b"")]
    for p in sorted(PKG_DIR.rglob("*")):
        if "__pycache__" in p.parts or not p.is_file():
            continue
        if p.suffix not in (".py", ".json"):
            continue
        rel = p.relative_to(PKG_DIR.parent.parent).as_posix()
        files.append((rel, p.read_bytes()))
    return files


def executable_bytes(product: str, version: str) -> bytes:
    """A zipapp: shebang + zip holding the sandbox.agents package and the baked build info."""
    info = json.dumps({"product": product, "version": version, "revision": _revision(product, version)},
                      sort_keys=True).encode()
    main = (b"import sys\nfrom sandbox.agents.runtime import main\n"
            b"sys.exit(main())\n")
    entries = [("__main__.py", main), ("sandbox/agents/_build_info.json", info)] + _package_files()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in sorted(entries):
            z.writestr(_zinfo(name, 0o644), data)
    return b"#!/usr/bin/env python3\n" + buf.getvalue()


def _revision(product: str, version: str) -> str:
    return hashlib.sha1(f"{product}-{version}-sandbox".encode()).hexdigest()[:40]


def release_zip(product: str, version: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(_zinfo(product, 0o755), executable_bytes(product, version))
    return buf.getvalue()


def _gpg(home: Path, *args, input_bytes: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--no-tty", *args],
                          input=input_bytes, capture_output=True, check=True)


def ensure_key(out: Path) -> Path:
    """Create (once) the sandbox signing key in out/.gnupg; export the public key beside the tree."""
    home = out / ".gnupg"
    if not home.exists():
        home.mkdir(parents=True, mode=0o700)
    os.chmod(home, 0o700)
    listing = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--list-secret-keys", "--with-colons"],
                             capture_output=True, text=True)
    if "sec:" not in listing.stdout:
        _gpg(home, "--passphrase", "", "--quick-gen-key", KEY_UID, "ed25519", "sign", "never")
    pub = _gpg(home, "--armor", "--export", KEY_UID).stdout
    (out / "sandbox-release-key.asc").write_bytes(pub)
    return home


def build(out: str | Path, versions: dict[str, list[str]]) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    home = ensure_key(out)
    written = []
    try:
        for product, vers in versions.items():
            if not vers:
                continue
            for v in vers:
                d = out / product / v
                d.mkdir(parents=True, exist_ok=True)
                zname = f"{product}_{v}_linux_amd64.zip"
                data = release_zip(product, v)
                (d / zname).write_bytes(data)
                sums = f"{hashlib.sha256(data).hexdigest()}  {zname}\n"
                (d / f"{product}_{v}_SHA256SUMS").write_text(sums)
                sig = d / f"{product}_{v}_SHA256SUMS.sig"
                if sig.exists():
                    sig.unlink()
                _gpg(home, "--detach-sign", "--local-user", KEY_UID, "--output", str(sig), str(d / f"{product}_{v}_SHA256SUMS"))
                (d / "index.json").write_text(json.dumps(_version_index(product, v), indent=2) + "\n")
                written.append(d / zname)
            _write_product_index(out, product)
        _write_top_index(out)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)
    return written


def _version_index(product: str, v: str) -> dict:
    return {
        "name": product,
        "version": v,
        "shasums": f"{product}_{v}_SHA256SUMS",
        "shasums_signature": f"{product}_{v}_SHA256SUMS.sig",
        "shasums_signatures": [f"{product}_{v}_SHA256SUMS.sig"],
        "builds": [{
            "name": product,
            "version": v,
            "os": "linux",
            "arch": "amd64",
            "filename": f"{product}_{v}_linux_amd64.zip",
            "url": f"{BASE_URL}/{product}/{v}/{product}_{v}_linux_amd64.zip",
        }],
    }


def _vkey(v: str):
    parts = []
    for x in v.replace("+", "-").split("-")[0].split("."):
        parts.append(int(x) if x.isdigit() else 0)
    return parts


def _write_product_index(out: Path, product: str) -> None:
    if not (out / product).is_dir():
        return
    versions = {}
    for d in sorted((out / product).iterdir()):
        if (d / "index.json").is_file():
            versions[d.name] = json.loads((d / "index.json").read_text())
    versions = dict(sorted(versions.items(), key=lambda kv: _vkey(kv[0])))
    (out / product / "index.json").write_text(json.dumps({"name": product, "versions": versions}, indent=2) + "\n")


def _write_top_index(out: Path) -> None:
    top = {}
    for p in PRODUCTS:
        f = out / p / "index.json"
        if f.is_file():
            top[p] = json.loads(f.read_text())
    (out / "index.json").write_text(json.dumps(top, indent=2) + "\n")


def unpack(zip_path: Path, dest: Path) -> Path:
    """Test helper: extract the executable and mark it executable."""
    with zipfile.ZipFile(zip_path) as z:
        (name,) = z.namelist()
        target = dest / name
        target.write_bytes(z.read(name))
    os.chmod(target, 0o755)
    return target
