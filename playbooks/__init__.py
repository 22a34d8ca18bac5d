"""Scenario files (YAML) shipped with l4stb; templates/ holds the FreeBSD shell steps."""
