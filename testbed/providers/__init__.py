"""Testbed providers: `sim` (embedded simulator, the default), `vagrant` (FreeBSD 14.1 VMs over SSH) and `qemu` (a real Linux kernel)."""

from __future__ import annotations

from importlib import import_module

from l4stb.errors import L4stbError

PROVIDERS = {"sim": "l4stb.providers.sim:SimProvider", "vagrant": "l4stb.providers.freebsd.vagrant:VagrantProvider",
             "qemu": "l4stb.providers.qemu:QemuProvider"}


def get_provider(name: str, workspace):
    """Instantiate a provider by name (imported lazily: the sim needs no SSH libraries, and vice versa)."""
    if name not in PROVIDERS:
        raise L4stbError(f"unknown provider '{name}'; use one of: {', '.join(PROVIDERS)}.")
    module, cls = PROVIDERS[name].split(":")
    return getattr(import_module(module), cls)(workspace)
