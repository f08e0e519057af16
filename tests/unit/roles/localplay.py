"""Run a one-play playbook on the controller itself (connection local) with this checkout's collection;
shared by the role tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _play(tmp_path: Path, tasks: str, extra: dict) -> subprocess.CompletedProcess:
    pb = tmp_path / "play.yml"
    pb.write_text(textwrap.dedent("""\
        - hosts: localhost
          connection: local
          gather_facts: false
          tasks:
        """) + textwrap.indent(textwrap.dedent(tasks), "    "))
    ev = tmp_path / "extra.json"
    ev.write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"),
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_DISPLAY_ARGS_TO_STDOUT="false", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    env.pop("ANSIBLE_COLLECTIONS_PATHS", None)
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(pb),
                           "-e", "@" + str(ev)], capture_output=True, text=True, env=env, cwd=tmp_path)


def _result(proc) -> dict:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    res = Path(proc.args[3]).parent / "result.json"
    data = json.loads(res.read_text())
    res.unlink()
    return data


def _failure(proc) -> str:
    assert proc.returncode != 0, proc.stdout[-3000:]
    return " ".join((proc.stdout + proc.stderr).split())
