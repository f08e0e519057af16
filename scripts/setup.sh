#!/usr/bin/env bash
# Installs everything the sandbox and the tests need on a Debian 12 machine (run as root):
# Debian packages, a Python virtualenv with the dev requirements, and the collection linked
# where Ansible looks for it. Safe to run again: it skips what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Debian packages: systemd-container (systemd-nspawn) and debootstrap for the local hosts,
# iproute2/nftables for their networks, gnupg for release signatures, python3-venv for .venv.
# HASHISTACK_APT=always (CI) installs them unconditionally; otherwise only what is missing.
mapfile -t APT_PACKAGES < <(grep -v -e '^#' -e '^$' scripts/debian-packages.txt)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${HASHISTACK_APT:-} == always ]]; then
  missing=("${APT_PACKAGES[@]}")
fi
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # the tools the sandbox cannot run without, checked so a broken install fails here, not in a test
  for tool in systemd-nspawn debootstrap ip nft gpg ssh; do
    command -v "$tool" >/dev/null || { echo "setup: $tool missing after apt-get install" >&2; exit 1; }
  done
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "setup: installing Python requirements into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt
  echo "$want" >"$stamp"
fi

# Ansible finds the collection as ansible_collections/hashistack/azure under this path.
mkdir -p .cache/collections/ansible_collections/hashistack
ln -sfn "$ROOT" .cache/collections/ansible_collections/hashistack/azure
echo "setup: ready (activate with: source scripts/env.sh)"
