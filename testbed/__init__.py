"""l4stb: the L4S-LLM experiment end to end, on FreeBSD VMs or an embedded packet-level simulator.

For notebooks: ``l4stb.load_run(run_id=None, workdir=None)`` returns a run's ``packets`` and ``flows``
(pandas DataFrames, columns in docs/data.md) and its ``summary`` (the JSON of `l4stb summary --json`);
``l4stb.load_sweep(sweep_id=None, workdir=None)`` returns a sweep's table (one row per combination) and its runs.
"""

__version__ = "0.1.0"


def load_run(run_id: str | None = None, workdir=None):
    """A parsed run (default: the latest in ``workdir``, default $L4STB_WORKDIR or ./l4stb-work); see docs/data.md."""
    # lazy: loads pandas, slow to import
    from l4stb.analysis.export import load_run as _load

    return _load(run_id, workdir)


def load_sweep(sweep_id: str | None = None, workdir=None):
    """A sweep (default: the latest in ``workdir``): ``.table`` (a DataFrame, one row per combination: the swept
    values, the run id, and each metric with its interval), ``.json`` (what `l4stb summary --sweep --json` prints)
    and ``.runs`` (the run ids, for :func:`load_run`)."""
    # lazy: loads pandas, slow to import
    from l4stb.analysis.export import load_sweep as _load

    return _load(sweep_id, workdir)
