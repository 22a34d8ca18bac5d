"""C source of the DualPI2 dummynet scheduler KLD, shipped as package data."""
