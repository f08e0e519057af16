"""Offline stand-in for ansible-test's pip bootstrap script (get-pip-X.Y.py).

ansible-test creates each sanity virtualenv without pip and downloads get-pip from
ci-files.testing.ansible.com to bootstrap it; that host is unreachable from our machines and CI.
It looks in ~/.ansible/test/cache/get_pip_<version>.py first, so scripts/sanity.sh places this
file there. Same contract as get-pip: the arguments are pip install arguments (the pinned pip
version among them). We seed pip from the interpreter's bundled ensurepip wheel, then let that
pip install exactly what ansible-test asked for from the package index.
"""

import subprocess
import sys

# ensurepip runs in its own process: in-process it points PIP_CONFIG_FILE at /dev/null, which
# would hide the machine's pip configuration (index, CA bundle) from the install below.
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--upgrade", "--force-reinstall", *args]))
