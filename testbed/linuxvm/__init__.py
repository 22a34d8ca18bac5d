"""The real-Linux testbed (qemu provider): what runs in the VM and what reads its packet captures and qdisc samples."""
