"""udp_prague's text report to the same per-interval flow rows as iperf3 gives (data/flows.parquet).

FreeBSD has no TCP Prague, so on the real testbed l4stb runs Prague flows with L4STeam/udp_prague and
keeps its output as ``<host>-prague-g<G>-c<C>.udp_prague.txt``. The sender first prints

    UDP Prague sender connecting to 10.0.3.13 on port 5103 with max packet size 1400 bytes.

then, about once a second,

    [SENDER]: 12.00 sec, Sent: 3.512 Mbps, Rcvd: 3.498 Mbps, RTT: 14.210 ms, Mark: 21.30%(63/296),
    Lost: 0.00%(0/296), Pacing rate: 3.520 Mbps, InFlight/W: 5/5 packets, InBurst/B: 1/1 packets

(one line in the file). Each ``[SENDER]`` line becomes one row of :data:`l4stb.analysis.flows.FLOW_SCHEMA`
for the interval since the previous line: ``bytes``/``throughput_mbps`` from ``Rcvd`` (what the receiver
acknowledged, comparable to a TCP interval's goodput), ``rtt_us`` from ``RTT``, ``snd_cwnd`` = window W x
the packet size of the first line. UDP retransmits nothing, so ``retransmits`` is -1 (not reported). The
receiver's report (``server-<port>.udp_prague.txt``) describes the same flow from the other end and is
skipped, as iperf3 server files are.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from l4stb.analysis.flows import ConnectionNumbers, FlowRows, Iperf3Stats, rows_from_files
from l4stb.layout import UDP_PRAGUE_SUFFIX

_NAME_RE = re.compile(r"^(?P<host>[a-z][a-z0-9-]*)-prague-g(?P<g>\d+)-c(?P<c>\d+)"
                      + re.escape(UDP_PRAGUE_SUFFIX) + "$")
"""The names :func:`l4stb.layout.udp_prague_client_name` gives."""
_HEADER_RE = re.compile(r"UDP (?:RealTime )?Prague (?P<role>sender|receiver) .* max packet size (?P<size>\d+) bytes")
_SENDER_RE = re.compile(
    r"\[SENDER\]: (?P<t>[\d.]+) sec, Sent: [\d.]+ Mbps, Rcvd: (?P<rcvd>[\d.]+) Mbps, "
    r"RTT: (?P<rtt>[\d.]+) ms\b.*?InFlight/W: \d+/(?P<w>\d+) packets")


def is_report(path: Path) -> bool:
    return path.name.endswith(UDP_PRAGUE_SUFFIX)


def udp_prague_table(files: list[tuple[int, str, Path]], rel=str) -> tuple[pa.Table, Iperf3Stats]:
    """Rows for every udp_prague sender report; ``files`` holds (repeat, host, path); ``rel`` names a file.

    The stats reuse iperf3's shape: receiver reports count as server files, a file with neither a
    header nor a ``[SENDER]`` line is an error naming the file.
    """
    return rows_from_files(files, rel, lambda path: path.read_text(errors="replace"), _report_rows)


def _report_rows(rows: FlowRows, stats: Iperf3Stats, numbers: ConnectionNumbers, repeat: int, host: str,
                 path: Path, text: str, rel) -> None:
    header = _HEADER_RE.search(text)
    if header and header.group("role") == "receiver":
        stats.server_files += 1
        return
    lines = [m for m in map(_SENDER_RE.search, text.splitlines()) if m]
    if not lines:
        reason = ("no '[SENDER]: ... sec' report lines: not a udp_prague sender report, or the sender "
                  "ended before its first second")
        stats.errors.append({"file": rel(path), "error": reason})
        return
    stats.client_files += 1
    packet_bytes = int(header.group("size")) if header else -1
    group, connection = numbers.of(_NAME_RE.match(path.name), repeat, host)
    start = 0.0
    for line in lines:
        end = float(line.group("t"))
        if end <= start:
            continue  # a repeated or out-of-order stamp: no interval to report
        rcvd = float(line.group("rcvd"))
        rows.append(
            repeat=repeat, host=host, cc="prague", file=path.name, group=group, connection=connection, stream=0,
            start_s=start, end_s=end, bytes=int(round(rcvd * 1e6 / 8 * (end - start))), throughput_mbps=rcvd,
            retransmits=-1, snd_cwnd=int(line.group("w")) * packet_bytes if packet_bytes > 0 else -1,
            rtt_us=int(round(float(line.group("rtt")) * 1000)), rttvar_us=-1, omitted=False, sender=True)
        start = end
