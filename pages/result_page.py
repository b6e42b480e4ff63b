"""The results page of a test run (test.py, and each set of evaluate.py): the metrics table, then each image.

Per image: the grid the model's VisualRoles lay out (IBCLN: I, T_1..T_3 and the ground truth over
R_1..R_3), each with its PSNR/SSIM, then two before/after comparisons at full width (input vs result;
result vs ground truth, when there is one), and links to every file of the image.
"""

from __future__ import annotations

from collections.abc import Sequence

from dominate.tags import div, h1, h2, p, section, style

from models.base_model import VisualRoles
from pages import html


def files_by_visual(name: str, files: Sequence[str]) -> dict[str, str]:
    """Return visual label -> file name for files named '<name>_<visual label>.png'."""
    return {f[len(name) + 1: -len(".png")]: f for f in files}


def write_test_page(web_dir: str, title: str, protocol: str, rows: Sequence[tuple[str, list[str], html.ScoreCells]],
                    mean: html.ScoreCells, roles: VisualRoles, width: int = 256, test_set: str = "") -> str:
    """Write web_dir/index.html for rows of (image name, its image files in images/, its scores as shown), then
    the mean row; return its path.

    Thumbnails fill a five-column grid; `width` caps their size (px) when the window is wider. test_set: the
    line naming the pairs scored (their number and fingerprint), shown under the protocol.
    """
    doc = html.new_page(title)
    doc.head.add(style(f".grid img {{ max-width: {int(width)}px; }}"))
    with_gt = sum(scores.scored for _, _, scores in rows)
    with doc:
        h1(html.shown(title))
        p(protocol, cls="note", id="protocol")
        if test_set:
            p(test_set, cls="note", id="test-set")
        h2(f"PSNR (dB) / SSIM against the ground truth T ({with_gt} of {len(rows)} images have one)")
        p("Green: the best step of each row, for PSNR and for SSIM. Click a name to go to its images.", cls="note")
        html.metrics_table([(name, scores, f"#image-{k}") for k, (name, _, scores) in enumerate(rows)], roles.labels,
                           mean=mean)
        for k, (name, files, scores) in enumerate(rows):
            with section(cls="image", id=f"image-{k}"):
                h2(html.shown(name))
                by_visual = files_by_visual(name, files)
                html.cascade_grid(by_visual, roles, scores, with_gt=scores.scored)
                result = roles.visual(roles.result)
                pairs = [(roles.visual(roles.input), result)]
                if scores.scored:
                    pairs.append((result, roles.ground_truth))
                with div(cls="pair"):
                    for first, second in pairs:
                        if first in by_visual and second in by_visual:
                            html.comparison((by_visual[first], _caption(roles, first)),
                                            (by_visual[second], _caption(roles, second)))
                html.file_links(by_visual)
    return html.save(doc, web_dir)


def _caption(roles: VisualRoles, visual: str) -> str:
    """Return the page caption of a visual (its label if no cell of the grid names it)."""
    return next((cell[1] for row in roles.rows for cell in row if cell and cell[0] == visual), visual)
