"""Screenshots of the result pages in headless Chromium at 1280 px (docs/pages.md shows them).

Usage: python scripts/screenshot_pages.py --results results/<name>/test_<epoch>/index.html
                                          --training checkpoints/<name>/web/index.html [--out DIR]
                                          [--width 1280] [--height 1600]

Writes DIR/results_page.png and DIR/training_page.png (the top `--height` pixels of each page) and prints,
per page, its width in the window and the number of images that failed to load. Needs Debian's chromium
and chromium-driver (apt-get install -y chromium chromium-driver); selenium drives them through that
chromedriver and never goes online (SE_AVOID_STATS=true, no selenium manager).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def chromium_driver(profile_dir: str, width: int = 1280, height: int = 1000):
    """Return a headless Chromium (selenium, Debian's chromedriver) with a width x height viewport."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        raise FileNotFoundError("Chromium or chromedriver is not installed: apt-get install -y chromium "
                                "chromium-driver")
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars", f"--user-data-dir={profile_dir}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)


def open_page(driver, page: Path, timeout: float = 30) -> None:
    """Load page (a file) and wait until every image has loaded or failed."""
    driver.get(page.resolve().as_uri())
    deadline = time.time() + timeout
    while driver.execute_script("return Array.from(document.images).some(i => !i.complete)"):
        if time.time() > deadline:
            break
        time.sleep(0.1)


def main() -> int:
    """Take the screenshots; return the exit status (1 when a page is missing)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True, help="a test results index.html")
    parser.add_argument("--training", type=Path, required=True, help="checkpoints/<name>/web/index.html")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the PNG files")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1600, help="height of the screenshot (the page's top)")
    args = parser.parse_args()
    for page in (args.results, args.training):
        if not page.is_file():
            print(f"error: {page}: no such page", file=sys.stderr)
            return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        driver = chromium_driver(profile, args.width, args.height)
        try:
            for page, name in ((args.results, "results_page.png"), (args.training, "training_page.png")):
                open_page(driver, page)
                width, broken = driver.execute_script(
                    "return [document.documentElement.scrollWidth, "
                    "Array.from(document.images).filter(i => i.naturalWidth === 0).length]")
                driver.save_screenshot(str(args.out / name))
                print(f"{args.out / name}: page {width} px wide in a {args.width} px window, {broken} broken images")
        finally:
            driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
