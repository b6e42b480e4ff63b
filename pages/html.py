"""Static HTML pages (dominate escapes every text and attribute it writes): the shared parts of the result pages.

Pages fit a 1280 px window: images sit in a five-column grid scaled to the width, each linked to its
full-size PNG. File names that are not valid UTF-8 (os.fsdecode gives surrogate escapes) are shown
with U+FFFD in their place, and linked by their exact bytes. Scores arrive as text (ScoreCells): how a
PSNR or SSIM is written, and which step is the best, is decided by evaluation/reports.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import dominate
from dominate.tags import (
    a,
    button,
    div,
    figcaption,
    figure,
    img,
    meta,
    p,
    span,
    style,
    table,
    tbody,
    td,
    th,
    thead,
    tr,
)
from dominate.util import text

from models.base_model import VisualRoles
from util.logs import metric_columns

CSS = """
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 12px 16px; color: #222; }
h1 { font-size: 20px; margin: 4px 0 8px; } h2 { font-size: 16px; margin: 20px 0 6px; }
table.metrics { border-collapse: collapse; margin: 6px 0 12px; }
table.metrics th, table.metrics td { padding: 2px 8px; border: 1px solid #ccc; text-align: right; }
table.metrics td:first-child, table.metrics th:first-child {
  text-align: left; overflow-wrap: anywhere; max-width: 360px; }
table.metrics td.mean { border-top: 3px double #333; font-weight: bold; background: #f0f0f0; }
table.metrics td.best { background: #d8f0d8; font-weight: bold; }
.note { color: #555; margin: 2px 0; }
.grid { display: grid; grid-template-columns: repeat(5, minmax(0, 1fr)); gap: 8px; }
.grid figure, .pair figure { margin: 0; }
.grid img { display: block; width: 100%; height: auto; }
figcaption { font-size: 12px; overflow-wrap: anywhere; }
.pair { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 12px; margin-top: 10px; }
.pair button { display: block; width: 100%; padding: 0; border: 1px solid #999; cursor: pointer; background: none; }
.pair img { display: block; width: 100%; height: auto; }
.files { font-size: 12px; color: #555; margin: 6px 0; overflow-wrap: anywhere; }
.charts { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 10px; }
svg.chart { width: 100%; height: auto; border: 1px solid #ddd; background: #fff; }
section.image { border-top: 1px solid #ccc; margin-top: 14px; }
"""

# A comparison is one button holding one image: a click swaps the image and the name shown beneath it (inline,
# so that the page holds no <script> element).
FLIP_JS = ("var i = this.querySelector('img'), w = this.parentNode.querySelector('.which');"
           " var s = i.getAttribute('src'); i.setAttribute('src', i.dataset.alt); i.dataset.alt = s;"
           " s = w.textContent; w.textContent = w.dataset.alt; w.dataset.alt = s;")

@dataclass(frozen=True)
class ScoreCells:
    """One row of scores as a page shows it: the metric cells in util/logs.metric_columns order, the indices of
    the cells to mark as the best of the row, and whether there were scores at all (False: an image without
    ground truth, whose cells say so)."""

    cells: tuple[str, ...]
    best: frozenset[int] = frozenset()
    scored: bool = True

    def of(self, labels: Sequence[str], label: str | None) -> tuple[str, str] | None:
        """Return the (PSNR, SSIM) cells of label, None when label is not scored."""
        if not self.scored or label not in labels:
            return None
        k = list(labels).index(label)
        return self.cells[2 * k], self.cells[2 * k + 1]


# How a caller above the pages turns scores (label -> (PSNR, SSIM), None without any) into the cells of given
# labels: evaluation/reports.score_cells; the training page, drawn from val_log.csv, is handed it.
ShowScores = Callable[[Mapping[str, tuple[float, float]] | None, Sequence[str]], ScoreCells]


def shown(name: str) -> str:
    """Return name as displayable text: bytes that are not UTF-8 (surrogate escapes) become U+FFFD."""
    return os.fsencode(name).decode("utf-8", errors="replace")


def href(file_name: str, folder: str = "images") -> str:
    """Return the relative link to folder/file_name, percent-encoding the file name's exact bytes."""
    return f"{folder}/{quote(os.fsencode(file_name))}"


def new_page(title: str) -> dominate.document:
    """Return a dominate document with the shared style."""
    doc = dominate.document(title=shown(title))
    with doc.head:
        meta(charset="utf-8")
        meta(name="viewport", content="width=device-width, initial-scale=1")
        style(CSS)
    return doc


def save(doc: dominate.document, web_dir: str) -> str:
    """Write doc as web_dir/index.html and return its path."""
    path = os.path.join(web_dir, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc.render())
    return path


def score_text(scores: ScoreCells | None, labels: Sequence[str], label: str | None) -> str:
    """Return 'PSNR x dB · SSIM y' for a scored label, '' when it has no score."""
    cells = scores.of(labels, label) if scores is not None else None
    return f"PSNR {cells[0]} dB · SSIM {cells[1]}" if cells else ""


def thumbnail(file_name: str, caption: str, detail: str = "") -> figure:
    """Add (to the open dominate context) and return a figure: the image scaled to its grid cell, linked to
    the full-size PNG, captioned."""
    link = href(file_name)
    with figure() as fig:
        with a(href=link):
            img(src=link, alt=shown(caption))
        with figcaption():
            span(shown(caption))
            if detail:
                text(" · " + detail)
    return fig


def cascade_grid(files: dict[str, str], roles: VisualRoles, scores: ScoreCells | None = None,
                 with_gt: bool = True) -> None:
    """Add the grid of a model's visuals: the rows of roles (IBCLN: the T row over the R row), then any others.

    files maps visual labels to file names in images/; the hidden visuals of roles and, without with_gt,
    the placeholder ground truth are not shown.
    """
    placed = set(roles.hidden) | (set() if with_gt else {roles.ground_truth})
    for row in roles.rows:
        present = [cell for cell in row if cell and cell[0] in files and cell[0] not in placed]
        if not present:
            continue
        with div(cls="grid"):
            for cell in row:
                if cell not in present:
                    div()
                    continue
                visual, caption, label = cell
                placed.add(visual)
                detail = score_text(scores, roles.labels, label) or ("no ground truth" if label and not with_gt else "")
                thumbnail(files[visual], caption, detail)
    others = [visual for visual in files if visual not in placed]
    if others:
        with div(cls="grid"):
            for visual in others:
                thumbnail(files[visual], visual, score_text(scores, roles.labels, visual))


def comparison(first: tuple[str, str], second: tuple[str, str]) -> figure:
    """Add and return a before/after control for two (file name, label) images: a click switches them."""
    with figure() as fig:
        with button(type="button", onclick=FLIP_JS, title="click to switch", cls="flip"):
            img(src=href(first[0]), alt=f"{shown(first[1])} / {shown(second[1])}", data_alt=href(second[0]))
        with figcaption():
            text("showing ")
            span(first[1], cls="which", data_alt=second[1], style="font-weight: bold")
            text(f" (click the image to switch between {first[1]} and {second[1]})")
    return fig


def file_links(files: dict[str, str]) -> None:
    """Add a line linking every file (visual label -> file name in images/), shown or not."""
    with p(cls="files"):
        text("files: ")
        for visual, file_name in files.items():
            a(shown(visual), href=href(file_name))
            text(" ")


def metrics_table(rows: Sequence[tuple], labels: Sequence[str], first: str = "image",
                  mean: ScoreCells | None = None, table_id: str = "metrics") -> table:
    """Add and return the metrics table: rows of (first cell, ScoreCells[, link]), then the mean row set apart
    (when given). The best cells of each row are marked with class "best"."""
    with table(cls="metrics", id=table_id) as tab:
        with thead():
            with tr():
                th(first)
                for column in metric_columns(labels):
                    th(column)
        with tbody():
            for row in rows:
                _metric_row(row[0], row[1], row[2] if len(row) > 2 else None)
            if mean is not None:
                _metric_row("mean", mean, None, mean_row=True)
    return tab


def _metric_row(name: str, scores: ScoreCells, link: str | None, mean_row: bool = False) -> None:
    with tr():  # the mean row is marked on its cells: a bare <tr> for every row
        with td(__pretty=False, cls="mean") if mean_row else td(__pretty=False):
            if link:
                a(shown(name), href=link)
            else:
                text(shown(name))
        for k, cell in enumerate(scores.cells):
            classes = " ".join(c for c, on in (("mean", mean_row), ("best", k in scores.best)) if on)
            td(cell, cls=classes) if classes else td(cell)


def text_cells_table(header: Sequence[str], rows: Sequence[Sequence[str]], links: Sequence[str | None],
                     emphasised: Sequence[bool], table_id: str = "runs") -> table:
    """Add and return a table of text cells under header; a row's first cell links to its link (when not None),
    and emphasised rows (e.g. a mean over runs) are set apart like a mean row."""
    with table(cls="metrics", id=table_id) as tab:
        with thead():
            with tr():
                for column in header:
                    th(column)
        with tbody():
            for cells, link, strong in zip(rows, links, emphasised):
                with tr():
                    with td(__pretty=False, cls="mean") if strong else td(__pretty=False):
                        if link:
                            a(shown(cells[0]), href=link)
                        else:
                            text(shown(cells[0]))
                    for cell in cells[1:]:
                        td(cell, cls="mean") if strong else td(cell)
    return tab
