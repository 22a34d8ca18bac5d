"""Jinja2 templates of the shell steps run on FreeBSD hosts."""
