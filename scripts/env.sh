# Source this file to work in the development tree: venv on PATH, collection on Ansible's path.
_hs_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$_hs_root/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$_hs_root/.cache/collections"
export PYTHONPATH="$_hs_root${PYTHONPATH:+:$PYTHONPATH}"
unset _hs_root
