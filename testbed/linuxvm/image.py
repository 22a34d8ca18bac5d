"""Assemble the guest: the kernel image and one initramfs holding busybox, iproute2, iperf3, tcpdump and the modules.

The initramfs is the packages' files extracted into one root (``dpkg-deb -x``), with ``/bin``, ``/sbin``,
``/lib`` and ``/lib64`` links into ``usr/`` (Debian's merged-/usr layout), the kernel modules the guest needs
decompressed in load order (:mod:`l4stb.linuxvm.kmods`) plus the out-of-tree sch_dualpi2, and an ``/init``
that mounts the host's per-repeat folder over virtio-9p, runs the repeat's ``guest.sh`` from it and powers
off. The image is the same for every repeat: everything a repeat does is in its script.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

from l4stb.errors import L4stbError
from l4stb.linuxvm import kmods
from l4stb.linuxvm.debian import PackageSet

GUEST_MODULES = ("veth", "sch_htb", "sch_netem", "sch_pie", "sch_codel", "sch_fq_codel", "tcp_dctcp", "tcp_bbr",
                 "9p", "9pnet_virtio")
"""Loaded at boot before sch_dualpi2 (dependencies first; built-in ones, e.g. fq_codel, are skipped)."""
GUEST_BINARIES = ("usr/bin/busybox", "usr/bin/ip", "usr/sbin/tc", "usr/bin/iperf3", "usr/bin/tcpdump",
                  "usr/sbin/ethtool", "usr/bin/date")
SHARE_TAG = "l4stb"
"""The virtio-9p mount tag of the per-repeat folder (qemu -virtfs mount_tag=...)."""

INIT = """#!/usr/bin/busybox sh
# l4stb guest init: mount, load modules, run the repeat's script from the host's folder, power off.
B=/usr/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
$B mount -t tmpfs tmp /tmp
$B mount -t tmpfs run /run
$B mkdir -p /run/netns /out
$B --install -s /usr/bin 2>/dev/null
for m in $($B cat /lib/l4stb-modules/order); do
  $B insmod /lib/l4stb-modules/$m || echo "l4stb-init: insmod $m failed" >&2
done
if $B mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 {tag} /out; then
  if [ -f /out/guest.sh ]; then
    $B sh /out/guest.sh > /out/guest.log 2>&1
    echo "$?" > /out/guest.rc
  else
    echo "l4stb-init: no guest.sh in the shared folder" >&2
  fi
  $B sync
  $B umount /out
else
  echo "l4stb-init: cannot mount the shared folder" >&2
fi
$B poweroff -f
""".replace("{tag}", SHARE_TAG)


def extract(pset: PackageSet, cache: Path, root: Path) -> None:
    for p in pset.packages:
        subprocess.run(["dpkg-deb", "-x", str(cache / p.file), str(root)], check=True, capture_output=True)


def missing_libraries(root: Path, binaries=GUEST_BINARIES) -> list[str]:
    """Shared libraries a guest binary needs that the root lacks (asked of the root's own ld.so)."""
    ld = root / "usr/lib64/ld-linux-x86-64.so.2"
    if not ld.exists():
        return ["ld-linux-x86-64.so.2 (libc6 is not in the image)"]
    missing = []
    for b in binaries:
        path = root / b
        if not path.exists():
            missing.append(f"{b} (not in the image)")
            continue
        out = subprocess.run([str(ld), "--library-path", str(root / "usr/lib/x86_64-linux-gnu"), "--list",
                              str(path)], capture_output=True, text=True)
        missing += [f"{line.split()[0]} (needed by {b})" for line in out.stdout.splitlines() if "not found" in line]
    return missing


def build_initramfs(pset: PackageSet, cache: Path, dualpi2_ko: Path, out: Path) -> dict:
    """Write ``out``/initrd.gz and ``out``/vmlinuz for ``pset``; returns what went in (for the manifest)."""
    if shutil.which("cpio") is None:
        raise L4stbError("cpio is not installed; the qemu provider packs the guest's initramfs with it. Run "
                         "`bash scripts/install.sh` or `apt-get install cpio`.")
    stage = out / ".stage"
    if stage.exists():
        shutil.rmtree(stage)
    root = stage / "root"
    root.mkdir(parents=True)
    extract(pset, cache, root)
    lacking = missing_libraries(root)
    if lacking:
        raise L4stbError(f"the guest image lacks {', '.join(lacking)}; Debian's sid changed a library name. Add "
                         "the package that ships it to l4stb.linuxvm.debian.USERLAND.")
    modules_dir = root / "usr/lib/modules" / pset.release
    vmlinuz = modules_dir / "vmlinuz"
    if not vmlinuz.is_file():
        boot = sorted((root / "boot").glob("vmlinuz-*")) if (root / "boot").is_dir() else []
        if not boot:
            raise L4stbError(f"no kernel image in {pset.file_of(f'linux-binary-{pset.release}')}")
        vmlinuz = boot[0]
    shutil.copyfile(vmlinuz, out / "vmlinuz.tmp")
    order = kmods.load_order(list(GUEST_MODULES), kmods.index_modules(modules_dir))
    mod_dir = root / "usr/lib/l4stb-modules"
    names = kmods.install_modules(order, mod_dir)
    shutil.copyfile(dualpi2_ko, mod_dir / "sch_dualpi2.ko")
    names.append("sch_dualpi2.ko")
    (mod_dir / "order").write_text("\n".join(names) + "\n")
    shutil.rmtree(root / "usr/lib/modules")  # 130 MB of modules the guest never loads
    if (root / "boot").exists():
        shutil.rmtree(root / "boot")
    for d in ("bin", "sbin", "lib", "lib64"):
        if not (root / d).exists():
            os.symlink(f"usr/{d}", root / d)
    for d in ("proc", "sys", "dev", "tmp", "run", "out", "etc", "var"):
        (root / d).mkdir(exist_ok=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "init").write_text(INIT)
    os.chmod(root / "init", 0o755)
    files = subprocess.run(["find", ".", "-mindepth", "1"], cwd=root, capture_output=True, check=True).stdout
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet", "--owner=0:0"], cwd=root, input=files,
                          capture_output=True, check=True).stdout
    with open(out / "initrd.gz.tmp", "wb") as f:
        f.write(gzip.compress(cpio, compresslevel=1, mtime=0))
    os.replace(out / "initrd.gz.tmp", out / "initrd.gz")
    os.replace(out / "vmlinuz.tmp", out / "vmlinuz")
    shutil.rmtree(stage)
    return {"kernel": pset.release, "modules": names, "initrd_bytes": (out / "initrd.gz").stat().st_size}
