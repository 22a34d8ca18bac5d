"""Testbed providers: `sim` (embedded simulator, the default) and `vagrant` (FreeBSD 14.1 VMs over SSH)."""

from __future__ import annotations

from importlib import import_module

from l4stb.errors import L4stbError

PROVIDERS = {"sim": "l4stb.providers.sim:SimProvider", "vagrant": "l4stb.providers.vagrant:VagrantProvider"}


def get_provider(name: str, workspace):
    """Instantiate a provider by name (imported lazily: the sim needs no SSH libraries, and vice versa)."""
    if name not in PROVIDERS:
        raise L4stbError(f"unknown provider '{name}'; use one of: {', '.join(PROVIDERS)}.")
    module, cls = PROVIDERS[name].split(":")
    return getattr(import_module(module), cls)(workspace)
