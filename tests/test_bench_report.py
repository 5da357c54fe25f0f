"""benchmarks/_report.py: RESULTS.md quotes only figures of one session at one size.

No benchmark runs here: the results are small hand-made JSON files with the shape the two
sessions write.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import _report


def stats(median: float) -> dict[str, Any]:
    return {"median": median, "min": median, "max": median, "values": [median]}


def bench(commit: str = "a" * 40, scale: float = 1.0, overhead: float = 40.0) -> dict[str, Any]:
    return {
        "meta": {
            "date": "2026-11-29T00:00:00+00:00",
            "python": "3.11.7",
            "machine": "x86_64",
            "scale": scale,
            "repeats": 1,
            "command": "nox -s bench",
            "tree": {"commit": commit, "dirty": False},
        },
        "results": [
            {
                "id": "b6_overhead",
                "workload": "B6 sync facade overhead, get_run, embedded (20,000 calls)",
                "unit": "us/call",
                "ours": stats(overhead),
                "floor": stats(16.0),
                "floor_name": "Python Future ping-pong",
                "ratio": overhead / 16.0,
                "goal": "<= 30 us",
            }
        ],
    }


def peers(commit: str = "a" * 40, advantage: float = 149.0) -> dict[str, Any]:
    return {
        "meta": {
            "date": "2026-11-29T01:00:00+00:00",
            "command": "nox -s bench_peers",
            "python": "3.11.7",
            "machine": "x86_64",
            "repeats": 1,
            "scale": 1.0,
            "asyncrun_version": "0.1.0",
            "mlflow_version": "3.17.2",
            "wall_s": 60.0,
            "tree": {"commit": commit, "dirty": False},
        },
        "results": [
            {
                "id": "b2",
                "workload": "B2 metric values persisted end to end",
                "unit": "values/s",
                "better": "higher",
                "size": 50_000,
                "asyncrun": {"call": "log_metric + flush()", **stats(8_000.0 * advantage)},
                "mlflow": {"call": "MlflowClient.log_batch", **stats(8_000.0)},
                "ratio_asyncrun_over_mlflow": advantage,
                "asyncrun_advantage": advantage,
                "per_repetition": {
                    "ratio_asyncrun_over_mlflow": [advantage],
                    "asyncrun_advantage": [advantage],
                },
                "goal": {"text": ">= 150x MLflow log_batch", "min_advantage": 150},
                "met": advantage >= 150,
            }
        ],
        "derived": {"b3_durability": stats(1.5)},
    }


def lay_out(
    tmp_path: Path, analysis: str, latest: dict[str, Any] | None, side: dict[str, Any] | None
) -> Path:
    (tmp_path / "results").mkdir(parents=True)
    if latest is not None:
        (tmp_path / "results" / "latest.json").write_text(json.dumps(latest))
    if side is not None:
        (tmp_path / "results" / "peers.json").write_text(json.dumps(side))
    (tmp_path / "ANALYSIS.md").write_text(analysis)
    return tmp_path


def test_figures_in_the_analysis_are_filled_in_from_their_session(tmp_path: Path) -> None:
    text = (
        "B2: {{peers.b2.advantage}} at {{peers.b2.size}}; B6: {{bench.b6_overhead}}, "
        "{{bench.b6_overhead.ratio}} its floor; durability {{peers.derived.b3_durability}}; "
        "written as \\{{session.id.field}}"
    )
    out = _report.render(lay_out(tmp_path, text, bench(), peers()))
    assert (
        "B2: 149x faster at 50,000; B6: 40.0 us/call, 2.50x its floor; durability 1.50x; "
        "written as {{session.id.field}}"
    ) in out


@pytest.mark.parametrize("literal", ["198x at 1 M values", "a 1.5x gap", "1,234x"])
def test_a_literal_ratio_in_the_analysis_is_refused(tmp_path: Path, literal: str) -> None:
    with pytest.raises(_report.ReportError, match="literals"):
        _report.render(lay_out(tmp_path, f"we are {literal}", bench(), peers()))


def test_a_goal_number_and_a_factor_in_words_are_not_ratios(tmp_path: Path) -> None:
    text = "the goal >= 150x, and <= 2x the floor, for ten times the runs"
    assert text in _report.render(lay_out(tmp_path, text, bench(), peers()))


@pytest.mark.parametrize(
    "placeholder",
    ["{{bench.nothing}}", "{{peers.b2.floor}}", "{{other.b2}}", "{{peers.derived.x}}"],
)
def test_an_unknown_figure_is_refused(tmp_path: Path, placeholder: str) -> None:
    with pytest.raises(_report.ReportError):
        _report.render(lay_out(tmp_path, placeholder, bench(), peers()))


def test_a_session_not_run_reads_not_measured(tmp_path: Path) -> None:
    out = _report.render(lay_out(tmp_path, "B2: {{peers.b2.advantage}}", bench(), None))
    assert "B2: (not measured)" in out


def test_the_goal_verdict_comes_from_the_same_figures_as_the_table(tmp_path: Path) -> None:
    # 149x for a goal of 150x: the table says no, so must the goals table.
    out = _report.render(lay_out(tmp_path, "", bench(overhead=40.0), peers(advantage=149.0)))
    row = next(line for line in out.splitlines() if line.startswith("| B2 >= 150x"))
    assert row.endswith("| **no** |")
    assert "149x faster" in row
    out = _report.render(lay_out(tmp_path / "met", "", bench(), peers(advantage=151.0)))
    row = next(line for line in out.splitlines() if line.startswith("| B2 >= 150x"))
    assert row.endswith("| yes |")


def test_sessions_of_different_trees_or_sizes_are_flagged(tmp_path: Path) -> None:
    out = _report.render(lay_out(tmp_path, "", bench(commit="a" * 40), peers(commit="b" * 40)))
    assert "different trees" in out
    out = _report.render(lay_out(tmp_path / "scaled", "", bench(scale=0.05), peers()))
    assert "0.05x the recorded sizes" in out
    out = _report.render(lay_out(tmp_path / "same", "", bench(), peers()))
    assert "Read with care" not in out
