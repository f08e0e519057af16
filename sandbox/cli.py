"""``hashistack-sandbox up|down|env|status``: the offline Azure of this collection for your own cluster spec.

``up``      checks the Debian prerequisites, builds the host image (cached), starts the ARM emulator
            (scale-set instances become local machines, sandbox/hosts) and the release mirror (the
            Consul/Nomad stand-ins of sandbox/agents as signed release archives), and writes the sign-in
            for the emulator into the state directory
``env``     prints the environment that points Ansible at the running sandbox (shell ``export`` lines,
            or ``--format json``)
``status``  says what runs (emulator, mirror, machines); exit status 3 when the sandbox is not up
``down``    stops the emulator and the mirror, removes every machine and network, deletes the state

State directory: ``--state DIR``, else $HASHISTACK_SANDBOX_STATE, else ~/.cache/hashistack-sandbox.
Everything but ``env`` and ``status`` runs as root (systemd-nspawn, network namespaces, nftables).
"""
from __future__ import annotations

import argparse
import configparser
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PROG = "hashistack-sandbox"
# the versions the mirror carries by default: the older ones to pin, the newer ones to upgrade to
DEFAULT_VERSIONS = {"consul": ["1.20.0", "1.20.1"], "nomad": ["1.9.2", "1.9.3"]}
# tool -> the Debian package that provides it (scripts/debian-packages.txt installs them all)
PREREQUISITES = {"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap", "ip": "iproute2",
                 "nft": "nftables", "gpg": "gnupg", "ssh": "openssh-client", "ssh-keygen": "openssh-client"}
# what Ansible needs besides the sign-in to reach the sandbox machines; an inventory source that fails
# (an Azure error) must stop the play rather than leave the inventory empty
ANSIBLE_ENV = {"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
               "ANSIBLE_PIPELINING": "True", "ANSIBLE_PYTHON_INTERPRETER": "auto_silent"}
NOT_RUNNING = 3


class CliError(Exception):
    """A failure the user can act on: the message names what failed, why, and what to do."""


class Layout:
    """Where one sandbox keeps its state (the same layout scripts/sandbox.sh uses)."""

    def __init__(self, state: str | os.PathLike):
        self.state = Path(state).expanduser().absolute()
        self.arm = self.state / "arm"
        self.arm_pid = self.state / "arm.pid"
        self.arm_log = self.state / "arm.log"
        self.endpoint = self.arm / "endpoint.json"
        self.mirror_dir = self.state / "releases"
        self.mirror_pid = self.state / "mirror.pid"
        self.mirror_port = self.state / "mirror.port"
        self.mirror_log = self.state / "mirror.log"
        self.credentials = self.state / "azure-credentials"
        self.summary = self.state / "sandbox.json"
        self.release_cache = self.state / "release-cache"
        self.secrets = self.state / "secrets"
        # the emulator's machines and networks (what `down` removes, also after a crash)
        self.hosts_run = Path(os.environ.get("HASHISTACK_SANDBOX_RUN") or self.arm / "hosts-run").absolute()


def default_state() -> str:
    return os.environ.get("HASHISTACK_SANDBOX_STATE") or str(Path("~/.cache/hashistack-sandbox").expanduser())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", default=None, metavar="DIR",
                    help="state directory (default: $HASHISTACK_SANDBOX_STATE, else ~/.cache/hashistack-sandbox)")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="up|down|env|status")
    up = sub.add_parser("up", help="start the ARM emulator with local hosts and the release mirror")
    up.add_argument("--subscription-id", metavar="GUID",
                    help="the subscription the emulator serves (your spec's azure.subscription_id); "
                         "only on the first up of a state directory; default: a random one")
    up.add_argument("--consul", action="append", default=[], metavar="VERSION",
                    help=f"a Consul version the mirror carries (repeatable; default: {', '.join(DEFAULT_VERSIONS['consul'])})")
    up.add_argument("--nomad", action="append", default=[], metavar="VERSION",
                    help=f"a Nomad version the mirror carries (repeatable; default: {', '.join(DEFAULT_VERSIONS['nomad'])})")
    up.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the emulator and the mirror")
    sub.add_parser("down", help="stop everything and delete the state directory")
    env = sub.add_parser("env", help="print the environment that points Ansible at the running sandbox")
    env.add_argument("--format", choices=["shell", "json"], default="shell")
    status = sub.add_parser("status", help="what runs: the emulator, the mirror, the machines")
    status.add_argument("--format", choices=["text", "json"], default="text")
    args = ap.parse_args(argv)
    if args.state is None:
        args.state = default_state()
    if args.cmd == "up":
        import uuid
        if args.subscription_id:
            try:
                args.subscription_id = str(uuid.UUID(args.subscription_id))
            except ValueError:
                ap.error(f"--subscription-id {args.subscription_id!r} is not a GUID "
                         "(the form of azure.subscription_id in a cluster spec)")
        for product in ("consul", "nomad"):
            for version in getattr(args, product):
                parts = version.split(".")
                if len(parts) != 3 or not all(p.isdigit() for p in parts):
                    ap.error(f"--{product} {version!r} is not a release version MAJOR.MINOR.PATCH (like 1.20.1)")
            setattr(args, product, list(dict.fromkeys(getattr(args, product))) or list(DEFAULT_VERSIONS[product]))
    return args


# -- pieces ---------------------------------------------------------------------------------------------------
def missing_prerequisites(which=None) -> list[str]:
    """'tool (Debian package pkg)' for every tool the sandbox needs that is not on PATH."""
    which = which or shutil.which
    return [f"{tool} (Debian package {pkg})" for tool, pkg in PREREQUISITES.items() if not which(tool)]


def check_prerequisites(euid: int | None = None, which=None) -> None:
    euid = os.geteuid() if euid is None else euid
    problems = []
    if euid != 0:
        problems.append("it must run as root (systemd-nspawn machines, network namespaces, nftables): use sudo")
    missing = missing_prerequisites(which)
    if missing:
        packages = sorted({m.split("Debian package ")[1].rstrip(")") for m in missing})
        problems.append(f"missing {', '.join(missing)}: apt-get install {' '.join(packages)}")
    if problems:
        raise CliError(f"{PROG} up cannot start: " + "; ".join(problems))


def _child_env(lay: Layout) -> dict:
    """The environment of the emulator and the mirror: this very sandbox package, this sandbox's machines."""
    env = dict(os.environ)
    pkg_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["HASHISTACK_SANDBOX_RUN"] = str(lay.hosts_run)
    return env


def _alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _spawn(lay: Layout, argv: list[str], log: Path, pidfile: Path) -> int:
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, *argv], env=_child_env(lay), stdin=subprocess.DEVNULL,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def _stop(pidfile: Path, timeout: float = 10.0) -> bool:
    pid = _alive(pidfile)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pidfile):
            time.sleep(0.2)
        if _alive(pidfile):
            os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    return bool(pid)


def seed_identity(lay: Layout, subscription_id: str | None) -> None:
    """Make the emulator serve ``subscription_id`` (the spec's) instead of a random subscription."""
    if not subscription_id:
        return
    path = lay.arm / "identity.json"
    if path.exists():
        current = json.loads(path.read_text())["subscription_id"]
        if current != subscription_id:
            raise CliError(f"the sandbox in {lay.state} already serves subscription {current}, not {subscription_id}: "
                           f"run `{PROG} down` first (it deletes that state) or use another --state")
        return
    from sandbox.arm.auth import Auth
    lay.arm.mkdir(parents=True, exist_ok=True)
    Auth.load(str(lay.arm), "", "")  # writes a fresh identity.json (tenant, client, secret, token key)
    ident = json.loads(path.read_text())
    ident["subscription_id"] = subscription_id
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ident))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def start_arm(lay: Layout, timeout: float) -> None:
    pid = _alive(lay.arm_pid)
    if pid and lay.endpoint.exists():
        print(f"{PROG}: ARM emulator already running (pid {pid})", file=sys.stderr)
        return
    lay.arm.mkdir(parents=True, exist_ok=True)
    lay.endpoint.unlink(missing_ok=True)
    print(f"{PROG}: starting the ARM emulator (log: {lay.arm_log})", file=sys.stderr)
    _spawn(lay, ["-m", "sandbox.arm", "serve", "--port", "0", "--state", str(lay.arm), "--hosts",
                 "--hosts-opt", f"run_dir={lay.hosts_run}"], lay.arm_log, lay.arm_pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lay.endpoint.exists() and lay.endpoint.stat().st_size:
            return
        if not _alive(lay.arm_pid):
            break
        time.sleep(0.2)
    _stop(lay.arm_pid)
    raise CliError(f"the ARM emulator did not start within {timeout:g} s: see {lay.arm_log}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mirror_versions(lay: Layout) -> dict:
    try:
        index = json.loads((lay.mirror_dir / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    return {p: sorted(index.get(p, {}).get("versions", {})) for p in ("consul", "nomad")}


def start_mirror(lay: Layout, versions: dict, timeout: float) -> str:
    """Build the release tree (when it lacks a version) and serve it on 127.0.0.1, exposed to the machines."""
    have = _mirror_versions(lay)
    if any(v not in have.get(p, []) for p, vs in versions.items() for v in vs):
        from sandbox.agents.build import build
        print(f"{PROG}: building the release mirror (consul {', '.join(versions['consul'])}; "
              f"nomad {', '.join(versions['nomad'])})", file=sys.stderr)
        build(str(lay.mirror_dir), versions)
    if not _alive(lay.mirror_pid):
        port = _free_port()
        _spawn(lay, ["-m", "sandbox.agents", "mirror", "--dir", str(lay.mirror_dir), "--port", str(port),
                     "--bind", "127.0.0.1"], lay.mirror_log, lay.mirror_pid)
        lay.mirror_port.write_text(f"{port}\n")
        from sandbox.hosts import host
        host.expose(port)
    url = f"http://127.0.0.1:{int(lay.mirror_port.read_text())}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/index.json", timeout=2):
                return url
        except OSError as exc:
            if time.monotonic() > deadline or not _alive(lay.mirror_pid):
                raise CliError(f"the release mirror at {url} does not answer ({exc}): see {lay.mirror_log}") from exc
            time.sleep(0.2)


def read_endpoint(lay: Layout) -> dict:
    try:
        return json.loads(lay.endpoint.read_text())
    except FileNotFoundError:
        raise CliError(f"no sandbox runs with state {lay.state}: run `{PROG} up` first "
                       "(or pass the --state / HASHISTACK_SANDBOX_STATE it was started with)") from None


def write_credentials(lay: Layout, endpoint: dict) -> None:
    """The emulator's sign-in as a credential file profile (AZURE_CREDENTIAL_FILE), 0600: tools that cannot take
    environment variables from this CLI (Molecule's configuration is fixed before `create` runs) read it."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg["default"] = {"subscription_id": endpoint["subscription_id"], "client_id": endpoint["client_id"],
                      "secret": endpoint["client_secret"], "tenant": endpoint["tenant_id"],
                      "cloud_environment": endpoint["resource_manager"]}
    tmp = lay.credentials.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        cfg.write(fh)
    os.replace(tmp, lay.credentials)


def sandbox_env(lay: Layout, endpoint: dict, ssh_key: str, mirror_url: str | None) -> dict:
    """The environment a user exports: the AZURE_* sign-in and CA bundle of the emulator, the SSH key of the
    machines, and where the mirror and the state are (what sandbox/main/sandbox.yml reads)."""
    from sandbox.arm.testing import exported_env
    env = exported_env(endpoint)
    env["ANSIBLE_PRIVATE_KEY_FILE"] = ssh_key
    env.update(ANSIBLE_ENV)
    env["HASHISTACK_SANDBOX_STATE"] = str(lay.state)
    env["HASHISTACK_SANDBOX_RUN"] = str(lay.hosts_run)
    env["HASHISTACK_SANDBOX_MIRROR_DIR"] = str(lay.mirror_dir)
    env["HASHISTACK_SANDBOX_MIRROR_URL"] = mirror_url or ""
    return env


def format_env(env: dict, fmt: str = "shell") -> str:
    if fmt == "json":
        return json.dumps(env, indent=2, sort_keys=True)
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


def _mirror_url(lay: Layout) -> str | None:
    try:
        return f"http://127.0.0.1:{int(lay.mirror_port.read_text())}" if _alive(lay.mirror_pid) else None
    except (OSError, ValueError):
        return None


def _ssh_key() -> str:
    from sandbox.hosts import paths
    return str(paths.ssh_key_path())


# -- commands -------------------------------------------------------------------------------------------------
def cmd_up(args, lay: Layout) -> int:
    check_prerequisites()
    os.environ["HASHISTACK_SANDBOX_RUN"] = str(lay.hosts_run)
    lay.state.mkdir(parents=True, exist_ok=True)
    from sandbox.hosts import image
    print(f"{PROG}: building the host image (cached after the first run)", file=sys.stderr)
    image.build()
    ssh_key = str(image.ensure_ssh_key())
    seed_identity(lay, args.subscription_id)
    start_arm(lay, args.timeout)
    mirror_url = start_mirror(lay, {"consul": args.consul, "nomad": args.nomad}, args.timeout)
    endpoint = read_endpoint(lay)
    write_credentials(lay, endpoint)
    summary = {"state": str(lay.state), "subscription_id": endpoint["subscription_id"],
               "resource_manager": endpoint["resource_manager"], "ca_bundle": endpoint["ca_path"],
               "credential_file": str(lay.credentials), "ssh_key": ssh_key, "mirror_url": mirror_url,
               "mirror_dir": str(lay.mirror_dir), "release_cache_dir": str(lay.release_cache),
               "secrets_dir": str(lay.secrets), "hosts_run": str(lay.hosts_run),
               "mirror_versions": _mirror_versions(lay)}
    lay.summary.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(f"{PROG}: up: ARM emulator {endpoint['resource_manager']} (subscription {endpoint['subscription_id']}), "
          f"release mirror {mirror_url}\n"
          f"  point Ansible at it: eval \"$({PROG} --state {shlex.quote(str(lay.state))} env)\"", file=sys.stderr)
    return 0


def cmd_env(args, lay: Layout) -> int:
    endpoint = read_endpoint(lay)
    sys.stdout.write(format_env(sandbox_env(lay, endpoint, _ssh_key(), _mirror_url(lay)), args.format))
    return 0


def collect_status(lay: Layout) -> dict:
    arm_pid, mirror_pid = _alive(lay.arm_pid), _alive(lay.mirror_pid)
    endpoint = {}
    if lay.endpoint.exists():
        endpoint = json.loads(lay.endpoint.read_text())
    hosts = []
    if (lay.hosts_run / "state.json").exists() or lay.hosts_run.exists():
        os.environ["HASHISTACK_SANDBOX_RUN"] = str(lay.hosts_run)
        try:
            from sandbox.hosts import host
            hosts = [{"name": h["name"], "ip": h["ip"], "state": h["state"]} for h in host.list_hosts()]
        except Exception as exc:  # the machines' state is unreadable: say so, keep the rest of the status
            hosts = [{"error": str(exc)}]
    return {"state": str(lay.state), "up": bool(arm_pid and mirror_pid),
            "arm": {"pid": arm_pid, "url": endpoint.get("resource_manager") if arm_pid else None},
            "mirror": {"pid": mirror_pid, "url": _mirror_url(lay)}, "hosts": hosts}


def cmd_status(args, lay: Layout) -> int:
    st = collect_status(lay)
    if args.format == "json":
        print(json.dumps(st, indent=2, sort_keys=True))
    else:
        print(f"state:    {st['state']}")
        for label, part in (("emulator:", st["arm"]), ("mirror:  ", st["mirror"])):
            print(f"{label} " + (f"running, pid {part['pid']}, {part['url']}" if part["pid"] else "stopped"))
        print(f"machines: {len(st['hosts'])}")
        for h in st["hosts"]:
            print(f"  {h.get('name', '?')}  {h.get('ip', '')}  {h.get('state', h.get('error', ''))}")
    return 0 if st["up"] else NOT_RUNNING


def cmd_down(args, lay: Layout) -> int:
    if os.geteuid() != 0:
        raise CliError(f"{PROG} down must run as root (it removes machines, namespaces and nftables tables): use sudo")
    os.environ["HASHISTACK_SANDBOX_RUN"] = str(lay.hosts_run)
    _stop(lay.mirror_pid)
    _stop(lay.arm_pid)
    from sandbox.hosts import host
    removed = host.down_all()
    shutil.rmtree(lay.state, ignore_errors=True)
    print(f"{PROG}: down ({len(removed.get('hosts', []))} machines removed, state {lay.state} deleted)", file=sys.stderr)
    return 0


COMMANDS = {"up": cmd_up, "down": cmd_down, "env": cmd_env, "status": cmd_status}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lay = Layout(args.state)
    try:
        return COMMANDS[args.cmd](args, lay)
    except CliError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from sandbox.hosts.host import SandboxError
        if isinstance(exc, SandboxError):
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
