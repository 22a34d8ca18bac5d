"""Fetch the guest's Debian packages once into a cache: resolve a kernel version that is complete in sid, download, record sha256.

Debian's sid moves and its mirror keeps only current versions, so no version is hard-pinned here: at set-up
the newest kernel ABI whose ``linux-binary``, ``linux-modules`` and ``linux-headers`` packages are all
present (and whose ``linux-source-<major.minor>`` is at the same upstream version) is chosen, and its
packages are kept in the cache. A user may pin a kernel version they already have cached.

apt does the downloading and its own signature and hash checks (it verifies the suite's signed Release
file and each .deb's SHA256 from the Packages index), with a private configuration: its own sources list
naming ``sid`` at the mirror the machine's apt already uses, its own lists and archives folders, and an
empty dpkg status, so the machine's apt configuration is never touched. Every file kept is recorded with
its sha256 in ``packages.json`` and checked again on every use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from l4stb.errors import L4stbError
from l4stb.workspace import atomic_write_text, sha256_file

DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "sid"
FLAVOUR = "amd64"

USERLAND = (
    "busybox-static",  # init, shell, mount, sleep, kill
    "coreutils",  # date +%s%N for the tc sampler's timestamps (busybox's date has no %N)
    "iproute2", "iperf3", "libiperf0", "tcpdump", "ethtool",
    # shared libraries of the above (checked by image.missing_libraries after extraction)
    "libc6", "libgcc-s1", "libssl3t64", "libsctp1", "libbpf1", "libelf1t64", "libmnl0", "libcap2",
    "libxtables12", "libbsd0", "libmd0", "libtirpc3t64", "libselinux1", "libpcre2-8-0", "zlib1g", "libzstd1",
    "libdb5.3t64", "libpcap0.8t64", "libdbus-1-3", "libsystemd0", "liblz4-1", "liblzma5", "libgcrypt20",
    "libgpg-error0", "libibverbs1", "libnl-3-200", "libnl-route-3-200", "libacl1", "libattr1", "libgmp10",
)
"""What the guest runs. Debian's busybox-static runs its own applets before anything on PATH, so the guest
script calls /usr/bin/ip, /usr/sbin/tc, /usr/bin/iperf3, /usr/bin/tcpdump and /usr/bin/date by full path."""

_SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9.+~:-]{0,120}$")
_KERNEL_RE = re.compile(r"^linux-binary-(\d+\.\d+\.\d+\+deb\d+)-" + FLAVOUR + r"$")
_MIRROR_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9._~/-]*)?$")


@dataclass(frozen=True)
class CachedPackage:
    package: str
    version: str
    file: str
    sha256: str
    size: int


@dataclass
class PackageSet:
    """The packages of one kernel version in the cache (``packages.json``)."""

    kernel: str
    """The kernel ABI, e.g. ``7.2.13+deb14`` (the modules folder is ``<kernel>-amd64``)."""
    mirror: str
    packages: list[CachedPackage]

    @property
    def release(self) -> str:
        return f"{self.kernel}-{FLAVOUR}"

    def file_of(self, package: str) -> str:
        for p in self.packages:
            if p.package == package:
                return p.file
        raise L4stbError(f"the package cache has no {package}; run `l4stb up --provider qemu` again to fetch it")


def kernel_packages(kernel: str) -> tuple[str, ...]:
    return (f"linux-binary-{kernel}-{FLAVOUR}", f"linux-modules-{kernel}-{FLAVOUR}")


def build_packages(kernel: str) -> tuple[str, ...]:
    """Installed into the build chroot (not downloaded here): what compiling sch_dualpi2 out of tree needs."""
    major_minor = ".".join(kernel.split(".")[:2])
    return (f"linux-headers-{kernel}-{FLAVOUR}", f"linux-source-{major_minor}")


def system_mirror(sources_dirs: tuple[str, ...] = ("/etc/apt/sources.list", "/etc/apt/sources.list.d")) -> str:
    """The Debian mirror this machine's apt already uses (deb822 ``URIs:`` or one-line ``deb`` entries)."""
    texts = []
    for entry in sources_dirs:
        p = Path(entry)
        files = sorted(p.glob("*.list")) + sorted(p.glob("*.sources")) if p.is_dir() else [p]
        for f in files:
            try:
                texts.append(f.read_text(errors="replace"))
            except OSError:
                continue
    for text in texts:
        for line in text.splitlines():
            line = line.strip()
            m = re.match(r"^URIs:\s*(\S+)", line) or re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+\S+", line)
            if m and "security" not in m.group(1) and _MIRROR_RE.match(m.group(1).rstrip("/")):
                return m.group(1).rstrip("/")
    return DEFAULT_MIRROR


class AptCache:
    """A private apt for sid: its own sources list, lists and archives under ``root``."""

    def __init__(self, root: Path, mirror: str):
        if not _MIRROR_RE.match(mirror):
            raise L4stbError(f"the Debian mirror {mirror!r} is not an http(s) URL; set L4STB_DEBIAN_MIRROR to one "
                             "(e.g. http://deb.debian.org/debian)")
        self.root = root
        self.mirror = mirror
        self.archives = root / "archives"

    def _options(self) -> list[str]:
        return ["-o", f"Dir::Etc::sourcelist={self.root / 'sources.list'}", "-o", "Dir::Etc::sourceparts=-",
                "-o", f"Dir::State::Lists={self.root / 'lists'}", "-o", f"Dir::Cache::archives={self.archives}",
                "-o", "Dir::State::status=/dev/null", "-o", f"APT::Architecture={FLAVOUR}",
                "-o", "APT::Sandbox::User=root", "-o", "Debug::NoLocking=1"]

    def _run(self, tool: str, args: list[str], what: str) -> str:
        if shutil.which(tool) is None:
            raise L4stbError(f"`{tool}` is not installed; the qemu provider fetches Debian's packages with apt. "
                             "Run it on a Debian or Ubuntu machine (or install apt).")
        proc = subprocess.run([tool, *self._options(), *args], capture_output=True, text=True, timeout=900,
                              cwd=self.archives)
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-3:])
            raise L4stbError(f"could not {what} from {self.mirror} ({SUITE}): {tail or 'apt failed'}. The qemu "
                             "provider needs the Debian package registry once, at `l4stb up`; later runs use the "
                             f"cache in {self.root}.")
        return proc.stdout

    def update(self) -> None:
        for sub in ("lists/partial", "archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / "sources.list", f"deb {self.mirror} {SUITE} main\n")
        self._run("apt-get", ["-q", "update"], "read the package index")

    def names(self, pattern: str) -> list[str]:
        out = self._run("apt-cache", ["search", "--names-only", pattern], "search the package index")
        return [line.split(" - ", 1)[0].strip() for line in out.splitlines() if " - " in line]

    def version(self, package: str) -> str | None:
        out = self._run("apt-cache", ["policy", package], f"look up {package}")
        m = re.search(r"Candidate:\s*(\S+)", out)
        return m.group(1) if m and m.group(1) != "(none)" else None

    def download(self, packages: list[str]) -> None:
        for p in packages:
            if not _SAFE_NAME.match(p):
                raise L4stbError(f"refusing the package name {p!r}")
        self._run("apt-get", ["-q", "download", *packages], f"download {len(packages)} packages")


def newest_complete_kernel(apt: AptCache) -> str:
    """The newest kernel ABI with binary, modules and headers packages and a source package of that version."""
    candidates = []
    for name in apt.names(f"^linux-binary-.*-{FLAVOUR}$"):
        m = _KERNEL_RE.match(name)
        if m:
            candidates.append(m.group(1))

    def key(k: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", k))

    for kernel in sorted(candidates, key=key, reverse=True):
        upstream = kernel.split("+")[0]
        versions = [apt.version(p) for p in (*kernel_packages(kernel), *build_packages(kernel))]
        if all(v is not None and v.startswith(upstream) for v in versions):
            return kernel
    raise L4stbError(f"Debian {SUITE} at {apt.mirror} has no kernel whose binary, modules, headers and source "
                     "packages are all present at one version right now; try again later or pin a kernel you "
                     "have cached with --kernel.")


def _deb_field(path: Path, field: str) -> str:
    out = subprocess.run(["dpkg-deb", "-f", str(path), field], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def fetch(cache: Path, *, kernel: str | None = None, mirror: str | None = None) -> PackageSet:
    """The package set for ``kernel`` (default: the newest complete one in sid), downloading what is missing."""
    record = cache / "packages.json"
    if kernel is not None:
        cached = load(cache, kernel)
        if cached is not None:
            return cached
    apt = AptCache(cache / "apt", mirror or os.environ.get("L4STB_DEBIAN_MIRROR") or system_mirror())
    apt.update()
    chosen = kernel or newest_complete_kernel(apt)
    wanted = [*kernel_packages(chosen), *USERLAND]
    apt.download(wanted)
    packages = []
    debs = {p.name: p for p in apt.archives.glob("*.deb")}
    for name in wanted:
        matches = [p for fn, p in debs.items() if fn.startswith(name.replace(":", "%3a") + "_")]
        if not matches:
            raise L4stbError(f"apt reported success but {name} is not in {apt.archives}; remove that folder and "
                             "run `l4stb up --provider qemu` again")
        path = max(matches, key=lambda p: p.stat().st_mtime)
        packages.append(CachedPackage(name, _deb_field(path, "Version"), str(path.relative_to(cache)),
                                      sha256_file(path), path.stat().st_size))
    pset = PackageSet(chosen, apt.mirror, packages)
    sets = _read_sets(record)
    sets[chosen] = asdict(pset)
    atomic_write_text(record, json.dumps(sets, indent=1, sort_keys=True) + "\n")
    return pset


def _read_sets(record: Path) -> dict:
    if not record.is_file():
        return {}
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError) as e:
        raise L4stbError(f"{record} is not readable JSON ({e}); remove it and run `l4stb up --provider qemu` again "
                         "(the downloads are kept)") from None
    return data if isinstance(data, dict) else {}


def load(cache: Path, kernel: str) -> PackageSet | None:
    """The cached set for ``kernel``, each file's sha256 checked; None when it is not cached."""
    data = _read_sets(cache / "packages.json").get(kernel)
    if data is None:
        return None
    pset = PackageSet(data["kernel"], data["mirror"], [CachedPackage(**p) for p in data["packages"]])
    for p in pset.packages:
        path = cache / p.file
        if not path.is_file() or sha256_file(path) != p.sha256:
            raise L4stbError(f"the cached package {path} is missing or changed since it was downloaded (sha256 "
                             f"mismatch). Remove {cache} and run `l4stb up --provider qemu` again.")
    return pset
