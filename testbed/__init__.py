"""l4stb: the L4S-LLM experiment end to end, on FreeBSD VMs or an embedded packet-level simulator."""

__version__ = "0.1.0"
