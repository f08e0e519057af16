"""Local machines for the sandbox: systemd-nspawn hosts in network namespaces, with IMDS.

Scale-set instances of the ARM emulator (``sandbox.arm``) become booted Debian 12 machines:
own network namespace, veth into a Linux bridge per sandbox network, overlayfs copy-on-write
root over a shared cached image, cloud-init NoCloud seed for custom data, and an Azure
Instance Metadata Service answering on 169.254.169.254 for every host.

Entry points: ``python -m sandbox.hosts ...`` (CLI, see cli.py) and
``sandbox.hosts.arm_backend.HostsBackend`` (instance backend of ``sandbox.arm serve --hosts``).
"""
