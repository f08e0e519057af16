"""The nomad role's `drain` entry point (shared by the scale-in of azure_infra and the client upgrade of
upgrade.yml) against stand-in agents on loopback: the node is drained with the given deadline and Meta, the
task returns only once its allocations run on the other node, and a server-only agent is left alone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import http, run, wait_for
from .test_nomad import JOB, client_cfg, running, server_cfg

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drain(tmp_path, port: int, deadline: int = 60) -> subprocess.CompletedProcess:
    pb = tmp_path / "drain.yml"
    pb.write_text(textwrap.dedent("""\
        - hosts: localhost
          connection: local
          gather_facts: false
          tasks:
            - name: Drain
              ansible.builtin.include_role:
                name: hashistack.azure.nomad
                tasks_from: drain
            - name: Show
              ansible.builtin.debug:
                msg: "node={{ nomad_drain_node_id }}"
        """))
    extra = {"nomad_http_port": port, "nomad_drain_deadline": deadline, "nomad_drain_meta": {"drained_by": "test"}}
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(pb),
                           "-e", json.dumps(extra)], capture_output=True, text=True, env=env, timeout=300)


def test_drain_moves_the_allocations_then_returns(nomad, agents, net, tmp_path):
    agents(nomad, server_cfg(net, 1, expect=1, join=()), "s1", product="nomad")
    port = _free_port()
    agents(nomad, client_cfg(net, 2, servers=(1,)) + f'addresses {{\n  http = "127.0.0.1"\n}}\nports {{\n  http = {port}\n}}\n',
           "c2", product="nomad")
    a1 = f"{net(1)}:4646"
    wait_for(lambda: len([n for n in http(a1, "/v1/nodes")[1] if n["Status"] == "ready"]) == 1, 30, what="c2 ready")
    job = tmp_path / "web.hcl"
    job.write_text(JOB.replace("count = 3", "count = 2"))
    assert run(nomad, "job", "run", "-detach", str(job), env={"NOMAD_ADDR": f"http://{a1}"}).returncode == 0
    wait_for(lambda: len(running(a1)) == 2, 30, what="2 allocations on c2")
    agents(nomad, client_cfg(net, 3, servers=(1,)), "c3", product="nomad")
    wait_for(lambda: len([n for n in http(a1, "/v1/nodes")[1] if n["Status"] == "ready"]) == 2, 30, what="c3 ready")

    proc = _drain(tmp_path, port)
    assert proc.returncode == 0, proc.stdout[-3000:]
    c2 = next(n for n in http(a1, "/v1/nodes")[1] if n["Name"] == "c2")
    assert f"node={c2['ID']}" in proc.stdout
    node = http(a1, f"/v1/node/{c2['ID']}")[1]
    assert node["DrainStrategy"] is None and node["SchedulingEligibility"] == "ineligible"
    assert node["LastDrain"]["Meta"] == {"drained_by": "test"}
    # the task returned after the allocations moved: both run on c3 already, none left on c2
    assert sorted(a["NodeName"] for a in running(a1)) == ["c3", "c3"]


def test_drain_leaves_a_server_only_agent_alone(nomad, agents, net, tmp_path):
    port = _free_port()
    agents(nomad, server_cfg(net, 1, expect=1, join=()) + f'addresses {{\n  http = "127.0.0.1"\n}}\nports {{\n  http = {port}\n}}\n',
           "s1", product="nomad")
    wait_for(lambda: http(f"127.0.0.1:{port}", "/v1/status/leader", timeout=2)[1], 30, what="leader")
    proc = _drain(tmp_path, port)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "node=" in proc.stdout and "Drain the Nomad node" in proc.stdout
    assert "skipping: [localhost]" in proc.stdout
