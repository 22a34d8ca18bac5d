"""import-logs: turn existing raw files (a router log dump, iperf3 JSON) into a run of kind "imported".

The run looks like a fetched one, so parsing, pools and reports read it the same way:

    runs/<id>/raw/router/r01/<router log files>        e.g. llmrawdata.txt, or messages + messages.0.bz2 ...
    runs/<id>/raw/<host>/r01/<iperf3 files>             host from the JSON's system_info, else client1
    runs/<id>/manifest.json                             kind "imported", status "imported", each file's sha256

All files go into repeat 1 (a rotated set given together is read oldest first). The run folder is built
under a temp name and renamed into place, so an interrupted import leaves nothing half made.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from l4stb.analysis.flows import hostname_of, read_iperf3
from l4stb.logfiles import open_log
from l4stb.analysis.rawfiles import DEFAULT_ROUTER_HOST
from l4stb.errors import L4stbError
from l4stb.layout import repeat_dirname
from l4stb.logformat import LINE_SHAPES
from l4stb.manifest import FileRecord, Manifest, RepeatRecord, collect_versions
from l4stb.workspace import NAME_RE, Workspace, atomic_write_json, sha256_file, staging_path, utc_iso, validate_name

log = logging.getLogger(__name__)

DEFAULT_CLIENT_HOST = "client1"
SNIFF_BYTES = 8 << 20


def _check_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise L4stbError(f"{what} {path} does not exist.")
    if not path.is_file():
        raise L4stbError(f"{what} {path} is not a file.")
    return path


def _sniff_log(path: Path) -> bool:
    """Whether the first few MB of a log hold any known decision line (a wrong file gets a warning)."""
    try:
        with open_log(path) as fh:
            head = fh.read(SNIFF_BYTES)
    except (OSError, EOFError, ValueError) as exc:
        raise L4stbError(f"router log {path} cannot be read ({exc}); pass a plain, .bz2, .gz or .xz log "
                         "file.") from None
    return any(p.encode() in head for p in LINE_SHAPES)


def import_logs(ws: Workspace, router_logs: list[Path], iperf3_files: list[Path], name: str | None = None) -> str:
    """Create an imported run from raw files and return its run id."""
    if not router_logs:
        raise L4stbError("import-logs needs at least one --router-log FILE.")
    router_logs = [_check_file(Path(p), "router log") for p in router_logs]
    iperf3_files = [_check_file(Path(p), "iperf3 file") for p in iperf3_files]
    run_id = validate_name(name, "run name") if name else ws.new_run_id("imported")
    if ws.run_dir(run_id).exists():
        raise L4stbError(f"a run named {run_id} already exists in {ws.runs_dir}; choose another --name.")

    plan: list[tuple[Path, str, str]] = []  # (source, host, name in the repeat folder)
    taken: set[tuple[str, str]] = set()
    repeat = repeat_dirname(1)
    for src in router_logs:
        if not _sniff_log(src):
            log.warning("%s: no %s line in its first %d MB; is it a router log?", src, "/".join(LINE_SHAPES),
                        SNIFF_BYTES >> 20)
        plan.append((src, DEFAULT_ROUTER_HOST, src.name))
    hosts_seen: dict[Path, str] = {}
    for src in iperf3_files:
        try:
            doc = read_iperf3(src)
        except (ValueError, OSError) as exc:
            raise L4stbError(f"iperf3 file {src} cannot be imported: {exc}.") from None
        host = hostname_of(doc) or DEFAULT_CLIENT_HOST
        if not NAME_RE.match(host) or host == DEFAULT_ROUTER_HOST:
            host = DEFAULT_CLIENT_HOST
        hosts_seen[src] = host
        plan.append((src, host, src.name if src.name.endswith(".json") else src.name + ".json"))
    for _src, host, fname in plan:
        validate_name(fname, "file name")
        if (host, fname) in taken:
            raise L4stbError(f"two files named {fname} would both go to raw/{host}/{repeat}/; rename one of them.")
        taken.add((host, fname))

    final = ws.run_dir(run_id)
    staging = staging_path(ws.run_dir(run_id))  # a killed import's leftovers are cleaned by the next command
    if staging.exists():
        shutil.rmtree(staging)
    try:
        files: dict[str, FileRecord] = {}
        for src, host, fname in plan:
            rel = f"raw/{host}/{repeat}/{fname}"
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            digest = sha256_file(dest)
            if digest != sha256_file(src):
                raise L4stbError(f"{src} changed while it was copied; import it again when nothing writes to it.")
            files[rel] = FileRecord(host=host, remote_path=str(src.resolve()), size=dest.stat().st_size, sha256=digest)
        now = utc_iso()
        manifest = Manifest(
            run_id=run_id, kind="imported", status="imported", provider="import", created=now,
            versions=collect_versions(),
            repeats={"1": RepeatRecord(repeat=1, seed=0, status="ok", finished=now,
                                       detail="imported from existing files")},
            files=files,
            steps={
                "import": {"status": "done", "finished": now, "router_host": DEFAULT_ROUTER_HOST,
                           "router_logs": [str(p.resolve()) for p in router_logs],
                           "iperf3": {str(p.resolve()): h for p, h in hosts_seen.items()}},
                "fetch": {"status": "done", "finished": now, "source": "import-logs", "files": len(files),
                          "bytes": sum(r.size for r in files.values())},
            },
        )
        atomic_write_json(staging / "manifest.json", manifest.model_dump(mode="json"))
        ws.runs_dir.mkdir(parents=True, exist_ok=True)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return run_id
