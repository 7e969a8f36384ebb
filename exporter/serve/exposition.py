"""The /metrics body with each port's lines made once, and kept while they stay the same.

prometheus_client's encoders validate and escape every label of every sample: 0.15 s for the
10,500 samples of 1,000 bindings, 0.7 s for 5,000. Nearly all of them are the per-port families
(docker_nat_port_state, docker_nat_port_info, docker_nat_port_exposure,
docker_nat_rule_present), and a port's lines change only with what they show: the binding's
labels, its state, reason code, owner, allowed sources and exposure, which of its rules are
present. So those lines are written here (labels sorted by name, values escaped as the
encoders escape label values), kept per encoder and port, and joined; the families' HELP/TYPE
lines and every other family come from the encoder itself. Before the lines written here are
used with an encoder, one port's are checked against that encoder's own: should they ever
differ (another prometheus_client), every port goes through the encoder instead. Either way the
body is the encoder's output, byte for byte (tests/unit/test_exposition.py).
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from exporter.path.classes import EXPOSURES
from exporter.path.verdict import STATES
from exporter.serve import deflate
from exporter.serve.collector import (
    INFO_LABELS,
    SnapshotCollector,
    info_values,
    port_families,
    port_labels,
)
from exporter.serve.deflate import Block
from exporter.serve.gcpause import gc_paused

CHUNK = 128  # ports in a run of lines compressed together, on average
NAMES = ("container", "network", "family", "protocol", "host_ip", "host_port", "container_port")


class _Fixed:
    """A registry of the given families (what an encoder takes)."""

    def __init__(self, metrics) -> None:
        self.metrics = metrics

    def collect(self):
        return iter(self.metrics)


class Exposition:
    def __init__(self, collector: SnapshotCollector, write=None) -> None:
        """`write(port)`: its lines of the four families (default: written as the encoders
        write them)."""
        self.collector, self.write = collector, write or write_port
        self.kept: dict = {}  # encoder key → {port key → (state, info, exposure, present lines)}
        self.same: dict = {}  # encoder key → {id(port) → (port, its lines, its port key)}
        self.chunks: dict = {}  # encoder key → {the chunk's ports' lines → its four Blocks}
        self.tail: dict = {}  # encoder key → (the families after the ports, their Block)
        self.known: dict = {}  # encoder key → what _learn found

    def __call__(self, encoder, gzip: bool = False) -> bytes:
        """The body `encoder(registry)` would give, gzipped when asked."""
        # ~20 objects a port, gone by reference counting: a full collection triggered on the
        # way would scan the whole heap for nothing (50-70 ms at 5,000 bindings)
        with gc_paused():
            blocks = self._render(encoder)
            return deflate.gzipped(blocks) if gzip else deflate.plain(blocks)

    def _render(self, encoder) -> list[Block]:
        s, before, ports, after = self.collector.parts()
        if s is None:  # no per-port families yet
            return [Block(encoder(_Fixed(before)))]
        key = _key(encoder)
        eof, heads, written = self._learn(key, encoder, ports)
        chunks = self._chunks(key, self._lines(key, encoder, ports, written))
        blocks = [Block(encoder(_Fixed(before)).removesuffix(eof.encode()))]
        for f, head in enumerate(heads):
            blocks.append(head)
            blocks += [c[f] for c in chunks]
        tail = self.tail.get(key)
        if tail is None or tail[0] != after:  # Metric compares name, help, type and samples
            tail = self.tail[key] = (after, Block(encoder(_Fixed(after))))
        blocks.append(tail[1])
        return blocks

    def _learn(self, key, encoder, ports) -> tuple[str, list[Block], bool | None]:
        """(the encoder's "# EOF" trailer or "", the four families' HELP/TYPE lines, whether
        the lines written here are the encoder's: None until a port was there to compare)."""
        known = self.known.get(key)
        if known is None:
            eof = encoder(_Fixed([])).decode()  # "" for the text format, "# EOF\n" for OpenMetrics
            lines = encoder(_Fixed(port_families(()))).decode().removesuffix(eof)
            lines = lines.splitlines(keepends=True)
            heads = [Block("".join(lines[i : i + 2]).encode()) for i in (0, 2, 4, 6)]
            known = (eof, heads, None)
        if known[2] is None and ports:
            same = self.write(ports[0]) == self._encoded(encoder, known[0], ports[0])
            known = (known[0], known[1], same)
        self.known[key] = known
        return known

    def _lines(self, key, encoder, ports, written: bool) -> list[tuple[bytes, ...]]:
        """Each port's lines of the four families (bytes): kept for the same port object (the
        analysis keeps a port it did not walk again) or a port showing the same."""
        kept = self.kept.setdefault(key, {})  # port key → lines, pruned below
        was, same = self.same.get(key, {}), {}
        eof = self.known[key][0]
        out = []
        for p in ports:
            entry = was.get(id(p))
            if entry is None or entry[0] is not p:
                v = p.verdict
                pk = (p.binding, v.state, v.code, v.owner, v.allowed, v.exposure,
                      tuple((e.expected.kind, e.present) for e in p.rules))  # fmt: skip
                lines = kept.get(pk)
                if lines is None:
                    made = self.write(p) if written else self._encoded(encoder, eof, p)
                    lines = kept[pk] = tuple(part.encode() for part in made)
                entry = (p, lines, pk)
            same[id(p)] = entry
            out.append(entry[1])
        self.same[key] = same  # holds the ports, so their ids stay theirs
        if len(kept) > 2 * len(same) + 64:  # ports gone: keep only this snapshot's
            self.kept[key] = {pk: lines for _, lines, pk in same.values()}
        return out

    def _chunks(self, key, lines: list[tuple[bytes, ...]]) -> list[tuple[Block, ...]]:
        """The ports' lines in runs (a run ends after a port whose info line hashes to 0 mod
        CHUNK: the same ends whatever ports come or go elsewhere), each run's four families'
        text as Blocks, kept while the run's ports show the same."""
        old, new = self.chunks.get(key, {}), {}
        out, start = [], 0
        for i, ls in enumerate(lines):
            if hash(ls[1]) % CHUNK == 0 or i + 1 - start >= 4 * CHUNK or i + 1 == len(lines):
                run = tuple(lines[start : i + 1])
                blocks = old.get(run) or new.get(run)
                if blocks is None:
                    blocks = tuple(Block(b"".join([x[f] for x in run])) for f in range(4))
                new[run] = blocks
                out.append(blocks)
                start = i + 1
        self.chunks[key] = new
        return out

    @staticmethod
    def _encoded(encoder, eof: str, p) -> tuple[str, str, str, str]:
        text = encoder(_Fixed(port_families([p]))).decode().removesuffix(eof)
        lines = [x for x in text.splitlines(keepends=True) if not x.startswith("# ")]
        info = len(lines) - 1 - len(EXPOSURES) - len(p.rules)  # the states come first
        exposure = info + 1 + len(EXPOSURES)
        return ("".join(lines[:info]), lines[info], "".join(lines[info + 1 : exposure]),
                "".join(lines[exposure:]))  # fmt: skip


def _key(encoder):
    """The same key for the same encoder (choose_encoder makes a new partial every time)."""
    func = getattr(encoder, "func", encoder)
    return (
        func,
        tuple(getattr(encoder, "args", ())),
        tuple(sorted(getattr(encoder, "keywords", {}).items())),
    )


def _escape(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


ALL = (*NAMES, *INFO_LABELS)  # the order of port_labels + info_values


def _around(extra: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Where the port's labels go around `extra` in the order the encoders write them (sorted by
    name): (the positions in ALL of the names before it, of those after it)."""
    names = sorted((*NAMES, extra))
    at = names.index(extra)
    return tuple(ALL.index(k) for k in names[:at]), tuple(ALL.index(k) for k in names[at + 1 :])


STATE, EXPOSURE, KIND = _around("state"), _around("exposure"), _around("kind")
INFO = tuple(ALL.index(k) for k in sorted(ALL))
SPECIAL = re.compile(r'[\\\n"]')  # what _escape replaces


def write_port(p) -> tuple[str, str, str, str]:
    """A port's lines of the four families, as the encoders write them: labels sorted by name,
    values escaped, 1.0/0.0. A family's lines differ in one label only, so the text before and
    after it is made once per port."""
    values = (*port_labels(p.binding), *info_values(p))
    if SPECIAL.search("".join(values)):
        values = tuple(map(_escape, values))
    pairs = [f'{k}="{x}"' for k, x in zip(ALL, values, strict=True)]

    def family(name: str, around, label: str, shown) -> str:
        """`shown`: (label value, whether the sample is 1) per line."""
        head = "".join([pairs[i] + "," for i in around[0]])
        tail = "".join(["," + pairs[i] for i in around[1]])
        return "".join([f'{name}{{{head}{label}="{x}"{tail}}} {"1.0" if yes else "0.0"}\n'
                        for x, yes in shown])  # fmt: skip

    v = p.verdict
    return (
        family("docker_nat_port_state", STATE, "state", [(st, st == v.state) for st in STATES]),
        f"docker_nat_port_info{{{','.join([pairs[i] for i in INFO])}}} 1.0\n",
        family("docker_nat_port_exposure", EXPOSURE, "exposure",
               [(ex, ex == v.exposure) for ex in EXPOSURES]),
        family("docker_nat_rule_present", KIND, "kind",
               [(_escape(e.expected.kind), e.present) for e in p.rules]),
    )  # fmt: skip


class ServeRegistry(CollectorRegistry):
    """The service's registry: `exposition(encoder)` renders it as `encoder(self)` would."""

    def __init__(self, collector: SnapshotCollector) -> None:
        super().__init__(auto_describe=False)
        self.register(collector)
        self.exposition = Exposition(collector)
