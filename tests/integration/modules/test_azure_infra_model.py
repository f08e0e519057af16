"""azure_infra's whole flow against the ARM emulator, without machines: the resource group, the cluster's Key Vault
with the gossip keys (the operator - by default the principal the play signs in as - gets Key Vault Secrets Officer),
the scale sets whose custom data is their pool's boot payload (the spec's versions, the configured release site, the
cluster's vault), then Key Vault Secrets User for each scale set's identity on that vault only. A second run sends no
write (the payload renders byte for byte the same); a new Nomad version changes the scale sets' custom data with one
model update each and no reimage or instance upgrade; the gossip keys appear nowhere in the model, the tags, the
custom data or the play's output."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import subprocess
import textwrap

import yaml

from .conftest import BIN, COLLECTIONS, SSH_KEY, writes

SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
MIRROR = "https://releases.mirror.example.test/hashicorp"

PLAY = textwrap.dedent("""\
    - hosts: localhost
      connection: local
      gather_facts: false
      tasks:
        - name: Azure footprint
          ansible.builtin.import_role:
            name: hashistack.azure.azure_infra
        - name: Show
          ansible.builtin.copy:
            content: "{{ {'vault': azure_infra_vault.keyvault, 'custom_data': azure_infra_custom_data} | to_json }}"
            dest: "{{ out }}"
            mode: "0600"
          changed_when: false
    """)


def _spec(arm, rg, nomad="1.9.2"):
    return {"cluster": "model", "azure": {"subscription_id": arm.endpoint["subscription_id"], "resource_group": rg,
                                          "location": "westeurope"},
            "consul_version": "1.20.0", "nomad_version": nomad, "ssh_public_keys": [SSH_KEY],
            "servers": {"count": 3, "vm_size": "Standard_B2s"}, "pools": [{"name": "west", "count": 1}],
            "networks": {"westeurope": "10.62.0.0/16"}}


def _run(tmp_path, arm, arm_env, spec):
    pb = tmp_path / "play.yml"
    pb.write_text(PLAY)
    out = tmp_path / "out.json"
    if out.exists():
        out.unlink()
    extra = {"hashistack_spec": spec, "hashistack_secrets_dir": str(tmp_path / "secrets"), "out": str(out),
             "azure_infra_keyvault_retention_days": 7, "azure_infra_release_base_url": MIRROR}
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    env = dict(os.environ, **arm_env, **arm.vault_env(), ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR="1",
               ANSIBLE_PYTHON_INTERPRETER=os.path.join(BIN, "python"), ANSIBLE_LOCALHOST_WARNING="false")
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", str(pb), "-e",
                           "@" + str(tmp_path / "extra.json")], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc, json.loads(out.read_text())


def _payload(user_data):
    """The boot payload document carried (gz+b64) in a pool's cloud-config."""
    doc = yaml.safe_load(user_data)
    entry = next(f for f in doc["write_files"] if f["path"] == "/etc/hashistack/boot-payload.json")
    assert entry["encoding"] == "gz+b64"
    return json.loads(gzip.decompress(base64.b64decode(entry["content"])))


def _scale_sets(sdk, rg):
    from azure.mgmt.compute import ComputeManagementClient
    compute = sdk.client(ComputeManagementClient)
    return {s.name: s for s in compute.virtual_machine_scale_sets.list(rg)}


def test_custom_data_is_the_pools_boot_payload_and_follows_the_spec(tmp_path, arm, arm_env, rg, sdk):
    from azure.mgmt.authorization import AuthorizationManagementClient
    proc, r = _run(tmp_path, arm, arm_env, _spec(arm, rg))
    keys = [(tmp_path / "secrets" / f"{p}-gossip.key").read_text().strip() for p in ("consul", "nomad")]
    vault = r["vault"]
    assert vault["enable_rbac_authorization"] is True and vault["name"] == vault["name"].lower()

    # each scale set's custom data is its pool's payload: versions of the spec, the release site, the vault
    sets = _scale_sets(sdk, rg)
    assert sorted(sets) == ["model-servers", "model-west"]
    for pool, name in (("servers", "model-servers"), ("west", "model-west")):
        user_data = r["custom_data"][pool]
        assert sets[name].tags["hashistack_custom_data_sha256"] == hashlib.sha256(user_data.encode()).hexdigest()
        payload = _payload(user_data)
        assert payload["pool"] == pool and payload["vault"]["name"] == vault["name"]
        assert payload["vault"]["url"] == f"https://{vault['name']}.vault.azure.net"
        assert {p["product"]: p["release"]["url"] for p in payload["products"]} == {
            "consul": MIRROR + "/consul/1.20.0", "nomad": MIRROR + "/nomad/1.9.2"}
        assert "@@hashistack-secret:consul-gossip-key@@" in payload["products"][0]["secret_files"]["secrets.hcl"]
    # what the instances were created with is that custom data
    made = [i for i in arm.instances() if i["resource_group"].lower() == rg.lower()]
    assert len(made) == 4
    for i in made:
        pool = "servers" if i["vmss_name"] == "model-servers" else "west"
        assert base64.b64decode(i["custom_data"]).decode() == r["custom_data"][pool]

    # no gossip key in the model, the tags, the custom data (payload included) or the output
    model_text = json.dumps([s.as_dict() for s in sets.values()])
    searched = model_text + json.dumps(r["custom_data"]) + json.dumps([_payload(u) for u in r["custom_data"].values()])
    searched += proc.stdout + proc.stderr
    assert all(k and k not in searched for k in keys)

    # the vault's roles: the signed-in operator writes, each scale set's identity reads, on the vault's scope only
    auth = sdk.client(AuthorizationManagementClient)
    on_vault = [a for a in auth.role_assignments.list_for_scope(vault["id"]) if a.scope.lower() == vault["id"].lower()]
    roles = {(a.principal_id, a.role_definition_id.rsplit("/", 1)[-1]) for a in on_vault}
    principals = {s.identity.principal_id for s in sets.values()}
    assert roles == {(arm.endpoint["principal_id"], SECRETS_OFFICER)} | {(p, SECRETS_USER) for p in principals}
    wider = [a for a in auth.role_assignments.list_for_scope(f"/subscriptions/{arm.endpoint['subscription_id']}/resourceGroups/{rg}")
             if a.role_definition_id.rsplit("/", 1)[-1] in (SECRETS_USER, SECRETS_OFFICER) and a.scope.lower() != vault["id"].lower()]
    assert wider == []

    # a second run renders the same bytes and sends no write
    m = arm.mark()
    again, r2 = _run(tmp_path, arm, arm_env, _spec(arm, rg))
    assert "changed=0" in again.stdout.split("PLAY RECAP")[-1], again.stdout[-3000:]
    assert writes(arm, m) == []
    assert r2["custom_data"] == r["custom_data"]

    # a new Nomad version: one model update per scale set (new custom data), no reimage, no instance upgrade
    before = {i["id"] for i in arm.instances()}
    m = arm.mark()
    _, r3 = _run(tmp_path, arm, arm_env, _spec(arm, rg, nomad="1.9.3"))
    sent = writes(arm, m)
    assert sorted((w["method"], w["path"].rsplit("/", 1)[-1]) for w in sent) == [
        ("PATCH", "model-servers"), ("PATCH", "model-west")], sent
    assert not any(w for w in sent if "reimage" in w["path"].lower() or "manualupgrade" in w["path"].lower())
    assert {i["id"] for i in arm.instances()} == before
    sets = _scale_sets(sdk, rg)
    for pool, name in (("servers", "model-servers"), ("west", "model-west")):
        assert r3["custom_data"][pool] != r["custom_data"][pool]
        assert sets[name].tags["hashistack_custom_data_sha256"] == hashlib.sha256(r3["custom_data"][pool].encode()).hexdigest()
        nomad = next(p for p in _payload(r3["custom_data"][pool])["products"] if p["product"] == "nomad")
        assert nomad["release"]["url"] == MIRROR + "/nomad/1.9.3" and nomad["release"]["version"] == "1.9.3"
    m = arm.mark()
    _run(tmp_path, arm, arm_env, _spec(arm, rg, nomad="1.9.3"))
    assert writes(arm, m) == []
