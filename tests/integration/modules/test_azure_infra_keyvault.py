"""azure_infra's Key Vault tasks (tasks/keyvault.yml) against the ARM emulator, which enforces RBAC on the vault's
data plane: the vault is created for the cluster, the operator gets Key Vault Secrets Officer on it, the gossip keys
generated once on the controller are stored; a re-run writes nothing; a new controller takes the vault's keys; a
controller key that differs from the vault's is refused; check mode writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

from .conftest import BIN, COLLECTIONS, make_rg, writes

PLAY = textwrap.dedent("""\
    - hosts: localhost
      connection: local
      gather_facts: false
      tasks:
        - name: Spec
          hashistack.azure.cluster_spec:
            spec: "{{ spec }}"
          register: normalized
        - name: Cluster
          ansible.builtin.set_fact:
            hashistack_cluster: "{{ normalized.cluster }}"
        - name: Key Vault
          ansible.builtin.include_role:
            name: hashistack.azure.azure_infra
            tasks_from: keyvault
        - name: Show
          ansible.builtin.copy:
            content: "{{ {'vault': azure_infra_vault.keyvault} | to_json }}"
            dest: "{{ out }}"
            mode: "0600"
          changed_when: false
    """)


def _run(tmp_path, arm, arm_env, spec, secrets, check=False):
    pb = tmp_path / "play.yml"
    pb.write_text(PLAY)
    out = tmp_path / "out.json"
    if out.exists():
        out.unlink()
    extra = {"spec": spec, "hashistack_secrets_dir": str(secrets), "out": str(out),
             "azure_infra_keyvault_operator_principal_id": arm.endpoint["principal_id"],
             "azure_infra_keyvault_operator_principal_type": "ServicePrincipal",
             "azure_infra_keyvault_retention_days": 7}
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    env = _env(arm, arm_env)
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", str(pb), "-e", "@" + str(tmp_path / "extra.json")]
                          + (["--check"] if check else []), env=env, capture_output=True, text=True, timeout=600)
    return proc, (json.loads(out.read_text()) if out.exists() else None)


def _env(arm, arm_env):
    return dict(os.environ, **arm_env, **arm.vault_env(), ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR="1",
                ANSIBLE_PYTHON_INTERPRETER=os.path.join(BIN, "python"), ANSIBLE_LOCALHOST_WARNING="false")


def _vault_secret(tmp_path, arm, arm_env, vault_uri, name):
    """The secret's value as the data plane has it (read with the collection's module, as the operator)."""
    out = tmp_path / "secret.txt"
    pb = tmp_path / "read.yml"
    pb.write_text(textwrap.dedent(f"""\
        - hosts: localhost
          connection: local
          gather_facts: false
          tasks:
            - hashistack.azure.keyvault_secret: {{vault_url: "{vault_uri}", name: {name}, return_value: true}}
              register: s
              no_log: true
            - ansible.builtin.copy: {{content: "{{{{ s.secret.value }}}}", dest: "{out}", mode: "0600"}}
        """))
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", str(pb)], env=_env(arm, arm_env),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    return out.read_text()


def test_vault_and_gossip_keys(tmp_path, arm, arm_env, sdk, rg):
    make_rg(sdk, rg)
    spec = {"cluster": "kvtest", "azure": {"subscription_id": arm.endpoint["subscription_id"], "resource_group": rg,
                                           "location": "westeurope"}}
    secrets = tmp_path / "secrets"
    m = arm.mark()
    proc, _ = _run(tmp_path, arm, arm_env, spec, secrets, check=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert writes(arm, m) == [] and not (secrets / "consul-gossip.key").exists()

    proc, r = _run(tmp_path, arm, arm_env, spec, secrets)
    assert proc.returncode == 0, proc.stdout[-3000:]
    vault = r["vault"]
    assert vault["name"].startswith("hs-kvtest-") and vault["enable_rbac_authorization"] is True
    keys = {p: (secrets / f"{p}-gossip.key").read_text().strip() for p in ("consul", "nomad")}
    for p, key in keys.items():
        assert _vault_secret(tmp_path, arm, arm_env, vault["vault_uri"], f"{p}-gossip-key") == key
        assert key not in proc.stdout + proc.stderr

    m = arm.mark()
    proc, _ = _run(tmp_path, arm, arm_env, spec, secrets)
    assert proc.returncode == 0 and "changed=0" in proc.stdout, proc.stdout[-3000:]
    assert writes(arm, m) == []

    # a new controller (no secrets dir): takes the vault's keys, generates none, writes nothing
    fresh = tmp_path / "fresh"
    proc, _ = _run(tmp_path, arm, arm_env, spec, fresh)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert {p: (fresh / f"{p}-gossip.key").read_text().strip() for p in keys} == keys
    assert writes(arm, m) == []

    # a controller whose key differs: refused, the vault keeps the cluster's key
    (fresh / "consul-gossip.key").write_text("pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=\n")
    proc, _ = _run(tmp_path, arm, arm_env, spec, fresh)
    assert proc.returncode != 0 and "differs from the one in the cluster's Key Vault" in proc.stdout
    assert _vault_secret(tmp_path, arm, arm_env, vault["vault_uri"], "consul-gossip-key") == keys["consul"]
    assert writes(arm, m) == []
