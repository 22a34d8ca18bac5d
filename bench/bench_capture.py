"""Micro-benchmark: router log lines per second from a synthetic pair of ingress/egress captures (qemu provider).

Builds a 100k-packet capture (4 TCP flows, 2 ECT(1) in dualpi2's L queue and 2 ECT(0) in C, 1 % dropped, 5 % of
L packets CE-marked) with the tests' pcap writer, then times each stage of
:func:`l4stb.linuxvm.capture_log.capture_to_log_lines` and prints a table. It asserts nothing about time.

    python bench/bench_capture.py [--packets 100000]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' pcap writer, not a copy

from pcapfixtures import CE, ECT0, ECT1, frame, write_pcap  # noqa: E402

from l4stb.linuxvm.capture_log import CaptureStats, capture_to_log_lines, fates_to_lines, match_fates  # noqa: E402
from l4stb.linuxvm.pcap import read_pcap  # noqa: E402

SERVER = "10.0.3.2"
T0 = 1_765_000_000_000_000_000


def build(folder: Path, packets: int) -> tuple[Path, Path]:
    ingress, egress = [], []
    for k in range(packets):
        f = k % 4
        ecn = ECT1 if f < 2 else ECT0
        n = k // 4
        src = "10.0.1.2" if f % 2 == 0 else "10.0.2.2"
        ts = T0 + k * 10_000
        fr = frame(src, SERVER, sport=40000 + f, ip_id=n, seq=n * 1448, ecn=ecn)
        ingress.append((ts, fr))
        if k % 100 == 37:
            continue  # dropped
        out_ecn = CE if ecn == ECT1 and n % 20 == 3 else ecn
        sojourn = 200_000 + int(30_000 * math.sin(n / 1000))
        egress.append((ts + sojourn, frame(src, SERVER, sport=40000 + f, ip_id=n, seq=n * 1448, ecn=out_ecn)))
    egress.sort(key=lambda r: r[0])
    return write_pcap(folder / "in.pcap", ingress), write_pcap(folder / "out.pcap", egress)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        i, o = build(Path(tmp), args.packets)
        t0 = time.perf_counter()
        tin, tout = read_pcap(i), read_pcap(o)
        t1 = time.perf_counter()
        st = CaptureStats()
        fates = match_fates(tin, tout, qdisc="dualpi2", stats=st)
        t2 = time.perf_counter()
        n = sum(1 for _ in fates_to_lines(fates, stats=st))
        t3 = time.perf_counter()
        total = sum(1 for _ in capture_to_log_lines(i, o, servers=[SERVER], qdisc="dualpi2"))
        t4 = time.perf_counter()
    print(f"synthetic capture: {args.packets} packets in, {len(tout)} out; "
          f"{st.forwarded} forwarded, {st.marked} marked, {st.dropped} dropped, {st.unresolved} unresolved")
    print(f"{'stage':<34}{'seconds':>10}{'per second':>16}")
    print(f"{'read both pcaps (packets)':<34}{t1 - t0:>10.3f}{(len(tin) + len(tout)) / (t1 - t0):>16,.0f}")
    print(f"{'match fates (ingress packets)':<34}{t2 - t1:>10.3f}{len(tin) / (t2 - t1):>16,.0f}")
    print(f"{'occupancy + format (lines)':<34}{t3 - t2:>10.3f}{n / (t3 - t2):>16,.0f}")
    print(f"{'capture_to_log_lines end to end':<34}{t4 - t3:>10.3f}{total / (t4 - t3):>16,.0f}  lines/s")


if __name__ == "__main__":
    main()
