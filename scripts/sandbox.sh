#!/usr/bin/env bash
# The main job: a whole cluster in the local sandbox, no Azure subscription needed (run as root).
#   scripts/sandbox.sh up      start the ARM emulator (scale-set instances become local machines) and the
#                              release mirror, then run playbooks/site.yml with sandbox/main/spec.yml
#   scripts/sandbox.sh down    stop the emulator and the mirror, remove every sandbox machine and network
#   scripts/sandbox.sh env     print the environment to point Ansible at the running sandbox (HTTPS_PROXY is the
#                              emulator's Key Vault proxy: it tunnels *.vault.azure.net only)
#   scripts/sandbox.sh site [ARGS...]         playbooks/site.yml again against the running sandbox
#   scripts/sandbox.sh upgrade [ARGS...]      playbooks/upgrade.yml to the newest versions the mirror carries
#   scripts/sandbox.sh consul|nomad ARGS...   the CLI on a server of the sandbox cluster
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${HASHISTACK_SANDBOX_STATE:-$ROOT/.cache/sandbox}
ARM_STATE=$STATE/arm
PIDFILE=$STATE/arm.pid
MIRROR_DIR=$STATE/releases
MIRROR_PIDFILE=$STATE/mirror.pid
# the versions the mirror carries: the spec pins the older ones, the newer ones are there to upgrade to
MIRROR_VERSIONS=(--consul 1.20.0 --consul 1.20.1 --nomad 1.9.2 --nomad 1.9.3)
SITE=(playbooks/site.yml -i sandbox/main/vmss.yml -e @sandbox/main/spec.yml -e @sandbox/main/sandbox.yml)
UPGRADE=(playbooks/upgrade.yml "${SITE[@]:1}" -e consul_version=1.20.1 -e nomad_version=1.9.3)
# the emulator's machines and networks (also what `down` cleans up after a crash)
export HASHISTACK_SANDBOX_RUN=${HASHISTACK_SANDBOX_RUN:-$ARM_STATE/hosts-run}

arm_env() { python -m sandbox.arm env --state "$ARM_STATE"; }
# The emulator's Key Vault data plane (https://<vault>.vault.azure.net) for the controller's SDK: its CONNECT proxy.
vault_env() {
  echo "export HTTPS_PROXY=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["vault_proxy"])' "$ARM_STATE/endpoint.json")" \
    "NO_PROXY=127.0.0.1,localhost"
}

running() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start_arm() {
  if running; then echo "sandbox: ARM emulator already running (pid $(cat "$PIDFILE"))"; return; fi
  mkdir -p "$ARM_STATE"
  rm -f "$ARM_STATE/endpoint.json"
  echo "sandbox: starting the ARM emulator (log: $STATE/arm.log)"
  setsid python -m sandbox.arm serve --port 0 --state "$ARM_STATE" --hosts --hosts-opt "run_dir=$HASHISTACK_SANDBOX_RUN" >"$STATE/arm.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 100); do [[ -s $ARM_STATE/endpoint.json ]] && return; sleep 0.2; done
  echo "sandbox: the emulator did not start; see $STATE/arm.log" >&2
  exit 1
}

stop_arm() {
  if running; then
    kill "$(cat "$PIDFILE")"
    for _ in $(seq 50); do running || break; sleep 0.2; done
    running && kill -9 "$(cat "$PIDFILE")"
  fi
  rm -f "$PIDFILE"
}

mirror_running() { [[ -f $MIRROR_PIDFILE ]] && kill -0 "$(cat "$MIRROR_PIDFILE")" 2>/dev/null; }

# The release mirror on the controller's loopback; the hosts reach it as sandbox-controller:PORT (their gateway).
start_mirror() {
  [[ -s $MIRROR_DIR/index.json ]] || python -m sandbox.agents build "${MIRROR_VERSIONS[@]}" --out "$MIRROR_DIR" >/dev/null
  if ! mirror_running; then
    port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    setsid python -m sandbox.agents mirror --dir "$MIRROR_DIR" --port "$port" --bind 127.0.0.1 >"$STATE/mirror.log" 2>&1 </dev/null &
    echo $! >"$MIRROR_PIDFILE"
    echo "$port" >"$STATE/mirror.port"
    python -m sandbox.hosts expose "$port"
  fi
  port=$(cat "$STATE/mirror.port")
  for _ in $(seq 50); do python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/index.json')" 2>/dev/null && break; sleep 0.2; done
  export HASHISTACK_SANDBOX_STATE=$STATE HASHISTACK_SANDBOX_MIRROR_DIR=$MIRROR_DIR HASHISTACK_SANDBOX_MIRROR_URL=http://127.0.0.1:$port
}

stop_mirror() {
  if mirror_running; then kill "$(cat "$MIRROR_PIDFILE")"; fi
  rm -f "$MIRROR_PIDFILE"
}

ansible_env() {
  eval "$(arm_env)"
  eval "$(vault_env)"
  key=$(python -m sandbox.hosts ssh-key)
  # an inventory source that fails (an Azure error) must stop the play, not empty the inventory
  export ANSIBLE_PRIVATE_KEY_FILE=$key ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_INVENTORY_UNPARSED_FAILED=True \
    ANSIBLE_PIPELINING=True ANSIBLE_PYTHON_INTERPRETER=auto_silent
}

# A server of the sandbox cluster (a sandbox machine of the servers' scale set).
a_server() {
  python -m sandbox.hosts list | python -c 'import json, sys
hosts = [h["name"] for h in json.load(sys.stdin) if "servers" in h["name"] and h.get("state") == "running"]
print(sorted(hosts)[0] if hosts else "")'
}

case "${1:-up}" in
  up)
    bash scripts/setup.sh
    source scripts/env.sh
    echo "sandbox: building the host image (cached after the first run)"
    python -m sandbox.hosts image build
    start_arm
    start_mirror
    ansible_env
    ansible-playbook "${SITE[@]}"
    ansible-inventory -i sandbox/main/vmss.yml --graph
    cat <<EOT
sandbox: up. The cluster's APIs (on the servers' loopback, as the roles configure them):
  scripts/sandbox.sh nomad node status      scripts/sandbox.sh nomad server members
  scripts/sandbox.sh consul members         scripts/sandbox.sh consul operator raft list-peers
Ansible against the sandbox: source scripts/env.sh; eval "\$(scripts/sandbox.sh env)"
  ansible-playbook ${SITE[*]}
EOT
    ;;
  site)
    shift
    source scripts/env.sh
    running || { echo "sandbox: not running; run scripts/sandbox.sh up first" >&2; exit 1; }
    start_mirror
    ansible_env
    exec ansible-playbook "${SITE[@]}" "$@"
    ;;
  upgrade)
    shift
    source scripts/env.sh
    running || { echo "sandbox: not running; run scripts/sandbox.sh up first" >&2; exit 1; }
    start_mirror
    ansible_env
    exec ansible-playbook "${UPGRADE[@]}" "$@"
    ;;
  consul | nomad)
    source scripts/env.sh
    server=$(a_server)
    [[ -n $server ]] || { echo "sandbox: no running server; run scripts/sandbox.sh up first" >&2; exit 1; }
    # with TLS / ACLs on (the roles' consul|nomad_tls_enabled, _acl_enabled): the HTTPS address, the cluster CA
    # and the management token kept in the sandbox's secrets directory
    cli_env=()
    if python -m sandbox.hosts exec "$server" -- test -f "/etc/$1.d/tls/ca.pem"; then
      if [[ $1 == consul ]]; then
        cli_env+=(CONSUL_HTTP_ADDR=https://127.0.0.1:8501 CONSUL_CACERT=/etc/consul.d/tls/ca.pem)
      else
        cli_env+=(NOMAD_ADDR=https://127.0.0.1:4646 NOMAD_CACERT=/etc/nomad.d/tls/ca.pem)
      fi
    fi
    if [[ -s $STATE/secrets/$1-management.token ]]; then
      cli_env+=("$([[ $1 == consul ]] && echo CONSUL_HTTP_TOKEN || echo NOMAD_TOKEN)=$(cat "$STATE/secrets/$1-management.token")")
    fi
    exec python -m sandbox.hosts exec "$server" -- env "${cli_env[@]}" "$@"
    ;;
  down)
    source scripts/env.sh
    stop_mirror
    stop_arm
    python -m sandbox.hosts down --all
    rm -rf "$STATE"
    echo "sandbox: down"
    ;;
  env)
    source scripts/env.sh
    arm_env
    vault_env
    echo "export ANSIBLE_PRIVATE_KEY_FILE=$(python -m sandbox.hosts ssh-key) ANSIBLE_HOST_KEY_CHECKING=False" \
      "ANSIBLE_INVENTORY_UNPARSED_FAILED=True ANSIBLE_PIPELINING=True ANSIBLE_PYTHON_INTERPRETER=auto_silent"
    echo "export HASHISTACK_SANDBOX_STATE=$STATE HASHISTACK_SANDBOX_MIRROR_DIR=$MIRROR_DIR" \
      "HASHISTACK_SANDBOX_MIRROR_URL=http://127.0.0.1:$(cat "$STATE/mirror.port" 2>/dev/null)"
    ;;
  *)
    echo "usage: $0 up|down|env|site [ARGS...]|upgrade [ARGS...]|consul ARGS...|nomad ARGS..." >&2
    exit 2
    ;;
esac
