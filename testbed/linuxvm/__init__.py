"""The real-Linux testbed: a Debian kernel booted under QEMU, its hosts network namespaces, and its captures turned into l4stb's artifacts."""
