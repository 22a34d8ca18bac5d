"""What the router's packet capture costs the real-Linux testbed: one DCTCP flow's goodput with and without it.

Usage: python bench/bench_qemu_capture.py [--rates 8,40,100] [--repeats 3] [--duration-s 10]
       (needs `l4stb up --provider qemu` done once in --workdir, default ./l4stb-work)

Each cell boots the qemu testbed's image with the guest script of ``dctcp-8mbps-single`` at the rate, with
``aqm.l4s_classifier: any_ect``, once with tcpdump on both sides of the bottleneck and once without, and
reads the receiver's goodput from iperf3's JSON. Capture is safe at a rate when the two agree within the
real kernel's own run-to-run spread (the 95 % half-width of the repeats without capture), floored at 0.02 of
the rate: under TCG with icount the kernel repeats itself almost exactly, and a spread of nearly 0 would call
any difference a cost. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from l4stb.analysis import metrics as M
from l4stb.config import load_scenario, load_topology
from l4stb.linuxvm import guest, vm
from l4stb.workspace import Workspace


SAFE_FLOOR = 0.02
"""The smallest goodput difference (fraction of the rate) called a cost."""


def goodput(image: Path, accel: str, rate_mbps: int, duration_s: int, capture: bool) -> float:
    sc = load_scenario("dctcp-8mbps-single", [f"bottleneck.rate={rate_mbps}Mbit", f"duration={duration_s}s",
                                              "aqm.l4s_classifier=any_ect"])
    topo = load_topology(sc.topology)
    with tempfile.TemporaryDirectory(prefix="l4stb-capbench-") as d:
        share = Path(d)
        (share / "guest.sh").write_text(guest.render(sc, topo, "bench", 1, capture=capture))
        res = vm.boot(image, share, accel=accel, timeout_s=duration_s * 20 + 300)
        if res.guest_rc != 0:
            raise SystemExit(f"guest failed at {rate_mbps} Mbit/s: {res.console_tail}")
        doc = json.loads((share / "hosts" / "client2" / "client2-dctcp-g0-c1.json").read_text())
        return doc["end"]["sum_received"]["bits_per_second"] / (rate_mbps * 1e6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="8,40,100")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration-s", type=int, default=10)
    ap.add_argument("--workdir", default="l4stb-work")
    args = ap.parse_args()
    state = json.loads((Workspace.at(args.workdir).root / "qemu.json").read_text())
    image, accel = Path(state["image"]), state["accel"]
    print(f"kernel {state['release']}, accelerator {accel}, {args.repeats} repeats of {args.duration_s} s")
    print(f"{'Mbit/s':>7} {'goodput/rate, no capture':>26} {'with capture':>14} {'difference':>11} {'verdict':>8}")
    for rate in (int(r) for r in args.rates.split(",")):
        off = [goodput(image, accel, rate, args.duration_s, False) for _ in range(args.repeats)]
        on = [goodput(image, accel, rate, args.duration_s, True) for _ in range(args.repeats)]
        iv = M.confidence_interval(off)
        spread = max(iv.half_width or 0.0, SAFE_FLOOR)
        diff = statistics.mean(on) - statistics.mean(off)
        verdict = "safe" if abs(diff) <= spread else "costs"
        print(f"{rate:>7} {statistics.mean(off):>18.3f} ± {spread:.3f} {statistics.mean(on):>14.3f} "
              f"{diff:>+11.3f} {verdict:>8}")


if __name__ == "__main__":
    main()
