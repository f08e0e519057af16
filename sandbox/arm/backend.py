"""Instance backend hook: lets sandbox/hosts turn scale-set instances into real local machines.

The emulator calls these from its long-running-operation worker (never the request thread), so
an operation reaches Succeeded only after the backend returned. The default does nothing:
instances are simulated. ``serve --hosts`` loads ``sandbox.hosts.arm_backend:HostsBackend``.

``instance`` dict keys: id, vmss_id, vmss_name, resource_group, subscription_id, location, zone,
vm_size, instance_id, computer_name, private_ip, subnet_prefix, network_id, custom_data (base64
or None), tags, principal_id, imds (the IMDS /metadata/instance document of the instance).
"""
from __future__ import annotations


class InstanceBackend:
    def network_created(self, network_id: str, address_prefixes: list[str]) -> None: ...
    def network_deleted(self, network_id: str) -> None: ...
    def networks_peered(self, network_a_id: str, network_b_id: str) -> None: ...
    def networks_unpeered(self, network_a_id: str, network_b_id: str) -> None: ...
    def instance_created(self, instance: dict) -> None: ...   # boots; returns when ready
    def instance_restarted(self, instance: dict) -> None: ...
    def instance_reimaged(self, instance: dict) -> None: ...
    def instance_deleted(self, instance: dict) -> None: ...
    def instance_stopped(self, instance: dict, deallocated: bool = False) -> None: ...  # root (OS disk) kept

    def vault_hosts(self, names: list[str]) -> None: ...  # every <vault>.vault.azure.net that exists (Key Vault)

    def instance_power_state(self, instance: dict) -> str | None:  # "running"/"stopped"/"deallocated"
        return None

    def close(self) -> None: ...


def load_backend(spec: str, options: dict) -> InstanceBackend:
    """Import ``module:Class`` lazily and build it with the --hosts-opt KEY=VALUE options."""
    import importlib

    module, _, cls = spec.partition(":")
    return getattr(importlib.import_module(module), cls)(**options)
