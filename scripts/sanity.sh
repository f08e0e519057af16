#!/usr/bin/env bash
# ansible-test sanity on exactly what ships: build the collection artifact (galaxy.yml's
# build_ignore drops the sandbox, tests and dev files), unpack it under an
# ansible_collections/hashistack/azure path and test it there. There is no ignore file.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/env.sh

# ansible-test bootstraps pip in each sanity virtualenv with a script it downloads from a host
# our machines cannot reach; it uses a cached copy first, so put our ensurepip-based one there.
pip_version=$(python - <<'PY'
import ansible_test._internal.python_requirements as r, inspect, re
print(re.search(r"pip='([0-9.]+)'", inspect.getsource(r.get_venv_packages)).group(1))
PY
)
mkdir -p ~/.ansible/test/cache
cp scripts/lib/get_pip_offline.py ~/.ansible/test/cache/get_pip_${pip_version//./_}.py

work=$ROOT/.cache/sanity
rm -rf "$work"
mkdir -p "$work/build" "$work/ansible_collections/hashistack/azure"
ansible-galaxy collection build --force --output-path "$work/build" >/dev/null
tar -xzf "$work"/build/hashistack-azure-*.tar.gz -C "$work/ansible_collections/hashistack/azure"
cd "$work/ansible_collections/hashistack/azure"
# its own git repository: otherwise ansible-test would list files through the enclosing
# checkout, where .cache/ is ignored, and find nothing to test
printf 'tests/output/\n' >.gitignore
git init -q . && git add -A && git -c user.name=sanity -c user.email=sanity@localhost commit -qm artifact
ansible-test sanity --venv --python 3.11 --color no "$@" > "$work/sanity.log" 2>&1 || {
  grep -v -E "is ignored: it is neither|^(Collecting|Downloading|Installing|Successfully|Requirement|Looking in|Processing|  )" "$work/sanity.log"
  exit 1
}
grep -E "^(Running sanity test|WARNING: |FATAL|ERROR)" "$work/sanity.log" | grep -v "is ignored" || true
echo "sanity: all tests passed"
