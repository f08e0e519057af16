"""Make ansible_collections.hashistack.azure importable for the plugin unit tests (modules, module_utils, filters,
inventory): Ansible's collection loader must be set up before any of them imports the collection."""

from __future__ import annotations

import os
import warnings

from ansible.plugins.loader import init_plugin_loader

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # another conftest may have configured the loader already
    init_plugin_loader([os.path.join(ROOT, '.cache', 'collections')])
