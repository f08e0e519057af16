"""Instance backend of the ARM emulator: scale-set instances become real local hosts.

``python -m sandbox.arm serve --hosts ...`` loads ``HostsBackend`` (options from
``--hosts-opt KEY=VALUE``: ``run_dir``, ``state_dir``, ``boot_timeout``, ``keep``,
``expose=PORT[:LOCALPORT],...`` to make controller services on 127.0.0.1 reachable from the
hosts as ``sandbox-controller:PORT``).

Mapping (documented decisions):

- A virtual network is one sandbox network (one Linux bridge). Its name in the sandbox is
  ``<resource group>.<vnet name>`` (lower case).
- Every subnet an instance lives in gets a gateway address on that bridge: the first usable
  address of the subnet (x.x.x.1, the address Azure reserves for the subnet's gateway). An
  instance gets the NIC's private IP with the subnet's prefix length and a default route via
  that gateway, so subnets of one VNet reach each other (routed by the controller) and the
  controller reaches every instance.
- Peering two VNets = ``network connect`` (routable both ways); unpeering disconnects.
- Host name of an instance: ``<resource group>.<vmss>_<instance id>`` (hostname inside = the
  computer name). NoCloud seed: meta-data instance-id (vmId, new one at every reimage) +
  local-hostname; user-data = decoded custom data, so cloud-init runs it at first boot.
- IMDS answers from the emulator's live instance view (``GET /_sandbox/instances``), falling
  back to the document given at creation; identity tokens come from
  ``POST /_sandbox/identity-token``; Scheduled Events and their approvals from
  ``/_sandbox/scheduled-events?instance=<ARM id>`` (the host's ``arm_id``), all at the URL ``bind``
  registers (``host.set_arm``), so a restarted emulator is found again.
- Hosts reach the emulator as ``https://management.azure.com`` (gateway:443 DNAT'ed to the
  emulator, its CA installed in each host).
- The sandbox of an emulator lives in ``<state_dir>/hosts-run`` (own run dir, so it never
  touches another sandbox); ``close()`` removes all its hosts unless ``keep=1``. After a
  crash: ``HASHISTACK_SANDBOX_RUN=<state_dir>/hosts-run python -m sandbox.hosts down --all``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path

from . import host, paths, state

try:  # the emulator is written in parallel; only the contract matters here
    from sandbox.arm.backend import InstanceBackend
except ImportError:  # pragma: no cover
    class InstanceBackend:  # type: ignore[no-redef]
        pass

LOG = logging.getLogger("sandbox.hosts.arm_backend")


def _seg(arm_id: str, key: str) -> str:
    parts = arm_id.strip("/").split("/")
    low = [p.lower() for p in parts]
    try:
        return parts[low.index(key.lower()) + 1]
    except (ValueError, IndexError):
        return ""


def network_name(network_id: str) -> str:
    rg = _seg(network_id, "resourceGroups") or "rg"
    vnet = _seg(network_id, "virtualNetworks") or network_id.strip("/").split("/")[-1]
    return re.sub(r"[^a-z0-9_.-]", "-", f"{rg}.{vnet}".lower())


def host_name(instance: dict) -> str:
    rg = instance.get("resource_group") or _seg(instance.get("id", ""), "resourceGroups") or "rg"
    base = instance.get("vmss_name") or _seg(instance.get("id", ""), "virtualMachines") or "vm"
    iid = instance.get("instance_id")
    name = f"{rg}.{base}" + (f"_{iid}" if iid not in (None, "") and instance.get("vmss_name") else "")
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", name.lower())
    if len(name) > 63:
        name = name[:54] + "-" + format(abs(hash(instance.get("id", ""))) % 16**8, "08x")
    return name


def _state_dir_from_argv() -> str | None:
    argv = sys.argv
    for i, a in enumerate(argv):
        if a == "--state" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--state="):
            return a.split("=", 1)[1]
    return None


class HostsBackend(InstanceBackend):
    def __init__(self, run_dir: str | None = None, state_dir: str | None = None,
                 boot_timeout: str | float = 120, keep: str | bool = False, expose: str = "",
                 **_ignored):
        self.state_dir = state_dir or _state_dir_from_argv()
        if run_dir is None and self.state_dir:
            run_dir = os.path.join(os.path.abspath(self.state_dir), "hosts-run")
        if run_dir:
            os.environ["HASHISTACK_SANDBOX_RUN"] = os.path.abspath(run_dir)
        self.run_dir = paths.run_dir()
        self.boot_timeout = float(boot_timeout)
        self.keep = str(keep).lower() in ("1", "true", "yes")
        self._arm_ready = False
        self._lock = threading.Lock()
        self._base: str | None = None
        self._ca: str | None = None
        for spec in filter(None, str(expose).split(",")):
            port, _, to = spec.partition(":")
            host.expose(int(port), int(to or port))

    # ------------------------------------------------------------------ emulator link
    def bind(self, base_url: str, ca_path: str, state_dir: str | None = None) -> None:
        """Called by the emulator (if it supports it) once its port is known."""
        self._base, self._ca = base_url.rstrip("/"), ca_path
        if state_dir and not self.state_dir:
            self.state_dir = state_dir
        self._arm_ready = False
        self._ensure_arm()

    def _ensure_arm(self) -> None:
        with self._lock:
            if self._arm_ready:
                return
            if not self._base and self.state_dir:
                ep = Path(self.state_dir) / "endpoint.json"
                deadline = time.monotonic() + 30
                while not ep.exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
                if ep.exists():
                    d = json.loads(ep.read_text())
                    self._base = d["resource_manager"].rstrip("/")
                    self._ca = d.get("ca_path") or str(Path(self.state_dir) / "ca.pem")
            if self._base:
                host.set_arm(self._base, self._ca)
                self._arm_ready = True
            else:
                LOG.warning("sandbox.hosts: emulator URL unknown; IMDS tokens and "
                            "management.azure.com will not work inside hosts")

    # ------------------------------------------------------------------ networks
    def network_created(self, network_id: str, address_prefixes: list[str]) -> None:
        host.network_create(network_name(network_id), [])

    def network_deleted(self, network_id: str) -> None:
        name = network_name(network_id)
        try:
            host.network_delete(name)
        except host.SandboxError as e:
            LOG.warning("sandbox.hosts: %s", e)

    def networks_peered(self, network_a_id: str, network_b_id: str) -> None:
        a, b = network_name(network_a_id), network_name(network_b_id)
        for n in (a, b):
            host.network_create(n, [])
        host.network_connect(a, b, connect=True)

    def networks_unpeered(self, network_a_id: str, network_b_id: str) -> None:
        a, b = network_name(network_a_id), network_name(network_b_id)
        st = state.read()
        if a in st["networks"] and b in st["networks"]:
            host.network_connect(a, b, connect=False)

    # ------------------------------------------------------------------ instances
    def _user_data(self, name: str, instance: dict) -> str | None:
        d = self.run_dir / "custom-data"
        d.mkdir(parents=True, exist_ok=True)
        return host.decode_custom_data(instance.get("custom_data"), d / f"{name}.user-data")

    @staticmethod
    def _instance_id(instance: dict) -> str:
        vm_id = ((instance.get("imds") or {}).get("compute") or {}).get("vmId") or instance.get("id", "")
        return f"{vm_id}-{int(time.time() * 1000):x}"

    def _imds(self, instance: dict) -> dict | None:
        return instance.get("imds")

    def vault_hosts(self, names: list[str]) -> None:
        """Key Vault data-plane names resolve to the gateway in every host (as management.azure.com does)."""
        host.set_vault_hosts(names)

    def instance_created(self, instance: dict) -> None:
        self._ensure_arm()
        name = host_name(instance)
        cur = state.read()["hosts"].get(name)
        if cur is not None:
            host.set_imds(name, self._imds(instance), instance.get("principal_id"), arm_id=instance.get("id"))
            if host.power_state(name) != "running":
                host.start(name, timeout=self.boot_timeout)
            return
        plen = int(str(instance.get("subnet_prefix") or f"{instance['private_ip']}/24").split("/")[1])
        host.up(name, network_name(instance.get("network_id") or "vnet"), instance["private_ip"],
                hostname=instance.get("computer_name") or name, prefix_len=plen,
                custom_data=self._user_data(name, instance), imds=self._imds(instance),
                principal_id=instance.get("principal_id"), instance_id=self._instance_id(instance),
                timeout=self.boot_timeout, arm_id=instance.get("id"))

    def instance_restarted(self, instance: dict) -> None:
        name = host_name(instance)
        if name not in state.read()["hosts"]:
            return self.instance_created(instance)
        host.set_imds(name, self._imds(instance), instance.get("principal_id"), arm_id=instance.get("id"))
        host.restart(name)

    def instance_reimaged(self, instance: dict) -> None:
        name = host_name(instance)
        if name not in state.read()["hosts"]:
            return self.instance_created(instance)
        host.set_imds(name, self._imds(instance), instance.get("principal_id"), arm_id=instance.get("id"))
        host.reimage(name, instance_id=self._instance_id(instance),
                     custom_data=self._user_data(name, instance))

    def instance_stopped(self, instance: dict, deallocated: bool = False) -> None:
        """Power off / deallocate: the host halts, its root (OS disk) is kept for the next start.

        Optional hook beyond the InstanceBackend contract (the emulator calls it when present).
        """
        name = host_name(instance)
        if name in state.read()["hosts"]:
            host.stop(name, power="deallocated" if deallocated else "stopped")

    def instance_deleted(self, instance: dict) -> None:
        name = host_name(instance)
        if name in state.read()["hosts"]:
            host.down(name)

    def instance_power_state(self, instance: dict) -> str | None:
        name = host_name(instance)
        if name not in state.read()["hosts"]:
            return None
        return host.power_state(name)   # "running", or "stopped"/"deallocated" once halted

    def close(self) -> None:
        if not self.keep:
            host.down_all()
