"""The discrete-event loop: a heap for irregular events plus FIFO streams for the events that are born in time order.

Event sources, merged by time in one loop (integer nanoseconds):

* the **heap** ``(t, n, kind, obj)``: packets reaching the router (their time depends on pacing and
  access-link contention), RTO and delayed-ACK timers, iperf3 interval samples, flow starts;
* the **bottleneck completion** ``link_next``: when the pipe finishes a packet it dequeues the next;
* **server arrivals** (a deque): the pipe finishes packets in time order and the delay line is
  constant, so arrivals at the server come out already sorted;
* **ACK arrivals** at the senders (a deque): the return path has a constant latency per flow and the
  server emits ACKs in time order (per flow; flows on different clients may have different
  latencies, so ACKs are kept in one deque per distinct latency);
* the **AQM's periodic update** (``aqm.next_update_us``).

With ``pipe_passes == 2`` (``bottleneck.match: any``, the original testbed's ipfw rule) the route
changes: a packet leaving the pipe the first time re-enters the AQM (a heap arrival at that instant),
and ACKs are packets too -- the receiver's ACK reaches the router after the server-side latency,
crosses the pipe twice like data, and is handed to the sender after the client-side latency.

Ties are broken in a fixed order, so a run is a deterministic function of the scenario and the seed:
the AQM's update first (it is taken when ``<=`` the earliest other time), then the heap, the link, the
server arrivals and the ACKs (each of those is taken only when strictly earlier than the sources before
it); heap entries tie by insertion count, ACK deques by their order in ``AckQueue.qs`` (ascending latency).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from heapq import heappop, heappush

from l4stb.sim.packet import ACK_INFO, NOT_ECT, PASSES, SEQ
from l4stb.sim.tcp import ACK_BYTES, PKT_BYTES, EV_ARRIVE, EV_DELACK, EV_PACE, EV_RATE, EV_RTO, EV_SAMPLE, EV_START

SACK_BLOCK_BYTES = 12
"""An ACK carrying one SACK block is 12 bytes longer (two NOPs, kind, length, 8 bytes of edges)."""

INF = 1 << 62


class AckQueue:
    """ACKs in flight on the return path; ``append`` keeps one FIFO per distinct latency."""

    __slots__ = ("qs", "by_latency")

    def __init__(self, latencies: list[int]):
        uniq = sorted(set(latencies))
        self.qs = [deque() for _ in uniq]
        self.by_latency = {lat: self.qs[i] for i, lat in enumerate(uniq)}


class Engine:
    """Holds the event sources and runs them; flows and the AQM are plugged in by the runner."""

    __slots__ = ("tick_ns", "shaper", "_ideal", "_idle_tick", "heap", "counter", "aqm", "bottleneck", "flows",
                 "ack_delay_ns", "pipe_passes", "_ackq", "acks", "ack_exit_ns", "srv", "events", "packets_sent",
                 "bytes_sent", "busy_ns", "sojourns")

    def __init__(self, aqm, bottleneck, flows, ack_delay_ns: list[int], *, pipe_passes: int = 1,
                 ack_exit_ns: list[int] | None = None, tick_ns: int = 0, shaper: TokenBucket | None = None):
        """``ack_delay_ns[fid]``: when ACKs bypass the pipe, server -> client latency; with
        ``pipe_passes == 2``, server -> router latency, and ``ack_exit_ns[fid]`` is router -> client.
        ``tick_ns`` > 0 serves the pipe on kernel ticks, as dummynet's callout does (see ``_serve``).
        ``shaper``: the bottleneck is Linux's htb token bucket instead of a serialising pipe (see ``_tb_send``)."""
        if shaper is not None and (tick_ns or pipe_passes != 1):
            raise ValueError("the htb shaper runs with one pipe pass and continuous service only")
        self.tick_ns = tick_ns
        self.shaper = shaper
        self._ideal = 0
        self._idle_tick = -1
        self.heap: list = []
        self.counter = itertools.count()
        self.aqm = aqm
        self.bottleneck = bottleneck
        self.flows = flows
        self.ack_delay_ns = ack_delay_ns
        self.pipe_passes = pipe_passes
        if pipe_passes == 1:
            self._ackq = AckQueue(ack_delay_ns)
            # single latency (the usual case): flows append straight to this deque
            self.acks = _AckSink(self._ackq, ack_delay_ns)
        elif pipe_passes == 2 and ack_exit_ns is not None:
            self._ackq = AckQueue(ack_exit_ns)
            self.ack_exit_ns = ack_exit_ns
            self.acks = _PipeAckSink(self.heap, self.counter)
        else:
            raise ValueError(f"pipe_passes={pipe_passes}: use 1, or 2 with ack_exit_ns")
        self.srv: deque = deque()
        self.events = 0
        self.packets_sent = 0
        self.bytes_sent = 0
        self.busy_ns = 0
        self.sojourns: list | None = None
        """Set to a list to collect every transmitted packet's bottleneck sojourn (us) -- for comparisons."""

    def schedule(self, t: int, kind: int, obj) -> None:
        heappush(self.heap, (t, next(self.counter), kind, obj))

    def queue_wait_ns(self) -> int:
        """How long a packet reaching the bottleneck now waits behind its backlog (full-size packets at the
        bottleneck's rate, however the AQM orders them): the queueing part of a handshake's round trip."""
        return self.aqm.backlog() * PKT_BYTES * 8_000_000_000 // self.bottleneck.rate_bps

    def run(self, t_stop: int, progress=None, progress_every_ns: int = 1_000_000_000) -> None:
        heap = self.heap
        aqm = self.aqm
        srv = self.srv
        ackqs = self._ackq.qs
        enqueue = aqm.enqueue
        dequeue = aqm.dequeue
        rate = self.bottleneck.rate_bps
        delay = self.bottleneck.delay_ns
        link_next = INF
        events = 0
        sent = 0
        sent_bytes = 0
        busy = 0
        next_progress = progress_every_ns if progress is not None else INF
        single = len(ackqs) == 1
        soj = self.sojourns
        acks0 = ackqs[0]
        two_pass = self.pipe_passes == 2
        tick = self.tick_ns
        tb = self.shaper is not None
        while True:
            # ---- pick the earliest source
            t = heap[0][0] if heap else INF
            src = 0
            if link_next < t:
                t = link_next
                src = 1
            if srv and srv[0][0] < t:
                t = srv[0][0]
                src = 2
            if single:
                if acks0 and acks0[0][0] < t:
                    t = acks0[0][0]
                    src = 3
                    aq = acks0
            else:
                for q in ackqs:
                    if q and q[0][0] < t:
                        t = q[0][0]
                        src = 3
                        aq = q
            pi_next = aqm.next_update_us * 1000  # read each time: l4s-pie moves it at enqueue/dequeue too
            if pi_next <= t:
                t = pi_next
                src = 4
            if t > t_stop:
                break
            events += 1
            if t >= next_progress:
                progress(t / t_stop)
                next_progress += progress_every_ns
            # ---- dispatch (the "start transmitting the next packet" block appears twice on purpose: it is the
            # per-packet hot path, where an extra Python function call per packet is avoided)
            if src == 3:
                _, flow, cum, sack, ce, ts = aq.popleft()
                flow.on_ack(t, cum, sack, ce, ts)
            elif src == 0:
                _, _, kind, obj = heappop(heap)
                if kind == EV_ARRIVE:
                    if enqueue(obj, t // 1000) and link_next == INF:
                        if tick:
                            link_next = self._serve_from_idle(t)
                        elif tb:
                            link_next = self._tb_send(t)
                        else:
                            pkt = dequeue(t // 1000)
                            if pkt is not None:
                                length = pkt[1]
                                ser = (length * 8_000_000_000) // rate
                                link_next = t + ser
                                busy += ser
                                srv.append((link_next + delay, pkt))
                                if soj is not None:
                                    soj.append(t // 1000 - pkt[0])
                                sent += 1
                                sent_bytes += length
                elif kind == EV_RTO:
                    obj.on_timer(t)
                elif kind == EV_DELACK:
                    obj.on_delack(t)
                elif kind == EV_SAMPLE:
                    obj.sample(t)
                elif kind == EV_START:
                    obj.start(t)
                elif kind == EV_PACE:
                    obj.on_pace(t)
                elif kind == EV_RATE:
                    # bottleneck.rate_schedule: like `ipfw pipe N config bw`, the packet on the wire keeps its time
                    rate = obj
                    self.bottleneck = dataclasses.replace(self.bottleneck, rate_bps=obj)
            elif src == 2:
                _, pkt = srv.popleft()
                if two_pass:
                    self._leave_pipe(t, pkt)
                else:
                    self.flows[pkt[3]].on_data(t, pkt)
            elif tick and src == 1:
                link_next = self._serve(t, t)
            elif tb and src == 1:
                link_next = self._tb_send(t)
            elif src == 1:
                pkt = dequeue(t // 1000)
                if pkt is not None:
                    length = pkt[1]
                    ser = (length * 8_000_000_000) // rate
                    link_next = t + ser
                    busy += ser
                    srv.append((link_next + delay, pkt))
                    if soj is not None:
                        soj.append(t // 1000 - pkt[0])
                    sent += 1
                    sent_bytes += length
                else:
                    link_next = INF
            else:
                aqm.update(t // 1000)
                if link_next == INF and aqm.backlog():
                    if tick:
                        link_next = self._serve_from_idle(t)
                    elif tb:
                        link_next = self._tb_send(t)
                    else:
                        pkt = dequeue(t // 1000)
                        if pkt is not None:
                            length = pkt[1]
                            ser = (length * 8_000_000_000) // rate
                            link_next = t + ser
                            busy += ser
                            srv.append((link_next + delay, pkt))
                            if soj is not None:
                                soj.append(t // 1000 - pkt[0])
                            sent += 1
                            sent_bytes += length
        self.events += events
        self.packets_sent += sent
        self.bytes_sent += sent_bytes
        self.busy_ns += busy

    def _tb_send(self, t: int) -> int:
        """Linux's htb class (``rate R burst B``) over a veth, with the AQM as its leaf qdisc: dequeue one packet at
        ``t`` if the class may send, and return when it may send again (INF: the queue is empty).

        net/sched/sch_htb.c: the class may send while its tokens are >= 0 (``htb_class_mode``, no hysteresis by
        default); sending a packet first adds the time since the last charge to the tokens, caps them at the
        burst, then subtracts the packet's time at the rate, so the tokens may go negative (``htb_accnt_tokens``);
        when they are negative, the qdisc watchdog dequeues again when they are back at 0. The packet's length is
        ``qdisc_pkt_len``: its IP length plus the 14-byte Ethernet header. A veth transmits at once, so there is
        no serialisation: the packet enters the delay line at ``t``.
        """
        pkt = self.aqm.dequeue(t // 1000)
        if pkt is None:
            return INF
        sh = self.shaper
        rate = self.bottleneck.rate_bps
        cost = ((pkt[1] + sh.overhead_bytes) * 8_000_000_000) // rate
        tokens = sh.tokens_ns + t - sh.t_c
        cap = (sh.burst_bytes * 8_000_000_000) // rate
        if tokens > cap:
            tokens = cap
        tokens -= cost
        sh.tokens_ns = tokens
        sh.t_c = t
        self.busy_ns += cost
        self.packets_sent += 1
        self.bytes_sent += pkt[1]
        if self.sojourns is not None:
            self.sojourns.append(t // 1000 - pkt[0])
        self.srv.append((t + self.bottleneck.delay_ns, pkt))
        return t - tokens if tokens < 0 else t

    def _serve_from_idle(self, t: int) -> int:
        """A packet finds the pipe idle: dummynet (``dummynet_io``) serves it at once, on the current tick's
        clock (``curr_time``).

        A pipe idle since an earlier tick starts with zero credit, which lets exactly one packet through;
        one that went idle during this tick keeps what credit it had left. Returns the next tick to
        serve, or INF when the pipe is idle again.
        """
        tick = self.tick_ns
        now_tick = t - t % tick
        if self._idle_tick < now_tick:
            self._ideal = now_tick
        return self._serve(t, now_tick)

    def _serve(self, t: int, now_tick: int) -> int:
        """Send while the pipe's credit lasts (dummynet's serve_sched); ``t`` itself is a tick when the
        callout serves the pipe.

        dummynet (io_fast=0) moves packets only from its kern.hz callout: a tick sends the packets whose
        transmission would have started by now at the pipe's rate (``_ideal`` is when the previous ones
        would have finished: dummynet's credit is >= 0 while ``_ideal <= now_tick``), all at once, into
        the delay line, which releases them on a tick as well. The long-run rate is the pipe's; the timing
        is batched per tick (10 ms at hz=100: about 8 full packets at 10 Mbit/s). With credit left the
        pipe goes idle (INF); once it is spent the pipe stays scheduled for the tick at which the credit
        is back, queue empty or not, and the batch's last packet -- the one that overdrew the credit -- leaves
        the delay line that much later too (``serve_sched``: ``dn_tag_get(m)->output_time += t``, ``t`` being
        the ticks until the credit is back; sys/netpfil/ipfw/ip_dn_io.c).
        """
        tick = self.tick_ns
        while self._ideal <= now_tick:
            if not self._send_one(t, now_tick):
                self._idle_tick = now_tick
                return INF
        ideal = self._ideal
        next_tick = ideal - ideal % tick + (tick if ideal % tick else 0)
        out, pkt = self.srv[-1]
        self.srv[-1] = (out + next_tick - now_tick, pkt)
        return next_tick

    def _send_one(self, t: int, now_tick: int) -> bool:
        """Dequeue one packet at ``t`` into the delay line; it leaves at ``now_tick`` + the pipe's delay in
        whole ticks (ipfw stores ``delay`` as ``ms * hz / 1000``, rounded down). False: the queue is empty."""
        pkt = self.aqm.dequeue(t // 1000)
        if pkt is None:
            return False
        tick = self.tick_ns
        ser = (pkt[1] * 8_000_000_000) // self.bottleneck.rate_bps
        self._ideal += ser
        self.busy_ns += ser
        self.packets_sent += 1
        self.bytes_sent += pkt[1]
        if self.sojourns is not None:
            self.sojourns.append(t // 1000 - pkt[0])
        out = now_tick + self.bottleneck.delay_ns // tick * tick
        self.srv.append((out if out > t else t, pkt))
        return True

    def _leave_pipe(self, t: int, pkt: list) -> None:
        """With two passes: send a packet back into the AQM after its first pass, else on to its host."""
        if len(pkt) == 6:  # a data packet after its first pass
            pkt.append(1)
        else:
            pkt[PASSES] += 1
        if pkt[PASSES] < 2:
            heappush(self.heap, (t, next(self.counter), EV_ARRIVE, pkt))
        elif pkt[SEQ] >= 0:
            self.flows[pkt[3]].on_data(t, pkt)
        else:
            flow, cum, sack, ce, ts = pkt[ACK_INFO]
            lat = self.ack_exit_ns[flow.fid]
            self._ackq.by_latency[lat].append((t + lat, flow, cum, sack, ce, ts))


@dataclasses.dataclass
class TokenBucket:
    """The state of an htb class used as the bottleneck (see ``Engine._tb_send``): burst and per-packet overhead in
    bytes, the tokens in nanoseconds at the rate, and when they were last charged (``t_c``)."""

    burst_bytes: int
    overhead_bytes: int = 14
    tokens_ns: int = 1 << 62
    """Full: the first charge caps them at the burst."""
    t_c: int = 0


class _PipeAckSink:
    """What flows call ``append`` on when ACKs cross the pipe: the ACK becomes a packet arriving at the router."""

    __slots__ = ("append",)

    def __init__(self, heap: list, counter):
        def append(item, _heap=heap, _counter=counter):
            t, flow, cum, sack, ce, ts = item
            length = ACK_BYTES + (SACK_BLOCK_BYTES if sack >= 0 else 0)
            pkt = [0, length, NOT_ECT, flow.fid, -1, 0, 0, (flow, cum, sack, ce, ts)]
            heappush(_heap, (t, next(_counter), EV_ARRIVE, pkt))

        self.append = append


class _AckSink:
    """What flows call ``append`` on: routes an ACK to the FIFO of its flow's return latency."""

    __slots__ = ("append",)

    def __init__(self, ackq: AckQueue, ack_delay_ns: list[int]):
        if len(ackq.qs) == 1:
            self.append = ackq.qs[0].append
        else:
            by_lat = ackq.by_latency

            def append(item, _by=by_lat, _lat=ack_delay_ns):
                _by[_lat[item[1].fid]].append(item)

            self.append = append
