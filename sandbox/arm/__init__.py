"""Offline Azure Resource Manager emulator (see README section in sandbox/arm/server.py docstring)."""
