#!/usr/bin/env bash
# The main job: a whole cluster in the local sandbox, no Azure subscription needed (run as root).
#   scripts/sandbox.sh up      start the ARM emulator (scale-set instances become local machines)
#                              and provision the cluster with the collection
#   scripts/sandbox.sh down    stop the emulator and remove every sandbox machine and network
#   scripts/sandbox.sh env     print the environment to point Ansible at the running sandbox
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${HASHISTACK_SANDBOX_STATE:-$ROOT/.cache/sandbox}
ARM_STATE=$STATE/arm
PIDFILE=$STATE/arm.pid
# the emulator's machines and networks (also what `down` cleans up after a crash)
export HASHISTACK_SANDBOX_RUN=${HASHISTACK_SANDBOX_RUN:-$ARM_STATE/hosts-run}

arm_env() { python -m sandbox.arm env --state "$ARM_STATE"; }

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

case "${1:-up}" in
  up)
    bash scripts/setup.sh
    source scripts/env.sh
    echo "sandbox: building the host image (cached after the first run)"
    python -m sandbox.hosts image build
    start_arm
    eval "$(arm_env)"
    key=$(python -m sandbox.hosts ssh-key)
    # an inventory source that fails (an Azure error) must stop the play, not empty the inventory
    export ANSIBLE_PRIVATE_KEY_FILE=$key ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_INVENTORY_UNPARSED_FAILED=True
    ansible-playbook -i sandbox/main/vmss.yml sandbox/main/up.yml -e "sandbox_ssh_public_key=$key.pub"
    ansible-inventory -i sandbox/main/vmss.yml --graph
    echo "sandbox: up. Use it with: source scripts/env.sh; eval \"\$(scripts/sandbox.sh env)\""
    ;;
  down)
    source scripts/env.sh
    stop_arm
    python -m sandbox.hosts down --all
    rm -rf "$STATE"
    echo "sandbox: down"
    ;;
  env)
    source scripts/env.sh
    arm_env
    echo "export ANSIBLE_PRIVATE_KEY_FILE=$(python -m sandbox.hosts ssh-key) ANSIBLE_HOST_KEY_CHECKING=False"
    ;;
  *)
    echo "usage: $0 up|down|env" >&2
    exit 2
    ;;
esac
