"""Per-flow sender metrics from a cwnd time series: goodput, cwnd distribution, sawtooth, srtt, growth after a cut.

One :class:`CwndTrace` comes from a real FreeBSD sender's SIFTR log (:func:`from_siftr`) or from a simulated
sender (:func:`from_sim`), so both are measured by the same code. :func:`flow_metrics` computes, over the
window from ``warmup_s`` after the flow's first record to its last:

* ``goodput_mbps``: acknowledged payload bits per second;
* ``cwnd_mean`` / ``cwnd_p10`` / ``cwnd_p50`` / ``cwnd_p90``: cwnd in segments (cwnd / tcp_maxseg),
  time-weighted (the value holding at each point of a 10 ms grid);
* ``cuts_per_min``: congestion events per minute, each a record where ssthresh changes (cc_cong_signal sets
  it on a loss, a CE echo or a timeout) or where cwnd first falls after growing;
* ``cut_period_s``: the window's length over the number of cuts (None without one);
* ``cut_depth_p50``: the median of 1 - new ssthresh / cwnd just before, over cuts that set ssthresh at or
  below that cwnd (DCTCP's alpha/2, NewReno's 1/2; a timeout from a tiny window is not a cut of it);
* ``srtt_p50_ms`` / ``srtt_p95_ms``: the sender's smoothed RTT, time-weighted;
* ``reduction_ms_p50``: over the cuts outside loss recovery (CE echoes), the median time from a cut until
  cwnd is down to the new ssthresh + 2 segments (room for one slow-start step on the same ACK): 0 when
  cwnd is set to ssthresh at once, about an RTT under PRR (RFC 6937), which walks it down per ACK;
* ``step_after_cut_p50``: over the same cuts, the median first cwnd increase once it is down, in segments
  (2 for a slow-start step with abc_l_var = 2, 1 for a congestion-avoidance step);
* ``ecn_cut_share``: the share of cuts that answer a CE echo: neither in loss recovery (TF_FASTRECOVERY) nor a
  timeout (cwnd down to one segment).

A metric with nothing to measure (no cut in the window) is ``None``, shown as "n/a".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from l4stb.analysis.siftr import TF_FASTRECOVERY

GRID_S = 0.010


@dataclass
class CwndTrace:
    """A sender's state after each record: time, cwnd and ssthresh (segments), srtt, bytes newly acked."""

    t_s: np.ndarray
    cwnd_segs: np.ndarray
    ssthresh_segs: np.ndarray
    srtt_us: np.ndarray
    acked_bytes: np.ndarray
    loss_recovery: np.ndarray
    """True where the sender is in loss (fast) recovery: a cut there answers a loss, elsewhere a CE echo
    (or, when cwnd falls to one segment, a timeout)."""


@dataclass
class FlowMetrics:
    """What :func:`flow_metrics` measures (see the module docstring)."""

    goodput_mbps: float
    cwnd_mean: float
    cwnd_p10: float
    cwnd_p50: float
    cwnd_p90: float
    cuts_per_min: float
    cut_period_s: float | None
    cut_depth_p50: float | None
    srtt_p50_ms: float
    srtt_p95_ms: float
    step_after_cut_p50: float | None
    reduction_ms_p50: float | None
    ecn_cut_share: float | None


TIMESTAMP_OPTION_BYTES = 12
"""What tcp_maxseg() takes off t_maxseg on a connection with RFC 7323 timestamps (10 bytes, padded to 12):
the segment FreeBSD's cwnd arithmetic counts in (sys/netinet/tcp_subr.c tcp_maxseg)."""


def from_siftr(flow, timestamps: bool = True) -> CwndTrace:
    """A :class:`l4stb.analysis.siftr.SiftrFlow` as a trace: cwnd and ssthresh in segments of t_maxseg less
    the timestamp option (``timestamps``; the public traces' flights move in 1448-byte steps at t_maxseg 1460)."""
    mss = float(flow.mss - (TIMESTAMP_OPTION_BYTES if timestamps else 0))
    return CwndTrace(t_s=flow.t_s, cwnd_segs=flow.cwnd_bytes / mss,
                     ssthresh_segs=np.minimum(flow.ssthresh_bytes, 1 << 30) / mss,
                     srtt_us=flow.srtt_us.astype(np.float64), acked_bytes=flow.acked_bytes(),
                     loss_recovery=(flow.t_flags & TF_FASTRECOVERY) != 0)


def from_sim(records: list[tuple]) -> CwndTrace:
    """A simulated sender's per-ACK records ``(now_ns, cwnd_segs, ssthresh_segs, srtt_ns, acked_bytes,
    in_loss_recovery)`` (:class:`l4stb.sim.trace.TracingTcpFlow`) as a trace."""
    a = np.array(records, dtype=np.float64).reshape(-1, 6)
    return CwndTrace(t_s=a[:, 0] / 1e9, cwnd_segs=a[:, 1], ssthresh_segs=np.minimum(a[:, 2], 1 << 30),
                     srtt_us=a[:, 3] / 1e3, acked_bytes=a[:, 4], loss_recovery=a[:, 5] != 0)


def _on_grid(t: np.ndarray, v: np.ndarray, t0: float, t1: float) -> np.ndarray:
    grid = np.arange(t0, t1, GRID_S)
    idx = np.searchsorted(t, grid, side="right") - 1
    return v[idx[idx >= 0]]


def flow_metrics(tr: CwndTrace, warmup_s: float = 5.0, span_s: float | None = None) -> FlowMetrics:
    """The metrics of one flow over [first record + ``warmup_s``, last record], or over ``span_s`` seconds
    from the start of that window."""
    t0 = float(tr.t_s[0]) + warmup_s
    t1 = float(tr.t_s[-1]) if span_s is None else min(float(tr.t_s[-1]), t0 + span_s)
    if t1 - t0 < 1.0:
        raise ValueError(f"a trace of {float(tr.t_s[-1] - tr.t_s[0]):.1f} s is too short for a {warmup_s:g} s "
                         "warm-up and a 1 s window")
    sel = (tr.t_s >= t0) & (tr.t_s <= t1)
    goodput = float(tr.acked_bytes[sel].sum()) * 8 / (t1 - t0) / 1e6
    cw = _on_grid(tr.t_s, tr.cwnd_segs, t0, t1)
    valid_srtt = tr.srtt_us > 0
    rtt = _on_grid(tr.t_s[valid_srtt], tr.srtt_us[valid_srtt], t0, t1) / 1e3

    c = tr.cwnd_segs
    ss = tr.ssthresh_segs
    # a congestion event sets ssthresh (cc_cong_signal); PRR then walks cwnd down over about one RTT
    # (the first cwnd decrease after growth also counts: a cut to the same ssthresh leaves it unchanged)
    ev_list, last_dir = [], 0
    for i in range(1, len(c)):
        down = c[i] < c[i - 1] - 1e-9
        if sel[i] and (abs(ss[i] - ss[i - 1]) > 1e-6 or (down and last_dir >= 0)):
            ev_list.append(i)
        if down:
            last_dir = -1
        elif c[i] > c[i - 1] + 1e-9:
            last_dir = 1
    ev = np.array(ev_list, dtype=np.int64)
    cut = ev[ss[ev] <= c[ev - 1] + 1e-9] if len(ev) else ev  # ssthresh at or below the window it cuts
    depths = 1 - ss[cut] / c[cut - 1]
    reach, steps = [], []
    for n, i in enumerate(ev):
        end = ev[n + 1] if n + 1 < len(ev) else len(c)
        if tr.loss_recovery[i]:
            continue  # loss recovery sets cwnd its own way (one segment, then the SACK retransmissions)
        j = i
        while j < end and c[j] > ss[i] + 2 + 1e-6:
            j += 1
        if j == end:
            continue
        reach.append((tr.t_s[j] - tr.t_s[i]) * 1e3)
        k = j + 1
        while k < end and c[k] <= c[k - 1] + 1e-9:
            k += 1
        if k < end:
            steps.append(c[k] - c[k - 1])
    return FlowMetrics(
        goodput_mbps=goodput,
        cwnd_mean=float(cw.mean()),
        cwnd_p10=float(np.percentile(cw, 10)),
        cwnd_p50=float(np.percentile(cw, 50)),
        cwnd_p90=float(np.percentile(cw, 90)),
        cuts_per_min=len(ev) * 60 / (t1 - t0),
        cut_period_s=(t1 - t0) / len(ev) if len(ev) else None,
        cut_depth_p50=float(np.median(depths)) if len(cut) else None,
        srtt_p50_ms=float(np.percentile(rtt, 50)),
        srtt_p95_ms=float(np.percentile(rtt, 95)),
        step_after_cut_p50=float(np.median(steps)) if steps else None,
        reduction_ms_p50=float(np.median(reach)) if reach else None,
        ecn_cut_share=float(np.mean(~tr.loss_recovery[ev] & (c[ev] > 1 + 1e-9))) if len(ev) else None,
    )
