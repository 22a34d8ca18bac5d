"""Packet-level discrete-event simulator of the dumbbell testbed (the `sim` provider engine)."""
