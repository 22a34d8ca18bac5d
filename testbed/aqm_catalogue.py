"""The AQM catalogue: one record per AQM with its defaults, its integer parameters and how each testbed runs it.

Below both the simulator and the providers (it imports neither), so the vagrant plan, the simulator, the check
and the report read one source:

* **defaults**: :func:`resolved_defaults` fills what a scenario leaves unset (``config.Aqm.resolved`` calls it);
  the Classic target of the PI/PIE family is :data:`CLASSIC_TARGET_US`, CoDel's :data:`CODEL_TARGET_US`, each
  written once.
* **integer parameters**: :class:`DualPI2Params` (the C core's ``struct dp2_params`` and the module's sysctls),
  :class:`PieParams` (FreeBSD's ``dn_aqm_pie_parms``) and :class:`CodelParams` (dummynet's and Linux's CoDel and
  FQ-CoDel), built from a resolved ``Aqm``.
* **records** (:data:`AQMS`): for each AQM the simulator class (named, not imported), whether the dualpi2 module
  runs it and in which ``mode``, how the vagrant plan's dummynet runs it, how the qemu provider's tc runs it
  (:func:`l4stb.linuxvm.guest.qdisc_args` builds the words), whether it can CE-mark, and the reference lines
  the report draws on the delay ECDFs.

Adding an AQM: a record here (and its parameter record if the module runs it), the simulator class, and the
glue of the testbed that runs it (see docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from l4stb.units import format_duration

# ---------------------------------------------------------------------------------------------- defaults

CLASSIC_TARGET_US = 15_000
"""The Classic queue's delay target of every AQM here: Linux sch_dualpi2's default target (``dualpi2_reset_default``:
15 ms; RFC 9332 A.1 too) and the FreeBSD PIE defaults the original L4S scheduler ran (dn_aqm_pie.h ``qdelay_ref``
15 ms, ``tupdate`` 15 ms). The kernel module keeps its own copy in the defaults of
freebsd_module/dn_sched_dualpi2.c, which tests/test_module_source.py checks against DualPI2Params() and
PieParams()."""

DUALPI2_TUPDATE_US = 16_000
DUALPI2_ALPHA_HZ = 0.16
DUALPI2_BETA_HZ = 3.2
"""Linux sch_dualpi2's defaults (``dualpi2_reset_default``: tupdate 16 ms, alpha 41/256 ~ 0.16 Hz, beta 819/256
~ 3.2 Hz; l4stb uses the round values, 0.1 % apart)."""
PIE_TUPDATE_US = 15_000
PIE_ALPHA = 0.125
PIE_BETA = 1.25
"""FreeBSD dn_aqm_pie.h defaults (PIE_ALPHA 0.125 and PIE_BETA 1.25 in 1/2^13 units, tupdate 15 ms), which the
original L4S scheduler (l4s-pie) and stock PIE run."""

CODEL_TARGET_US = 5_000
CODEL_INTERVAL_US = 100_000
"""CoDel's target and interval (RFC 8289 section 4.4), the defaults of FreeBSD dummynet (``codel_sysctl`` in
sys/netpfil/ipfw/dn_aqm_codel.c, ``fq_codel_sysctl`` in dn_sched_fq_codel.c) and Linux (``codel_params_init`` in
include/net/codel_impl.h)."""
FQ_CODEL_QUANTUM = 1_514
FQ_CODEL_FLOWS = 1_024
"""FQ-CoDel's quantum (bytes) and flow queues: dn_sched_fq_codel.c ``fq_codel_sysctl`` (1514, 1024); Linux
``fq_codel_init`` (net/sched/sch_fq_codel.c: quantum = psched_mtu, 1514 on Ethernet; flows_cnt 1024)."""
FQ_CODEL_LIMIT_MAX_FREEBSD = 20_480
FQ_CODEL_QUANTUM_MAX_FREEBSD = 9_000
"""dn_sched_fq_codel.c ``fq_codel_config`` bounds limit to 1..20480 and quantum to 1..9000 (silently)."""
FQ_CODEL_DROP_BATCH = 64
"""Linux ``fq_codel_init``: drop_batch_size 64 (packets dropped at most per overlimit, ``fq_codel_drop``)."""
CODEL_FAMILY = ("codel", "fq_codel")

RTT_TYP_TO_MAX = 6
"""iproute2 tc/q_dualpi2.c: max_rtt defaults to 6 x typical_rtt and typical_rtt to max_rtt / 6."""
_TC_0_1F, _TC_0_3F = 0.10000000149011612, 0.30000001192092896
"""tc's ``0.1f`` and ``0.3f`` as doubles."""


def dualpi2_rtt_gains(max_rtt_us: Optional[int], typical_rtt_us: Optional[int]) -> dict[str, Any]:
    """target, tupdate (us) and alpha, beta (Hz) from RTTs, as iproute2's ``tc/q_dualpi2.c`` derives them.

    RFC 9332 A.1: target = typical RTT, Tupdate = min(typical RTT, max RTT / 3), alpha = 0.1 Tupdate / max_RTT^2,
    beta = 0.3 / max_RTT. tc sends alpha and beta in 1/256 Hz (``alpha_f * 256`` truncated); so does this.
    """
    if typical_rtt_us is None:
        typical_rtt_us = max(int(max_rtt_us) // RTT_TYP_TO_MAX, 1)
    elif max_rtt_us is None:
        max_rtt_us = int(typical_rtt_us) * RTT_TYP_TO_MAX
    rtt_max = float(max_rtt_us)
    tupdate_us = max(int(min(float(typical_rtt_us), rtt_max / 3.0)), 1)
    # the same operations in the same order as tc (its 0.1f and 0.3f are single-precision constants)
    alpha = int(tupdate_us / rtt_max / rtt_max * 1e6 * _TC_0_1F * 256) / 256
    beta = int(_TC_0_3F / rtt_max * 1e6 * 256) / 256
    if alpha <= 0 or beta <= 0:
        raise ValueError(f"max_rtt {format_duration(max_rtt_us)} is so large that alpha or beta rounds down to 0 "
                         f"(tc refuses it too); use a smaller max_rtt")
    if beta > 100:
        raise ValueError(f"max_rtt {format_duration(max_rtt_us)} is so small that beta = {beta:g} Hz exceeds "
                         f"the allowed 100 Hz; use a larger max_rtt")
    return {"target": int(typical_rtt_us), "tupdate": tupdate_us, "alpha": alpha, "beta": beta}


def resolved_defaults(aqm) -> dict[str, Any]:
    """The values an ``Aqm`` leaves unset, for the AQM that runs its queues (``aqm.engine``).

    dualpi2: ``max_rtt``/``typical_rtt`` derive the PI parameters (:func:`dualpi2_rtt_gains`). Otherwise an unset
    alpha follows Tupdate, ``alpha = 0.16 Hz x tupdate / 16 ms``, so a sweep over ``tupdate`` alone keeps the
    integral gain per second (alpha / Tupdate, RFC 9332's ``0.1 / RTT_max^2``) at Linux's default; beta is a gain
    per unit of delay change and needs no rescaling. ``policy`` takes its fallback's (DualPI2's) defaults; the
    PIE family and fifo FreeBSD's PIE values (fifo reads none of them); codel and fq_codel CoDel's target and
    interval (and fq_codel its quantum and flows), as FreeBSD and Linux default them.
    """
    if aqm.engine in CODEL_FAMILY:
        defaults = {"target": CODEL_TARGET_US, "interval": CODEL_INTERVAL_US}
        if aqm.engine == "fq_codel":
            defaults.update({"quantum": FQ_CODEL_QUANTUM, "flows": FQ_CODEL_FLOWS})
    elif aqm.engine != "dualpi2":
        defaults = {"target": CLASSIC_TARGET_US, "tupdate": PIE_TUPDATE_US, "alpha": PIE_ALPHA, "beta": PIE_BETA}
    elif aqm.max_rtt is not None or aqm.typical_rtt is not None:
        defaults = dualpi2_rtt_gains(aqm.max_rtt, aqm.typical_rtt)
    else:
        tupdate = aqm.tupdate if aqm.tupdate is not None else DUALPI2_TUPDATE_US
        defaults = {"target": CLASSIC_TARGET_US, "tupdate": DUALPI2_TUPDATE_US,
                    "alpha": DUALPI2_ALPHA_HZ * tupdate / DUALPI2_TUPDATE_US, "beta": DUALPI2_BETA_HZ}
    if aqm.engine == "dualpi2":
        defaults.update({"min_qlen_step": 0} if aqm.step_semantics == "linux" else {"th_len": 1})
    return {k: v for k, v in defaults.items() if getattr(aqm, k) is None}


# ---------------------------------------------------------------------------------------------- DualPI2's integers

P_ONE = 1 << 32
"""Probability 1.0."""
GAIN_SHIFT = 16
"""Fractional bits of alpha_q/beta_q."""
K_SHIFT = 8
"""The coupling factor is stored in 1/256 units (k = 2 -> 512)."""
SCHED_WRR, SCHED_TSFIFO = 0, 1
STEP_LINUX, STEP_RFC_THLEN = 0, 1
"""``step_semantics``: where the native step's queue-length gate is taken (see :mod:`l4stb.sim.aqm_dualpi2`)."""


def gain_to_q(gain_hz: float) -> int:
    """Hz -> probability units (1/2^32) per microsecond of delay, with GAIN_SHIFT fractional bits."""
    return int(round(gain_hz * P_ONE / 1_000_000 * (1 << GAIN_SHIFT)))


@dataclass(frozen=True)
class DualPI2Params:
    """Integer parameters of the DualPI2 core (all times in microseconds, probabilities in 1/2^32).

    Field for field the C core's ``struct dp2_params`` and the module's sysctls. The defaults are Linux
    sch_dualpi2's (``dualpi2_reset_default``): the step at 1 ms of sojourn applied to every L packet
    (``min_qlen_step = 0``), target 15 ms, Tupdate 16 ms, alpha 0.16 Hz, beta 3.2 Hz, k = 2, 10 % classic
    protection, drop on overload.
    """

    target_us: int = CLASSIC_TARGET_US
    tupdate_us: int = DUALPI2_TUPDATE_US
    alpha_q: int = gain_to_q(DUALPI2_ALPHA_HZ)
    beta_q: int = gain_to_q(DUALPI2_BETA_HZ)
    alpha_mhz: int = 160
    beta_mhz: int = 3200
    k_q8: int = 512
    p_cmax: int = P_ONE // 4
    """min(1/k^2, 1): logged as max_ecn_threshold; the overload test itself is k p' > 1, as in Linux."""
    step_semantics: int = STEP_LINUX
    step_us: int = 1_000
    step_in_packets: int = 0
    """1: the step compares the L queue length (packets left behind the leaving packet) with step_packets."""
    step_packets: int = 0
    range_us: int = 0
    min_qlen_step: int = 0
    th_len: int = 1
    min_backlog_bytes: int = 3_000
    scheduler: int = SCHED_WRR
    wc: int = 10
    wl: int = 90
    tshift_us: int = 50_000
    mtu: int = 1_500
    limit_packets: int = 10_000
    limit_bytes: int = 30_000_000
    ecn: int = 1
    drop_on_overload: int = 1
    tick_us: int = 1_000
    """The kernel tick. DualPI2 neither decides nor logs on it (delays are logged in microseconds); it is here
    because the module has one ``tick_us`` sysctl, which its l4s-pie mode reads."""

    @classmethod
    def from_aqm(cls, aqm, bottleneck) -> "DualPI2Params":
        """Derive the integer parameters from a scenario's ``Aqm`` (defaults filled) and ``Bottleneck``."""
        a = aqm.resolved()
        k_q8 = int(round(a.coupling_factor * (1 << K_SHIFT)))
        p_cmax = min(P_ONE, (P_ONE << (2 * K_SHIFT)) // (k_q8 * k_q8))  # min(1/k^2, 1)
        wc = int(round(a.classic_protection * 100))
        linux = a.step_semantics == "linux"
        return cls(
            target_us=int(a.target),
            tupdate_us=int(a.tupdate),
            alpha_q=gain_to_q(a.alpha),
            beta_q=gain_to_q(a.beta),
            alpha_mhz=int(round(a.alpha * 1000)),
            beta_mhz=int(round(a.beta * 1000)),
            k_q8=k_q8,
            p_cmax=p_cmax,
            step_semantics=STEP_LINUX if linux else STEP_RFC_THLEN,
            step_us=int(a.step_threshold),
            step_in_packets=0 if a.step_packets is None else 1,
            step_packets=int(a.step_packets or 0),
            range_us=int(a.ramp_range),
            min_qlen_step=int(a.min_qlen_step) if linux else 0,
            th_len=1 if linux else int(a.th_len),
            min_backlog_bytes=2 * int(bottleneck.mtu),
            scheduler=SCHED_WRR if a.scheduler == "wrr" else SCHED_TSFIFO,
            wc=wc,
            wl=100 - wc,
            tshift_us=int(a.tshift),
            mtu=int(bottleneck.mtu),
            limit_packets=int(bottleneck.limit_packets),
            limit_bytes=int(bottleneck.limit_bytes),
            ecn=1 if a.ecn else 0,
            drop_on_overload=1 if a.drop_on_overload else 0,
            tick_us=max(1, 1_000_000 // int(a.kern_hz)),
        )

    def native_aqm_text(self) -> str:
        """The native L4S AQM in words, e.g. ``step at > 1000 us sojourn (linux: every L packet)``."""
        if self.step_in_packets:
            what = f"step at > {self.step_packets} pkts in L"
        elif self.range_us:
            what = f"ramp {self.step_us} us + {self.range_us} us sojourn"
        else:
            what = f"step at > {self.step_us} us sojourn"
        if self.step_semantics == STEP_LINUX:
            gate = "every L packet" if self.min_qlen_step == 0 else f"L packets arriving to >= {self.min_qlen_step} queued"
            return f"{what} (linux: {gate})"
        return f"{what} (rfc9332-thlen: only with > {self.th_len} pkts left in L)"


# ---------------------------------------------------------------------------------------------- PIE's integers

PIE_FIX_POINT_BITS = 13
PIE_SCALE = 1 << PIE_FIX_POINT_BITS
PIE_ECN_ENABLED, PIE_CAPDROP_ENABLED, PIE_ON_OFF_MODE_ENABLED, PIE_DEPRATEEST_ENABLED, PIE_DERAND_ENABLED = 1, 2, 4, 8, 16
"""dn_aqm_pie.h's flag bits."""


@dataclass(frozen=True)
class PieParams:
    """FreeBSD ``dn_aqm_pie_parms`` (times in us; alpha, beta, max_ecnth scaled by 2^13)."""

    qdelay_ref: int = CLASSIC_TARGET_US
    tupdate: int = PIE_TUPDATE_US
    max_burst: int = 150_000
    max_ecnth: int = 819
    alpha: int = 1024
    beta: int = 10240
    flags: int = PIE_ECN_ENABLED | PIE_CAPDROP_ENABLED | PIE_DERAND_ENABLED
    tick_us: int = 1_000
    limit_packets: int = 1_000
    limit_bytes: int = 1_500_000

    @classmethod
    def from_aqm(cls, aqm, bottleneck) -> "PieParams":
        a = aqm.resolved()
        flags = PIE_CAPDROP_ENABLED | PIE_DERAND_ENABLED | (PIE_ECN_ENABLED if a.ecn else 0)
        return cls(
            qdelay_ref=int(a.target), tupdate=int(a.tupdate), max_burst=int(a.max_burst),
            max_ecnth=int(round(a.max_ecnth * PIE_SCALE)), alpha=int(round(a.alpha * PIE_SCALE)),
            beta=int(round(a.beta * PIE_SCALE)), flags=flags, tick_us=max(1, 1_000_000 // int(a.kern_hz)),
            limit_packets=int(bottleneck.limit_packets), limit_bytes=int(bottleneck.limit_bytes),
        )

    @property
    def ecn_threshold(self) -> int:
        """max_ecnth on the 2^31 probability scale, as the kernel compares it."""
        return self.max_ecnth << (31 - PIE_FIX_POINT_BITS)


# ---------------------------------------------------------------------------------------------- CoDel's integers


@dataclass(frozen=True)
class CodelParams:
    """CoDel's and FQ-CoDel's parameters as the simulator runs them (times in us, sizes in bytes).

    ``linux`` picks Linux's CoDel (include/net/codel_impl.h, net/sched/sch_fq_codel.c) where it differs from
    FreeBSD dummynet's (dn_aqm_codel.[ch], dn_sched_fq_codel*.[ch]); :mod:`l4stb.sim.aqm_codel` lists the points.
    ``ce_threshold_us`` is -1 when off (Linux's CODEL_DISABLED_THRESHOLD; FreeBSD has none).
    """

    target_us: int = CODEL_TARGET_US
    interval_us: int = CODEL_INTERVAL_US
    ecn: bool = True
    ce_threshold_us: int = -1
    linux: bool = False
    tick_us: int = 1_000
    mtu: int = 1_500
    limit_packets: int = 1_000
    quantum: int = FQ_CODEL_QUANTUM
    flows: int = FQ_CODEL_FLOWS
    drop_batch: int = FQ_CODEL_DROP_BATCH

    @classmethod
    def from_aqm(cls, aqm, bottleneck) -> "CodelParams":
        """From a scenario's ``Aqm`` (defaults filled) and ``Bottleneck``: the buffer is the bottleneck's
        ``limit_packets`` (codel's queue size in slots; fq_codel's ``limit`` over all its flow queues)."""
        a = aqm.resolved()
        return cls(
            target_us=int(a.target), interval_us=int(a.interval), ecn=bool(a.ecn),
            ce_threshold_us=-1 if a.ce_threshold is None else int(a.ce_threshold),
            linux=a.codel_semantics == "linux", tick_us=max(1, 1_000_000 // int(a.kern_hz)),
            mtu=int(bottleneck.mtu), limit_packets=int(bottleneck.limit_packets),
            quantum=int(a.quantum or FQ_CODEL_QUANTUM), flows=int(a.flows or FQ_CODEL_FLOWS),
        )


# ---------------------------------------------------------------------------------------------- the records

MODULE_SCHED_TYPE = "dualpi2"
"""The scheduler type l4stb's module registers with dummynet (``.name = "DUALPI2"`` in
freebsd_module/dn_sched_dualpi2.c; ipfw's ``type`` word matches it without regard to case): every AQM with a
module ``mode`` runs under it."""


@dataclass(frozen=True)
class AqmRecord:
    """What l4stb knows about one AQM, in one place."""

    name: str
    sim_class: str
    """The simulator's class (``l4stb.sim.<module>.<Class>``), named only: the catalogue sits below the simulator."""
    module_mode: Optional[int]
    """The dualpi2 module's ``mode`` sysctl when the module runs it (0 DualPI2, 1 the l4s-pie scheduler), else None."""
    dummynet: str
    """How the vagrant plan runs it (``ipfw sched``/``queue`` words; see :mod:`l4stb.providers.freebsd.plans`)."""
    tc: str
    """How the qemu provider's tc runs it (the qdisc :func:`l4stb.linuxvm.guest.qdisc_args` configures)."""
    marks: bool
    """Whether it can CE-mark (so an ECN scenario expects marks from it)."""
    reference_lines: tuple[tuple[str, str], ...] = ()
    """(queue, label) lines the report draws on the delay ECDFs; the value is :meth:`reference_ms`'s."""
    dummynet_sched: str = "fifo"
    """The ``ipfw sched ... type`` of a stock dummynet AQM (the module's own run under :data:`MODULE_SCHED_TYPE`)."""

    @property
    def runs_on_module(self) -> bool:
        return self.module_mode is not None

    @property
    def sched_type(self) -> str:
        """The dummynet scheduler type the real router runs it under (lower case; ``ipfw sched show`` prints it in
        upper case): the module's for the AQMs it runs, else the stock one (PIE and CoDel are a FIFO scheduler
        with an AQM queue, fq_codel its own scheduler)."""
        return MODULE_SCHED_TYPE if self.runs_on_module else self.dummynet_sched

    def reference_ms(self, aqm, label: str) -> float:
        """The value of one of ``reference_lines`` for a resolved ``aqm``, in ms."""
        if label == "L step threshold":
            return aqm.step_threshold / 1000
        return (aqm.target or 0) / 1000


AQMS: dict[str, AqmRecord] = {r.name: r for r in (
    AqmRecord("dualpi2", "l4stb.sim.aqm_dualpi2.DualPI2", 0,
              "ipfw sched 1 config type dualpi2 (the l4stb module), parameters as sysctls from DualPI2Params",
              "tc qdisc dualpi2 (Linux sch_dualpi2, built out of tree)", True,
              (("C", "PI2 target"), ("L", "L step threshold"))),
    AqmRecord("l4s-pie", "l4stb.sim.aqm_l4spie.L4sPie", 1,
              "ipfw sched 1 config type dualpi2 in the module's l4s-pie mode, parameters as pie_* sysctls from "
              "PieParams", "refused (linuxvm.guest.QDISCS: the original scheduler exists on FreeBSD only)", True,
              (("C", "PIE target"), ("L", "PIE target"))),
    AqmRecord("pie", "l4stb.sim.aqm_pie.Pie", None,
              "ipfw sched 1 type fifo with queue 1 config pie (FreeBSD's dn_aqm_pie)", "tc qdisc pie (Linux sch_pie)",
              True, (("C", "PIE target"), ("L", "PIE target"))),
    AqmRecord("fifo", "l4stb.sim.aqm_fifo.Fifo", None, "ipfw sched 1 type fifo (tail drop)",
              "tc qdisc pfifo (tail drop)", False),
    AqmRecord("codel", "l4stb.sim.aqm_codel.Codel", None,
              "ipfw sched 1 type fifo with queue 1 config codel (FreeBSD's dn_aqm_codel)",
              "tc qdisc codel (Linux sch_codel)", True, (("C", "CoDel target"),)),
    AqmRecord("fq_codel", "l4stb.sim.aqm_fq_codel.FqCodel", None,
              "ipfw sched 1 type fq_codel with its parameters (FreeBSD's dn_sched_fq_codel)",
              "tc qdisc fq_codel (Linux sch_fq_codel)", True, (("C", "CoDel target"),), "fq_codel"),
)}
"""The AQMs the queues can run (``aqm.engine``); ``policy`` runs on its fallback's record."""


def record(aqm) -> AqmRecord:
    """The record of the AQM that runs ``aqm``'s queues (the fallback under ``policy``)."""
    return AQMS[aqm.engine]
