"""The documentation: README.md stays a short front door, every relative link and #anchor resolves, no tracked
file points outside the repository, and docs/protocol.md names real flags."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from helpers import REPO_ROOT

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    """Return README.md and every page of docs/."""
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def anchors(path: Path) -> set[str]:
    """Return the #anchors GitHub gives the headings of a Markdown file (outside code blocks)."""
    found, in_code = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_protocol_page_names_real_flags_and_every_policy_with_measured_baselines() -> None:
    from options.evaluate_options import EvaluateOptions

    page = (REPO_ROOT / "docs" / "protocol.md").read_text()
    assert "protocol.md" in (REPO_ROOT / "docs" / "evaluation.md").read_text()
    options = EvaluateOptions()
    options.gather_options(["--sets", "x=y"])
    known = set(options.parser._option_string_actions)
    flags = set(re.findall(r"`(--[a-z_]+)", page))
    assert {"--align", "--keep_size", "--psnr", "--pred", "--pred_resize", "--epoch"} <= flags
    assert flags - known - {"--if_align", "--val_align", "--val_keep_size"} == set()  # DSRNet's; training's
    for policy in ("released", "original", "align32"):
        rows = [line for line in page.splitlines() if line.startswith(f"| {policy} |")]
        assert {row.split("|")[2].strip() for row in rows} >= {"ceilnet_synthetic100", "real_pairs5"}, policy


def test_readme_is_at_most_250_lines():
    assert len((REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for page in markdown_files():
        for match in LINK.finditer(page.read_text(encoding="utf-8")):
            target = match.group(1) or match.group(2)
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            file_part, _, anchor = target.partition("#")
            destination = (page.parent / file_part).resolve() if file_part else page
            if not destination.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


@pytest.mark.slow  # git ls-files
def test_no_tracked_file_points_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    needles = ("../" + "shared", "SP" + "EC", "issue" + " #")  # split, so that this file does not match itself
    offending = []
    for name in files.splitlines():
        path = REPO_ROOT / name
        if not path.is_file() or path.suffix in (".png", ".jpg", ".npz", ".pth"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offending += [f"{name}: {needle}" for needle in needles if needle in text]
    assert not offending, offending
