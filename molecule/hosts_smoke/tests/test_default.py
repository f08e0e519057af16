"""Verify (testinfra over SSH through the Ansible inventory Molecule generated)."""


def test_marker_file(host):
    f = host.file("/etc/hashistack-smoke")
    assert f.exists
    assert f.user == "root"
    assert f.mode == 0o644
    assert f.content_string == f"managed by molecule on {host.backend.get_hostname()}\n"


def test_login_as_azureuser_with_become(host):
    # The inventory logs in as azureuser (sandbox key) and becomes root with sudo.
    assert host.backend.get_variables()["ansible_user"] == "azureuser"
    assert host.user().name == "root"
    assert host.check_output("printenv SUDO_USER") == "azureuser"


def test_booted_systemd_and_sshd(host):
    assert host.service("ssh").is_running
    assert host.run("systemctl is-system-running --wait").stdout.strip() in ("running", "degraded")


def test_hosts_reach_each_other(host):
    me = host.backend.get_hostname()
    other = "smoke-b" if me == "smoke-a" else "smoke-a"
    peer_ip = host.backend.ansible_runner.get_variables(other)["ansible_host"]
    assert peer_ip != host.backend.get_variables()["ansible_host"]
    assert host.run("ping -c1 -W2 %s", peer_ip).rc == 0
