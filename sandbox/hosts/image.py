"""Debian 12 root filesystem shared (read-only, as overlayfs lower dir) by every host.

Built with debootstrap, cached under ``<cache>/images/<recipe hash>/rootfs`` and rebuilt
only when the recipe (packages, mirror, config files, SSH key) changes. The build happens in
a temporary directory that is renamed into place at the end, so a crash never leaves a half
image behind; a lock file serialises concurrent builders.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import paths

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
ADMIN_USER = "azureuser"
PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "cloud-init", "curl",
    "unzip", "ca-certificates", "sudo", "iproute2", "gnupg", "locales", "procps", "less",
    "iputils-ping", "netbase",
    # the Consul stand-in's auto-encrypt (agent CSRs, the Connect CA) and `tls ca|cert create` on a host
    "python3-cryptography",
]
# Units that have no job inside a container (or would slow the boot down).
MASKED_UNITS = [
    "console-getty.service", "getty@tty1.service", "serial-getty@console.service",
    "systemd-timesyncd.service", "apt-daily.timer", "apt-daily-upgrade.timer",
    "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer", "man-db.timer",
    "systemd-networkd-wait-online.service", "systemd-networkd.service",
    "systemd-networkd.socket", "systemd-resolved.service", "ssh.socket",
    "systemd-hwdb-update.service", "systemd-udev-trigger.service",
    "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "ldconfig.service", "systemd-firstboot.service", "networking.service",
]

FILES = {
    # cloud-init: only the NoCloud seed (/var/lib/cloud/seed/nocloud) or nothing.
    "etc/cloud/cloud.cfg.d/90_dpkg.cfg": "datasource_list: [ NoCloud, None ]\n",
    "etc/cloud/cloud.cfg.d/95_sandbox.cfg": """\
# hashistack sandbox: the network is configured from outside (veth in a netns).
network: {config: disabled}
# Keep the image's host keys: no key generation on first boot (fast boot).
ssh_deletekeys: false
ssh_genkeytypes: [ed25519]
# The admin user (osProfile.adminUsername on Azure) exists in the image already; cloud-init
# only makes sure of its groups and sudo rights.
system_info:
  default_user:
    name: azureuser
    lock_passwd: true
    gecos: Azure admin user
    groups: [adm, sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
disable_root: true
resize_rootfs: false
growpart: {mode: "off"}
locale: en_US.UTF-8
manage_etc_hosts: false
preserve_hostname: false
""",
    "etc/default/locale": "LANG=en_US.UTF-8\n",
    "etc/locale.gen": "en_US.UTF-8 UTF-8\n",
    "etc/ssh/sshd_config.d/10-sandbox.conf": """\
UseDNS no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
GSSAPIAuthentication no
""",
    f"etc/sudoers.d/90-{ADMIN_USER}": f"{ADMIN_USER} ALL=(ALL) NOPASSWD:ALL\n",
    "etc/hostname": "sandbox\n",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
    "etc/systemd/journald.conf.d/10-sandbox.conf": "[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n",
    "etc/apt/apt.conf.d/99sandbox": 'APT::Install-Recommends "false";\n',
    "etc/resolv.conf": "",
}

RECIPE_VERSION = 4


def ensure_ssh_key() -> Path:
    """Generate the sandbox SSH key once (ed25519, in the cache dir) and return its path."""
    key = paths.ssh_key_path()
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = key.with_name(f".tmp-{os.getpid()}")
        for p in (tmp, tmp.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hashistack-sandbox",
                        "-f", str(tmp)], check=True)
        os.rename(tmp.with_suffix(".pub"), key.with_suffix(".pub"))
        os.rename(tmp, key)
    return key


def recipe() -> dict:
    pub = ensure_ssh_key().with_suffix(".pub").read_text().strip()
    return {
        "version": RECIPE_VERSION, "suite": SUITE, "mirror": MIRROR, "packages": PACKAGES,
        "masked": MASKED_UNITS, "files": FILES, "admin_user": ADMIN_USER, "ssh_pubkey": pub,
    }


def recipe_hash(r: dict | None = None) -> str:
    blob = json.dumps(r or recipe(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def images_dir() -> Path:
    return paths.cache_dir() / "images"


def image_path(h: str | None = None) -> Path:
    """rootfs of the image for the current recipe (may not exist yet)."""
    return images_dir() / (h or recipe_hash()) / "rootfs"


def current_image() -> Path | None:
    p = image_path()
    return p if (p.parent / "complete").exists() else None


def _chroot(root: Path, *cmd: str, env: dict | None = None) -> None:
    e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "DEBIAN_FRONTEND": "noninteractive"}
    e.update(env or {})
    subprocess.run(["chroot", str(root), *cmd], check=True, env=e)


def _configure(root: Path, r: dict) -> None:
    for rel, content in r["files"].items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_symlink():
            p.unlink()
        p.write_text(content)
    os.chmod(root / f"etc/sudoers.d/90-{ADMIN_USER}", 0o440)
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    _chroot(root, "locale-gen")
    user = r["admin_user"]
    _chroot(root, "useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo,adm",
            "--comment", "Azure admin user", user)
    _chroot(root, "passwd", "--lock", user)
    ssh = root / "home" / user / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(r["ssh_pubkey"] + "\n")
    os.chmod(ssh / "authorized_keys", 0o600)
    _chroot(root, "chown", "-R", f"{user}:{user}", f"/home/{user}/.ssh")
    # Host keys once, in the image (cloud-init keeps them, see 95_sandbox.cfg).
    for k in (root / "etc/ssh").glob("ssh_host_*"):
        k.unlink()
    _chroot(root, "ssh-keygen", "-A")
    _chroot(root, "systemctl", "mask", *r["masked"])
    _chroot(root, "systemctl", "enable", "ssh.service")
    _chroot(root, "systemctl", "set-default", "multi-user.target")
    # cloud-init: no state from the build chroot.
    shutil.rmtree(root / "var/lib/cloud", ignore_errors=True)
    (root / "var/lib/cloud").mkdir()
    # Trim: apt lists and caches are not needed at runtime.
    for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (root / d).glob("*"):
            if p.is_file():
                p.unlink()
    for p in (root / "var/log").rglob("*"):
        if p.is_file():
            p.write_bytes(b"")


def build(force: bool = False, log=sys.stderr) -> Path:
    """Return the rootfs for the current recipe, building it when missing (or forced)."""
    r = recipe()
    h = recipe_hash(r)
    final = images_dir() / h
    images_dir().mkdir(parents=True, exist_ok=True)
    with open(images_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "complete").exists() and not force:
            return final / "rootfs"
        tmp = images_dir() / f".tmp-{h}-{os.getpid()}"
        for stale in images_dir().glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        (tmp / "rootfs").mkdir(parents=True)
        debs = paths.cache_dir() / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        print(f"building image {h} (debootstrap {SUITE}) ...", file=log, flush=True)
        out = log if log is not sys.stderr else subprocess.DEVNULL
        root = tmp / "rootfs"
        try:
            subprocess.run(
                ["debootstrap", "--variant=minbase", f"--cache-dir={debs}", SUITE, str(root),
                 r["mirror"]], check=True, stdout=out,
            )
            # The rest with apt (debootstrap's own resolver trips over python3 packages).
            apt = ["apt-get", "-o", "Dpkg::Use-Pty=0", "-o", "APT::Install-Recommends=false"]
            for step in (["update", "-qq"], ["install", "-y", "-qq", *r["packages"]]):
                subprocess.run(
                    ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "-D", str(root),
                     f"--bind={debs}:/var/cache/apt/archives", "--resolv-conf=replace-host",
                     "--setenv=DEBIAN_FRONTEND=noninteractive", *apt, *step],
                    check=True, stdout=out,
                )
            _configure(tmp / "rootfs", r)
            (tmp / "recipe.json").write_text(json.dumps(r, indent=1, sort_keys=True))
            (tmp / "complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            if final.exists():
                old = images_dir() / f".tmp-old-{h}-{os.getpid()}"
                os.rename(final, old)
                shutil.rmtree(old, ignore_errors=True)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        print(f"image {h} built in {time.monotonic() - t0:.0f}s: {final / 'rootfs'}", file=log, flush=True)
        return final / "rootfs"


def images_in_use() -> set[str]:
    """Hashes of images that are the lower dir of a mounted host root (any sandbox)."""
    used = set()
    prefix = f"lowerdir={images_dir()}/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        i = line.find(prefix)
        if i >= 0:
            used.add(line[i + len(prefix):].split("/", 1)[0])
    return used


def prune() -> list[str]:
    """Remove images of older recipes that no mounted host root uses; returns removed hashes."""
    removed = []
    keep = images_in_use() | {recipe_hash()}
    with open(images_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for d in images_dir().glob("*"):
            if d.name.startswith(".") or d.name in keep or not d.is_dir():
                continue
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d.name)
    return removed
