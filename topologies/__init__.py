"""Topology files (YAML) shipped with l4stb: hosts, interfaces, addresses and the bottleneck link."""
