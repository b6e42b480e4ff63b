"""The HTML pages (pages/result_page.py, pages/training_page.py): the test page and the training page, parsed and
opened in headless Chromium."""

from __future__ import annotations

import argparse
import csv
import os
import shutil
from collections import OrderedDict
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes

import numpy as np
import pytest
import torch
from helpers import VAL_HEADER, build_tiny_dataset, run_script, skimage_photo, write_png

from evaluation.reports import score_cells
from models.ibcln_model import ROLES
from models.networks import ConvLSTMGenerator
from pages.display import Visualizer
from pages.result_page import write_test_page

VISUALS = ["fake_Ts_00", "fake_Ts_01", "fake_Ts_02", "fake_Ts_03", "real_T_00", "real_I_00", "fake_Rs_00",
           "fake_Rs_01", "fake_Rs_02", "fake_Rs_03"]
LOSSES = ["idt_T", "res", "MP", "G", "T", "idt_R", "R", "D"]


class _Page(HTMLParser):
    """Collects tags, image sources, link targets and text of a page."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.srcs.append(attrs["src"])
            if "data-alt" in attrs:
                self.srcs.append(attrs["data-alt"])
        if tag == "a":
            self.hrefs.append(attrs["href"])

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> _Page:
    """Return the parsed page at path (UTF-8)."""
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def test_page(tmp_path_factory) -> Path:
    """test.py with random-weight generators on three tiny images, one without ground truth; return index.html."""
    tmp = tmp_path_factory.mktemp("testpage")
    root = build_tiny_dataset(tmp / "d", n_train=0, n_reflection=0, n_test=3, test_size=(48, 64))
    os.rename(root / "testB" / "img1.png", root / "testB" / "no gt ü.png")
    (root / "testA1" / "img1.png").unlink()
    os.rename(root / "testB" / "img2.png", root / "testB" / "a&b <i>.png")
    os.rename(root / "testA1" / "img2.png", root / "testA1" / "a&b <i>.png")
    ckpt = tmp / "c" / "exp"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    for name in ("G_T", "G_R"):
        torch.save(ConvLSTMGenerator().state_dict(), ckpt / f"final_net_{name}.pth")
    proc = run_script("test.py", "--dataroot", root, "--name", "exp", "--checkpoints_dir", tmp / "c",
                      "--results_dir", tmp / "r", "--gpu_ids", "-1", "--epoch", "final")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "r" / "exp" / "test_final" / "index.html"


def training_options(tmp: Path) -> argparse.Namespace:
    """Return the options a Visualizer reads, for an experiment 'run' under tmp/c without visdom."""
    return argparse.Namespace(display_id=-1, is_train=True, no_html=False, display_winsize=256, name="run",
                              checkpoints_dir=str(tmp / "c"))


def cascade_visuals(seed: int) -> OrderedDict:
    """Return visuals shaped like IBCLN's (T_0..T_3, T, I, R_0..R_3) from random 40x56 images."""
    generator = torch.Generator().manual_seed(seed)

    def image():
        return torch.rand(1, 3, 40, 56, generator=generator)

    return OrderedDict([("fake_Ts", [image() for _ in range(4)]), ("real_T", image()), ("real_I", image()),
                        ("fake_Rs", [image() for _ in range(4)])])


@pytest.fixture(scope="module")
def training_page(tmp_path_factory) -> tuple[Path, int, int]:
    """A training page from a written loss log (a first run, then a restart) and val_log.csv.

    Return (index.html, loss points of the latest run, validation rows).
    """
    tmp = tmp_path_factory.mktemp("trainpage")
    opt = training_options(tmp)
    (tmp / "c" / "run").mkdir(parents=True)
    first = Visualizer(opt, ROLES, score_cells)
    for k in range(1, 4):  # an abandoned first run, in the old format (no 'samples')
        first.print_current_losses(1, 2 * k, OrderedDict((n, 1.0) for n in LOSSES), 0.1, 0.01)
    visualizer = Visualizer(opt, ROLES, score_cells)  # a fresh run in the same folder: its curves replace the first
    rng = np.random.default_rng(0)
    points = 0
    for epoch in (1, 2):
        for step in range(1, 7):
            samples = (epoch - 1) * 12 + 2 * step
            losses = OrderedDict((n, float(v)) for n, v in zip(LOSSES, 10.0 ** rng.uniform(-3, 1, len(LOSSES))))
            visualizer.print_current_losses(epoch, 2 * step, losses, 0.1, 0.01, samples=samples)
            points += 1
        visualizer.display_current_results(cascade_visuals(epoch), epoch, save_result=True)
    with open(tmp / "c" / "run" / "val_log.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(VAL_HEADER)
        for epoch in (1, 2):
            writer.writerow([epoch, 12 * epoch, 2e-4, 3.5, 3] + [20 + epoch, 0.7, 21, 0.75, 22, 0.8, 23 + epoch, 0.85])
    page = visualizer.write_training_page()
    assert page == str(tmp / "c" / "run" / "web" / "index.html")
    return Path(page), points, 2


@pytest.mark.slow  # the page of a test.py run
def test_test_page_layout_links_and_table(test_page):
    page = parse(test_page)
    html_text = test_page.read_text(encoding="utf-8")
    assert "script" not in page.tags  # the comparison's few lines of JavaScript are inline (onclick)
    assert "<i>" not in html_text and "&lt;i&gt;" in html_text  # names are escaped
    web = test_page.parent
    for link in page.srcs + [h for h in page.hrefs if not h.startswith("#")]:
        assert (web / unquote(link)).is_file(), link
    # per image with ground truth: 5 T-row + 3 R-row thumbnails + 2 comparisons (each with a second image);
    # without: 4 + 3 + 1
    assert len(page.srcs) == 2 * (8 + 2 * 2) + (7 + 2)
    for name in ("a&b <i>", "img0", "no gt ü"):
        for visual in VISUALS:  # every file of every image is linked from the page
            assert f"images/{name}_{visual}.png" in [unquote(h) for h in page.hrefs]
    assert html_text.index('id="protocol"') < html_text.index('id="metrics"') < html_text.index("<img")


def test_test_page_table_marks_the_best_step_and_sets_the_mean_apart(tmp_path):
    scores = {"I": (30.0, 0.9), "T_1": (31.0, 0.8), "T_2": (29.0, 0.95), "T_3": (31.0, 0.7)}
    labels = ROLES.labels
    path = write_test_page(str(tmp_path), "t", "p", [("x", [], score_cells(scores, labels)),
                                                     ("y", [], score_cells(None, labels))],
                           score_cells(scores, labels), ROLES)
    html_text = Path(path).read_text(encoding="utf-8")
    body = html_text[html_text.index("<tbody>"): html_text.index("</tbody>")]
    rows = body.split("<tr")[1:]
    assert [r.count('best"') for r in rows] == [3, 0, 3]  # PSNR tie T_1 = T_3, SSIM T_2; none without
    assert '<td class="best">31.00</td>' in rows[0] and '<td class="best">0.9500</td>' in rows[0]
    assert rows[2].count('class="mean') == 9 and 'class="mean' not in rows[0] + rows[1]
    assert 'href="#image-0"' in rows[0]


@pytest.fixture(scope="module")
def odd_name_page(tmp_path_factory) -> tuple[Path, bytes]:
    """A test page for an image whose file name is not UTF-8 (byte 0xff); return (index.html, the name's bytes)."""
    web = tmp_path_factory.mktemp("oddname")
    raw = b"bad\xff name"
    name = os.fsdecode(raw)  # a surrogate escape, as os.listdir gives it
    (web / "images").mkdir()
    files = []
    for k, visual in enumerate(VISUALS):
        files.append(f"{name}_{visual}.png")
        write_png(skimage_photo("astronaut", (24 + k, 32)), web / "images" / files[-1])
    scores = {label: (20.0 + k, 0.5) for k, label in enumerate(("I", "T_1", "T_2", "T_3"))}
    cells = score_cells(scores, ROLES.labels)
    return Path(write_test_page(str(web), f"title {name}", "protocol", [(name, files, cells)], cells, ROLES)), raw


def test_a_file_name_that_is_not_utf8_is_shown_safely_and_linked_exactly(odd_name_page):
    path, raw = odd_name_page
    page = parse(path)
    assert "bad\ufffd name" in "".join(page.text)
    links = [link for link in page.srcs + page.hrefs if not link.startswith("#")]
    assert links and all(unquote_to_bytes(link).startswith(b"images/" + raw) for link in links)
    for link in links:
        assert os.path.isfile(os.path.join(os.fsencode(path.parent), unquote_to_bytes(link))), link


def test_training_page_content(training_page):
    path, points, val_rows = training_page
    html_text = path.read_text(encoding="utf-8")
    page = parse(path)
    for link in page.srcs + page.hrefs:
        assert (path.parent / unquote(link)).is_file(), link
    # snapshots newest first; T_0 and R_0 are not shown (8 images per epoch) but linked like every file
    assert len(page.srcs) == 16
    for epoch in (1, 2):
        assert [f"images/epoch{epoch:03d}_{v}.png" in page.hrefs for v in VISUALS] == [True] * len(VISUALS)
    assert html_text.index("epoch002_real_I_00") < html_text.index("epoch001_real_I_00")
    assert html_text.index('id="validation"') < html_text.index('id="losses"') < html_text.index('id="snapshots"')
    assert f"{points} logged points" in html_text
    assert "estimated" not in html_text  # the old-format lines belong to the abandoned first run
    assert "no ground truth" not in html_text


def chromium_or_skip(tmp_path: Path):
    """Return a 1280 px wide headless Chromium, or skip saying why when it is not installed."""
    from scripts.screenshot_pages import chromium_driver

    if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which("chromedriver"):
        pytest.skip("Chromium or chromedriver is not installed (apt-get install -y chromium chromium-driver)")
    return chromium_driver(str(tmp_path / "profile"), 1280, 900)


def check_in_browser(driver, page: Path, screenshot: Path) -> None:
    """Open page, assert it fits 1280 px and every image loads, and save a screenshot."""
    from scripts.screenshot_pages import open_page

    open_page(driver, page)
    assert driver.execute_script("return window.innerWidth") == 1280
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), page
    images = driver.execute_script("return Array.from(document.images).map(i => [i.src, i.naturalWidth])")
    assert images and all(width > 0 for _, width in images), images
    driver.save_screenshot(str(screenshot))


@pytest.mark.slow  # a test.py run and a browser
def test_pages_in_headless_chromium(test_page, odd_name_page, training_page, tmp_path):
    driver = chromium_or_skip(tmp_path)
    try:
        check_in_browser(driver, test_page, tmp_path / "results.png")
        # the comparison control: a click shows the other image (T_3), a second click the first (I) again
        button = driver.find_element("css selector", "section#image-0 button.flip")
        image = button.find_element("tag name", "img")
        which = driver.find_element("css selector", "section#image-0 .which")
        assert image.get_attribute("src").endswith("_real_I_00.png") and which.text == "input I"
        button.click()
        assert image.get_attribute("src").endswith("_fake_Ts_03.png") and which.text == "T_3"
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0
        button.click()
        assert image.get_attribute("src").endswith("_real_I_00.png") and which.text == "input I"
        # the table: a row per image linking to its section, the mean row last and set apart, best steps marked
        rows = driver.execute_script(
            "return Array.from(document.querySelectorAll('#metrics tbody tr')).map(r => [r.cells[0].className, "
            "r.cells[0].textContent.trim(), (r.querySelector('a') || {}).hash, r.querySelectorAll('.best').length])")
        assert [r[1] for r in rows] == ["a&b <i>", "img0", "no gt ü", "mean"]
        assert [r[2] for r in rows[:3]] == ["#image-0", "#image-1", "#image-2"] and rows[3][0] == "mean"
        assert [r[3] >= 2 for r in rows] == [True, True, False, True]  # no marks without ground truth
        cells = driver.execute_script(
            "return Array.from(document.querySelectorAll('#metrics tbody tr')).map("
            "r => Array.from(r.cells).map(c => c.textContent))")
        for row in (cells[0], cells[1], cells[3]):  # the images with a ground truth, and the mean
            values = [float(v) for v in row[1:]]
            assert len(values) == 8 and all(v == v for v in values)
            assert all(0 < v < 100 for v in values[0::2]) and all(-1 <= v <= 1 for v in values[1::2])
        assert cells[2][1:] == ["n/a"] * 8
        assert driver.execute_script("return document.querySelectorAll('section.image').length") == 3

        check_in_browser(driver, odd_name_page[0], tmp_path / "odd.png")

        path, points, val_rows = training_page
        check_in_browser(driver, path, tmp_path / "training.png")
        curves = driver.execute_script(
            "return Array.from(document.querySelectorAll('#loss-curves polyline.series')).map("
            "l => [l.dataset.label, l.points.numberOfItems])")
        assert curves == [[name, points] for name in LOSSES]
        val = driver.execute_script(
            "return Array.from(document.querySelectorAll('#validation-curves polyline.series')).map("
            "l => [l.dataset.label, l.points.numberOfItems])")
        assert val == [["T_3", val_rows], ["input I", val_rows]] * 2
    finally:
        driver.quit()
