"""Host lifecycle: up / stop / start / reimage / down / exec, and whole-sandbox cleanup."""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from . import image, imds_server, net, paths, state
from .procs import pids_with_cmdline

LOG = logging.getLogger("sandbox.hosts.host")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
CA_NAME = "hashistack-sandbox-arm.crt"
ARM_HOSTNAMES = ("management.azure.com", "login.microsoftonline.com", "management.core.windows.net")


class SandboxError(RuntimeError):
    pass


# --------------------------------------------------------------------------- processes

def _proc_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _alive(pid: int | None, start: str | None) -> bool:
    if not pid:
        return False
    s = _proc_start(pid)
    if s is None or (start and s != start):
        return False
    try:
        st = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return st != "Z"


def _children(pid: int) -> list[int]:
    out = []
    try:
        for t in Path(f"/proc/{pid}/task").iterdir():
            out += [int(x) for x in (t / "children").read_text().split()]
    except FileNotFoundError:
        pass
    return out


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for c in _children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def nspawn_pid(h: dict) -> int | None:
    """PID of systemd-nspawn (child of the supervising shell)."""
    if not _alive(h.get("pid"), h.get("pid_start")):
        return None
    for c in _children(h["pid"]):
        try:
            if Path(f"/proc/{c}/comm").read_text().strip() == "systemd-nspawn":
                return c
        except FileNotFoundError:
            pass
    return None


def leader_pid(h: dict) -> int | None:
    """PID (controller's view) of the container's init (systemd)."""
    n = nspawn_pid(h)
    if not n:
        return None
    own = os.readlink("/proc/self/ns/pid")
    for c in _descendants(n):
        try:
            if os.readlink(f"/proc/{c}/ns/pid") != own:
                return c
        except FileNotFoundError:
            pass
    return None


def container_inits(upper_prefix: str) -> list[int]:
    """PIDs of container inits whose root is an overlay with upperdir under ``upper_prefix``.

    Found from the kernel alone (pid namespace + the root mount's options), so it also works
    when systemd-nspawn was killed and the container's systemd got orphaned.
    """
    own = os.readlink("/proc/self/ns/pid")
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if os.readlink(p / "ns/pid") == own:
                continue
            nspid = [ln for ln in (p / "status").read_text().splitlines() if ln.startswith("NSpid:")]
            if not nspid or nspid[0].split()[-1] != "1":
                continue
            for ln in (p / "mountinfo").read_text().splitlines():
                f = ln.split()
                if f[4] == "/" and f"upperdir={upper_prefix}" in ln:
                    out.append(int(p.name))
                    break
        except OSError:
            pass
    return out


def _nspawn_procs_for(run: Path) -> list[int]:
    """systemd-nspawn processes (and their supervising shells) that belong to a run dir."""
    return pids_with_cmdline(f"-D\0{run}/hosts/".encode())


def _kill(pids: list[int], sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = pids
    while left and time.monotonic() < deadline:
        left = [p for p in left if _proc_start(p) is not None and not _zombie(p)]
        if left:
            time.sleep(0.05)
    return left


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# --------------------------------------------------------------------------- cgroups
#
# systemd-nspawn --keep-unit puts the container under "payload/" of its own cgroup. Started
# from one common cgroup, all hosts would share payload/system.slice/... (one unit's cgroup
# holding several hosts' processes). Each host therefore starts in a cgroup of its own:
# <hierarchy>/hashistack-sandbox/<tag>-<name> in the named systemd (v1) and the unified (v2)
# hierarchy, and a child of the controller's memory cgroup (v1) for memory accounting.

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_GROUP = "hashistack-sandbox"


def _own_cgroup(controller: str) -> str | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            return path
    return None


def cgroup_dirs(tag: str, name: str) -> list[str]:
    leaf = f"{tag}-{name}"
    out = []
    if (CGROUP_ROOT / "cgroup.procs").exists():                 # pure cgroup v2
        out.append(CGROUP_ROOT / CGROUP_GROUP / leaf)
    else:                                                       # v1 / hybrid
        for hier in ("systemd", "unified"):
            if (CGROUP_ROOT / hier / "cgroup.procs").exists():
                out.append(CGROUP_ROOT / hier / CGROUP_GROUP / leaf)
        mem = _own_cgroup("memory")
        if mem is not None and (CGROUP_ROOT / "memory" / "cgroup.procs").exists():
            out.append(CGROUP_ROOT / "memory" / mem.lstrip("/") / f"{CGROUP_GROUP}-{leaf}")
    return [str(p) for p in out]


def _make_cgroups(dirs: list[str]) -> list[str]:
    """Create the host's cgroups; returns those that exist (best effort: never fails a boot)."""
    made = []
    for d in dirs:
        try:
            os.makedirs(d, exist_ok=True)
            made.append(d)
        except OSError:
            pass
    return made


def remove_cgroups(dirs: list[str]) -> None:
    for d in dirs:
        if not os.path.isdir(d):
            continue
        for root, _subdirs, _files in sorted(os.walk(d, topdown=False), key=lambda w: -len(w[0])):
            for _ in range(20):
                try:
                    os.rmdir(root)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def leftover_cgroups(tag: str) -> list[str]:
    out = []
    for base in [CGROUP_ROOT, CGROUP_ROOT / "systemd", CGROUP_ROOT / "unified"]:
        g = base / CGROUP_GROUP
        if g.is_dir():
            out += [str(p) for p in g.iterdir() if p.name.startswith(f"{tag}-")]
    mem = _own_cgroup("memory")
    if mem is not None:
        g = CGROUP_ROOT / "memory" / mem.lstrip("/")
        if g.is_dir():
            out += [str(p) for p in g.iterdir() if p.name.startswith(f"{CGROUP_GROUP}-{tag}-")]
    return sorted(out)


def memory_bytes(h: dict) -> int | None:
    """Memory charged to the host's cgroup (v1 memory.usage_in_bytes or v2 memory.current)."""
    for d in h.get("cgroups") or []:
        for f in ("memory.usage_in_bytes", "memory.current"):
            p = Path(d) / f
            if p.exists():
                try:
                    return int(p.read_text())
                except (OSError, ValueError):
                    pass
    return None


# --------------------------------------------------------------------------- mounts

def _mounted(path: str) -> bool:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4] == path:
            return True
    return False


def _umount(path: str) -> None:
    for _ in range(20):
        if not _mounted(path):
            return
        r = subprocess.run(["umount", path], stderr=subprocess.PIPE, text=True)
        if r.returncode == 0:
            continue
        time.sleep(0.1)
    if _mounted(path):
        subprocess.run(["umount", "-l", path], check=False)


def leftover_mounts(run: Path) -> list[str]:
    prefix = f"{run}/"
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)]


# --------------------------------------------------------------------------- networks

def _network(st: dict, name: str, cidr: str | None) -> dict:
    """Get or create network ``name``; ``cidr`` adds a subnet (gateway = its first usable)."""
    n = st["networks"].get(name)
    if n is None:
        idx = state.alloc_index(st)
        n = st["networks"][name] = {"index": idx, "bridge": net.bridge_name(st["tag"], idx),
                                    "subnets": [], "gateways": []}
    if cidr:
        sub = str(ipaddress.ip_network(cidr, strict=False))
        if sub not in n["subnets"]:
            _check_overlap(sub, n["bridge"])
            n["subnets"].append(sub)
            n["gateways"].append([net.gateway_for(sub), ipaddress.ip_network(sub).prefixlen])
    net.ensure_bridge(n["bridge"], [tuple(g) for g in n["gateways"]])
    return n


def _check_overlap(sub: str, bridge: str) -> None:
    """Refuse a subnet that another interface (another sandbox, the machine's LAN) routes."""
    want = ipaddress.ip_network(sub)
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show"], capture_output=True,
                                       text=True, check=True).stdout or "[]")
    for r in routes:
        if r.get("dst") in (None, "default") or r.get("dev") == bridge:
            continue
        try:
            other = ipaddress.ip_network(r["dst"], strict=False)
        except ValueError:
            continue
        if want.overlaps(other):
            raise SandboxError(
                f"subnet {sub} overlaps {other} routed via {r.get('dev')} (another sandbox running at the "
                f"same time, or this machine's network); use a different address range")


def network_create(name: str, cidrs: list[str]) -> dict:
    with state.locked() as st:
        for c in cidrs or [None]:
            n = _network(st, name, c)
        net.apply_ruleset(st)
        return n


def network_delete(name: str) -> None:
    with state.locked() as st:
        users = [h for h, d in st["hosts"].items() if d["network"] == name]
        if users:
            raise SandboxError(f"network {name} still has hosts: {', '.join(users)}")
        n = st["networks"].pop(name, None)
        st["peerings"] = [p for p in st["peerings"] if name not in p]
        if n:
            net.delete_link(n["bridge"])
        net.apply_ruleset(st)


def network_connect(a: str, b: str, connect: bool = True) -> None:
    with state.locked() as st:
        for x in (a, b):
            if x not in st["networks"]:
                raise SandboxError(f"unknown network {x}")
        pair = sorted([a, b])
        st["peerings"] = [p for p in st["peerings"] if sorted(p) != pair]
        if connect:
            st["peerings"].append(pair)
        net.apply_ruleset(st)


# --------------------------------------------------------------------------- hosts

def _host_dir(name: str) -> Path:
    return paths.run_dir() / "hosts" / name


def _default_imds(name: str, hostname: str, ip: str, plen: int, network: str) -> dict:
    sub = ipaddress.ip_network(f"{ip}/{plen}", strict=False)
    return {
        "compute": {
            "azEnvironment": "AzurePublicCloud", "location": "sandbox", "name": name,
            "osProfile": {"adminUsername": image.ADMIN_USER, "computerName": hostname,
                          "disablePasswordAuthentication": "true"},
            "osType": "Linux", "provider": "Microsoft.Compute", "resourceGroupName": "sandbox",
            "resourceId": f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
                          f"sandbox/providers/Microsoft.Compute/virtualMachines/{name}",
            "subscriptionId": "00000000-0000-0000-0000-000000000000", "tags": "", "tagsList": [],
            "vmId": "", "vmScaleSetName": "", "vmSize": "Standard_B2s", "zone": "",
        },
        "network": {"interface": [{
            "ipv4": {"ipAddress": [{"privateIpAddress": ip, "publicIpAddress": ""}],
                     "subnet": [{"address": str(sub.network_address), "prefix": str(plen)}]},
            "ipv6": {"ipAddress": []}, "macAddress": "000D3A000000"}]},
    }


def _etc_hosts(h: dict, vault_hosts: list[str]) -> str:
    """/etc/hosts of a host: Azure's names (ARM, sign-in, every Key Vault's data plane) at the gateway, whose :443
    is DNAT'ed to the emulator (vault names cannot be a wildcard here, so the emulator announces them)."""
    hn = h["hostname"]
    hosts = f"127.0.0.1 localhost\n127.0.1.1 {hn}\n::1 localhost ip6-localhost ip6-loopback\n"
    hosts += f"{h['gateway']} sandbox-controller {' '.join(ARM_HOSTNAMES)}\n"
    if vault_hosts:
        hosts += f"{h['gateway']} {' '.join(vault_hosts)}\n"
    return hosts


def set_vault_hosts(names: list[str]) -> None:
    """The Key Vault host names (``<vault>.vault.azure.net``) that exist now: in the /etc/hosts of every host,
    running ones at once (written from inside, as the guest's own file), the others at their next start."""
    names = sorted(set(names))
    with state.locked() as st:
        if st.get("vault_hosts") == names:
            return
        st["vault_hosts"] = names
        hosts = dict(st["hosts"])
    for name, h in hosts.items():
        if power_state(name) == "running":
            try:
                exec_(name, ["sh", "-c", "cat > /etc/hosts.sandbox && mv /etc/hosts.sandbox /etc/hosts"],
                      input=_etc_hosts(h, names), timeout=30)
            except (SandboxError, subprocess.SubprocessError, OSError) as exc:
                LOG.warning("could not update /etc/hosts of %s: %s", name, exc)


def _write_guest_files(h: dict, merged: Path, arm_ca: str | None, vault_hosts: list[str] = ()) -> None:
    """Per-host files written into the overlay (upper dir) before boot."""
    hn = h["hostname"]
    (merged / "etc/hostname").write_text(hn + "\n")
    (merged / "etc/hosts").write_text(_etc_hosts(h, list(vault_hosts)))
    seed = merged / "var/lib/cloud/seed/nocloud"
    seed.mkdir(parents=True, exist_ok=True)
    (seed / "meta-data").write_text(f"instance-id: {h['instance_id']}\nlocal-hostname: {hn}\n")
    ud = h.get("user_data_file")
    (seed / "user-data").write_bytes(Path(ud).read_bytes() if ud else b"#cloud-config\n{}\n")
    (seed / "vendor-data").write_text("")
    if arm_ca:
        pem = Path(arm_ca).read_text()
        d = merged / "usr/local/share/ca-certificates"
        d.mkdir(parents=True, exist_ok=True)
        (d / CA_NAME).write_text(pem)
        link = merged / "etc/ssl/certs" / CA_NAME.replace(".crt", ".pem")
        if not link.is_symlink():
            link.symlink_to(f"/usr/local/share/ca-certificates/{CA_NAME}")
        bundle = merged / "etc/ssl/certs/ca-certificates.crt"
        text = bundle.read_text()
        if pem.strip() not in text:
            bundle.write_text(text.rstrip("\n") + "\n" + pem)


def _start(h: dict) -> None:
    """Mount the overlay (if needed), write per-host files, start systemd-nspawn detached."""
    d = Path(h["dir"])
    for sub in ("upper", "work", "merged"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    merged = str(d / "merged")
    if not _mounted(merged):
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={h['image']},upperdir={d / 'upper'},workdir={d / 'work'}",
                        merged], check=True)
    st = state.read()
    _write_guest_files(h, Path(merged), (st.get("arm") or {}).get("ca"), st.get("vault_hosts") or [])
    cmd = ["systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit",
           f"--network-namespace-path=/run/netns/{h['netns']}", "-D", merged,
           f"--machine={h['machine']}", f"--hostname={h['hostname']}", "--console=read-only",
           "--link-journal=no", "--resolv-conf=off", "--timezone=off"]
    # The shell first moves itself into the host's cgroups (no preexec_fn: the caller may be
    # multi-threaded), then restarts the container when the guest reboots itself (exit 133).
    script = ('IFS=:; for g in $HSB_CGROUPS; do echo $$ > "$g/cgroup.procs" 2>/dev/null; done; unset IFS; '
              'while :; do "$@"; rc=$?; [ "$rc" -eq 133 ] || exit "$rc"; done')
    log = open(d / "console.log", "ab")
    h["cgroups"] = _make_cgroups(cgroup_dirs(st["tag"], h["name"]))
    env = dict(os.environ, HSB_CGROUPS=":".join(h["cgroups"]))
    p = subprocess.Popen(["sh", "-c", script, "hsb-supervise", *cmd], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, start_new_session=True, close_fds=True, env=env)
    log.close()
    h["pid"], h["pid_start"] = p.pid, _proc_start(p.pid)
    h["booted_at"] = time.time()
    h["power"] = None


def _logins_allowed(h: dict) -> bool:
    """False while /run/nologin exists in the host (pam_nologin: "System is booting up")."""
    pid = leader_pid(h)
    return bool(pid) and not os.path.exists(f"/proc/{pid}/root/run/nologin")


def wait_ready(h: dict, timeout: float = 60.0) -> float:
    """Wait until sshd sends its banner and users may log in; returns seconds since start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(h["pid"], h["pid_start"]):
            raise SandboxError(f"host {h['name']} exited during boot; log: {h['dir']}/console.log\n"
                               + _tail(Path(h["dir"]) / "console.log"))
        try:
            with socket.create_connection((h["ip"], 22), timeout=1) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-") and _logins_allowed(h):
                    return time.time() - h["booted_at"]
        except OSError:
            pass
        time.sleep(0.1)
    raise SandboxError(f"host {h['name']} ({h['ip']}): sshd not ready after {timeout:.0f}s; "
                       f"log: {h['dir']}/console.log\n" + _tail(Path(h["dir"]) / "console.log"))


def _tail(p: Path, n: int = 15) -> str:
    try:
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return ""


def up(name: str, network: str, ip: str, hostname: str | None = None, prefix_len: int = 24,
       custom_data: str | None = None, imds: dict | None = None, principal_id: str | None = None,
       instance_id: str | None = None, wait: bool = True, timeout: float = 60.0,
       arm_id: str | None = None) -> dict:
    """Create and boot host ``name`` with address ``ip``/``prefix_len`` on ``network``.

    ``custom_data`` is a path to the user-data file (already decoded) given to cloud-init.
    """
    if not NAME_RE.match(name):
        raise SandboxError(f"invalid host name {name!r} (letters, digits, _ . -)")
    img = image.current_image() or image.build()
    hostname = hostname or name
    addr = ipaddress.ip_address(ip)
    cidr = str(ipaddress.ip_network(f"{ip}/{prefix_len}", strict=False))
    ensure_imds()
    with state.locked() as st:
        if name in st["hosts"]:
            raise SandboxError(f"host {name} exists already (down it first)")
        for o in st["hosts"].values():
            if o["ip"] == ip:
                raise SandboxError(f"address {ip} is used by host {o['name']}")
        n = _network(st, network, cidr)
        gw = net.gateway_for(cidr)
        if str(addr) == gw:
            raise SandboxError(f"{ip} is the gateway address of {cidr}; pick another address")
        idx = state.alloc_index(st)
        d = _host_dir(name)
        if d.exists():
            _cleanup_host_dir(d)
        d.mkdir(parents=True)
        ud = None
        if custom_data:
            ud = str(d / "user-data")
            shutil.copyfile(custom_data, ud)
        h = {
            "name": name, "hostname": hostname, "network": network, "ip": ip,
            "prefix_len": prefix_len, "gateway": gw, "index": idx,
            "netns": net.netns_name(st["tag"], name), "veth": net.veth_name(st["tag"], idx),
            "machine": re.sub(r"[^A-Za-z0-9-]", "-", name)[:60], "dir": str(d),
            "image": str(img), "user_data_file": ud, "principal_id": principal_id,
            "instance_id": instance_id or f"i-{name}-{int(time.time() * 1000):x}",
            "generation": 0, "pid": None, "pid_start": None,
            "imds": imds or _default_imds(name, hostname, ip, prefix_len, network),
            "arm_id": arm_id,
        }
        st["hosts"][name] = h
        try:
            net.create_host_net(h["netns"], h["veth"], n["bridge"], ip, prefix_len, gw)
            net.apply_ruleset(st)
            _start(h)
        except Exception:
            st["hosts"].pop(name)
            _teardown(h)
            raise
    if wait:
        try:
            h["ready_seconds"] = wait_ready(h, timeout)
        except SandboxError:
            down(name)
            raise
    return h


def get(name: str) -> dict:
    h = state.read()["hosts"].get(name)
    if not h:
        raise SandboxError(f"no host {name}")
    return h


def _update(name: str, **kw) -> dict:
    with state.locked() as st:
        h = st["hosts"][name]
        h.update(kw)
        return dict(h)


def _stop_processes(h: dict, timeout: float = 10.0, power_off: bool = False) -> None:
    """SIGTERM nspawn (container halts), SIGKILL after ``timeout``; then leftovers in the root.
    ``power_off``: SIGKILL at once, no shutdown inside (a machine lost, as a host failure takes it)."""
    sup = h.get("pid")
    pids = []
    if _alive(sup, h.get("pid_start")):
        pids = [sup] + _children(sup)
        ns = nspawn_pid(h)
        _kill([sup], signal.SIGKILL)      # no restart loop any more
        if ns and power_off:
            _kill([ns], signal.SIGKILL)
        elif ns:
            _kill([ns], signal.SIGTERM)
            if _wait_gone([ns], timeout):
                _kill([ns], signal.SIGKILL)
    rest = container_inits(f"{h['dir']}/upper,")
    _kill(rest, signal.SIGKILL)
    _wait_gone(pids + rest, 5)
    remove_cgroups(h.get("cgroups") or [])


def stop(name: str, timeout: float = 10.0, power: str = "stopped", power_off: bool = False) -> None:
    """Halt the host; its root (upper dir) stays. ``power`` is what power_state reports then.
    ``power_off``: no shutdown inside (agents get no signal), as if the machine lost power."""
    h = get(name)
    _stop_processes(h, timeout, power_off)
    _update(name, pid=None, pid_start=None, power=power)


def start(name: str, wait: bool = True, timeout: float = 60.0) -> dict:
    with state.locked() as st:
        h = st["hosts"][name]
        if _alive(h.get("pid"), h.get("pid_start")):
            raise SandboxError(f"host {name} is running")
        _start(h)
        h = dict(h)
    if wait:
        h["ready_seconds"] = wait_ready(h, timeout)
    return h


def restart(name: str, wait: bool = True) -> dict:
    """Reboot: the container halts and boots again on the same root (upper dir kept)."""
    stop(name)
    return start(name, wait=wait)


def reimage(name: str, instance_id: str | None = None, custom_data: str | None = None,
            wait: bool = True) -> dict:
    """Root back to the image (upper dir wiped), new instance-id: cloud-init runs again."""
    stop(name)
    with state.locked() as st:
        h = st["hosts"][name]
        d = Path(h["dir"])
        _umount(str(d / "merged"))
        for sub in ("upper", "work"):
            shutil.rmtree(d / sub, ignore_errors=True)
        h["generation"] = h.get("generation", 0) + 1
        h["instance_id"] = instance_id or f"i-{name}-{int(time.time() * 1000):x}"
        h["image"] = str(image.current_image() or h["image"])
        if custom_data:
            shutil.copyfile(custom_data, d / "user-data")
            h["user_data_file"] = str(d / "user-data")
    return start(name, wait=wait)


def _cleanup_host_dir(d: Path) -> None:
    _umount(str(d / "merged"))
    if not _mounted(str(d / "merged")):
        shutil.rmtree(d, ignore_errors=True)


def _teardown(h: dict) -> None:
    _stop_processes(h)
    _cleanup_host_dir(Path(h["dir"]))
    net.delete_netns(h["netns"], h["veth"])


def down(name: str) -> None:
    h = get(name)
    _teardown(h)
    with state.locked() as st:
        st["hosts"].pop(name, None)
        net.apply_ruleset(st)


def set_imds(name: str, doc: dict | None = None, principal_id: str | None = None,
             arm_id: str | None = None) -> None:
    with state.locked() as st:
        h = st["hosts"][name]
        if doc is not None:
            h["imds"] = doc
        h["principal_id"] = principal_id
        if arm_id:
            h["arm_id"] = arm_id


def power_state(name: str) -> str:
    h = state.read()["hosts"].get(name)
    if not h:
        return "deleted"
    return "running" if _alive(h.get("pid"), h.get("pid_start")) else (h.get("power") or "stopped")


def list_hosts() -> list[dict]:
    st = state.read()
    out = []
    for h in st["hosts"].values():
        out.append({"name": h["name"], "hostname": h["hostname"], "network": h["network"],
                    "ip": h["ip"], "prefix_len": h["prefix_len"], "gateway": h["gateway"],
                    "state": "running" if _alive(h.get("pid"), h.get("pid_start")) else "stopped",
                    "pid": h.get("pid"), "leader_pid": leader_pid(h), "netns": h["netns"],
                    "instance_id": h["instance_id"], "dir": h["dir"],
                    "ssh_user": image.ADMIN_USER, "ssh_key": str(paths.ssh_key_path())})
    return out


def exec_(name: str, cmd: list[str], check: bool = False, input: str | None = None,
          timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` inside host ``name`` (all its namespaces, as root)."""
    h = get(name)
    pid = leader_pid(h)
    if not pid:
        raise SandboxError(f"host {name} is not running")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "HOME": "/root", "TERM": os.environ.get("TERM", "dumb")}
    return subprocess.run(["nsenter", "-t", str(pid), "-a", "--", *cmd], env=env, check=check,
                          text=True, input=input, capture_output=input is not None or timeout is not None,
                          timeout=timeout)


# --------------------------------------------------------------------------- sandbox-wide

def ensure_imds() -> dict:
    """Start the sandbox's IMDS server if it is not running; returns {"pid", "port"}."""
    with state.locked() as st:
        cur = st.get("imds") or {}
        if _alive(cur.get("pid"), cur.get("pid_start")):
            return cur
        pid, port = imds_server.spawn(paths.run_dir())
        st["imds"] = {"pid": pid, "pid_start": _proc_start(pid), "port": port}
        net.apply_ruleset(st)
        return st["imds"]


def set_arm(admin_url: str | None, ca: str | None) -> None:
    """Where hosts reach the ARM emulator (DNAT gateway:443) and which CA they trust."""
    with state.locked() as st:
        if admin_url:
            port = int(admin_url.rstrip("/").rsplit(":", 1)[1])
            st["arm"] = {"url": admin_url.rstrip("/"), "port": port, "ca": ca}
        else:
            st["arm"] = None
        net.apply_ruleset(st)


def expose(port: int, to: int | None = None, remove: bool = False) -> None:
    """Hosts reach the controller's 127.0.0.1:``to`` as <gateway>:``port`` (e.g. a release mirror)."""
    if port == 443 or not 0 < port < 65536:
        raise SandboxError(f"port {port} cannot be exposed (443 is the ARM emulator)")
    with state.locked() as st:
        ex = st.setdefault("exposed", {})
        if remove:
            ex.pop(str(port), None)
        else:
            ex[str(port)] = int(to or port)
        net.apply_ruleset(st)


def down_all() -> dict:
    """Remove everything of this sandbox, from the state file and from what the kernel shows."""
    run = paths.run_dir()
    st = state.read()
    tag = st.get("tag") or paths.sandbox_tag(run)
    removed = {"hosts": [], "networks": []}
    # 1. processes: SIGTERM every nspawn at once, then wait, then SIGKILL.
    hosts = list(st["hosts"].values())
    sups = [h["pid"] for h in hosts if _alive(h.get("pid"), h.get("pid_start"))]
    _kill(sups, signal.SIGKILL)
    found = _nspawn_procs_for(run)
    nsp = [p for p in found if Path(f"/proc/{p}/comm").exists()
           and Path(f"/proc/{p}/comm").read_text().strip() == "systemd-nspawn"]
    _kill([p for p in found if p not in nsp], signal.SIGKILL)
    _kill(nsp, signal.SIGTERM)
    left = _wait_gone(nsp, 8)
    _kill(left, signal.SIGKILL)
    _wait_gone(left, 3)
    hosts_dir = run / "hosts"
    rest = container_inits(f"{hosts_dir}/")
    _kill(rest, signal.SIGKILL)
    _wait_gone(rest, 5)
    # 2. mounts, host dirs, namespaces, links, nft table.
    for m in sorted(leftover_mounts(run), key=len, reverse=True):
        _umount(m)
    if hosts_dir.exists():
        for d in hosts_dir.iterdir():
            shutil.rmtree(d, ignore_errors=True)
            removed["hosts"].append(d.name)
    for ns in net.leftover_netns(tag):
        net.delete_netns(ns)
    for link in net.leftover_links(tag):
        net.delete_link(link)
    removed["networks"] = list(st["networks"])
    net.delete_ruleset(tag)
    remove_cgroups(leftover_cgroups(tag))
    # 3. helper processes (IMDS server).
    im = st.get("imds") or {}
    if _alive(im.get("pid"), im.get("pid_start")):
        _kill([im["pid"]], signal.SIGTERM)
        _wait_gone([im["pid"]], 3)
    for p in imds_server.find_servers(run):
        _kill([p], signal.SIGKILL)
    with state.locked() as st2:
        fresh = state.empty(run)
        st2.clear()
        st2.update(fresh)
    return removed


def leftovers() -> dict:
    """What of this sandbox still exists in the kernel (for tests and `status`)."""
    run = paths.run_dir()
    tag = paths.sandbox_tag(run)
    r = subprocess.run(["nft", "list", "table", "inet", net.nft_table(tag)],
                       capture_output=True, text=True)
    return {"netns": net.leftover_netns(tag), "links": net.leftover_links(tag),
            "mounts": leftover_mounts(run), "cgroups": leftover_cgroups(tag),
            "processes": (_nspawn_procs_for(run) + container_inits(f"{run}/hosts/")
                          + imds_server.find_servers(run)),
            "nft": r.returncode == 0}


def decode_custom_data(b64: str | None, dest: Path) -> str | None:
    if not b64:
        return None
    dest.write_bytes(base64.b64decode(b64))
    return str(dest)


def dump(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
