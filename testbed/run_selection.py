"""Which runs a command acts on: `--run` (repeatable), `--sweep ID` (its runs) or `--all`, with one error for each mistake."""

from __future__ import annotations

from l4stb.errors import L4stbError
from l4stb.sweep import load_sweep
from l4stb.workspace import Workspace


def select_runs(ws: Workspace, run_ids, sweep_id: str | None, *, all_runs: bool = False,
                kinds: tuple[str, ...] = ("run", "imported")) -> list[str]:
    """Run ids in order. ``sweep_id`` "" means the latest sweep; no selection at all means the latest run."""
    chosen = sum(bool(x) for x in (run_ids, sweep_id is not None, all_runs))
    if chosen > 1:
        raise L4stbError("give one of --run, --sweep and --all, not several.")
    if sweep_id is not None:
        record = load_sweep(ws, sweep_id or None)
        ids = [c.run_id for c in record.combinations if c.run_id]
        if not ids:
            raise L4stbError(f"sweep {record.sweep_id} has no runs yet: run it with `l4stb run --resume --sweep ...`.")
        return ids
    if all_runs:
        ids = ws.run_ids(kinds=kinds)
        if not ids:
            ws.resolve_run(None)  # the usual "no runs" error
        return ids
    if run_ids:
        return [ws.resolve_run(r) for r in run_ids]
    return [ws.resolve_run(None)]
