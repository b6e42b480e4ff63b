"""The results page of a test run (test.py, and each set of evaluate.py): the metrics table, then each image.

Per image: the T row (I, T_1, T_2, T_3, the ground truth when there is one) over the R row (R_1..R_3),
each with its PSNR/SSIM, then two before/after comparisons at full width (I vs T_3; T_3 vs the
ground truth), and links to every file of the image.
"""

from __future__ import annotations

from collections.abc import Sequence

from dominate.tags import div, h1, h2, p, section, style

from util import html
from util.evaluation import STEP_LABELS, Scores


def files_by_visual(name: str, files: Sequence[str]) -> dict[str, str]:
    """Return visual label -> file name for files named '<name>_<visual label>.png'."""
    return {f[len(name) + 1: -len(".png")]: f for f in files}


def write_test_page(web_dir: str, title: str, protocol: str, rows: Sequence[tuple[str, list[str], Scores | None]],
                    mean: Scores | None, width: int = 256, labels: Sequence[str] = STEP_LABELS) -> str:
    """Write web_dir/index.html for rows of (image name, its image files in images/, scores); return its path.

    Thumbnails fill a five-column grid; `width` caps their size (px) when the window is wider.
    """
    doc = html.new_page(title)
    doc.head.add(style(f".grid img {{ max-width: {int(width)}px; }}"))
    with_gt = sum(scores is not None for _, _, scores in rows)
    with doc:
        h1(html.shown(title))
        p(protocol, cls="note", id="protocol")
        h2(f"PSNR (dB) / SSIM against the ground truth T ({with_gt} of {len(rows)} images have one)")
        p("Green: the best step of each row, for PSNR and for SSIM. Click a name to go to its images.", cls="note")
        html.metrics_table([(name, scores, f"#image-{k}") for k, (name, _, scores) in enumerate(rows)], labels,
                           with_mean=True, mean=mean)
        for k, (name, files, scores) in enumerate(rows):
            with section(cls="image", id=f"image-{k}"):
                h2(html.shown(name))
                by_visual = files_by_visual(name, files)
                html.cascade_grid(by_visual, scores, with_gt=scores is not None)
                pairs = [("real_I_00", "input I", "fake_Ts_03", "T_3")]
                if scores is not None:
                    pairs.append(("fake_Ts_03", "T_3", "real_T_00", "ground truth T"))
                with div(cls="pair"):
                    for first, first_label, second, second_label in pairs:
                        if first in by_visual and second in by_visual:
                            html.comparison((by_visual[first], first_label), (by_visual[second], second_label))
                html.file_links(by_visual)
    return html.save(doc, web_dir)
