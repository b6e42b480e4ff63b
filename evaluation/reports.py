"""How scores are written for people: metric cells, console and Markdown tables, and evaluate.py's report.

A cell is a PSNR in dB with 2 decimals or a SSIM with 4 (DECIMALS), 'n/a' where there is no value (no ground
truth, a SSIM that could not be computed). Every table uses them: test.py's console table, evaluate.py's
Markdown tables, the result, summary and training pages (as ScoreCells, pages/html.py) and the console table
of a val_log.csv. evaluate.py's report is one Run per checkpoint (or for the saved predictions): per set the
images scored and their mean scores, then the image-weighted average over the sets; several runs add the mean
± sample standard deviation over them (docs/protocol.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from data.fingerprint import describe, fingerprint
from evaluation.scoring import Scores, flat, spread, weighted_mean
from options.evaluate_options import ABOUT, AVERAGE
from pages.html import ScoreCells
from util.logs import metric_columns

DECIMALS = {"PSNR": 2, "SSIM": 4}  # as the literature's tables print them
MEAN_ROW = "mean ± std"
SPREAD = "sample standard deviation (n-1) over the runs"

SetResult = tuple[int, Scores]  # (number of images scored, mean scores)


@dataclass
class Run:
    """One checkpoint, or the saved predictions: its label, its results folder, and per set the images scored
    with their mean scores and the digests of the pairs scored (data/fingerprint.py)."""

    label: str
    folder: str
    results: dict[str, SetResult]
    digests: dict[str, list[str]]


# ----- cells and tables -------------------------------------------------------------------------------------


def metric_cell(column: str, value: float | None) -> str:
    """Return the cell of a value of a PSNR_<label> or SSIM_<label> column: its decimals, or 'n/a'."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.{DECIMALS[column.split('_', 1)[0]]}f}"


def format_cells(scores: Scores | None, labels: Sequence[str]) -> list[str]:
    """Return the cells of scores in metric_columns(labels) order ('n/a' everywhere without scores)."""
    return [metric_cell(column, value) for column, value in zip(metric_columns(labels), flat(scores, labels))]


def score_cells(scores: Scores | None, labels: Sequence[str]) -> ScoreCells:
    """Return scores as the pages show them: the cells, and for PSNR and for SSIM the best label(s) of the row
    (the highest value; none with a single label or without scores)."""
    best: set[int] = set()
    if scores is not None and len(labels) > 1:
        for metric in (0, 1):
            top = max(scores[label][metric] for label in labels)
            best |= {2 * k + metric for k, label in enumerate(labels) if scores[label][metric] == top}
    return ScoreCells(tuple(format_cells(scores, labels)), frozenset(best), scores is not None)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return rows under header as right-aligned text columns for the console."""
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    return "\n".join("  ".join(str(cell).rjust(w) for cell, w in zip(r, widths)) for r in [header, *rows])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return rows under header as a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _bold(text: str, on: bool) -> str:
    return f"**{text}**" if on else text


# ----- evaluate.py's report ---------------------------------------------------------------------------------


def with_average(results: dict[str, SetResult]) -> dict[str, SetResult]:
    """Return the per-set results followed by 'average': the image-weighted mean over all sets."""
    total = sum(n for n, _ in results.values())
    return {**results, AVERAGE: (total, weighted_mean(list(results.values())))}


def set_fingerprints(run: Run) -> dict[str, tuple[int, str]]:
    """Return set name -> (pairs scored, fingerprint), then 'average' -> the same over the pairs of all sets."""
    prints = {name: (len(digests), fingerprint(digests)) for name, digests in run.digests.items()}
    every = [digest for digests in run.digests.values() for digest in digests]
    return {**prints, AVERAGE: (len(every), fingerprint(every))}


def sets_line(prints: dict[str, tuple[int, str]]) -> str:
    """Return the header line naming each set's pairs and fingerprint, and those of all sets together."""
    parts = [f"{'all sets' if name == AVERAGE else name} {describe(count, value)}"
             for name, (count, value) in prints.items()]
    return "Test sets (SHA-256 of the files scored, docs/protocol.md): " + "; ".join(parts) + "."


def sets_markdown(rows: dict[str, SetResult], labels: Sequence[str]) -> str:
    """Return the Markdown table of one run: set, images, then PSNR/SSIM of each label; the average in bold."""
    return markdown_table(["set", "images", *metric_columns(labels)],
                          [[_bold(name, name == AVERAGE), str(count), *format_cells(scores, labels)]
                           for name, (count, scores) in rows.items()])


def spread_cells(mean: Scores, std: Scores, labels: Sequence[str]) -> list[str]:
    """Return 'mean ± std' metric cells in metric_columns order."""
    return [f"{m} ± {s}" for m, s in zip(format_cells(mean, labels), format_cells(std, labels))]


def spread_rows(runs: list[Run], labels: Sequence[str]) -> list[tuple[str, int, str, list[str]]]:
    """Return the rows of the several-checkpoint table: per set, then for the average, one row per run
    (set, images, run label, metric cells) and the row of the mean ± sample standard deviation over the runs."""
    per_run = [with_average(run.results) for run in runs]
    rows = []
    for name in per_run[0]:
        count = per_run[0][name][0]
        scores = [results[name][1] for results in per_run]
        rows += [(name, count, run.label, format_cells(s, labels)) for run, s in zip(runs, scores)]
        rows.append((name, count, MEAN_ROW, spread_cells(*spread(scores), labels)))
    return rows


def spread_markdown(runs: list[Run], labels: Sequence[str]) -> str:
    """Return the Markdown table of several checkpoints: each run's row per set and the mean ± std row."""
    return markdown_table(["set", "images", "run", *metric_columns(labels)],
                          [[_bold(name, name == AVERAGE), str(count), _bold(label, label == MEAN_ROW), *cells]
                           for name, count, label, cells in spread_rows(runs, labels)])


def as_json(runs: list[Run], prints: dict[str, tuple[int, str]], about: dict) -> dict:
    """Return {set: {"images", "fingerprint", "psnr": {label: v}, "ssim": {label: v}}, ..., "average": {...},
    "evaluation": about}; with several runs "psnr"/"ssim" are the means over the runs, and each set adds
    "psnr_std", "ssim_std" (sample standard deviation) and "runs": {run label: {"psnr", "ssim"}}.

    A non-finite value (an infinite band-wise PSNR, a SSIM or a deviation that could not be computed) is
    written as null, so that the file is strict JSON.
    """
    def number(value: float) -> float | None:
        return value if math.isfinite(value) else None

    def metrics(scores: Scores, suffix: str = "") -> dict:
        return {f"psnr{suffix}": {label: number(ps) for label, (ps, _) in scores.items()},
                f"ssim{suffix}": {label: number(ss) for label, (_, ss) in scores.items()}}

    per_run = [with_average(run.results) for run in runs]
    report: dict = {}
    for name, (count, scores) in per_run[0].items():
        entry = {"images": count, "fingerprint": prints[name][1]}
        if len(runs) == 1:
            report[name] = {**entry, **metrics(scores)}
            continue
        mean, std = spread([results[name][1] for results in per_run])
        report[name] = {**entry, **metrics(mean), **metrics(std, "_std"),
                        "runs": {run.label: metrics(results[name][1]) for run, results in zip(runs, per_run)}}
    report[ABOUT] = about
    return report
