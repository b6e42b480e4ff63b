"""The results page of a test run (test.py, and each set of evaluate.py): the metrics table, then the images."""

from __future__ import annotations

from collections.abc import Sequence

from util import html
from util.evaluation import STEP_LABELS, Scores, format_cells, metric_columns


def write_test_page(web_dir: str, title: str, protocol: str, rows: Sequence[tuple[str, list[str], Scores | None]],
                    mean: Scores | None, width: int = 256, labels: Sequence[str] = STEP_LABELS) -> str:
    """Write web_dir/index.html for rows of (image name, its image files in images/, scores); return its path."""
    page = html.HTML(web_dir, title)
    with_gt = sum(scores is not None for _, _, scores in rows)
    page.add_header(f"PSNR (dB) / SSIM against the ground truth T ({with_gt} of {len(rows)} images have one)")
    page.add_paragraph(protocol)
    table_rows = [[name, *format_cells(scores, labels)] for name, _, scores in rows]
    table_rows.append(["mean", *format_cells(mean, labels)])
    page.add_table(["image", *metric_columns(labels)], table_rows, table_id="metrics")
    for name, files, scores in rows:
        caption = name
        if scores is not None:
            cells = format_cells(scores, labels)
            caption += " | " + ", ".join(f"{label}: {cells[2 * k]} dB / {cells[2 * k + 1]}"
                                         for k, label in enumerate(labels))
        page.add_images(files, [f[len(name) + 1: -len(".png")] for f in files], width=width, caption=caption)
    return page.save()
