#!/usr/bin/env bash
# Runs every test of the collection (run as root on Debian 12; installs what it needs first):
#   linters (ruff, ansible-lint production profile), ansible-test sanity on the built artifact,
#   the pytest suite (unit tests, modules and inventory against the ARM emulator, local hosts,
#   agent stand-ins, the end-to-end sandbox) and every Molecule scenario.
# Pass pytest arguments to narrow the pytest stage, e.g. scripts/test.sh -k inventory
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

stage() { printf '\n=== %s ===\n' "$*"; }

stage "ruff"
ruff check --quiet sandbox tests benchmarks scripts

stage "ansible-lint (production profile)"
if compgen -G "roles/*" >/dev/null || compgen -G "playbooks/*.yml" >/dev/null; then
  ansible-lint --nocolor -q
else
  echo "no roles or playbooks yet"
fi

stage "ansible-test sanity"
bash scripts/sanity.sh

stage "molecule"
for scenario in molecule/*/molecule.yml; do
  [[ -e "$scenario" ]] || continue
  name=$(basename "$(dirname "$scenario")")
  echo "--- molecule test -s $name"
  molecule test -s "$name"
done

stage "pytest"
pytest -p no:cacheprovider "$@" tests
