"""The summary pages of evaluate.py, folder/index.html: one run's table of sets, each linked to the set's
results page (pages/result_page.py), or the table of several runs with the mean ± spread over them.

The cells come written (evaluation/reports.py); the first header line is the metric protocol, the others notes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from urllib.parse import quote

import dominate
from dominate.tags import h1, p

from pages import html


def _start(title: str, header: Sequence[str]) -> dominate.document:
    """Return a new page holding the title and the header lines."""
    doc = html.new_page(title)
    with doc:
        h1(html.shown(title))
        for k, line in enumerate(header):
            p(line, cls="protocol" if k == 0 else "note")
    return doc


def write_sets_page(folder: str, title: str, header: Sequence[str], labels: Sequence[str],
                    sets: Sequence[tuple[str, int, html.ScoreCells]], images: int, average: html.ScoreCells) -> str:
    """Write folder/index.html: the header lines, a row per (set name, images, scores) linked to folder/<set>/,
    then the average over all `images` set apart; return its path."""
    doc = _start(title, header)
    with doc:
        html.metrics_table([(f"{name} ({count} images)", cells, quote(name) + "/index.html")
                            for name, count, cells in sets], labels, first="set", mean=average)
        p(f"The last row is the average over all {images} images, weighted by each set's image count.")
    os.makedirs(folder, exist_ok=True)
    return html.save(doc, folder)


def write_runs_page(folder: str, title: str, header: Sequence[str], columns: Sequence[str],
                    rows: Sequence[tuple[list[str], str | None]], spread: str) -> str:
    """Write folder/index.html for several runs: the header lines, then rows of (cells, the page the row links
    to); a row without a page is a mean over the runs, set apart. spread names the deviation shown. Return its
    path."""
    doc = _start(title, header)
    with doc:
        html.text_cells_table(columns, [cells for cells, _ in rows],
                              [None if page is None else quote(os.path.relpath(page, folder)) for _, page in rows],
                              [page is None for _, page in rows])
        p("The average rows are over all images, weighted by each set's image count; each run's row links to "
          f"its own page. mean ± std: the {spread}.")
    os.makedirs(folder, exist_ok=True)
    return html.save(doc, folder)
