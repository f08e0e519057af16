"""Resource providers of the emulator, one module each; importing a module registers its routes,
resource types and hooks (``registry.py``). ``load()`` imports every module here."""
from __future__ import annotations

import importlib
import pkgutil


def load() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}")
