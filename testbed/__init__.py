"""l4stb: the L4S-LLM experiment end to end, on FreeBSD VMs or an embedded packet-level simulator.

For notebooks: ``l4stb.load_run(run_id=None, workdir=None)`` returns a run's ``packets`` and ``flows``
(pandas DataFrames, columns in docs/data.md) and its ``summary`` (the JSON of `l4stb summary --json`).
"""

__version__ = "0.1.0"


def load_run(run_id: str | None = None, workdir=None):
    """A parsed run (default: the latest in ``workdir``, default $L4STB_WORKDIR or ./l4stb-work); see docs/data.md."""
    from l4stb.analysis.export import load_run as _load

    return _load(run_id, workdir)
