"""Network metrics of a run: queue delay, throughput, utilisation, fairness, actions and CIs (used by summary and report).

Inputs are the parser's tables (docs/data.md): ``data/packets.parquet`` (one row per router packet
decision) and ``data/flows.parquet`` (iperf3 intervals per stream). Outputs are typed records. What each
number measures:

* **Queue delay** (:func:`delay_samples_ms`, :class:`DelayPercentiles`): the router's logged
  ``current_queue_delay`` (µs, shown in ms) of every decision that let the packet through, i.e. action
  *forward* or *mark*, split by queue (``queue`` column, C or L). Under l4stb's DualPI2 (module and
  simulator) that is the sojourn time of the packet being dequeued, so the samples are per packet, not
  per unit of time. Under the paper's PIE-based ``l4s`` scheduler it is PIE's ``current_qdelay`` estimate,
  quantised to the kernel tick. Drops are excluded: a dropped packet never leaves the queue. Percentiles
  are linear-interpolated (numpy default) over the pooled samples.
* **ECDF** (:func:`ecdf`): the true empirical CDF, a step function over the sorted samples with
  y = i/n at the i-th smallest sample (1-based). The original plots' "CDF" was
  ``cumsum(sorted)/sum(sorted)``, a share of the *total delay*, which is not a distribution function.
* **Flow classes** (:mod:`l4stb.analysis.traffic`): bulk, short (``size``) and unresponsive (``cc: udp``).
  Throughput per CC, Jain's index and the scalable/classic ratio are over bulk flows only; short flows get
  completion times and UDP flows their own rows (:mod:`l4stb.analysis.class_metrics`).
* **Per-flow throughput** (:func:`flow_throughputs`): from the iperf3 sender intervals of one stream. A bulk
  flow's is ``8 * sum(bytes) / sum(interval seconds)`` over the *steady-state* intervals, i.e. those that start
  at or after ``warmup_s`` (default 1 s) into the flow. The first 1-s interval holds the TCP handshake and slow
  start, before the AQM controls the queue, so including it would mix start-up with the steady state the AQM
  is judged on. Weighting by interval length makes iperf3's short last interval count for what it is. A short
  or unresponsive flow, and any flow that lasts under twice the warm-up, is measured over its own lifetime (all
  its bytes over the time from its first interval's start to its last one's end): one interval of a short flow
  holds a single 128 KiB write over a few milliseconds, which is no rate.
* **Per-CC throughput** (:class:`CcThroughput`): the mean per-flow and the total throughput of the bulk flows
  of each congestion control *and sender stack* in one repeat: DCTCP from a FreeBSD and from a Linux client are
  two rows (:mod:`l4stb.analysis.senders` names them).
* **Capacity** (:mod:`l4stb.analysis.capacity`): what the bottleneck offered over time, its ``rate_schedule``
  or trace, or the fixed rate.
* **Utilisation** (:func:`window_utilization`, the headline): the bytes every iperf3 sender reported (all
  classes) in the intervals after the warm-up, placed at the flows' real start times, over the capacity offered
  from the first of those intervals to the last, clipped to [0, 1]. iperf3 counts bytes the *sender* wrote, so
  a run at full load can read a little above 1 (retransmissions, bytes still in flight at the end); the
  unclipped ratio is kept in ``RepeatMetrics.utilization_unclipped``. Over time
  (:func:`utilization_timeseries`): the iperf3 bytes of all flows per bin over the capacity offered in that
  bin. iperf3 counts a sender's bytes in whole socket writes (128 KiB by default, ~1 Mbit), so per-second
  values of slow flows are coarse; the router-side view (:func:`link_utilization_timeseries`,
  :func:`link_utilization`) counts the bytes of every forwarded or marked packet in the log and is exact
  where the log carries timestamps.
* **Jain fairness** (:func:`jain_index`): ``(Σx)²/(n·Σx²)`` over the bulk flows' steady-state throughputs of
  one repeat (any CC); 1 means equal shares, 1/n means one flow takes everything. When the bulk flows together
  carried under :data:`NEAR_ZERO_SHARE` of the capacity offered there is nothing to share: the index is NaN and
  :attr:`RepeatMetrics.bulk_na` says why (shown as "n/a"), never 1.0. The run's value is the mean over repeats.
* **Drops and marks** (:class:`QueueStats`): decisions per queue and per action class
  (forward / drop / mark) with their shares of the queue's decisions.
* **Confidence intervals** (:func:`confidence_interval`): the two-sided 95% Student-t interval of the
  mean of the per-repeat values, ``mean ± t(0.975, n-1)·s/√n``, clipped to the metric's range (a share
  stays in [0, 1], a throughput or a delay above 0). With fewer than :data:`MIN_CI_REPEATS` repeats there is no
  interval (``low``/``high`` are None) and every table says so: two near-identical repeats give a t-interval
  of "± 0.00" that no one should trust.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from l4stb.analysis.capacity import Capacity
from l4stb.analysis.timebase import interval_times_s, router_offsets_s
from l4stb.analysis.traffic import BULK, flow_class_of, flow_start_of

QUEUES: tuple[str, ...] = ("C", "L")
ACTION_FORWARD, ACTION_DROP, ACTION_MARK = 0, 1, 2
"""Codes of the ``action`` column of packets.parquet (the log's 1/2/3 shifted to 0/1/2)."""
ACTION_NAMES: tuple[str, ...] = ("forward", "drop", "mark")
PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)
WARMUP_S = 1.0
"""Seconds at the start of each flow left out of its steady-state throughput (see the module docstring)."""
NEAR_ZERO_SHARE = 0.01
"""Bulk flows that carry less than this share of the capacity offered have no throughput to share: Jain's index and
the scalable/classic ratio are undefined (n/a), not 1.0 or a ratio of noise."""
NEAR_ZERO_MBPS = 0.01
"""The same floor in Mbit/s when the capacity is unknown."""
CI_LEVEL = 0.95
MIN_CI_REPEATS = 3
"""The fewest per-repeat values an interval is given for (the closed-loop verdicts ask the same)."""
UNIT_RANGE = (0.0, 1.0)
"""The range of a share (utilisation, drop and mark rates, Jain's index)."""
NON_NEGATIVE = (0.0, None)
"""The range of a throughput, a delay or a ratio of throughputs."""

PACKET_COLUMNS: tuple[str, ...] = ("repeat", "queue", "action", "current_queue_delay", "packet_length", "t_s", "flags",
                                   "measurement_start_time", "flow_id", "queue_length", "accumulated_probability")
"""The packets.parquet columns the metrics and the AQM-state views read (the file has more)."""
FLOW_COLUMNS: tuple[str, ...] = ("repeat", "host", "cc", "file", "group", "connection", "stream", "start_s", "end_s",
                                 "bytes", "throughput_mbps", "retransmits", "rtt_us", "snd_cwnd", "omitted")
"""The flows.parquet columns the metrics and the figures read (snd_cwnd and rtt_us: the over-time view's panels)."""


# ---------------------------------------------------------------------------------------------
# Confidence intervals
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """Mean of per-repeat values with its t-based CI; ``low``/``high`` are None when n < :data:`MIN_CI_REPEATS`."""

    mean: float
    low: float | None
    high: float | None
    n: int
    level: float = CI_LEVEL

    @property
    def has_ci(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def half_width(self) -> float | None:
        return None if not self.has_ci else (self.high - self.low) / 2  # type: ignore[operator]

    def to_json(self) -> dict:
        return {"mean": _num(self.mean), "low": _num(self.low), "high": _num(self.high), "n": self.n,
                "level": self.level}

    def format(self, digits: int = 2, scale: float = 1.0, unit: str = "") -> str:
        """'12.34 ± 0.56 (n=5)', '12.34 [12.0, 12.9] (n=5)' when the interval was clipped to the metric's range,
        '12.34 (n=1, no CI)', '12.34 (n=2, no CI below 3 repeats)', or '—' when there is no value; ``unit`` goes
        after the number."""
        if self.n == 0 or not math.isfinite(self.mean):
            return "—"
        u = f" {unit}" if unit else ""
        value = f"{self.mean * scale:.{digits}f}"
        if not self.has_ci:
            why = "no CI" if self.n == 1 else f"no CI below {MIN_CI_REPEATS} repeats"
            return f"{value}{u} (n={self.n}, {why})"
        lo, hi = self.low * scale, self.high * scale  # type: ignore[operator]
        if not math.isclose(self.mean * scale - lo, hi - self.mean * scale, rel_tol=1e-9, abs_tol=1e-12):
            return f"{value} [{lo:.{digits}f}, {hi:.{digits}f}]{u} (n={self.n})"
        return f"{value} ± {self.half_width * scale:.{digits}f}{u} (n={self.n})"  # type: ignore[operator]


def confidence_interval(values: Iterable[float], level: float = CI_LEVEL,
                        bounds: tuple[float | None, float | None] = (None, None)) -> Interval:
    """Two-sided Student-t CI of the mean of ``values`` (one value per repeat; NaNs are left out), clipped to
    ``bounds`` (the metric's range, e.g. :data:`UNIT_RANGE`); no interval below :data:`MIN_CI_REPEATS` values."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Interval(float("nan"), None, None, 0, level)
    mean = float(x.mean())
    if n < MIN_CI_REPEATS:
        return Interval(mean, None, None, n, level)
    from scipy import stats  # scipy comes with scikit-learn, a dependency of l4stb

    sem = float(x.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + level / 2, df=n - 1)) * sem
    lo, hi = mean - half, mean + half
    if bounds[0] is not None:
        lo = max(lo, bounds[0])
    if bounds[1] is not None:
        hi = min(hi, bounds[1])
    return Interval(mean, lo, hi, n, level)


# ---------------------------------------------------------------------------------------------
# Queue delay
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ecdf:
    """A true empirical CDF: ``y[i] = (i+1)/n`` is the fraction of samples ≤ ``x[i]`` (x sorted ascending)."""

    x: np.ndarray
    y: np.ndarray

    @property
    def n(self) -> int:
        return len(self.x)

    def at(self, value: float) -> float:
        """F(value): the fraction of samples ≤ value."""
        if self.n == 0:
            return float("nan")
        return float(np.searchsorted(self.x, value, side="right")) / self.n

    def thinned(self, max_points: int = 4000) -> "Ecdf":
        """At most ``max_points`` points of the same step function (for plotting); always keeps both ends."""
        if self.n <= max_points:
            return self
        idx = np.unique(np.linspace(0, self.n - 1, max_points).round().astype(np.int64))
        return Ecdf(self.x[idx], self.y[idx])


def ecdf(samples: Sequence[float] | np.ndarray) -> Ecdf:
    """The ECDF of ``samples`` (NaNs dropped). Not a cumulative sum: every sample weighs 1/n."""
    x = np.asarray(samples, dtype=float)
    x = np.sort(x[np.isfinite(x)])
    n = len(x)
    return Ecdf(x, np.arange(1, n + 1, dtype=float) / n if n else np.empty(0))


@dataclass(frozen=True)
class DelayPercentiles:
    """Queue delay percentiles in ms over ``n`` packet samples (NaN when n = 0)."""

    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    n: int

    def to_json(self) -> dict:
        return {"p50": _num(self.p50_ms), "p90": _num(self.p90_ms), "p95": _num(self.p95_ms),
                "p99": _num(self.p99_ms)}

    def get(self, p: int) -> float:
        return getattr(self, f"p{p}_ms")


def delay_percentiles(samples_ms: Sequence[float] | np.ndarray) -> DelayPercentiles:
    x = np.asarray(samples_ms, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        nan = float("nan")
        return DelayPercentiles(nan, nan, nan, nan, 0)
    p = np.percentile(x, PERCENTILES)
    return DelayPercentiles(*(float(v) for v in p), n=len(x))


def delay_samples_ms(packets: pd.DataFrame, queue: str) -> np.ndarray:
    """Queue delay in ms of the packets of ``queue`` that were forwarded or marked (drops never leave the queue)."""
    if packets.empty:
        return np.empty(0)
    sel = _queue_mask(packets, queue) & (packets["action"].to_numpy() != ACTION_DROP)
    return packets["current_queue_delay"].to_numpy()[sel].astype(float) / 1000.0


def _queue_mask(packets: pd.DataFrame, queue: str) -> np.ndarray:
    """Rows of ``queue`` (compares categorical codes, not strings: fast on millions of rows)."""
    return (packets["queue"] == queue).to_numpy(dtype=bool)


@dataclass(frozen=True)
class DelaySamples:
    """Per-queue queue-delay samples in ms of one series (a run, an AQM, a policy): the input of delay figures."""

    by_queue: dict[str, np.ndarray]

    @classmethod
    def from_packets(cls, packets: pd.DataFrame) -> "DelaySamples":
        return cls({q: delay_samples_ms(packets, q) for q in QUEUES})


# ---------------------------------------------------------------------------------------------
# Actions per queue
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueStats:
    """One queue's decisions: how many, how they ended, and the delay of the packets that got through."""

    queue: str
    packets: int
    forwarded: int
    drops: int
    marks: int
    delay: DelayPercentiles
    sample_every: int = 1
    """The router logged every N-th decision (``logging.sample_every``): the counts above are the logged counts
    times N, an estimate; fractions and delay percentiles are of the logged decisions."""

    @property
    def drop_fraction(self) -> float:
        return self.drops / self.packets if self.packets else float("nan")

    @property
    def mark_fraction(self) -> float:
        return self.marks / self.packets if self.packets else float("nan")

    @property
    def forward_fraction(self) -> float:
        return self.forwarded / self.packets if self.packets else float("nan")

    def count(self, action: str) -> int:
        return {"forward": self.forwarded, "drop": self.drops, "mark": self.marks}[action]

    def to_json(self) -> dict:
        out = {"delay_ms": self.delay.to_json(), "packets": self.packets, "drops": self.drops, "marks": self.marks}
        return {**out, "sample_every": self.sample_every} if self.sample_every > 1 else out


class QueueStatsAccumulator:
    """Queue stats pooled over packets given part by part (one repeat at a time): counts summed, delay percentiles
    over every part's samples, exactly what :func:`queue_stats` of all parts at once gives.

    ``sample_every`` N: the log holds every N-th decision (systematic sampling, ``logging.sample_every``), so each
    count is N times the logged count."""

    def __init__(self, sample_every: int = 1) -> None:
        self._counts = {q: [0, 0, 0, 0] for q in QUEUES}  # packets, forwarded, drops, marks
        self._samples: dict[str, list[np.ndarray]] = {q: [] for q in QUEUES}
        self.sample_every = int(sample_every)

    def add(self, packets: pd.DataFrame) -> None:
        if packets.empty:
            return
        actions = packets["action"].to_numpy()
        for q in QUEUES:
            sel = _queue_mask(packets, q)
            a = actions[sel]
            c = self._counts[q]
            c[0] += int(sel.sum())
            c[1] += int((a == ACTION_FORWARD).sum())
            c[2] += int((a == ACTION_DROP).sum())
            c[3] += int((a == ACTION_MARK).sum())
            self._samples[q].append(delay_samples_ms(packets, q))

    def result(self) -> dict[str, QueueStats]:
        out: dict[str, QueueStats] = {}
        n_every = self.sample_every
        for q in QUEUES:
            parts = self._samples[q]
            samples = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0)
            n, fwd, drops, marks = self._counts[q]
            out[q] = QueueStats(queue=q, packets=n_every * n, forwarded=n_every * fwd, drops=n_every * drops,
                                marks=n_every * marks, delay=delay_percentiles(samples), sample_every=n_every)
        return out


def queue_stats(packets: pd.DataFrame, sample_every: int = 1) -> dict[str, QueueStats]:
    """Stats of queues C and L (both always present; a queue with no decisions has zeros and NaN delays);
    ``sample_every`` as in :class:`QueueStatsAccumulator`."""
    acc = QueueStatsAccumulator(sample_every)
    acc.add(packets)
    return acc.result()


# ---------------------------------------------------------------------------------------------
# Throughput, utilisation, fairness
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowKey:
    """A flow across repeats: the same iperf3 connection and stream of the same host and CC."""

    host: str
    cc: str
    connection: int
    stream: int
    group: int = 0
    """The scenario's flow group (one iperf3 command line); 0 when the parser does not say."""
    cc_label: str = ""
    """The CC with its sender's stack and transport (:func:`l4stb.analysis.senders.cc_label`); "" when unknown."""

    @property
    def cc_name(self) -> str:
        """The CC as tables and figures name it: its label, or the bare CC when the flows were not labelled."""
        return self.cc_label or self.cc

    @property
    def label(self) -> str:
        return f"{self.host} {self.cc_name} g{self.group} c{self.connection}/s{self.stream}"

    def sort_key(self) -> tuple:
        return (self.host, self.group, self.cc, self.connection, self.stream)


@dataclass(frozen=True)
class FlowThroughput:
    """One stream's steady-state throughput in one repeat."""

    repeat: int
    key: FlowKey
    throughput_mbps: float
    seconds: float
    """Length of the steady-state window the throughput is averaged over."""
    retransmits: int
    mean_rtt_ms: float
    flow_class: str = BULK
    """bulk, short or unresponsive (:mod:`l4stb.analysis.traffic`)."""
    start_s: float = 0.0
    """When the flow started, seconds after the repeat's start (0 when unknown)."""
    lifetime_s: float = float("nan")
    """From the start of its first iperf3 interval to the end of its last."""
    bytes: int = 0
    """Every byte its iperf3 sender reported (all intervals)."""

    @property
    def cc(self) -> str:
        return self.key.cc

    @property
    def cc_name(self) -> str:
        """The CC with its stack and transport (what per-CC tables group by)."""
        return self.key.cc_name

    @property
    def bulk(self) -> bool:
        return self.flow_class == BULK


def flow_throughputs(flows: pd.DataFrame, warmup_s: float = WARMUP_S) -> list[FlowThroughput]:
    """Throughput of each stream in each repeat (see the module docstring for the definition).

    A bulk flow's is its steady state: bytes over interval time after ``warmup_s``. A short or unresponsive
    flow, and any flow that lasts under twice the warm-up, is measured over its own lifetime (all its bytes
    over the time from its first interval's start to its last one's end), never from one interval."""
    if flows.empty:
        return []
    df = flows.copy()
    if "omitted" in df:  # iperf3 -O intervals are excluded by iperf3 itself from its totals
        df = df[~df["omitted"].fillna(False).astype(bool)]
    df["_class"] = flow_class_of(df)
    df["_t0"] = flow_start_of(df)
    df["_dur"] = (df["end_s"] - df["start_s"]).clip(lower=0.0)
    df["_label"] = df["cc_label"].astype(str) if "cc_label" in df else ""
    out: list[FlowThroughput] = []
    for c in ("file", "group", "connection", "stream"):
        if c not in df:  # tolerate a parser that leaves one out: one stream per file/connection
            df[c] = 0
    keys = ["repeat", "host", "cc", "file", "group", "connection", "stream"]
    for (repeat, host, cc, _file, group, conn, stream), g in df.groupby(keys, sort=True, observed=True):
        klass = str(g["_class"].iloc[0])
        cc_label = str(g["_label"].iloc[0])
        lifetime = float(g["end_s"].max() - g["start_s"].min())
        total = int(g["bytes"].sum())
        if klass != BULK or lifetime < 2 * warmup_s:
            steady = g
            seconds = lifetime
            mbps = total * 8 / seconds / 1e6 if seconds > 0 else float("nan")
        else:
            steady = g[g["start_s"] >= warmup_s - 1e-9]
            if steady.empty or steady["_dur"].sum() <= 0:
                steady = g
            seconds = float(steady["_dur"].sum())
            mbps = float(steady["bytes"].sum()) * 8 / seconds / 1e6 if seconds > 0 else float("nan")
        rtt = steady["rtt_us"].to_numpy(dtype=float) if "rtt_us" in steady else np.empty(0)
        rtt = rtt[np.isfinite(rtt) & (rtt > 0)]
        retrans = int(steady["retransmits"].fillna(0).clip(lower=0).sum()) if "retransmits" in steady else 0
        out.append(FlowThroughput(int(repeat), FlowKey(str(host), str(cc), int(conn), int(stream), int(group), cc_label),
                                  mbps,
                                  seconds, retrans, float(rtt.mean()) / 1000 if len(rtt) else float("nan"),
                                  klass, float(g["_t0"].iloc[0]), lifetime, total))
    return out


def bulk_na_reason(flows: Sequence[FlowThroughput], capacity_bps: float) -> str:
    """Why Jain's index and the scalable/classic ratio are undefined for these flows ("" when they are defined):
    no bulk flows, or bulk flows that together carried (next to) nothing."""
    bulk = [f.throughput_mbps for f in flows if f.bulk and math.isfinite(f.throughput_mbps)]
    if not bulk:
        return "no bulk flow"
    total = float(sum(bulk))
    if math.isfinite(capacity_bps) and capacity_bps > 0:
        if total * 1e6 < NEAR_ZERO_SHARE * capacity_bps:
            return (f"bulk flows carried {total:.3f} Mbit/s, under {100 * NEAR_ZERO_SHARE:g} % of the "
                    f"{capacity_bps / 1e6:.3g} Mbit/s offered: no throughput to share")
    elif total < NEAR_ZERO_MBPS:
        return f"bulk flows carried {total:.3f} Mbit/s: no throughput to share"
    return ""


def jain_index(values: Iterable[float]) -> float:
    """Jain's fairness index (Σx)²/(n·Σx²); NaN for no flows and when every value is 0 (nothing was shared, so
    "all equally starved" is not fairness: see :func:`bulk_na_reason`)."""
    x = np.asarray(list(values), dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan")
    sq = float((x * x).sum())
    if sq == 0:
        return float("nan")
    return float(x.sum() ** 2 / (len(x) * sq))


def utilization(throughputs_mbps: Iterable[float], rate_bps: float, clip: bool = True) -> float:
    """Sum of throughputs over the bottleneck rate (0–1 when ``clip``)."""
    x = np.asarray(list(throughputs_mbps), dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0 or not rate_bps > 0:
        return float("nan")
    u = float(x.sum()) * 1e6 / rate_bps
    return min(max(u, 0.0), 1.0) if clip else u


@dataclass(frozen=True)
class CcThroughput:
    """The flows of one congestion control from one sender stack in one repeat (or averaged over repeats)."""

    cc: str
    flows: int
    mean_per_flow_mbps: float
    total_mbps: float
    label: str = ""
    """The CC with its stack and transport (the key of :attr:`RepeatMetrics.cc`); "" when the flows were not
    labelled."""


def cc_throughputs(flows: Sequence[FlowThroughput]) -> dict[str, CcThroughput]:
    """Per CC and sender stack (:attr:`FlowKey.cc_name`): dctcp from FreeBSD and from Linux are two entries."""
    by_cc: dict[str, list[FlowThroughput]] = {}
    for f in flows:
        by_cc.setdefault(f.cc_name, []).append(f)
    return {name: CcThroughput(fl[0].cc, len(fl), float(np.nanmean([f.throughput_mbps for f in fl])),
                               float(np.nansum([f.throughput_mbps for f in fl])), fl[0].key.cc_label)
            for name, fl in sorted(by_cc.items())}


@dataclass(frozen=True)
class UtilizationSeries:
    """Utilisation over time of one repeat: bin centres in s and the fraction of the capacity offered in each bin."""

    repeat: int
    t_s: np.ndarray
    utilization: np.ndarray
    """Unclipped: sender-side byte counts can read slightly above 1."""


def as_capacity(rate: "float | Capacity") -> Capacity:
    """A :class:`~l4stb.analysis.capacity.Capacity` from itself or from a fixed rate in bit/s."""
    return rate if isinstance(rate, Capacity) else Capacity.fixed(float(rate) if rate else float("nan"))


def _absolute_intervals(flows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each iperf3 interval's start and end in seconds after the repeat's start, and its bytes."""
    start, end = interval_times_s(flows)
    return start, end, flows["bytes"].to_numpy(dtype=float)


def window_utilization(flows: pd.DataFrame, capacity: "float | Capacity", warmup_s: float = WARMUP_S,
                       clip: bool = True) -> float:
    """One repeat's utilisation: the bytes every iperf3 sender (any class) reported in the intervals that lie
    after the warm-up, over the capacity offered from the first of those intervals' start to the last one's end.
    Intervals are placed at their flows' real start times (``flow_start_s``). 0-1 when ``clip``."""
    cap = as_capacity(capacity)
    if flows.empty or not cap.known:
        return float("nan")
    df = flows[~flows["omitted"].fillna(False).astype(bool)] if "omitted" in flows else flows
    start, end, nbytes = _absolute_intervals(df)
    keep = (start + end) / 2 >= warmup_s
    if not keep.any():
        keep = np.ones(len(start), dtype=bool)
    bits = cap.bits(float(start[keep].min()), float(end[keep].max()))
    if not bits > 0:
        return float("nan")
    u = float(nbytes[keep].sum()) * 8 / bits
    return min(max(u, 0.0), 1.0) if clip else u


def utilization_timeseries(flows: pd.DataFrame, capacity: "float | Capacity", bin_s: float = 1.0) -> list[UtilizationSeries]:
    """Per repeat: bytes of all streams per ``bin_s`` bin (each interval goes to the bin of its midpoint, at its
    flow's real start time) over the capacity offered in that bin."""
    out: list[UtilizationSeries] = []
    cap = as_capacity(capacity)
    if flows.empty or not cap.known:
        return out
    for repeat, g in flows.groupby("repeat", sort=True, observed=True):
        start, end, nbytes = _absolute_intervals(g)
        bins = np.floor((start + end) / 2 / bin_s).astype(np.int64)
        nbins = int(bins.max()) + 1 if len(bins) else 0
        total = np.bincount(bins, weights=nbytes, minlength=nbins)
        # leave out a last bin that iperf3 only partly covered (its final interval is a fraction of a second)
        full = (np.arange(nbins) + 1) * bin_s <= float(end.max()) + 0.5 * bin_s
        offered = cap.bin_means(np.arange(nbins) * bin_s, bin_s)
        t = (np.arange(nbins) + 0.5) * bin_s
        out.append(UtilizationSeries(int(repeat), t[full], (total * 8 / bin_s / offered)[full]))
    return out


def link_utilization_timeseries(packets: pd.DataFrame, capacity: "float | Capacity",
                                bin_s: float = 1.0, sample_every: int = 1,
                                offsets: Mapping[int, float] | None = None) -> list[UtilizationSeries]:
    """Per repeat, from the router log: bytes of forwarded and marked packets per ``bin_s`` bin over the capacity
    offered in that bin (times ``sample_every`` when the log holds every N-th decision).

    This is what the bottleneck link really carried. ``t_s`` counts from the repeat's first decision; ``offsets``
    (:func:`l4stb.analysis.timebase.router_offsets_s`) moves it to the scenario's t=0, where the capacity and the
    iperf3 series are, so bins are on the clock of every other figure and a rate change meets its own bin.
    Rows without a time (``t_s`` NaN: paper-format lines carry no timestamp) are left out; a repeat with no
    timed rows gives no series.
    """
    out: list[UtilizationSeries] = []
    cap = as_capacity(capacity)
    if packets.empty or not cap.known or "t_s" not in packets or "packet_length" not in packets:
        return out
    for repeat, g in packets.groupby("repeat", sort=True, observed=True):
        t = g["t_s"].to_numpy(dtype=float) + (offsets or {}).get(int(repeat), 0.0)
        keep = np.isfinite(t) & (t >= 0) & (g["action"].to_numpy() != ACTION_DROP)
        if not keep.any():
            continue
        bins = np.floor(t[keep] / bin_s).astype(np.int64)
        total = np.bincount(bins, weights=g["packet_length"].to_numpy(dtype=float)[keep])
        span = float(np.nanmax(t[np.isfinite(t)]))
        full = (np.arange(len(total)) + 1) * bin_s <= span + 1e-9  # drop the last, partly covered bin
        centres = (np.arange(len(total)) + 0.5) * bin_s
        offered = cap.bin_means(np.arange(len(total)) * bin_s, bin_s)
        out.append(UtilizationSeries(int(repeat), centres[full], (total * sample_every * 8 / bin_s / offered)[full]))
    return out


# ---------------------------------------------------------------------------------------------
# Per repeat and per run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepeatMetrics:
    repeat: int
    queues: dict[str, QueueStats]
    flows: list[FlowThroughput]
    cc: dict[str, CcThroughput]
    """Per CC and sender stack, keyed by :attr:`FlowKey.cc_name` (``dctcp (FreeBSD)``)."""
    utilization: float
    utilization_unclipped: float
    jain: float
    link_utilization: float = float("nan")
    """From the router log: bytes forwarded or marked over the repeat's logged time span, over the capacity
    offered in it (NaN when the log has no timestamps)."""
    capacity_bps: float = float("nan")
    """Mean capacity the link offered over the repeat (the rate schedule or trace; the fixed rate otherwise)."""
    bulk_na: str = ""
    """Why Jain's index and the scalable/classic ratio are undefined in this repeat ("" when they are defined)."""
    capacity_source: str = "fixed"
    """What the repeat's utilisation is measured against (:attr:`l4stb.analysis.capacity.Capacity.source`)."""

    @property
    def bulk_flows(self) -> list[FlowThroughput]:
        return [f for f in self.flows if f.bulk]

    def of_class(self, flow_class: str) -> list[FlowThroughput]:
        return [f for f in self.flows if f.flow_class == flow_class]


@dataclass(frozen=True)
class FlowSummary:
    """One flow (FlowKey) over the repeats it appears in: mean steady-state throughput with its CI."""

    key: FlowKey
    throughput: Interval
    flow_class: str = BULK

    def to_json(self) -> dict:
        return {"host": self.key.host, "cc": self.key.cc, "cc_label": self.key.cc_name, "group": self.key.group,
                "connection": self.key.connection,
                "stream": self.key.stream, "class": self.flow_class, "throughput_mbps": _num(self.throughput.mean),
                "ci95_mbps": [_num(self.throughput.low), _num(self.throughput.high)] if self.throughput.has_ci else None,
                "repeats": self.throughput.n}


@dataclass(frozen=True)
class TradeoffPoint:
    """One point of the throughput vs p95-delay figure: one flow class (CC and sender stack) in one repeat."""

    repeat: int
    cc: str
    """The CC with its stack and transport (a key of :attr:`RepeatMetrics.cc`)."""
    queue: str
    """The queue the class's packets go through (L for scalable CCs when the L queue carried traffic)."""
    mean_per_flow_mbps: float
    p95_delay_ms: float


@dataclass(frozen=True)
class RunMetrics:
    """All metrics of a run: pooled over repeats, per repeat, and CIs of per-repeat values."""

    queues: dict[str, QueueStats]
    """Pooled over all repeats: delays from all samples, counts summed."""
    flows: list[FlowSummary]
    cc: dict[str, Interval]
    """Mean per-flow throughput of each CC and sender stack (Mbit/s), CI over repeats; keyed as
    :attr:`RepeatMetrics.cc`."""
    utilization: Interval
    jain: Interval
    delay_ci: dict[str, dict[int, Interval]]
    """queue -> percentile -> CI of the per-repeat percentile (ms)."""
    repeats: list[RepeatMetrics]
    warmup_s: float
    rate_bps: float
    capacity: Capacity | None = None

    @property
    def n_repeats(self) -> int:
        return len(self.repeats)

    @property
    def bulk_na(self) -> str:
        """Why Jain's index and the scalable/classic ratio are undefined over the whole run ("" when some repeat
        defines them): the reason of the first repeat, with how many repeats share it."""
        reasons = [rm.bulk_na for rm in self.repeats]
        if not reasons or not all(reasons):
            return ""
        return reasons[0] + (f" (and in all {len(reasons)} repeats)" if len(reasons) > 1 else "")


def repeat_metrics(repeat: int, packets: pd.DataFrame, flows: pd.DataFrame, rate_bps: "float | Capacity",
                   warmup_s: float = WARMUP_S, sample_every: int = 1) -> RepeatMetrics:
    """Metrics of one repeat from its packets and flows rows; ``rate_bps`` may be the run's :class:`Capacity`;
    ``sample_every`` N when the router logged every N-th decision (counts and router-side bytes scale by N).

    Throughput per CC and Jain's index are over bulk flows only; utilisation counts every byte (all classes)
    against the capacity offered."""
    cap = as_capacity(rate_bps)
    ft = flow_throughputs(flows, warmup_s)
    bulk = [f for f in ft if f.bulk]
    end = max((f.start_s + f.lifetime_s for f in ft if math.isfinite(f.lifetime_s)), default=0.0)
    offered = cap.mean_bps(0.0, end) if end > 0 else cap.nominal_bps
    na = bulk_na_reason(ft, offered)
    return RepeatMetrics(
        repeat=repeat,
        queues=queue_stats(packets, sample_every),
        flows=ft,
        cc=cc_throughputs(bulk),
        utilization=window_utilization(flows, cap, warmup_s),
        utilization_unclipped=window_utilization(flows, cap, warmup_s, clip=False),
        jain=float("nan") if na else jain_index(f.throughput_mbps for f in bulk),
        link_utilization=link_utilization(packets, cap, sample_every, router_offsets_s(flows).get(repeat, 0.0)),
        capacity_bps=offered,
        bulk_na=na,
        capacity_source=cap.source,
    )


def link_utilization(packets: pd.DataFrame, rate_bps: "float | Capacity", sample_every: int = 1,
                     offset_s: float = 0.0) -> float:
    """Router-side utilisation of one repeat: forwarded+marked bytes (times ``sample_every``: a sampled log holds
    every N-th decision) over the capacity offered in the logged time span; NaN without times. ``offset_s``: the
    scenario time of the first decision (:func:`l4stb.analysis.timebase.router_offsets_s`), so the span meets the
    capacity schedule where it ran."""
    cap = as_capacity(rate_bps)
    if packets.empty or not cap.known or "t_s" not in packets:
        return float("nan")
    t = packets["t_s"].to_numpy(dtype=float)
    ok = np.isfinite(t)
    if ok.sum() < 2:
        return float("nan")
    bits = cap.bits(float(t[ok].min()) + offset_s, float(t[ok].max()) + offset_s)
    if bits <= 0:
        return float("nan")
    sent = ok & (packets["action"].to_numpy() != ACTION_DROP)
    return float(packets["packet_length"].to_numpy(dtype=float)[sent].sum()) * sample_every * 8 / bits


def run_metrics(packets: pd.DataFrame, flows: pd.DataFrame, rate_bps: "float | Capacity",
                warmup_s: float = WARMUP_S, sample_every: int = 1,
                repeat_capacity: Mapping[int, Capacity] | None = None) -> RunMetrics:
    """Metrics of a whole run (all repeats found in either table); ``rate_bps`` may be the run's :class:`Capacity`.

    ``sample_every`` N: the router logged every N-th decision (``logging.sample_every``), so decision counts and
    router-side bytes are scaled by N. ``repeat_capacity``: a repeat's own capacity where it differs from the
    run's (a rate schedule as the router applied it, :func:`l4stb.analysis.capacity.applied_capacities`)."""
    cap = as_capacity(rate_bps)
    packets = packets if packets is not None else _empty_packets()
    flows = flows if flows is not None else _empty_flows()
    repeat_ids = sorted(set(_repeats(packets)) | set(_repeats(flows)))
    p_groups = _split(packets, repeat_ids)
    f_groups = _split(flows, repeat_ids)
    per = repeat_capacity or {}
    reps = [repeat_metrics(r, p_groups[r], f_groups[r], per.get(r, cap), warmup_s, sample_every) for r in repeat_ids]
    return _combine_repeats(reps, queue_stats(packets, sample_every), cap, warmup_s)


def run_metrics_by_repeat(packet_repeats: Sequence[int], frames: Iterable[pd.DataFrame], flows: pd.DataFrame,
                          rate_bps: "float | Capacity", warmup_s: float = WARMUP_S,
                          visit: "Callable[[int, pd.DataFrame], None] | None" = None, sample_every: int = 1,
                          repeat_capacity: Mapping[int, Capacity] | None = None) -> RunMetrics:
    """:func:`run_metrics` of packets given one repeat at a time, so memory follows the largest repeat, not the run.

    ``frames`` yields the packets of each repeat in ``packet_repeats`` (ascending) in that order; ``visit`` sees
    each repeat's frame before it is dropped (other per-repeat views of the same rows)."""
    cap = as_capacity(rate_bps)
    flows = flows if flows is not None else _empty_flows()
    repeat_ids = sorted(set(packet_repeats) | set(_repeats(flows)))
    f_groups = _split(flows, repeat_ids)
    with_packets = set(packet_repeats)
    frames = iter(frames)
    acc = QueueStatsAccumulator(sample_every)
    per = repeat_capacity or {}
    reps = []
    for r in repeat_ids:
        packets = next(frames) if r in with_packets else _empty_packets()
        acc.add(packets)
        reps.append(repeat_metrics(r, packets, f_groups[r], per.get(r, cap), warmup_s, sample_every))
        if visit is not None and r in with_packets:
            visit(r, packets)
        del packets
    return _combine_repeats(reps, acc.result(), cap, warmup_s)


def _combine_repeats(reps: list[RepeatMetrics], queues: dict[str, QueueStats], cap: Capacity,
                     warmup_s: float) -> RunMetrics:
    """The run's metrics from its repeats' and its pooled queue stats (the CIs, the per-flow summaries)."""
    by_flow: dict[FlowKey, list[float]] = {}
    klass: dict[FlowKey, str] = {}
    for rm in reps:
        for f in rm.flows:
            by_flow.setdefault(f.key, []).append(f.throughput_mbps)
            klass[f.key] = f.flow_class
    flow_summaries = [FlowSummary(k, confidence_interval(v, bounds=NON_NEGATIVE), klass[k])
                      for k, v in sorted(by_flow.items(), key=lambda kv: kv[0].sort_key())]
    ccs = sorted({cc for rm in reps for cc in rm.cc})
    cc_ci = {cc: confidence_interval([rm.cc[cc].mean_per_flow_mbps for rm in reps if cc in rm.cc], bounds=NON_NEGATIVE)
             for cc in ccs}
    delay_ci = {q: {p: confidence_interval([rm.queues[q].delay.get(p) for rm in reps], bounds=NON_NEGATIVE)
                    for p in PERCENTILES} for q in QUEUES}
    return RunMetrics(
        queues=queues,
        flows=flow_summaries,
        cc=cc_ci,
        utilization=confidence_interval([rm.utilization for rm in reps], bounds=UNIT_RANGE),
        jain=confidence_interval([rm.jain for rm in reps], bounds=UNIT_RANGE),
        delay_ci=delay_ci,
        repeats=reps,
        warmup_s=warmup_s,
        rate_bps=cap.nominal_bps,
        capacity=cap,
    )


def queue_of_cc(cc: str, scalable_ccs: Sequence[str], queues: Mapping[str, QueueStats]) -> str:
    """Where a CC's packets queue: L for a scalable CC when the L queue saw traffic, otherwise C."""
    return "L" if cc in scalable_ccs and queues.get("L") is not None and queues["L"].packets > 0 else "C"


def tradeoff_points(metrics: RunMetrics, scalable_ccs: Sequence[str]) -> list[TradeoffPoint]:
    """Throughput vs p95 queue delay: one point per repeat per CC (x = p95 delay of the CC's queue)."""
    pts = []
    for rm in metrics.repeats:
        for name, c in rm.cc.items():
            q = queue_of_cc(c.cc, scalable_ccs, rm.queues)
            pts.append(TradeoffPoint(rm.repeat, name, q, c.mean_per_flow_mbps, rm.queues[q].delay.p95_ms))
    return pts


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _num(x: float | None) -> float | None:
    """JSON-safe number: NaN/inf become null."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _repeats(df: pd.DataFrame) -> list[int]:
    if df is None or df.empty or "repeat" not in df:
        return []
    return [int(r) for r in pd.unique(df["repeat"])]


def _split(df: pd.DataFrame, repeat_ids: Sequence[int]) -> dict[int, pd.DataFrame]:
    out = {r: df.iloc[0:0] for r in repeat_ids}  # noqa: C420 - a fresh empty frame each, not one shared object
    if not df.empty:
        for r, g in df.groupby("repeat", sort=True, observed=True):
            out[int(r)] = g
    return out


def _empty_packets() -> pd.DataFrame:
    return pd.DataFrame({"repeat": pd.Series([], dtype="int16"), "queue": pd.Series([], dtype="object"),
                         "action": pd.Series([], dtype="int8"), "current_queue_delay": pd.Series([], dtype="int64"),
                         "packet_length": pd.Series([], dtype="int64"), "t_s": pd.Series([], dtype="float64")})


def _empty_flows() -> pd.DataFrame:
    cols = {c: pd.Series([], dtype="float64") for c in FLOW_COLUMNS}
    for c in ("host", "cc", "file"):
        cols[c] = pd.Series([], dtype="object")
    for c in ("repeat", "group", "connection", "stream"):
        cols[c] = pd.Series([], dtype="int64")
    cols["omitted"] = pd.Series([], dtype="bool")
    return pd.DataFrame(cols)


empty_packets = _empty_packets
empty_flows = _empty_flows
