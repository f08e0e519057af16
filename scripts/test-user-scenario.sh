#!/usr/bin/env bash
# What a user does to test their own cluster spec offline (docs/testing-offline.md), end to end, outside the
# checkout (run as root on Debian 12): build the hashistack-sandbox wheel and the collection tarball, install both
# into a fresh virtualenv and collections path in a temporary directory, create a user project with a small spec
# of its own (1 server, 1 client pool of 1 instance), copy the scenario the INSTALLED collection ships
# (extensions/molecule/hashistack_sandbox) into it, and run `molecule test` there.
#   HASHISTACK_HOSTS_LOCK=/tmp/hashistack-hosts.lock   run the molecule step (it boots local machines) under
#                                                      that lock (shared machines); unset: no lock (CI)
#   KEEP=1                                             keep the temporary directory (printed) for a look
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
TMP=$(mktemp -d /tmp/hashistack-user.XXXXXX)
PROJECT=$TMP/$(basename "$TMP")-infra
step() { printf -- '--- %s (at %ss)\n' "$*" "$SECONDS"; }

cleanup() {
  local rc=$?
  # a run killed half-way: the scenario's sandbox (its state is in Molecule's ephemeral directory) goes too
  if [[ -d $TMP/ephemeral/sandbox ]]; then
    "$TMP/venv/bin/hashistack-sandbox" --state "$TMP/ephemeral/sandbox" down || true
  fi
  if [[ ${KEEP:-} == 1 ]]; then echo "kept: $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT

step "build the hashistack-sandbox wheel (from a copy: the build leaves nothing in the checkout)"
mkdir -p "$TMP/src"
rsync -a --exclude __pycache__ pyproject.toml COPYING sandbox docs "$TMP/src/"
(cd "$TMP/src" && "$ROOT/.venv/bin/python" -m pip wheel -q --no-deps -w "$TMP/dist" .)
wheel=$(ls "$TMP"/dist/hashistack_sandbox-*.whl)

step "build the collection"
"$ROOT/.venv/bin/ansible-galaxy" collection build -f --output-path "$TMP/dist" "$ROOT" >/dev/null
tarball=$(ls "$TMP"/dist/hashistack-azure-*.tar.gz)

# the ansible package, not ansible-core alone: it bundles community.crypto, the collection's one dependency, so
# installing the collection needs no Galaxy server (as docs/testing-offline.md tells users)
step "a fresh virtualenv: the wheel, ansible, molecule, the collection's requirements"
"$PY" -m venv "$TMP/venv"
"$TMP/venv/bin/pip" install -qq "$wheel" "ansible>=12,<14" "molecule>=25.0" -r "$ROOT/requirements.txt"
# --force: a hashistack.azure in ~/.ansible/collections would otherwise count as installed already
ANSIBLE_COLLECTIONS_PATH="$TMP/collections" "$TMP/venv/bin/ansible-galaxy" collection install --force \
  -p "$TMP/collections" "$tarball" >/dev/null
installed=$TMP/collections/ansible_collections/hashistack/azure
[[ -d $installed/extensions/molecule/hashistack_sandbox ]] || { echo "the built collection lacks extensions/molecule/hashistack_sandbox" >&2; exit 1; }

step "a user project with its own spec and the shipped scenario"
mkdir -p "$PROJECT/molecule"
cp -r "$installed/extensions/molecule/hashistack_sandbox" "$PROJECT/molecule/"
ssh-keygen -q -t ed25519 -N '' -C ops@example.com -f "$TMP/ops_key"
cat >"$PROJECT/cluster-spec.yml" <<EOF
---
# A user's cluster spec (schema: ansible-doc hashistack.azure.cluster_spec), small for a test.
hashistack_spec:
  cluster: acme
  azure:
    subscription_id: 6f1c2d3e-4b5a-4c6d-8e7f-901a2b3c4d5e
    resource_group: acme-nomad
    location: westeurope
  consul_version: 1.20.1
  nomad_version: 1.9.3
  ssh_public_keys:
    - $(cat "$TMP/ops_key.pub")
  servers: {count: 1, vm_size: Standard_B2s}
  pools:
    - {name: apps, count: 1}
  networks: {westeurope: 10.93.0.0/16}
EOF

step "molecule test in the user project"
# only the fresh virtualenv and the installed collection: nothing of the checkout on the paths
run=(env -u PYTHONPATH -u ANSIBLE_CONFIG -u VIRTUAL_ENV PATH="$TMP/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  ANSIBLE_COLLECTIONS_PATH="$TMP/collections" HASHISTACK_SPEC=cluster-spec.yml MOLECULE_EPHEMERAL_DIRECTORY="$TMP/ephemeral"
  molecule test -s hashistack_sandbox)
cd "$PROJECT"
if [[ -n ${HASHISTACK_HOSTS_LOCK:-} ]]; then
  # the time the lock was held, to tell the run from the wait
  flock -o "$HASHISTACK_HOSTS_LOCK" bash -c 'echo "--- hosts lock held (at $(date -u +%T))"; exec "$@"' _ "${run[@]}"
else
  "${run[@]}"
fi
step "done ($(date -u +%T))"
