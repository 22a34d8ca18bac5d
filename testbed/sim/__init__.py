"""Packet-level discrete-event simulator of the dumbbell testbed (the `sim` provider engine)."""

from l4stb.sim import compiled as _compiled

_compiled.install()  # before any hot module is imported: the compiled build when valid, else the sources
