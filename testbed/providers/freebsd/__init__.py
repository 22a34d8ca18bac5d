"""The FreeBSD wing: everything that drives the real testbed of FreeBSD 14.1 VMs, in one place.

Read it top down, as one vagrant repeat runs:

* ``vagrant.py``: the `vagrant` provider (VMs up and down, the repeats, the self-check's evidence);
* ``firstboot.py``: waiting out the box's first boot before provisioning;
* ``plans.py``: the shell plan of ``up`` and of each repeat, rendered from the templates in playbooks/templates
  (which stay there: they are package data, not code);
* ``check_steps.py``: the steps ``l4stb check`` adds around a repeat's plan, and reading their output back;
* ``remote.py``: the SSH layer (Fabric) that runs a plan's steps on a VM and copies files;
* ``facts.py``: every FreeBSD fact the templates rely on (paths, sysctls, rc variables, commands, limits), each
  with the FreeBSD source it was checked against.

Nothing below the providers imports this package; the orchestration (``l4stb.check``) reads its check steps.
"""
