"""hashistack-sandbox (sandbox/cli.py): argument handling, prerequisite messages, the environment it prints, the
credential file the collection reads, status and errors when no sandbox runs. No machine is booted."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sandbox import cli

ROOT = Path(__file__).resolve().parents[3]

ENDPOINT = {"resource_manager": "https://127.0.0.1:45678/", "authority": "https://127.0.0.1:45678",
            "tenant_id": "11111111-1111-1111-1111-111111111111",
            "subscription_id": "22222222-2222-2222-2222-222222222222",
            "client_id": "33333333-3333-3333-3333-333333333333",
            "client_secret": "s3cr$t 'quoted' \"x\" `y`", "principal_id": "44444444-4444-4444-4444-444444444444",
            "ca_path": "/tmp/some dir/ca.pem", "admin": "https://127.0.0.1:45678/_sandbox", "vault_proxy": ""}


@pytest.fixture
def running(tmp_path, monkeypatch):
    """A state directory that looks like a running sandbox: endpoint.json, and pid files naming this (live)
    process, so `env` and `status` see an emulator and a mirror without starting either."""
    monkeypatch.delenv("HASHISTACK_SANDBOX_RUN", raising=False)
    monkeypatch.setenv("HASHISTACK_SANDBOX_CACHE", str(tmp_path / "cache"))
    lay = cli.Layout(tmp_path / "state")
    lay.arm.mkdir(parents=True)
    lay.endpoint.write_text(json.dumps(ENDPOINT))
    lay.arm_pid.write_text(f"{os.getpid()}\n")
    lay.mirror_pid.write_text(f"{os.getpid()}\n")
    lay.mirror_port.write_text("45999\n")
    return lay


# -- arguments ------------------------------------------------------------------------------------------------
def test_up_defaults_and_state_from_environment(monkeypatch):
    monkeypatch.setenv("HASHISTACK_SANDBOX_STATE", "/srv/sb")
    a = cli.parse_args(["up"])
    assert (a.cmd, a.state, a.subscription_id) == ("up", "/srv/sb", None)
    assert a.consul == ["1.20.0", "1.20.1"] and a.nomad == ["1.9.2", "1.9.3"]


def test_state_option_wins_and_default_is_home_cache(monkeypatch):
    monkeypatch.setenv("HASHISTACK_SANDBOX_STATE", "/srv/sb")
    assert cli.parse_args(["--state", "/x", "status"]).state == "/x"
    monkeypatch.delenv("HASHISTACK_SANDBOX_STATE")
    assert cli.parse_args(["env"]).state == str(Path("~/.cache/hashistack-sandbox").expanduser())


def test_versions_replace_the_defaults_once_each():
    a = cli.parse_args(["up", "--consul", "1.21.0", "--consul", "1.21.0", "--nomad", "1.10.1"])
    assert a.consul == ["1.21.0"] and a.nomad == ["1.10.1"]


def test_subscription_id_is_normalized():
    a = cli.parse_args(["up", "--subscription-id", "ABCDEF01-2345-6789-ABCD-EF0123456789"])
    assert a.subscription_id == "abcdef01-2345-6789-abcd-ef0123456789"


@pytest.mark.parametrize("argv, message", [
    (["up", "--subscription-id", "prod"], "'prod' is not a GUID"),
    (["up", "--consul", "latest"], "--consul 'latest' is not a release version"),
    (["up", "--nomad", "1.9"], "--nomad '1.9' is not a release version"),
    (["start"], "invalid choice: 'start'"),
    ([], "the following arguments are required"),
    (["env", "--format", "yaml"], "invalid choice: 'yaml'"),
])
def test_bad_arguments_exit_2_naming_the_problem(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# -- prerequisites --------------------------------------------------------------------------------------------
def test_prerequisites_name_tool_and_debian_package():
    have = {"ip", "gpg", "ssh", "ssh-keygen", "nft"}
    with pytest.raises(cli.CliError) as exc:
        cli.check_prerequisites(euid=0, which=lambda t: f"/usr/bin/{t}" if t in have else None)
    msg = str(exc.value)
    assert "systemd-nspawn (Debian package systemd-container)" in msg
    assert "debootstrap (Debian package debootstrap)" in msg
    assert "apt-get install debootstrap systemd-container" in msg
    assert "root" not in msg


def test_prerequisites_ask_for_root():
    with pytest.raises(cli.CliError, match="must run as root"):
        cli.check_prerequisites(euid=1000, which=lambda t: "/usr/bin/" + t)
    cli.check_prerequisites(euid=0, which=lambda t: "/usr/bin/" + t)  # everything there: no error


def test_up_checks_prerequisites_before_touching_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli.shutil, "which", lambda t: None)
    assert cli.main(["--state", str(tmp_path / "st"), "up"]) == 1
    assert "hashistack-sandbox up cannot start" in capsys.readouterr().err
    assert not (tmp_path / "st").exists()


# -- env ------------------------------------------------------------------------------------------------------
def test_env_shell_lines_survive_eval(running, capsys):
    assert cli.main(["--state", str(running.state), "env"]) == 0
    out = capsys.readouterr().out
    assert all(line.startswith("export ") for line in out.splitlines())
    shown = subprocess.run(["bash", "-c", 'eval "$(cat)"; env'], input=out, capture_output=True, text=True,
                           check=True, env={"PATH": os.environ["PATH"]}).stdout
    got = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    assert got["AZURE_SECRET"] == got["AZURE_CLIENT_SECRET"] == ENDPOINT["client_secret"]
    assert got["AZURE_CLOUD_ENVIRONMENT"] == ENDPOINT["resource_manager"]
    assert got["AZURE_CA_BUNDLE"] == ENDPOINT["ca_path"]
    assert got["AZURE_SUBSCRIPTION_ID"] == ENDPOINT["subscription_id"]
    assert got["HASHISTACK_SANDBOX_MIRROR_URL"] == "http://127.0.0.1:45999"
    assert got["HASHISTACK_SANDBOX_MIRROR_DIR"] == str(running.mirror_dir)
    assert got["HASHISTACK_SANDBOX_STATE"] == str(running.state)
    assert got["HASHISTACK_SANDBOX_RUN"] == str(running.arm / "hosts-run")
    assert got["ANSIBLE_PRIVATE_KEY_FILE"].endswith("/cache/ssh/id_ed25519")
    assert got["ANSIBLE_INVENTORY_UNPARSED_FAILED"] == "True"
    # trusting the emulator's CA for every tool of the shell would break pip and curl
    assert "REQUESTS_CA_BUNDLE" not in got and "SSL_CERT_FILE" not in got


def test_env_json(running, capsys):
    assert cli.main(["--state", str(running.state), "env", "--format", "json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["AZURE_TENANT"] == ENDPOINT["tenant_id"] and env["AZURE_CLIENT_ID"] == ENDPOINT["client_id"]


def test_env_without_mirror_leaves_its_url_empty(running, capsys):
    running.mirror_pid.unlink()
    cli.main(["--state", str(running.state), "env", "--format", "json"])
    assert json.loads(capsys.readouterr().out)["HASHISTACK_SANDBOX_MIRROR_URL"] == ""


def test_env_without_sandbox_says_how_to_start_it(tmp_path, capsys):
    assert cli.main(["--state", str(tmp_path / "none"), "env"]) == 1
    err = capsys.readouterr().err
    assert f"no sandbox runs with state {tmp_path / 'none'}" in err and "hashistack-sandbox up" in err


def test_hosts_run_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HASHISTACK_SANDBOX_RUN", str(tmp_path / "run"))
    assert cli.Layout(tmp_path / "st").hosts_run == tmp_path / "run"


# -- credential file ------------------------------------------------------------------------------------------
def test_credential_file_is_private_and_read_by_the_collection(running, monkeypatch):
    cli.write_credentials(running, ENDPOINT)
    assert stat.S_IMODE(running.credentials.stat().st_mode) == 0o600
    from ansible_collections.hashistack.azure.plugins.module_utils import _auth
    env = {"AZURE_CREDENTIAL_FILE": str(running.credentials), "AZURE_AUTH_SOURCE": "credential_file",
           # a real service principal in the user's shell must not win over the sandbox's profile
           "AZURE_CLIENT_ID": "real-client", "AZURE_SECRET": "real-secret", "AZURE_TENANT": "real-tenant"}
    settings = _auth.resolve_settings({}, env=env)
    assert settings["resolved_source"] == "service_principal"
    assert (settings["client_id"], settings["secret"], settings["tenant"], settings["subscription_id"]) == (
        ENDPOINT["client_id"], ENDPOINT["client_secret"], ENDPOINT["tenant_id"], ENDPOINT["subscription_id"])
    assert settings["cloud_environment"] == ENDPOINT["resource_manager"]


# -- subscription seeding -------------------------------------------------------------------------------------
def test_seed_identity_sets_the_subscription_once(tmp_path):
    lay = cli.Layout(tmp_path / "st")
    sub = "abcdef01-2345-6789-abcd-ef0123456789"
    cli.seed_identity(lay, sub)
    ident = json.loads((lay.arm / "identity.json").read_text())
    assert ident["subscription_id"] == sub and ident["client_secret"] and ident["token_key"]
    assert stat.S_IMODE((lay.arm / "identity.json").stat().st_mode) == 0o600
    cli.seed_identity(lay, sub)  # same subscription again: fine
    with pytest.raises(cli.CliError, match="already serves subscription abcdef01.*down"):
        cli.seed_identity(lay, "00000000-0000-0000-0000-000000000001")
    cli.seed_identity(lay, None)  # no subscription asked for: keep what is there
    assert json.loads((lay.arm / "identity.json").read_text()) == ident


# -- status ---------------------------------------------------------------------------------------------------
def test_status_not_running_exits_3(tmp_path, capsys):
    assert cli.main(["--state", str(tmp_path / "st"), "status"]) == cli.NOT_RUNNING
    out = capsys.readouterr().out
    assert "emulator: stopped" in out and "mirror:   stopped" in out and "machines: 0" in out


def test_status_running_json(running, capsys):
    assert cli.main(["--state", str(running.state), "status", "--format", "json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["up"] is True and st["arm"]["url"] == ENDPOINT["resource_manager"]
    assert st["mirror"]["url"] == "http://127.0.0.1:45999" and st["hosts"] == []


def test_status_with_a_stale_pid_file(running, capsys):
    running.arm_pid.write_text("999999999\n")  # no such process
    assert cli.main(["--state", str(running.state), "status", "--format", "json"]) == cli.NOT_RUNNING
    assert json.loads(capsys.readouterr().out)["arm"] == {"pid": None, "url": None}


def test_down_needs_root(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    assert cli.main(["--state", str(tmp_path), "down"]) == 1
    assert "must run as root" in capsys.readouterr().err
    assert tmp_path.exists()


# -- packaging ------------------------------------------------------------------------------------------------
def test_entry_point_and_module_run():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "hashistack-sandbox" and project["version"] == "0.1.0"
    assert project["scripts"] == {"hashistack-sandbox": "sandbox.cli:main"}
    out = subprocess.run([sys.executable, "-m", "sandbox.cli", "--help"], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert "up|down|env|status" in out
