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

stage() { printf '\n=== %s (at %ss) ===\n' "$*" "$SECONDS"; }

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
  echo "--- molecule test -s $name (at ${SECONDS}s)"
  molecule test -s "$name"
done

# Tests that boot no machine run on two workers; those that boot machines share the hosts one after
# another (and one sandbox cluster). Exit status 5 = the arguments selected no test in that half.
pytest_half() { pytest -p no:cacheprovider --durations=15 "$@" tests || [[ $? == 5 ]]; }
stage "pytest: without machines (2 workers)"
pytest_half -m "not hosts" -n 2 "$@"
stage "pytest: with machines"
pytest_half -m hosts "$@"
stage "done"
