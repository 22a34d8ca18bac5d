"""The deployable policy blob: its binary format, its complete validator and its integer evaluator (the C twin's twin).

A distilled policy is a decision tree over fixed-point versions of router-logged fields, serialised as one
little-endian blob that the kernel module, the Linux harness and the simulator all evaluate. This module is
the Python twin of ``freebsd_module/dp2_policy.c``: the same checks in the same order (so both refuse a bad
blob with the same code) and the same integer arithmetic (so both give bit-identical decisions).

Layout, version 1 (all integers little-endian)::

    header, 24 bytes
      0  u32  magic  b"L4PB"
      4  u16  version (1)
      6  u8   n_features   1..23
      7  u8   max_depth    1..MAX_DEPTH   (root at depth 0; every leaf at depth <= max_depth)
      8  u16  n_nodes      1..MAX_NODES
     10  u16  flags        0
     12  u32  total_bytes  = 24 + 8 * n_features + 12 * n_nodes
     16  u32  checksum     FNV-1a 32 of bytes [24, total_bytes)
     20  u32  reserved     0
    features, 8 bytes each
      0  u8   field_id     index of the log field (logformat.FIELD_NAMES), 0..22 (never dequeue_action)
      1  u8   shift        0..62: the feature is min(max(field, 0) >> shift, 2^31-1)
      2  u16  reserved     0
      4  u32  scale        > 0: the field's unit (2^31-1 for probabilities, 1 otherwise), for readers
    nodes, 12 bytes each, in pre-order (node 0 is the root; a split's left child is the next node)
      0  u8   feature      index into the feature table, or LEAF (0xff)
      1  u8   action       leaf: 0 forward, 1 drop, 2 mark; split: 0
      2  u16  left         split: index of the child taken when feature <= threshold (= own index + 1)
      4  u16  right        split: index of the other child (> left, < n_nodes)
      6  u16  reserved     0
      8  i32  threshold    split: compared with the feature; leaf: 0

The pre-order rule is what makes validation complete and cheap: a depth-first walk with a stack of at most
``max_depth`` pending right children must meet the nodes exactly in index order, so no index is out of
bounds, no node is shared or unreachable, and there is no cycle; the walk also bounds the depth, so one
decision reads at most ``max_depth + 1`` nodes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from l4stb.errors import L4stbError
from l4stb.logformat import FIELD_INDEX, FIELD_NAMES, PROB_SCALE, PROBABILITY_FIELDS

MAGIC = b"L4PB"
VERSION = 1
HEADER_BYTES, FEATURE_BYTES, NODE_BYTES = 24, 8, 12
MAX_DEPTH = 24
MAX_NODES = 4095
MAX_FEATURES = len(FIELD_NAMES) - 1
MAX_BYTES = HEADER_BYTES + FEATURE_BYTES * MAX_FEATURES + NODE_BYTES * MAX_NODES
LEAF = 0xFF
INT32_MAX = (1 << 31) - 1
ACTIONS = ("forward", "drop", "mark")
BLOB_NAME = "policy.l4pb"
"""The blob's file name inside a distilled model folder."""

# Error codes, in the order the validator checks; dp2_policy.h defines the same numbers and messages.
OK, E_SHORT, E_MAGIC, E_VERSION, E_LENGTH, E_HEADER, E_CHECKSUM, E_FEATURE, E_NODE, E_LAYOUT, E_DEPTH = range(11)
MESSAGES = {
    OK: "valid",
    E_SHORT: "shorter than its 24-byte header",
    E_MAGIC: "bad magic (not an l4stb policy blob)",
    E_VERSION: "unsupported version",
    E_LENGTH: "length does not match its header",
    E_HEADER: "header field out of range (features, depth, nodes or flags)",
    E_CHECKSUM: "checksum mismatch (corrupted)",
    E_FEATURE: "bad feature entry (field id, shift, scale or reserved bits)",
    E_NODE: "bad node (feature index, leaf action, threshold or reserved bits)",
    E_LAYOUT: "node indices out of bounds or not in pre-order (shared, unreachable or cyclic nodes)",
    E_DEPTH: "tree deeper than its declared max_depth",
}
_HEADER = struct.Struct("<4sHBBHHIII")
_FEATURE = struct.Struct("<BBHI")
_NODE = struct.Struct("<BBHHHi")
DECIDABLE_FIELDS: tuple[str, ...] = FIELD_NAMES[:-1]
"""Fields a policy may read: every logged field except ``dequeue_action`` (not known before deciding)."""


class PolicyBlobError(L4stbError):
    """A blob that fails validation; ``code`` is the validator's error code (the C evaluator's too)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


@dataclass(frozen=True)
class Feature:
    field_id: int
    shift: int
    scale: int

    @property
    def name(self) -> str:
        return FIELD_NAMES[self.field_id]


@dataclass(frozen=True)
class Node:
    feature: int  # LEAF for a leaf
    action: int
    left: int
    right: int
    threshold: int

    @property
    def is_leaf(self) -> bool:
        return self.feature == LEAF


@dataclass(frozen=True)
class PolicyBlob:
    """A validated policy: its feature table and nodes; :meth:`decide` is the evaluator."""

    features: tuple[Feature, ...]
    nodes: tuple[Node, ...]
    max_depth: int
    checksum: int
    raw: bytes

    @property
    def size_bytes(self) -> int:
        return len(self.raw)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def leaves(self) -> int:
        return sum(n.is_leaf for n in self.nodes)

    def feature_values(self, fields: Sequence[int]) -> list[int]:
        """The fixed-point features of one log record (``fields`` in log order, at least 23 values)."""
        out = []
        for f in self.features:
            v = int(fields[f.field_id])
            v = (v if v > 0 else 0) >> f.shift
            out.append(v if v < INT32_MAX else INT32_MAX)
        return out

    def decide(self, fields: Sequence[int]) -> int:
        """0 forward, 1 drop, 2 mark for one log record; exactly what ``dp2_policy_decide`` computes."""
        x = self.feature_values(fields)
        nodes = self.nodes
        i = 0
        for _ in range(self.max_depth + 1):
            n = nodes[i]
            if n.feature == LEAF:
                return n.action
            i = n.left if x[n.feature] <= n.threshold else n.right
        raise AssertionError("a validated tree has no path longer than max_depth")  # pragma: no cover


def validate(raw: bytes) -> int:
    """The validator's code for ``raw`` (0 = valid); the same checks, in the same order, as dp2_policy_validate."""
    n = len(raw)
    if n < HEADER_BYTES:
        return E_SHORT
    magic, version, nf, max_depth, nn, flags, total, checksum, reserved = _HEADER.unpack_from(raw, 0)
    if magic != MAGIC:
        return E_MAGIC
    if version != VERSION:
        return E_VERSION
    if total != n or n > MAX_BYTES:
        return E_LENGTH
    if not (1 <= nf <= MAX_FEATURES and 1 <= max_depth <= MAX_DEPTH and 1 <= nn <= MAX_NODES) or flags or reserved:
        return E_HEADER
    if total != HEADER_BYTES + FEATURE_BYTES * nf + NODE_BYTES * nn:
        return E_LENGTH
    if fnv1a32(raw[HEADER_BYTES:]) != checksum:
        return E_CHECKSUM
    for k in range(nf):
        field_id, shift, res, scale = _FEATURE.unpack_from(raw, HEADER_BYTES + FEATURE_BYTES * k)
        if field_id >= MAX_FEATURES or shift > 62 or res or scale == 0:
            return E_FEATURE
    base = HEADER_BYTES + FEATURE_BYTES * nf
    stack: list[tuple[int, int]] = [(0, 0)]
    expected = 0
    while stack:
        idx, depth = stack.pop()
        if idx != expected:
            return E_LAYOUT
        expected += 1
        feat, action, left, right, res, thr = _NODE.unpack_from(raw, base + NODE_BYTES * idx)
        if feat == LEAF:
            if action > 2 or left or right or res or thr:
                return E_NODE
            continue
        if feat >= nf or action or res:
            return E_NODE
        if left != idx + 1 or right <= left or right >= nn:
            return E_LAYOUT
        if depth + 1 > max_depth:
            return E_DEPTH
        stack.append((right, depth + 1))
        stack.append((left, depth + 1))
    if expected != nn:
        return E_LAYOUT
    return OK


def parse(raw: bytes, *, source: str = "policy blob") -> PolicyBlob:
    """Validate ``raw`` completely and decode it; a bad blob raises :class:`PolicyBlobError` naming ``source``."""
    code = validate(raw)
    if code != OK:
        raise PolicyBlobError(
            f"{source}: refused, {MESSAGES[code]} (validator code {code}). A policy blob is written by "
            "`l4stb distill`; distil the model again, or point aqm.policy at a model folder that holds "
            f"{BLOB_NAME}.", code)
    nf, max_depth, nn = raw[6], raw[7], struct.unpack_from("<H", raw, 8)[0]
    features = tuple(Feature(f[0], f[1], f[3]) for f in
                     (_FEATURE.unpack_from(raw, HEADER_BYTES + FEATURE_BYTES * k) for k in range(nf)))
    base = HEADER_BYTES + FEATURE_BYTES * nf
    nodes = tuple(Node(t[0], t[1], t[2], t[3], t[5]) for t in
                  (_NODE.unpack_from(raw, base + NODE_BYTES * i) for i in range(nn)))
    return PolicyBlob(features, nodes, max_depth, struct.unpack_from("<I", raw, 16)[0], bytes(raw))


def encode(features: Sequence[Feature], nodes: Sequence[Node], max_depth: int) -> bytes:
    """Serialise a tree (nodes already in pre-order) and check the result with :func:`validate`."""
    body = b"".join(_FEATURE.pack(f.field_id, f.shift, 0, f.scale) for f in features)
    body += b"".join(_NODE.pack(n.feature, n.action, n.left, n.right, 0, n.threshold) for n in nodes)
    total = HEADER_BYTES + len(body)
    raw = _HEADER.pack(MAGIC, VERSION, len(features), max_depth, len(nodes), 0, total, fnv1a32(body), 0) + body
    code = validate(raw)
    if code != OK:
        raise ValueError(f"encode produced an invalid blob: {MESSAGES[code]}")
    return raw


def feature_for(name: str, max_value: int) -> Feature:
    """The fixed-point feature of log field ``name`` whose values reach ``max_value``: a shift that keeps
    four times that value inside 31 bits, and the field's unit as its scale."""
    if name not in DECIDABLE_FIELDS:
        raise L4stbError(f"feature '{name}' is not a router log field a policy can read; use one of "
                         f"{', '.join(DECIDABLE_FIELDS)}.")
    shift = max(0, (max(int(max_value), 1) * 4).bit_length() - 31)
    return Feature(FIELD_INDEX[name], shift, PROB_SCALE if name in PROBABILITY_FIELDS else 1)


def resolve_blob_path(spec: str | Path) -> Path:
    """A blob file, or the blob inside a distilled model folder."""
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / BLOB_NAME
    if not path.is_file():
        raise L4stbError(f"aqm.policy: no policy blob at {path}. Give a blob file or a folder written by "
                         f"`l4stb distill` (it holds {BLOB_NAME}).")
    return path


def load(spec: str | Path) -> PolicyBlob:
    """Read and validate the blob at ``spec`` (a file, or a folder holding one)."""
    path = resolve_blob_path(spec)
    raw = path.read_bytes()
    if len(raw) > MAX_BYTES:
        raise PolicyBlobError(f"{path}: refused, {len(raw):,} bytes is more than a policy blob can hold "
                              f"({MAX_BYTES:,}); is it a policy blob?", E_LENGTH)
    return parse(raw, source=str(path))
