"""Tables: aligned plain text for the terminal, markdown for RESULTS.md."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

START = "<!-- results:start -->"
END = "<!-- results:end -->"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def rate(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    #: Column indexes aligned left (the rest are numbers, aligned right).
    left: tuple[int, ...] = (0,)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def text(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            out = [
                c.ljust(w) if i in self.left else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(out).rstrip()

        parts = [self.title, line(self.headers), "  ".join("-" * w for w in widths)]
        parts += [line(r) for r in self.rows]
        parts += [f"  {n}" for n in self.notes]
        return "\n".join(parts)

    def markdown(self) -> str:
        align = ["---" if i in self.left else "---:" for i in range(len(self.headers))]
        parts = [f"### {self.title}", ""]
        parts.append("| " + " | ".join(self.headers) + " |")
        parts.append("| " + " | ".join(align) + " |")
        parts += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in self.rows]
        if self.notes:
            parts.append("")
            parts += [f"- {n}" for n in self.notes]
        return "\n".join(parts)


def render_text(tables: Sequence[Table]) -> str:
    return "\n\n".join(t.text() for t in tables)


def render_markdown(tables: Sequence[Table]) -> str:
    return "\n\n".join(t.markdown() for t in tables)


DEFAULT_INTRO = """# Nimbus benchmark results

Produced by `make bench` (`.venv/bin/python bench/run.py`); see `bench/README.md`
for what each figure means. Everything between the markers below is rewritten
by each full run.
"""


def write_results(path: Path, markdown: str) -> None:
    """Replace the section between the markers in ``path`` (created if missing)."""
    if not path.exists():
        path.write_text(DEFAULT_INTRO + f"\n{START}\n{END}\n")
    write_section(path, markdown, START, END)


def write_section(path: Path, markdown: str, start: str, end: str, heading: str = "") -> None:
    """Replace what stands between the ``start`` and ``end`` markers in ``path``; when
    they are not there yet, append them (under ``heading``, a markdown intro)."""
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    text = path.read_text()
    if start in text and end in text:
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        text = pattern.sub(lambda _m: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + (heading + "\n\n" if heading else "") + block
    path.write_text(text.rstrip() + "\n")
