"""Boot the guest under QEMU with one host folder shared over virtio-9p, wait for it to power off, keep its console.

KVM is used where it works and TCG otherwise: :func:`probe_accel` boots the guest once with each and keeps
the first that runs a trivial script to completion (a /dev/kvm that opens is not proof: some hosts expose
one that cannot run a stock guest). Under TCG the guest's clock follows the instructions it executes
(``-icount shift=0,sleep=off``: 1 ns per instruction, idle time skipped), not the host's wall clock, so what the
real kernel measures does not depend on how busy the host is. Measured on this 2-core machine at a load of 5,
one DCTCP flow at 8 Mbit/s got 0.90 of the link with a mean RTT of 11.3 ms in two runs (0.9032 and 0.9032),
against 0.49 and 18 ms under plain TCG in the same minute; the price is wall time (about 6x the scenario's
duration there). ``L4STB_QEMU_ACCEL`` (kvm, tcg-icount, tcg) forces one. The VM has no network device; it talks to the host only through the
shared folder, and ``-no-reboot`` turns the guest's power-off into QEMU's exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from l4stb.errors import L4stbError
from l4stb.linuxvm.image import SHARE_TAG

QEMU = "qemu-system-x86_64"
ACCELS = ("kvm", "tcg-icount", "tcg")


@dataclass(frozen=True)
class BootResult:
    exit_code: int
    guest_rc: int | None
    wall_s: float
    console_tail: str
    timed_out: bool
    cpu_s: float = 0.0
    """QEMU's CPU seconds (the guest's budget under TCG with icount)."""


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise L4stbError(f"{QEMU} is not installed; the qemu provider boots a real Linux kernel with it. Run "
                         "`bash scripts/install.sh` (it installs qemu-system-x86) or `apt-get install "
                         "qemu-system-x86`.")
    return path


def command(image: Path, share: Path, *, accel: str, cpus: int, memory_mb: int) -> list[str]:
    if accel == "tcg-icount":
        # guest time from instructions executed (1 ns each), idle time skipped: the guest's clock no longer
        # depends on how much of the host's CPU it gets (qemu docs/devel/tcg-icount.rst); single-threaded TCG
        accel_args = ["-accel", "tcg,thread=single", "-icount", "shift=0,sleep=off"]
    else:
        accel_args = ["-accel", accel]
    return [qemu_binary(), "-machine", "q35", *accel_args, "-cpu", "max" if accel.startswith("tcg") else "host",
            "-m", str(int(memory_mb)), "-smp", str(int(cpus)), "-nographic", "-no-reboot", "-nodefaults",
            "-serial", "stdio", "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.gz"),
            "-append", "console=ttyS0 quiet panic=-1",
            "-virtfs", f"local,path={share},mount_tag={SHARE_TAG},security_model=none,id={SHARE_TAG}"]


WALL_CAP_FACTOR = 20
"""Under TCG with icount the budget is the guest's (CPU) time; the wall clock still stops a guest starved for 20x
that, so a wedged host cannot hold a repeat for ever."""
POLL_S = 0.5


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` (all its threads), from /proc/<pid>/stat (proc(5): fields
    14 and 15, in clock ticks); 0.0 once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()  # the command name in parentheses may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def boot(image: Path, share: Path, *, accel: str, cpus: int = 2, memory_mb: int = 2048,
         timeout_s: float = 600) -> BootResult:
    """Run the guest on ``share`` (which holds guest.sh); returns when it powers off or when its budget is spent.

    The budget is ``timeout_s`` of the guest's clock. Under KVM and plain TCG that is wall time. Under
    ``tcg-icount`` the guest's clock follows the instructions QEMU executes, so a busy host slows the wall clock
    but not the guest: the budget is counted in QEMU's CPU seconds, which grow with the guest's work whatever the
    host's load (with :data:`WALL_CAP_FACTOR` times the budget of wall time as a last resort)."""
    argv = command(image, share, accel=accel, cpus=cpus, memory_mb=memory_mb)
    console = share / "console.log"
    t0 = time.monotonic()
    timed_out = False
    by_cpu = accel == "tcg-icount"
    cpu = 0.0
    with open(console, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    code = proc.wait(timeout=POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    wall = time.monotonic() - t0
                    cpu = process_cpu_s(proc.pid) or cpu
                    used = cpu if by_cpu else wall
                    if used > timeout_s or wall > timeout_s * (WALL_CAP_FACTOR if by_cpu else 1):
                        timed_out = True
                        proc.kill()
                        code = proc.wait()
                        break
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    wall = time.monotonic() - t0
    rc_file = share / "guest.rc"
    guest_rc = None
    if rc_file.is_file():
        try:
            guest_rc = int(rc_file.read_text().strip())
        except ValueError:
            guest_rc = None
    tail = "\n".join(console.read_text(errors="replace").splitlines()[-15:])
    return BootResult(code, guest_rc, wall, tail, timed_out, cpu)


def kvm_usable() -> bool:
    return os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)


def probe_accel(image: Path) -> tuple[str, dict[str, str]]:
    """The accelerator to use ("kvm" or "tcg") and what was tried, by booting a trivial guest."""
    tried = {}
    forced = os.environ.get("L4STB_QEMU_ACCEL")
    if forced is not None and forced not in ACCELS:
        raise L4stbError(f"L4STB_QEMU_ACCEL={forced!r} is not one of {', '.join(ACCELS)}; unset it to let l4stb choose")
    for accel in [forced] if forced else (["kvm"] if kvm_usable() else []) + ["tcg-icount"]:
        with tempfile.TemporaryDirectory(prefix="l4stb-probe-") as d:
            share = Path(d)
            (share / "guest.sh").write_text("echo l4stb-probe-ok\n")
            result = boot(image, share, accel=accel, cpus=1, memory_mb=512, timeout_s=120)
            log = (share / "guest.log").read_text(errors="replace") if (share / "guest.log").is_file() else ""
            if result.guest_rc == 0 and "l4stb-probe-ok" in log:
                tried[accel] = f"booted in {result.wall_s:.1f} s"
                return accel, tried
            tried[accel] = "failed: " + (result.console_tail.splitlines()[-1] if result.console_tail else
                                         f"exit {result.exit_code}")
    raise L4stbError("the guest did not boot under QEMU (" + "; ".join(f"{k}: {v}" for k, v in tried.items())
                     + "). Its console is shown above; rebuild the image with `l4stb up --provider qemu --rebuild`.")
