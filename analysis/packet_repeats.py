"""Read data/packets.parquet one repeat at a time, so a consumer's memory follows the largest repeat, not the run.

The parse step writes the repeats in ascending order (row groups may straddle two), so the ``repeat`` column
alone (2 bytes a row) says where each repeat's rows lie; a repeat is then read from the row groups that hold it
and handed over as a DataFrame converted the way ``pandas.read_parquet`` converts the whole file. A file whose
repeats are not in ascending blocks (not written by the parse step) is read whole and split, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def release_arrow_memory() -> None:
    """Hand the pages Arrow's allocator kept from freed tables back to the system. Its pool (mimalloc or jemalloc)
    keeps them for reuse, so after each repeat the resident set would stay at the largest repeat's tables plus
    whatever the consumer holds; a consumer of one repeat at a time calls this between repeats
    (``MemoryPool::ReleaseUnused``, "return unused memory to the OS", apache/arrow cpp/src/arrow/memory_pool.h)."""
    pa.default_memory_pool().release_unused()


@dataclass(frozen=True)
class RepeatRows:
    """Where one repeat's rows lie in the file: rows ``[start, stop)``."""

    repeat: int
    start: int
    stop: int


class PacketRepeats:
    """The repeats of one packets.parquet, iterable one DataFrame at a time (only the ``columns`` asked for)."""

    def __init__(self, path: Path, columns: Sequence[str]):
        self.path = Path(path)
        self._file = pq.ParquetFile(self.path)
        names = set(self._file.schema_arrow.names)
        self.columns = [c for c in columns if c in names]
        rep = self._file.read(columns=["repeat"]).column("repeat").to_numpy()
        starts = np.flatnonzero(np.diff(rep)) + 1 if len(rep) else np.empty(0, np.int64)
        bounds = np.concatenate(([0], starts, [len(rep)])) if len(rep) else np.empty(0, np.int64)
        ids = rep[bounds[:-1]] if len(rep) else rep
        self.in_blocks = bool(len(ids) == 0 or np.all(np.diff(ids.astype(np.int64)) > 0))
        self.rows = [RepeatRows(int(r), int(a), int(b)) for r, a, b in zip(ids, bounds[:-1], bounds[1:])]
        md = self._file.metadata
        counts = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        self._rg_start = np.concatenate(([0], np.cumsum(counts)))

    @property
    def repeat_ids(self) -> list[int]:
        return sorted({r.repeat for r in self.rows})

    def __iter__(self) -> Iterator[pd.DataFrame]:
        """Each repeat's rows in ascending repeat order."""
        if not self.in_blocks:
            whole = self._file.read(columns=self.columns).to_pandas()
            for _, g in whole.groupby("repeat", sort=True, observed=True):
                yield g
            return
        for table in self.tables():
            yield table.to_pandas(split_blocks=True, self_destruct=True)
            del table
            release_arrow_memory()  # the consumer has dropped the previous repeat when it asks for the next

    def frame(self, repeat: int) -> pd.DataFrame:
        """One repeat's rows, converted as :meth:`__iter__` converts them (empty when the file has none)."""
        if not self.in_blocks:
            whole = self._file.read(columns=self.columns).to_pandas()
            return whole[whole["repeat"] == repeat]
        for part in self.rows:
            if part.repeat == repeat:
                return self._read(part).to_pandas(split_blocks=True, self_destruct=True)
        return self._file.schema_arrow.empty_table().select(self.columns).to_pandas()

    def tables(self) -> Iterator[pa.Table]:
        """Arrow tables in file order: one per repeat, or the whole file in one when its repeats are not in
        ascending blocks."""
        if not self.in_blocks:
            yield self._file.read(columns=self.columns)
            return
        for part in self.rows:
            yield self._read(part)

    def _read(self, part: RepeatRows) -> pa.Table:
        first = int(np.searchsorted(self._rg_start, part.start, side="right")) - 1
        last = int(np.searchsorted(self._rg_start, part.stop, side="left")) - 1
        table = self._file.read_row_groups(list(range(first, last + 1)), columns=self.columns)
        return table.slice(part.start - int(self._rg_start[first]), part.stop - part.start)

    def column(self, name: str) -> np.ndarray:
        """One column of the whole file as numbers, in file order (for the small columns a layout needs, such as
        ``action``: a few bytes a row)."""
        return self._file.read(columns=[name]).column(name).to_numpy()

    def null_counts(self) -> dict[str, int]:
        """Missing values per column over the whole file, from the row groups' statistics where written."""
        md = self._file.metadata
        index = {md.schema.column(j).name: j for j in range(md.num_columns)}
        out: dict[str, int] = {}
        for name in self.columns:
            stats = [md.row_group(i).column(index[name]).statistics for i in range(md.num_row_groups)]
            if all(st is not None and st.has_null_count for st in stats):
                out[name] = sum(st.null_count for st in stats)
            else:
                out[name] = self._file.read(columns=[name]).column(name).null_count
        return out

    @property
    def num_rows(self) -> int:
        return int(self._rg_start[-1])
