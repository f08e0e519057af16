# Copyright: hashistack.azure maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hashistack-boot: make a new scale-set instance a member of its pool without Ansible.

Run once by cloud-init (runcmd) with the payload the controller rendered for the pool
(``/etc/hashistack/boot-payload.json``, written from custom data; it holds no secret). It ends where
the consul and nomad roles end, so a later site.yml run changes nothing:

1. ``release:PRODUCT``  install the pool's version with the verification of hashicorp_release: the
   signature of SHA256SUMS by the payload's key (throw-away GnuPG home, fingerprint checked), then the
   archive's SHA-256; skipped when INSTALL_ROOT/PRODUCT/VERSION/PRODUCT is already there (the image
   or the roles put it there after the same verification).
2. ``secrets``          read the secrets the payload names from Azure Key Vault with the instance's
   managed identity (IMDS token for https://vault.azure.net, REST GET .../secrets/NAME).
3. ``users``, ``config:PRODUCT``, ``service:NAME``  users, directories, config (live and staged),
   secrets files (0640), systemd units, as the roles write them.
4. ``agents``           enable and start the agents and services.

Every step's result goes to the status file (``/var/lib/hashistack/boot.json``: step, ok, message,
started, finished) and to the journal. Downloads and secrets come before anything is written, and a
failure stops the agents: an instance is never half-configured and running. python3 standard library
only (no Azure CLI on instances); gpg from the image.
"""

from __future__ import annotations

import argparse
import datetime
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile

STATUS_FILE = "/var/lib/hashistack/boot.json"
IMDS = "169.254.169.254"
# Placeholders the controller leaves in secrets files (roles/*/tasks/render_pool.yml).
PLACEHOLDER = re.compile(r"@@hashistack-secret:([0-9A-Za-z-]{1,127})@@")
# A secret goes into an HCL string: refuse what could end the string (the gossip keys are base64).
SAFE_SECRET = re.compile(r"^[A-Za-z0-9+/=._-]{1,4096}$")


class StepError(Exception):
    """A step failed; the message names the cause and the fix."""


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def journal(message: str, priority: int) -> None:
    """One journal entry (native protocol, stdlib only); stderr too, which cloud-init keeps in its log."""
    print("hashistack-boot: " + message, file=sys.stderr, flush=True)
    flat = message.replace("\n", " ")
    data = f"SYSLOG_IDENTIFIER=hashistack-boot\nPRIORITY={priority}\nMESSAGE={flat}\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(data.encode(), "/run/systemd/journal/socket")
    except OSError:
        pass


class Status:
    """The status file an operator (and site.yml) reads: one entry per step, rewritten after each."""

    def __init__(self, path: str, payload_info: dict):
        self.path = path
        self.doc = dict(payload_info, state="running", started=now(), finished=None, steps=[])
        self.write()

    def write(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.doc, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.path)

    def run(self, step: str, func, *args):
        entry = {"step": step, "ok": None, "message": "", "started": now(), "finished": None}
        self.doc["steps"].append(entry)
        self.write()
        try:
            result = func(*args)
        except StepError as exc:
            entry.update(ok=False, message=str(exc), finished=now())
            self.doc.update(state="failed", failed_step=step, finished=now())
            self.write()
            journal(f"step {step} FAILED: {exc}", 3)
            raise
        except Exception as exc:  # an unexpected error still names the step
            entry.update(ok=False, message=f"{type(exc).__name__}: {exc}", finished=now())
            self.doc.update(state="failed", failed_step=step, finished=now())
            self.write()
            journal(f"step {step} FAILED: {type(exc).__name__}: {exc}", 3)
            raise StepError(str(exc)) from exc
        message = result if isinstance(result, str) else "done"
        entry.update(ok=True, message=message, finished=now())
        self.write()
        journal(f"step {step} ok: {message}", 6)
        return result


def http_get(url: str, headers: dict | None = None, timeout: float = 60) -> bytes:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read()


# ------------------------------------------------------------------ releases

def install_release(rel: dict, keys: dict) -> str:
    binary = rel["binary"]
    if os.path.isfile(binary):
        link(rel)
        return "{} {} already installed at {} (verified when installed); download skipped".format(
            rel["product"], rel["version"], binary)
    with tempfile.TemporaryDirectory(prefix="hashicorp-release-") as tmp:
        files = {}
        for name in (rel["sums"], rel["sums"] + ".sig", rel["zip"]):
            url = "{}/{}".format(rel["url"], name)
            try:
                data = http_get(url, timeout=float(rel.get("timeout", 60)))
            except (urllib.error.URLError, OSError) as exc:
                raise StepError(f"cannot download {url}: {exc}. Fix: check that the release source (hashicorp_release_base_url) "
                                f"is reachable from the instance's subnet and holds {rel['product']} {rel['version']}") from exc
            files[name] = os.path.join(tmp, name)
            with open(files[name], "wb") as f:
                f.write(data)
        verify_signature(rel, keys, files[rel["sums"]], files[rel["sums"] + ".sig"])
        expected = expected_sha256(rel, files[rel["sums"]])
        with open(files[rel["zip"]], "rb") as f:
            actual = hashlib.sha256(f.read()).hexdigest()
        if actual != expected:
            raise StepError("{} from {} has SHA-256 {}, the signed {} says {}: the download is corrupt or tampered with; "
                            "it was not installed".format(rel["zip"], rel["url"], actual, rel["sums"], expected))
        os.makedirs(rel["dir"], mode=0o755, exist_ok=True)
        with zipfile.ZipFile(files[rel["zip"]]) as z:
            member = z.getinfo(rel["product"])
            tmp_bin = binary + ".partial"
            with z.open(member) as src, open(tmp_bin, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.chmod(tmp_bin, 0o755)
            os.replace(tmp_bin, binary)
    link(rel)
    return "{} {} installed from {} (signature by {} and SHA-256 {} verified)".format(
        rel["product"], rel["version"], rel["url"], rel["gpg_fingerprint"] or "the payload's key", expected)


def verify_signature(rel: dict, keys: dict, sums: str, sig: str) -> None:
    with tempfile.TemporaryDirectory(prefix="hashicorp-gnupg-") as home:
        key = os.path.join(home, "release-key.asc")
        with open(key, "w") as f:
            f.write(keys[rel["gpg_key"]])
        gpg = ["gpg", "--homedir", home, "--batch", "--no-tty"]
        try:
            subprocess.run(gpg + ["--import", key], check=True, capture_output=True)
            r = subprocess.run(gpg + ["--status-fd", "1", "--verify", sig, sums], capture_output=True, text=True, check=False)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise StepError(f"gpg could not import the release key: {exc}. Fix: the image needs gpg (Debian: gnupg)") from exc
    validsig = [ln.split() for ln in r.stdout.splitlines() if ln.startswith("[GNUPG:] VALIDSIG ")]
    fpr = rel["gpg_fingerprint"]
    if r.returncode != 0 or not validsig or (fpr and fpr not in validsig[0][2:]):
        signer = fpr or "the configured key"
        raise StepError(f"{rel['sums']} from {rel['url']} has no valid signature by {signer}: {r.stderr.strip()}. "
                        "Fix: check hashicorp_release_base_url and hashicorp_release_gpg_key; "
                        "an unverified release is never installed")


def expected_sha256(rel: dict, sums: str) -> str:
    with open(sums) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[1] == rel["zip"] and re.match(r"^[0-9a-f]{64}$", parts[0]):
                return parts[0]
    raise StepError("{} is not listed in the signed {}".format(rel["zip"], rel["sums"]))


def link(rel: dict) -> None:
    os.makedirs(os.path.dirname(rel["link"]), mode=0o755, exist_ok=True)
    if os.path.islink(rel["link"]) and os.readlink(rel["link"]) == rel["binary"]:
        return
    tmp = rel["link"] + ".new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(rel["binary"], tmp)
    os.replace(tmp, rel["link"])


# ------------------------------------------------------------------ secrets

def error_summary(exc: urllib.error.HTTPError) -> str:
    """Azure's error body as "code/innercode: first line of the message" (the whole body can be long)."""
    raw = exc.read()
    try:
        err = json.loads(raw)["error"]
        codes = "/".join(c for c in (err.get("code"), (err.get("innererror") or {}).get("code")) if c)
        return "{}: {}".format(codes, (err.get("message") or "").splitlines()[0][:200] if err.get("message") else "")
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return raw[:300].decode(errors="replace")


def imds_token(resource: str, imds: str = IMDS) -> str:
    url = "http://{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}".format(
        imds, urllib.parse.quote(resource, safe=""))
    try:
        return json.loads(http_get(url, {"Metadata": "true"}, timeout=30))["access_token"]
    except urllib.error.HTTPError as exc:
        body = exc.read()[:300].decode(errors="replace")
        raise StepError(f"IMDS gave no token for {resource} (HTTP {exc.code}: {body}). "
                        "Fix: give the scale set a managed identity") from exc
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise StepError(f"IMDS at {imds} gave no token for {resource}: {exc}") from exc


def read_secrets(vault: dict, names: list[str], out: dict, imds: str = IMDS, wait: float = 0) -> str:
    """Reads every secret; retries for ``wait`` seconds, since a new scale set's role assignment takes a
    few minutes to reach the vault (403 until then). The last error names the cause and the fix."""
    if not names:
        return "no secret needed"
    deadline = time.monotonic() + wait
    attempts = 0
    while True:
        attempts += 1
        try:
            token = imds_token(vault["resource"], imds)
            for name in names:
                out[name] = read_secret(vault, name, token)
            return "read {} from vault {} (attempt {})".format(", ".join(names), vault["name"], attempts)
        except StepError as exc:
            if getattr(exc, "final", False) or time.monotonic() >= deadline:
                raise
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))


def read_secret(vault: dict, name: str, token: str) -> str:
    url = "{}/secrets/{}?api-version={}".format(vault["url"], urllib.parse.quote(name), vault["api_version"])
    try:
        value = json.loads(http_get(url, {"Authorization": "Bearer " + token}, timeout=30))["value"]
    except urllib.error.HTTPError as exc:
        body = error_summary(exc)
        fix = {401: "the vault refused the instance's token",
               403: "grant the scale set's identity 'Key Vault Secrets User' on vault {}".format(vault["name"]),
               404: "store the secret (azure_infra does) in vault {}".format(vault["name"])}.get(exc.code, "see the body")
        raise StepError(f"Key Vault {vault['name']}: GET secret {name} gave HTTP {exc.code} ({body}). Fix: {fix}") from exc
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise StepError(f"Key Vault {vault['name']} unreachable for secret {name}: {exc}. "
                        f"Fix: the instance must resolve and reach {vault['url']}") from exc
    if not isinstance(value, str) or not SAFE_SECRET.match(value):
        err = StepError(f"Key Vault {vault['name']}: secret {name} is not a key (letters, digits, + / = . _ -); "
                        "it was not written")
        err.final = True  # waiting does not fix a bad value
        raise err
    return value


def fill(template: str, secrets: dict) -> str:
    return PLACEHOLDER.sub(lambda m: secrets[m.group(1)], template)


# ------------------------------------------------------------------ users, files, units

def ensure_users(products: list[dict]) -> str:
    made = []
    for p in products:
        group, user = p["group"], p["user"]
        if group != "root":
            try:
                grp.getgrnam(group)
            except KeyError:
                subprocess.run(["groupadd", "--system", group], check=True, capture_output=True)
                made.append("group " + group)
        if user != "root":
            try:
                pwd.getpwnam(user)
            except KeyError:
                subprocess.run(["useradd", "--system", "--gid", group, "--shell", "/usr/sbin/nologin",
                                "--home-dir", p["data_dir"], "--no-create-home", user], check=True, capture_output=True)
                made.append("user " + user)
    return "created " + ", ".join(made) if made else "users and groups present"


def put(path: str, content: str, mode: int, owner: str = "root", group: str = "root") -> None:
    """Write atomically with owner and mode set before the file appears."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = path + ".hashistack-boot"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chown(tmp, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def directory(path: str, owner: str, group: str, mode: int) -> None:
    os.makedirs(path, mode=mode, exist_ok=True)
    os.chown(path, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(path, mode)


def configure(p: dict, secrets: dict) -> str:
    # the directories of hashicorp_agent's lifecycle, then the files in the staging and the live directory
    directory(p["config_dir"], "root", p["group"], 0o750)
    directory(p["staging_dir"], "root", p["group"], 0o750)
    directory(p["data_dir"], p["user"], p["group"], int(p["data_dir_mode"], 8))
    directory(p["data_dir"] + "/data", p["user"], p["group"], int(p["data_dir_mode"], 8))
    files = dict(p["files"])
    files.update((name, fill(t, secrets)) for name, t in p["secret_files"].items())
    for name, content in files.items():
        for d in (p["staging_dir"], p["config_dir"]):
            put(os.path.join(d, name), content, 0o640, "root", p["group"])
    put("/etc/systemd/system/{}.service".format(p["product"]), p["unit"], 0o644)
    secret_names = ", ".join(sorted(p["secret_files"])) or "none"
    return "wrote {} in {} (secrets in {})".format(", ".join(sorted(p["files"])), p["config_dir"], secret_names)


def install_service(svc: dict) -> str:
    for path, f in svc["files"].items():
        put(path, f["content"], int(f["mode"], 8))
    return "installed " + ", ".join(sorted(svc["files"]))


def systemctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemctl"] + list(args), capture_output=True, text=True, check=False)


def start_agents(units: list[str], timeout: float) -> str:
    r = systemctl("daemon-reload")
    if r.returncode:
        raise StepError(f"systemctl daemon-reload failed: {r.stderr.strip()}")
    for unit in units:
        r = systemctl("enable", unit)
        if r.returncode:
            raise StepError(f"systemctl enable {unit} failed: {r.stderr.strip()}")
    # --no-block: Consul reports ready only once it has joined, which needs the other instances
    r = systemctl("start", "--no-block", *units)
    if r.returncode:
        raise StepError("systemctl start {} failed: {}".format(" ".join(units), r.stderr.strip()))
    deadline = time.monotonic() + timeout
    state = {}
    while time.monotonic() < deadline:
        state = {u: systemctl("is-active", u).stdout.strip() for u in units}
        if all(s == "active" for s in state.values()):
            return "active: " + ", ".join(units)
        if any(s == "failed" for s in state.values()):
            break
        time.sleep(2)
    bad = ", ".join(f"{u} is {s}" for u, s in state.items() if s != "active")
    raise StepError(f"{bad} after {timeout:.0f}s. Fix: see journalctl -u {' -u '.join(units)}")


def stop_agents(units: list[str]) -> None:
    for unit in units:
        systemctl("stop", unit)


# ------------------------------------------------------------------ main

def boot(payload: dict, status: Status) -> None:
    products = payload["products"]
    services = [s for s in payload.get("services", []) if s["enabled"]]
    for p in products:
        status.run("release:" + p["product"], install_release, p["release"], payload["keys"])
    names = sorted({m.group(1) for p in products for t in p["secret_files"].values() for m in PLACEHOLDER.finditer(t)})
    secrets: dict = {}
    status.run("secrets", read_secrets, payload["vault"], names, secrets, IMDS, float(payload.get("secrets_wait", 300)))
    status.run("users", ensure_users, products)
    for p in products:
        status.run("config:" + p["product"], configure, p, secrets)
    for s in services:
        status.run("service:" + s["unit"], install_service, s)
    units = [p["product"] + ".service" for p in products] + [s["unit"] for s in services]
    status.run("agents", start_agents, units, float(payload.get("start_timeout", 300)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--payload", default="/etc/hashistack/boot-payload.json")
    a = ap.parse_args(argv)
    try:
        with open(a.payload) as f:
            payload = json.load(f)
    except (OSError, ValueError) as exc:
        status = Status(STATUS_FILE, {})
        status.doc.update(state="failed", failed_step="payload", finished=now())
        status.doc["steps"].append({"step": "payload", "ok": False, "message": f"cannot read {a.payload}: {exc}",
                                    "started": now(), "finished": now()})
        status.write()
        journal(f"step payload FAILED: cannot read {a.payload}: {exc}", 3)
        return 1
    status = Status(payload.get("status_file", STATUS_FILE), {"cluster": payload.get("cluster"), "pool": payload.get("pool")})
    units = [p["product"] + ".service" for p in payload["products"]] + [s["unit"] for s in payload.get("services", [])]
    try:
        boot(payload, status)
    except StepError:
        stop_agents(units)  # never half-configured and running
        return 1
    status.doc.update(state="ok", finished=now())
    status.write()
    journal("boot of {} pool {} done".format(payload.get("cluster"), payload.get("pool")), 6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
