"""The plan of playbooks/upgrade.yml (roles/hashistack_upgrade/templates/plan.j2): server order, skipped hosts,
members outside the play, health refusals, drained clients of an interrupted run. Rendered by ansible-playbook on
local-connection hosts with the agents' replies as facts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SERVERS = ["s1", "s2", "s3"]


def _health(leader, ft=1, healthy=True, port=8300, unhealthy=()):
    return {"Healthy": healthy, "FailureTolerance": ft,
            "Servers": [{"Name": s, "ID": f"id-{s}", "Address": f"10.0.0.{i + 1}:{port}", "Leader": s == leader,
                         "Voter": True, "Healthy": s not in unhealthy} for i, s in enumerate(SERVERS)]}


def _cluster(consul=None, nomad=None, consul_leader="s3", nomad_leader="s1", extra_members=(), node=None, **health):
    consul = {"s1": "1.20.0", "s2": "1.20.0", "s3": "1.20.0", "c1": "1.20.0"} | (consul or {})
    nomad = {"s1": "1.9.2", "s2": "1.9.2", "s3": "1.9.2", "c1": "1.9.2"} | (nomad or {})
    addr = {"s1": "10.0.0.1", "s2": "10.0.0.2", "s3": "10.0.0.3", "c1": "10.0.0.11"}
    hosts = {}
    for h in addr:
        hosts[h] = {
            "_hashistack_upgrade_self_consul": {"running": consul[h] is not None, "version": consul[h], "addr": addr[h],
                                                "applied_index": 5, "node_id": ""},
            "_hashistack_upgrade_self_nomad": {"running": nomad[h] is not None, "version": nomad[h],
                                               "addr": "" if h == "c1" else addr[h], "applied_index": 5,
                                               "node_id": "node-c1" if h == "c1" else ""},
        }
    hosts["c1"]["_hashistack_upgrade_node"] = {"json": node or {"SchedulingEligibility": "eligible", "LastDrain": None}}
    members = [{"Name": h, "Addr": addr[h], "Status": 1, "Tags": {"build": f"{consul[h]}:abcdef01"}} for h in addr]
    members += [{"Name": n, "Addr": a, "Status": 1, "Tags": {"build": v + ":abcdef01"}} for n, a, v in extra_members]
    reads = [
        {"item": {"p": "consul", "what": "health"}, "status": 200, "json": _health(consul_leader, **health)},
        {"item": {"p": "consul", "what": "members"}, "status": 200, "json": members},
        {"item": {"p": "nomad", "what": "health"}, "status": 200, "json": _health(nomad_leader, port=4647)},
        {"item": {"p": "nomad", "what": "members"}, "status": 200,
         "json": {"Members": [{"Name": f"{s}.global", "Addr": addr[s], "Status": "alive", "Tags": {"build": nomad[s]}}
                              for s in SERVERS]}},
        {"item": {"p": "nomad", "what": "nodes"}, "status": 200,
         "json": [{"ID": "node-c1", "Name": "c1", "Status": "ready", "Version": nomad["c1"]}]},
    ]
    return hosts, reads


def _plan(tmp_path, hosts, reads, **extra):
    inv = {"all": {"children": {"consul_servers": {"hosts": dict.fromkeys(SERVERS)},
                                "nomad_servers": {"hosts": dict.fromkeys(SERVERS)},
                                "consul_clients": {"hosts": {"c1": None}}, "nomad_clients": {"hosts": {"c1": None}}},
                   "hosts": {h: v for h, v in hosts.items()},
                   "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}
    (tmp_path / "inv.json").write_text(json.dumps(inv))
    variables = {"_hashistack_upgrade_reads": {"results": reads}, "hashistack_cluster": {"cluster": "t"},  # preflight normalizes the spec into it
                 "hashistack_secrets_dir": str(tmp_path), "consul_version": "1.20.1", "nomad_version": "1.9.3"} | extra
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    (tmp_path / "play.yml").write_text(textwrap.dedent(f"""\
        - hosts: all
          gather_facts: false
          tasks:
            - name: Render the plan with the role's variables
              ansible.builtin.include_role:
                name: hashistack.azure.hashistack_upgrade
                tasks_from: plan
            - name: Keep it
              ansible.builtin.copy:
                content: "{{{{ hashistack_upgrade_plan | to_json }}}}"
                dest: {tmp_path}/plan.json
                mode: "0600"
              run_once: true
        """))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_LOCALHOST_WARNING="false")
    p = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inv.json"),
                        str(tmp_path / "play.yml"), "-e", "@" + str(tmp_path / "vars.json")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, check=False)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    return json.loads((tmp_path / "plan.json").read_text())


def test_servers_followers_first_leader_last_and_done_hosts_skipped(tmp_path):
    hosts, reads = _cluster(consul={"s2": "1.20.1"})
    plan = _plan(tmp_path, hosts, reads)
    assert plan["errors"] == []
    assert plan["consul"]["servers"] == ["s1", "s3"] and plan["consul"]["leader"] == "s3"
    assert plan["nomad"]["servers"] == ["s2", "s3", "s1"] and plan["nomad"]["leader"] == "s1"
    assert plan["clients"] == ["c1"]
    assert plan["hosts"] == {"s1": ["consul", "nomad"], "s2": ["nomad"], "s3": ["consul", "nomad"], "c1": ["consul", "nomad"]}
    assert plan["work"] is True
    text = "\n".join(plan["summary"])
    assert "Consul -> 1.20.1, servers one at a time: s1, s3 (the leader s3 last" in text
    assert "Consul already on 1.20.1 (skipped): s2" in text
    assert "Clients in batches of 1: c1" in text


def test_completed_upgrade_has_nothing_to_do(tmp_path):
    hosts, reads = _cluster(consul=dict.fromkeys(["s1", "s2", "s3", "c1"], "1.20.1"),
                            nomad=dict.fromkeys(["s1", "s2", "s3", "c1"], "1.9.3"))
    plan = _plan(tmp_path, hosts, reads)
    assert (plan["errors"], plan["work"], plan["clients"], plan["hosts"]) == ([], False, [], {})
    assert plan["summary"][-1] == "Nothing to do: every member runs Consul 1.20.1 and Nomad 1.9.3"


def test_drained_node_of_an_interrupted_run_gets_its_eligibility_back(tmp_path):
    hosts, reads = _cluster(consul=dict.fromkeys(["s1", "s2", "s3", "c1"], "1.20.1"),
                            nomad=dict.fromkeys(["s1", "s2", "s3", "c1"], "1.9.3"),
                            node={"SchedulingEligibility": "ineligible",
                                  "LastDrain": {"Meta": {"hashistack_upgrade": "consul 1.20.1, nomad 1.9.3"}}})
    plan = _plan(tmp_path, hosts, reads)
    assert plan["clients"] == ["c1"] and plan["hosts"] == {} and plan["work"] is True


def test_a_node_drained_by_someone_else_is_left_alone(tmp_path):
    hosts, reads = _cluster(consul=dict.fromkeys(["s1", "s2", "s3", "c1"], "1.20.1"),
                            nomad=dict.fromkeys(["s1", "s2", "s3", "c1"], "1.9.3"),
                            node={"SchedulingEligibility": "ineligible", "LastDrain": {"Meta": {"by": "ops"}}})
    assert _plan(tmp_path, hosts, reads)["clients"] == []


def test_member_outside_the_play_must_be_on_the_target(tmp_path):
    hosts, reads = _cluster(extra_members=[("old-node", "10.0.0.99", "1.20.0")])
    errors = _plan(tmp_path, hosts, reads)["errors"]
    assert any("member old-node (not in this play)" in e and "add them to the inventory" in e for e in errors)
    hosts, reads = _cluster(extra_members=[("new-node", "10.0.0.98", "1.20.1")])
    assert _plan(tmp_path, hosts, reads)["errors"] == []


@pytest.mark.parametrize("health,expect", [
    ({"healthy": False, "unhealthy": ("s2",)}, "Consul: autopilot reports the servers unhealthy: s2"),
    ({"ft": 0}, "Consul: failure tolerance is 0 with 3 voters"),
])
def test_unhealthy_cluster_refused(tmp_path, health, expect):
    hosts, reads = _cluster(**health)
    errors = _plan(tmp_path, hosts, reads)["errors"]
    assert any(expect in e for e in errors), errors


def test_agent_down_and_downgrade_refused(tmp_path):
    hosts, reads = _cluster(consul={"c1": None})
    errors = _plan(tmp_path, hosts, reads)["errors"]
    assert any("Consul version of c1 is unknown" in e for e in errors), errors
    hosts, reads = _cluster()
    errors = _plan(tmp_path, hosts, reads, nomad_version="1.9.1")["errors"]
    assert any(e.startswith("Refusing to downgrade Nomad on c1, s1, s2, s3 from 1.9.2 to 1.9.1") for e in errors)
    assert _plan(tmp_path, hosts, reads, nomad_version="1.9.1", hashistack_upgrade_allow_downgrade=True)["errors"] == []
