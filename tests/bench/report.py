"""The results table (workload, ours, notary, ratio: medians with min–max over runs) and its JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.bench.stats import Summary, ratio, summarize


class Results:
    """Per system, per metric, the value of each run (in the order measured)."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.order: list[str] = []
        self.notes: dict[str, Any] = {}

    def add(self, system: str, measurements: dict[str, float]) -> None:
        for metric, value in measurements.items():
            if metric not in self.order:
                self.order.append(metric)
            self.values[system][metric].append(value)

    def summary(self, system: str, metric: str) -> Summary | None:
        return summarize(self.values.get(system, {}).get(metric, []))

    def to_json(self) -> dict[str, Any]:
        rows = []
        for metric in self.order:
            ours, notary = self.summary("ours", metric), self.summary("notary", metric)
            rows.append({
                "metric": metric,
                "ours": ours.to_dict() if ours else None,
                "notary": notary.to_dict() if notary else None,
                "ratio_ours_over_notary": ratio(ours, notary),
                "runs": {s: self.values[s].get(metric, []) for s in self.values},
            })
        return {"rows": rows, "notes": self.notes}

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


def _cell(s: Summary | None) -> str:
    if s is None:
        return "—"
    return f"{_num(s.median)} ({_num(s.low)}–{_num(s.high)}, n={s.n})"


def _num(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def table(results: Results) -> str:
    """A Markdown table: metric | ours | notary | ours/notary (medians; min–max and run count)."""
    lines = ["| workload / metric | ours: median (min–max, n) | notary: median (min–max, n) | ours / notary |",
             "|---|---|---|---|"]
    for metric in results.order:
        ours, notary = results.summary("ours", metric), results.summary("notary", metric)
        r = ratio(ours, notary)
        lines.append(f"| {metric} | {_cell(ours)} | {_cell(notary)} | {f'{r:.2f}×' if r is not None else '—'} |")
    return "\n".join(lines)
