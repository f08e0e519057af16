"""A scale-out Azure makes on its own (here the plain Azure SDK, as autoscale or the portal would; no Ansible):
the new instance of the north pool configures itself from its boot payload - verified releases from the mirror,
gossip keys from the cluster's Key Vault with its managed identity - and within 3 minutes is a live Consul member
and a ready Nomad node in its pool's datacenter. site.yml with the new count then changes nothing on any host,
the new one included. Leaves the cluster in the spec's shape (north: 1, through playbooks/scale.yml)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from .cluster import ROOT, compute_client, exec_on, nomad_api, playbook, recap, table

pytestmark = [pytest.mark.hosts, pytest.mark.slow]

RG = "hashistack-sandbox"
NORTH = "sandbox-north"


def _names(compute):
    return {v.os_profile.computer_name for v in compute.virtual_machine_scale_set_vms.list(RG, NORTH)}


def test_sdk_scale_out_joins_alone_then_site_changes_nothing(sandbox, tmp_path):
    compute = compute_client(sandbox["env"])
    before = _names(compute)
    assert len(before) == 1
    started = time.monotonic()
    compute.virtual_machine_scale_sets.begin_update(RG, NORTH, {"sku": {"capacity": 2}}).result()
    (new,) = _names(compute) - before

    member = node = None
    while time.monotonic() - started < 180:
        members = {m["Node"]: m for m in table(sandbox["run"]("consul", "members").stdout, "Node")}
        member = members.get(new)
        node = next((n for n in nomad_api(sandbox, "/v1/nodes") if n["Name"] == new), None)
        if member and member["Status"] == "alive" and node and node["Status"] == "ready":
            break
        time.sleep(3)
    took = time.monotonic() - started
    assert member and member["Status"] == "alive", (took, member)
    assert node and node["Status"] == "ready" and node["Datacenter"] == "northeurope", (took, node)
    # the boot script records its last step just after the agents it started are up: wait for its final state
    deadline = time.monotonic() + 60
    while True:
        doc = json.loads(exec_on(sandbox, new, "cat", "/var/lib/hashistack/boot.json"))
        if doc["state"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert doc["state"] == "ok" and doc["pool"] == "north", doc
    assert [s["step"] for s in doc["steps"]][:3] == ["release:consul", "release:nomad", "secrets"]

    # site.yml with the spec at the new count: every host, the self-configured one included, is already converged
    spec = (ROOT / "sandbox/main/spec.yml").read_text()
    assert "{name: north, count: 1, location: northeurope}" in spec
    (tmp_path / "spec.yml").write_text(spec.replace("{name: north, count: 1,", "{name: north, count: 2,"))
    state = sandbox["state"]
    env = dict(sandbox["env"], HASHISTACK_SANDBOX_STATE=str(state), HASHISTACK_SANDBOX_MIRROR_DIR=str(state / "releases"),
               HASHISTACK_SANDBOX_MIRROR_URL="http://127.0.0.1:" + (state / "mirror.port").read_text().strip())
    site = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), "playbooks/site.yml", "-i", "sandbox/main/vmss.yml",
                           "-e", f"@{tmp_path / 'spec.yml'}", "-e", "@sandbox/main/sandbox.yml"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert site.returncode == 0, site.stdout[-5000:]
    counts = recap(site.stdout)
    assert new in counts and len(counts) == 7, counts  # localhost, 3 servers, west, north x2
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values()), site.stdout[-5000:]

    # back to the spec's shape
    back = playbook(sandbox, "playbooks/scale.yml", "-e", "pool=north", "-e", "count=1", "-e",
                    json.dumps({"azure_infra_remove_instances": [new]}))
    assert back.returncode == 0, back.stdout[-5000:]
    assert _names(compute) == before
