"""The `l4stb` command line: click commands that call the pipeline stages and print through one rich Console."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path

import click
from rich import box
from rich.status import Status
from rich.table import Table

from l4stb import __version__, interrupts
from l4stb.console import clean, console, err_console, print_error, safe
from l4stb.errors import INTERRUPTED_MESSAGE, L4stbError, explain_environment_error
from l4stb.workspace import Workspace

DEFAULT_WORKDIR = "./l4stb-work"


class Ctx:
    def __init__(self, workdir: str, verbose: bool):
        self.workdir = workdir
        self.verbose = verbose

    @property
    def ws(self) -> Workspace:
        return Workspace.at(self.workdir)

    def reading(self, command: str):
        """The lock for a command that only reads, unless the workdir does not exist: then there is nothing to
        protect, and a read-only command must not create the folder or its lock file."""
        return self.ws.locked(command) if self.ws.root.is_dir() else nullcontext()


pass_ctx = click.make_pass_decorator(Ctx)


def _subcommand_workdir(ctx: click.Context, _param, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(Ctx).workdir = value


def _workdir_everywhere(group: click.Group) -> None:
    """`--workdir` after the subcommand as well as before it (the README promises every command takes it)."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _workdir_everywhere(command)
        elif not any(p.name == "workdir" for p in command.params):
            command.params.append(click.Option(["--workdir"], type=click.Path(file_okay=False), default=None,
                                               expose_value=False, callback=_subcommand_workdir,
                                               help="Workdir (same as the global --workdir)."))


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the package version and which simulator engine this machine runs (compiled or pure Python)."""
    if not value or ctx.resilient_parsing:
        return
    from l4stb.sim.compiled import engine_name  # lazy: reads the engine build only when --version asks

    click.echo(f"l4stb, version {__version__}\nsimulator engine: {engine_name()}")
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help=f"Workdir for the testbed, runs and models (env L4STB_WORKDIR, default {DEFAULT_WORKDIR}).")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details and show tracebacks of internal errors.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and the simulator engine in use, then exit.")
@click.pass_context
def cli(ctx: click.Context, workdir: str | None, verbose: bool) -> None:
    """l4stb: the L4S-LLM experiment end to end.

    \b
    l4stb up                              bring up the testbed (sim provider by default)
    l4stb run --scenario dctcp-8mbps      iperf3 flows through the DualPI2 router, N repeats
    l4stb fetch-logs                      pull router logs and iperf3 JSON into the run folder
    l4stb train-and-report                logs -> pool -> LoRA fine-tune -> evaluation -> HTML report
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # a logged path or name never carries terminal escapes
        handler.addFilter(_clean_record)
    ctx.obj = Ctx(workdir or os.environ.get("L4STB_WORKDIR") or DEFAULT_WORKDIR, verbose)


# --------------------------------------------------------------------------------------------
# testbed
# --------------------------------------------------------------------------------------------


@cli.command()
@click.option("--provider", type=click.Choice(["sim", "vagrant", "qemu"]), default="sim", show_default=True,
              help="sim: the embedded simulator; vagrant: FreeBSD VMs; qemu: a real Linux kernel in a VM.")
@click.option("--topology", default="dumbbell-4", show_default=True, help="Shipped topology name or a YAML path.")
@click.option("--kernel", default=None, metavar="VERSION",
              help="qemu: the Debian kernel to use, e.g. 7.2.13+deb14 (default: the newest complete one in sid; "
                   "a cached one needs no network).")
@click.option("--rebuild", is_flag=True, help="qemu: rebuild sch_dualpi2 and the initramfs even when cached.")
@click.option("--capture/--no-capture", default=True, show_default=True,
              help="qemu: capture packets on both sides of the bottleneck to write the router's log set (off: "
                   "iperf3 and the qdisc's own samples only, for rates the guest cannot capture).")
@click.option("--dry-run", is_flag=True, help="Print the per-host plan and touch nothing.")
@pass_ctx
def up(c: Ctx, provider: str, topology: str, kernel: str | None, rebuild: bool, capture: bool,
       dry_run: bool) -> None:
    """Bring up the testbed: client1, client2, router, server."""
    # lazy: the command's stage, imported when the command runs
    from l4stb.config import load_topology
    from l4stb.providers import get_provider
    from l4stb.providers.base import TestbedInfo

    topo = load_topology(topology)
    prov = get_provider(provider, c.ws)
    if dry_run:
        console.print(prov.plan_up(topo).render(), markup=False, soft_wrap=True)
        return
    with c.ws.locked("up"):
        if c.ws.testbed_file.is_file():
            current = TestbedInfo.load(c.ws)
            if (current.provider, current.topology) != (provider, topo.name):
                raise L4stbError(
                    f"a {current.provider} testbed ({current.topology}) is already up in {c.ws.root}. "
                    "Run `l4stb down` first, or use another --workdir."
                )
        if provider == "qemu":
            info = _qemu_up(prov, topo, kernel, rebuild, capture)
        elif kernel or rebuild or not capture:
            raise L4stbError("--kernel, --rebuild and --no-capture are options of the qemu provider; drop them for "
                             f"--provider {provider}.")
        else:
            info = prov.up(topo)
        info.save(c.ws)
    console.print(f"[green]testbed up[/]: provider [bold]{safe(provider)}[/], topology [bold]{safe(topo.name)}[/], "
                  f"hosts {safe(', '.join(info.hosts))}; workdir {safe(c.ws.root)}")
    if provider == "vagrant":  # a real testbed proves itself before any data is taken from it
        # lazy: the command's stage, imported when the command runs
        from l4stb.check import run_check

        with c.ws.locked("check"):
            _print_check(run_check(c.ws, log_headroom=False))


def _qemu_up(prov, topo, kernel, rebuild, capture):
    """The qemu provider's set-up, one progress line per stage (downloads and the module build take minutes once)."""
    with Status("qemu: starting", console=console) as status:
        return prov.up(topo, kernel=kernel, rebuild=rebuild, capture=capture,
                       progress=lambda stage: status.update(f"qemu: {stage}"))


@cli.command()
@click.option("--destroy", is_flag=True, help="Also delete the hosts (sim folders / VMs). Unfetched logs are lost.")
@pass_ctx
def down(c: Ctx, destroy: bool) -> None:
    """Stop the testbed (VMs halted; simulated hosts kept unless --destroy)."""
    # lazy: the command's stage, imported when the command runs
    from l4stb.providers import get_provider
    from l4stb.providers.base import TestbedInfo

    with c.ws.locked("down"):
        info = TestbedInfo.load(c.ws)
        get_provider(info.provider, c.ws).down(destroy=destroy)
        c.ws.testbed_file.unlink()
    console.print(f"testbed ({safe(info.provider)}, {safe(info.topology)}) is down" + (" and destroyed" if destroy else ""))


@cli.command()
@click.option("--scenario", "scenario_name", default=None,
              help="Judge against this scenario's AQM, kern.hz, ECN and logging (default dctcp-8mbps).")
@click.option("--facts", is_flag=True, help="Instead, write what only the booted FreeBSD VMs can answer (NICs, "
              "pkg ABI, sysctl limits, kldstat, ipfw rules, msgbuf...) to one text file to attach to an issue.")
@pass_ctx
def check(c: Ctx, scenario_name: str | None, facts: bool) -> None:
    """Self-check the testbed: a 5 s DCTCP flow through the bottleneck, then AQM, kern.hz, logs, CE and ECN."""
    # lazy: the command's stage, imported when the command runs
    from l4stb.check import run_check, write_vm_report

    with c.ws.locked("check"):
        if facts:
            path = write_vm_report(c.ws, scenario_name)
            console.print(f"wrote {safe(path)}: attach it to an issue (host names, addresses and versions; no keys)")
            return
        result = run_check(c.ws, scenario_name)
    _print_check(result)


def _print_check(result) -> None:
    table = Table(title="l4stb check: all passed")
    table.add_column("check")
    table.add_column("seen")
    for what, detail in result.passed:
        table.add_row(what, detail)
    console.print(table)
    for finding in result.findings:
        console.print(f"[yellow]found[/]: {safe(finding)}")


@cli.command()
@pass_ctx
def status(c: Ctx) -> None:
    """Show the testbed and every run with its state."""
    # lazy: the command's stage, imported when the command runs
    from l4stb.manifest import load_manifest
    from l4stb.providers import get_provider
    from l4stb.providers.base import TestbedInfo

    c.ws.ensure_usable()
    if c.ws.testbed_file.is_file():
        info = TestbedInfo.load(c.ws)
        states = get_provider(info.provider, c.ws).status()
        table = Table(title=safe(f"testbed: {info.provider} / {info.topology} (up since {info.created})"))
        table.add_column("host")
        table.add_column("role")
        table.add_column("state")
        for host, meta in info.hosts.items():
            table.add_row(safe(host), safe(meta.get("role", "")), safe(states.get(host, "unknown")))
        console.print(table)
    else:
        console.print(f"no testbed is up in {safe(c.ws.root)} (`l4stb up` starts one)")
    _print_sweeps(c)
    runs = c.ws.run_ids()
    if not runs:
        console.print("no runs yet")
        return
    table = _IdTable("runs", ("run", "kind", "status", "repeats ok", "fetched", "steps"), runs)
    damaged, interrupted = [], False
    for run_id in runs:
        try:
            m = load_manifest(c.ws, run_id)
        except L4stbError as exc:  # one damaged run never hides the others
            table.add_row(safe(run_id), "?", "[red]damaged[/]", "-", "-", "-")
            damaged.append(str(exc))
            continue
        fetch = m.steps.get("fetch")
        fetched = fetch.get("status", "-") if isinstance(fetch, dict) else "-"
        steps = ", ".join(k for k, v in m.steps.items() if k != "fetch" and isinstance(v, dict) and v.get("status") == "done")
        interrupted |= m.shown_status() == "interrupted"
        table.add_row(safe(run_id), m.kind, m.shown_status(), f"{len(m.ok_repeats())}/{len(m.repeats)}", safe(fetched),
                      safe(steps or "-"))
    table.print()
    for text in damaged:
        print_error(text)
    if interrupted:
        console.print("an interrupted run keeps its finished repeats: `l4stb run --resume RUN_ID` completes it")


class _IdTable:
    """Rows keyed by an id the user copies into the next command (a run, a sweep): a table when the terminal is wide
    enough to show every id whole, else one block per row (the id on its own line), never an id cut short."""

    def __init__(self, title: str, columns: tuple[str, ...], ids: list[str]):
        self.title, self.columns, self.rows = title, columns, []
        self.width = max((len(i) for i in ids), default=0)

    def add_row(self, *cells: str) -> None:
        self.rows.append(cells)

    def print(self) -> None:
        others = sum(max([len(clean(str(r[i]))) for r in self.rows] + [len(col)]) + 3
                     for i, col in enumerate(self.columns) if i)
        if self.width + others + 4 <= console.width:
            table = Table(title=self.title, box=box.SIMPLE_HEAD)
            for col in self.columns:
                table.add_column(col, no_wrap=True)
            for row in self.rows:
                table.add_row(*row)
            console.print(table)
            return
        console.print(f"[bold]{self.title}[/]")
        for row in self.rows:
            console.print(row[0], soft_wrap=True)
            console.print("    " + "; ".join(f"{col} {cell}" for col, cell in zip(self.columns[1:], row[1:])))


def _print_sweeps(c: Ctx) -> None:
    """The workdir's sweeps: id, scenario, how many combinations and how many of their runs are complete."""
    # lazy: the command's stage, imported when the command runs
    from l4stb.manifest import load_manifest
    from l4stb.sweep import load_sweep, sweep_ids

    ids = sweep_ids(c.ws)
    if not ids:
        return
    table = _IdTable("sweeps", ("sweep", "scenario", "swept", "combinations", "complete"), ids)
    for sweep_id in ids:
        try:
            record = load_sweep(c.ws, sweep_id)
        except L4stbError as exc:
            table.add_row(safe(sweep_id), "?", "[red]damaged[/]", "-", "-")
            print_error(str(exc))
            continue
        done = 0
        for combo in record.combinations:
            if combo.run_id and c.ws.manifest_file(combo.run_id).is_file():
                try:
                    done += load_manifest(c.ws, combo.run_id).status == "complete"
                except L4stbError:
                    pass
        table.add_row(safe(sweep_id), safe(record.scenario), safe(", ".join(record.axes)),
                      str(len(record.combinations)), f"{done}/{len(record.combinations)}")
    table.print()


@cli.command()
@click.option("--show", "show", default=None, metavar="NAME",
              help="Print a shipped scenario's YAML, to copy as the template of your own (l4stb scenarios --show "
                   "dctcp-8mbps > mine.yaml).")
def scenarios(show: str | None) -> None:
    """List the shipped scenarios and topologies."""
    # lazy: the command's stage, imported when the command runs
    from l4stb.config import load_scenario, load_topology
    from l4stb.resources import find_scenario, list_scenarios, list_topologies
    from l4stb.units import format_duration, format_rate

    if show is not None:
        if show not in list_scenarios():
            find_scenario(show)  # the error names the closest shipped scenario
            raise L4stbError(f"--show {show}: give the name of a shipped scenario ({', '.join(list_scenarios())}).")
        click.echo(find_scenario(show).read_text(), nl=False)
        return

    wide = console.width >= 150  # the description column only when there is room for it
    table = Table(title="scenarios (use a name, or the path of your own YAML)")
    for col in ("name", "aqm", "rate", "delay", "flows", "duration x repeats") + (("description",) if wide else ()):
        table.add_column(col, overflow="fold", no_wrap=col == "name")
    for name in list_scenarios():
        s = load_scenario(name)
        flows = " + ".join(f"{f.host} {f.cc}×{f.streams}" for f in s.flows)
        table.add_row(name, s.aqm.name, format_rate(s.bottleneck.rate), format_duration(s.bottleneck.delay), flows,
                      f"{format_duration(s.duration)} x {s.repeats}", *((safe(s.description),) if wide else ()))
    console.print(table)
    topos = Table(title="topologies")
    topos.add_column("name")
    topos.add_column("hosts")
    topos.add_column("description", overflow="fold")
    for name in list_topologies():
        t = load_topology(name)
        topos.add_row(name, ", ".join(f"{h} ({s.role})" for h, s in t.hosts.items()), safe(t.description))
    console.print(topos)


# --------------------------------------------------------------------------------------------
# experiments
# --------------------------------------------------------------------------------------------


@cli.command()
@click.option("--scenario", "scenario_name", required=False, help="Shipped scenario name or a YAML path.")
@click.option("--repeats", type=click.IntRange(min=1), default=None, help="Override the scenario's number of repeats.")
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a scenario field, e.g. bottleneck.rate=20Mbit or duration=30s (repeatable).")
@click.option("--sweep", "sweeps", multiple=True, metavar="KEY=V1,V2,...",
              help="Run the cross product of values, e.g. bottleneck.rate=8Mbit,20Mbit (repeatable).")
@click.option("--sweep-zip", "zips", multiple=True, metavar="KEY=V1,V2,...",
              help="Sweep keys together: the i-th value of each goes into the same combination, e.g. "
                   "--sweep-zip hosts.client1.stack=linux,freebsd --sweep-zip hosts.client2.stack=linux,freebsd "
                   "(repeatable; every key needs as many values).")
@click.option("--resume", "resume", default=None, metavar="[RUN_ID]",
              help="Finish an interrupted run's pending repeats (default: the latest run); with --sweep, skip the "
                   "combinations already complete.",
              is_flag=False, flag_value="__latest__")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Repeats run in parallel (sim provider; default: all cores).")
@click.option("--executor", type=click.Choice(["local", "dask", "ray"]), default="local", show_default=True,
              help="Where sweep runs execute (dask/ray need a cluster address in DASK_SCHEDULER_ADDRESS/RAY_ADDRESS).")
@click.option("--dry-run", is_flag=True, help="Print the per-host plan (or the sweep's combinations) and run nothing.")
@click.option("--provider", "plan_provider", type=click.Choice(["sim", "vagrant", "qemu"]), default=None,
              help="With --dry-run: show this provider's plan (default: the testbed that is up, else sim).")
@pass_ctx
def run(c: Ctx, scenario_name, repeats, seed, overrides, sweeps, zips, resume, jobs, executor, dry_run,
        plan_provider) -> None:
    """Run a scenario's repeats on the testbed that is up."""
    # lazy: the command's stage, imported when the command runs
    from l4stb import runner

    if plan_provider and not dry_run:
        raise L4stbError("--provider goes with --dry-run (to see a provider's plan); a run uses the testbed that is "
                         "up (`l4stb up --provider ...`).")
    overrides = list(overrides)
    if repeats is not None:
        overrides.append(f"repeats={repeats}")
    if seed is not None:
        overrides.append(f"seed={seed}")
    if sweeps or zips:
        # lazy: the command's stage, imported when the command runs
        from l4stb.sweep import run_sweep

        if not scenario_name:
            raise L4stbError("--sweep needs --scenario NAME.")
        run_sweep(c.ws, scenario_name, overrides, list(sweeps), resume=resume is not None, dry_run=dry_run,
                  jobs=jobs, executor=executor, zips=list(zips))
        return
    if resume:
        # lazy: the command's stage, imported when the command runs
        from l4stb.manifest import load_manifest

        run_id = c.ws.resolve_run(None if resume == "__latest__" else resume)
        with c.ws.locked("run --resume"):
            manifest = load_manifest(c.ws, run_id)
            if manifest.status == "complete" and not manifest.pending_repeats():
                console.print(f"run {run_id} is complete ({len(manifest.ok_repeats())} repeats ok): nothing to do, "
                              "its manifest is unchanged.")
                return
            result = runner.execute(c.ws, run_id, jobs=jobs)
        _print_run_result(result)
        return
    if not scenario_name:
        raise L4stbError("`l4stb run` needs --scenario NAME (see `l4stb scenarios`), or --resume RUN_ID.")
    if dry_run:
        console.print(runner.plan_run(c.ws, scenario_name, overrides, provider=plan_provider).render(), markup=False,
                      soft_wrap=True)
        return
    with c.ws.locked("run"):
        testbed, topology, scenario = runner.resolve(c.ws, scenario_name, overrides)
        manifest = runner.start_run(c.ws, scenario, topology, testbed, overrides=overrides)
        console.print(f"run [bold]{safe(manifest.run_id)}[/]: {scenario.repeats} x {scenario.duration / 1e6:.0f} s on the "
                      f"{safe(testbed.provider)} testbed")
        result = runner.execute(c.ws, manifest.run_id, jobs=jobs)
    _print_run_result(result)


def _print_run_result(result) -> None:
    color = "green" if result.status == "complete" else "yellow"
    console.print(f"[{color}]{result.status}[/]: run {safe(result.run_id)}, {len(result.ok)} repeats ok"
                  + (f", {len(result.failed)} failed ({', '.join(map(str, result.failed))})" if result.failed else "")
                  + f", {result.wall_s:.1f} s wall. Next: `l4stb fetch-logs --run {result.run_id}`.")
    if result.status != "complete":
        console.print(f"re-run the missing repeats with `l4stb run --resume {safe(result.run_id)}`")


@cli.command("fetch-logs")
@click.option("--run", "run_ids", multiple=True, help="Run id (repeatable; default: the latest run).")
@click.option("--sweep", "sweep_id", default=None, is_flag=False, flag_value="",
              help="Fetch every run of this sweep (default with no id: the latest sweep).")
@click.option("--all", "all_runs", is_flag=True, help="Fetch every run in the workdir that is not fetched yet.")
@click.option("--clean-remote", is_flag=True, help="Delete the run's files on the hosts after a verified fetch.")
@pass_ctx
def fetch_logs(c: Ctx, run_ids, sweep_id, all_runs, clean_remote: bool) -> None:
    """Pull the router logs and iperf3 JSON of a run, verified by sha256, into runs/<id>/raw/."""
    # lazy: the command's stage, imported when the command runs
    from l4stb.fetch import fetch_run
    from l4stb.run_selection import select_runs

    with c.ws.locked("fetch-logs"):
        targets = select_runs(c.ws, run_ids, sweep_id, all_runs=all_runs, kinds=("run",))
        for run_id in targets:
            result = fetch_run(c.ws, run_id, clean_remote=clean_remote)
            console.print(f"[green]fetched[/] {run_id}: {result.files} files ({result.bytes / 1e6:.1f} MB, "
                          f"{result.new} new, {result.skipped} already there) into {safe(c.ws.raw_dir(run_id))}.")
    if sweep_id is not None:
        console.print("Next: `l4stb summary --sweep" + (f" {sweep_id}`" if sweep_id else "`")
                      + " or `l4stb report --sweep" + (f" {sweep_id}`." if sweep_id else "`."))
    elif len(targets) == 1:
        console.print(f"Next: `l4stb summary --run {targets[0]}` or `l4stb train-and-report --run {targets[0]}`.")
    else:
        console.print(f"Next: `l4stb compare {' '.join(targets[:4])}` or `l4stb summary --run ID`.")


@cli.command("import-logs")
@click.option("--router-log", "router_logs", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Router log file(s): a /var/log/messages dump, a dualpi2.log set (.N.bz2/.gz/.xz too).")
@click.option("--iperf3", "iperf3_files", multiple=True, type=click.Path(dir_okay=False),
              help="iperf3 -J output file(s) of the same experiment.")
@click.option("--name", default=None, help="Name for the imported run (default: imported-<time>).")
@pass_ctx
def import_logs(c: Ctx, router_logs, iperf3_files, name) -> None:
    """Turn existing raw files (e.g. the original testbed's llmrawdata.txt) into a run."""
    # lazy: the command's stage, imported when the command runs; loads pyarrow, slow to import
    from l4stb.analysis.importer import import_logs as do_import

    with c.ws.locked("import-logs"):
        run_id = do_import(c.ws, [Path(p) for p in router_logs], [Path(p) for p in iperf3_files], name=name)
    console.print(f"[green]imported[/] as run [bold]{safe(run_id)}[/]. Next: `l4stb summary --run {safe(run_id)}`.")


@cli.command()
@click.option("--run", "run_ids", multiple=True, help="Run id (repeatable; default: the latest run).")
@click.option("--sweep", "sweep_id", default=None, is_flag=False, flag_value="",
              help="One table over a sweep's runs (default with no id: the latest sweep).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (a list of them for several runs).")
@pass_ctx
def summary(c: Ctx, run_ids, sweep_id, as_json: bool) -> None:
    """Queue delay, throughput, utilisation, fairness, overload and coexistence of a run, per repeat and overall."""
    # lazy: the command's stage, imported when the command runs; loads pandas, slow to import
    from l4stb.analysis.summary import print_summary, summarize

    if sweep_id is not None:
        # lazy: the command's stage, imported when the command runs; loads matplotlib, pandas, slow to import
        from l4stb.analysis.sweep_report import print_sweep_table, sweep_table

        with c.reading("summary --sweep"):
            table = sweep_table(c.ws, sweep_id or None)
        if as_json:
            click.echo(json.dumps(table.to_json(), indent=2))
        else:
            print_sweep_table(table, console)
        return
    with c.reading("summary"):
        ids = [c.ws.resolve_run(r) for r in run_ids] if run_ids else [c.ws.resolve_run(None)]
        results = [summarize(c.ws, r) for r in ids]
    if as_json:
        out = [r.to_json() for r in results]
        click.echo(json.dumps(out[0] if len(out) == 1 else out, indent=2))
        return
    for result in results:
        print_summary(result, console)
    if len(results) > 1:
        console.print(f"Overlay them in one report: `l4stb compare {' '.join(ids)}`.")


@cli.command()
@click.option("--run", "run_ids", multiple=True, help="Run id (default: the latest run); several make a comparison.")
@click.option("--sweep", "sweep_id", default=None, is_flag=False, flag_value="",
              help="A report over a sweep's runs (default with no id: the latest sweep).")
@click.option("--repeat", type=int, default=None, help="The repeat the time-series figures show (default: the first).")
@click.option("--window", default=None, metavar="START:END",
              help="Zoom the time-series figures to START:END seconds of the repeat (from its start, the "
                   "scenario's t=0, as every figure's time axis), e.g. 10:12.")
@click.option("--bin", "bin_ms", type=float, default=100.0, show_default=True,
              help="Bin of the router-side per-flow throughput (ms).")
@pass_ctx
def report(c: Ctx, run_ids, sweep_id, repeat, window, bin_ms) -> None:
    """Render runs/<id>/report/index.html, summary.md and the figures (with the model sections of a trained run)."""
    # lazy: the command's stage, imported when the command runs; loads matplotlib, pandas, slow to import
    from l4stb.analysis.report import TimeseriesView, render_report

    view = TimeseriesView.from_options(repeat, window, bin_ms)
    if sweep_id is not None:
        # lazy: the command's stage, imported when the command runs; loads matplotlib, pandas, slow to import
        from l4stb.analysis.sweep_report import render_sweep_report

        with c.ws.locked("report --sweep"):
            path = render_sweep_report(c.ws, sweep_id or None)
        console.print(f"[green]sweep report[/]: {path}")
        return
    if len(run_ids) > 1:
        # lazy: the command's stage, imported when the command runs; loads pandas, slow to import
        from l4stb.analysis.compare import render_compare_report

        with c.ws.locked("report"):
            path = render_compare_report(c.ws, [c.ws.resolve_run(r) for r in run_ids], labels=(), console=console)
        console.print(f"[green]comparison report[/] of {len(run_ids)} runs: {path}")
        return
    with c.ws.locked("report"):
        run_id = c.ws.resolve_run(run_ids[0] if run_ids else None)
        # lazy: the command's stage, imported when the command runs; loads matplotlib, pandas, slow to import
        from l4stb.pipeline.saved_sections import saved_extra_files, saved_model_sections

        path = render_report(c.ws, run_id, saved_model_sections(c.ws, run_id), view=view,
                             extra_files=saved_extra_files(c.ws, run_id))
    console.print(f"[green]report[/]: {safe(path)}")


@cli.command("train-and-report")
@click.option("--run", "run_ids", multiple=True, help="Train on these runs (default: the latest run).")
@click.option("--test-run", "test_runs", multiple=True, help="Test on these held-out runs instead of a split.")
@click.option("--pool", "pool", default=None, help="Train on an existing pool (name under workdir/pools or a path).")
@click.option("--preset", default=None,
              help="State features: paper7 (default; the original code's final 7), paper8 (the paper's list), "
                   "paper8-early (the original's earlier pool), dualpi2 (DualPI2-native) or capture (what a real-Linux "
                   "run's packet capture observes); with --pool, the pool's own.")
@click.option("--reward", default=None,
              help="Reward: paper (default; packet_length / (current_queue_delay_us + 1000)), paper-delay or "
                   "throughput-delay; with --pool, the pool's own.")
@click.option("--backbone", default="tiny-gpt2", show_default=True,
              help="tiny-gpt2, smollm2-135m, or a local path / hub id of a GPT-2, OPT, Llama or T5 model.")
@click.option("--layers", type=click.IntRange(min=1), default=None, help="Keep only the first N backbone blocks.")
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Passes over the training windows; the best epoch on validation macro-F1 is kept (paper: 80).")
@click.option("--lora-rank", type=click.IntRange(min=0), default=None, help="LoRA rank (0 = full fine-tuning; paper: 128).")
@click.option("--max-train-windows", type=click.IntRange(min=0), default=None,
              help="Cap on training windows (default 15000, for CPU budgets; 0 = no cap).")
@click.option("--closed-loop/--no-closed-loop", default=True, show_default=True,
              help="Drive the simulator's router with the learned policy and compare with DualPI2.")
@click.option("--policy-every", type=click.IntRange(min=1), multiple=True, help="Closed loop: the policy decides every N-th packet.")
@click.option("--distill/--no-distill", default=True, show_default=True,
              help="Distil the model into the integer decision tree the router runs (see `l4stb distill`).")
@click.option("--closed-loop-repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Closed loop: held-out repeats per series (verdicts need at least 3).")
@click.option("--name", default=None, help="Model name (default: the backbone name).")
@click.option("--force", is_flag=True, help="Train again even when this model is up to date with these options.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Closed loop: repeats simulated in parallel worker processes (default: all cores).")
@pass_ctx
def train_and_report(c: Ctx, **options) -> None:
    """Logs -> experience pool -> LLM fine-tune (LoRA) -> evaluation -> closed loop -> HTML report."""
    # lazy: the command's stage, imported when the command runs; loads pandas, slow to import
    from l4stb.pipeline.job import TrainJob, train_and_report as do_job, validate_job

    job = TrainJob(**options)
    validate_job(job)  # every option before the lock, a fetch or a parse
    with c.ws.locked("train-and-report"):
        outcome = do_job(c.ws, job, console=console)
    console.print(outcome.headline())


@cli.group()
def pool() -> None:
    """Experience pools: import the original pickles."""


@pool.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--name", default=None, help="Pool name (default: the file's stem).")
@pass_ctx
def pool_import(c: Ctx, file: str, name: str | None) -> None:
    """Import an original L4S-LLM ExperiencePool pickle (only its expected classes are unpickled)."""
    # lazy: the command's stage, imported when the command runs; loads pandas, slow to import
    from l4stb.analysis.pool import save_pool
    from l4stb.analysis.pool_import import import_pickle

    path = Path(file)
    name = name or path.stem
    with c.ws.locked("pool import"):
        splits = import_pickle(path, name=name)
        folder = save_pool(splits, c.ws.pool_dir(None, name))
    sizes = ", ".join(f"{k} {v}" for k, v in splits.meta.sizes.items())
    console.print(f"[green]imported[/] pool [bold]{safe(name)}[/] ({len(splits.meta.feature_names)} features; {sizes}) "
                  f"into {safe(folder)}. Train on it: `l4stb train-and-report --pool {safe(name)}`.")


from l4stb import cli_analysis, cli_calibrate, cli_distill  # noqa: E402  (their own modules)

for _command in (cli_analysis.compare, cli_analysis.export, cli_analysis.plot, cli_distill.distill,
                 cli_calibrate.calibrate):
    cli.add_command(_command)
_workdir_everywhere(cli)


def _clean_record(record: logging.LogRecord) -> bool:
    record.msg, record.args = clean(record.getMessage()), ()
    return True


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one paragraph and exit 2; bugs show a traceback with -v.

    The environment's refusals (a full disk, a read-only mount, a permission, a path that is a file) are
    the user's to fix, so they are user errors too; the catch-all below is left for real bugs.
    """
    args = sys.argv[1:] if argv is None else argv
    # lazy: the command's stage, imported when the command runs
    from l4stb.manifest import record_command

    record_command(args)
    verbose = "-v" in args or "--verbose" in args
    interrupts.install_sigterm()
    try:
        cli.main(args=args, prog_name="l4stb", standalone_mode=False)
    except L4stbError as exc:
        print_error(exc)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        cause = exc.__cause__  # click turns Ctrl-C (and our SIGTERM) into Abort
        if isinstance(cause, KeyboardInterrupt):
            err_console.print(INTERRUPTED_MESSAGE)
            sys.exit(interrupts.exit_status(cause))
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        buf = io.StringIO()
        exc.show(file=buf)
        err_console.print(safe(buf.getvalue().rstrip()), soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        err_console.print(INTERRUPTED_MESSAGE)
        sys.exit(interrupts.exit_status(exc))
    except Exception as exc:  # noqa: BLE001 - the last resort; user-fixable classes are translated first
        user = explain_environment_error(exc)
        if user is not None:
            if verbose:
                traceback.print_exc()
            print_error(user)
            sys.exit(L4stbError.exit_code)
        if verbose:
            traceback.print_exc()
        else:
            print_error(f"internal error ({type(exc).__name__}: {exc}). Re-run with -v for the traceback and "
                        "report it.")
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
