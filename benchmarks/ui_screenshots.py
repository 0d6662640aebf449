"""Screenshots of the web page, one per tab (docs/ui/TASK.png), and the page's start-up time and
memory at rest, printed as a table.

Starts ``guidedinv ui --port 0`` as a user would (a separate process), drives a headless Chromium
(selenium + Debian's chromium and chromium-driver) through each tab with a sample image, paints the
mask or strokes, runs the job (the presets' steps, or --steps) and saves the page. Figures: seconds from the command
to its start line and to the first page served, RSS of the server process at rest, after the page
and its config were served, and after the jobs (the prior loaded).

    OMP_NUM_THREADS=1 python benchmarks/ui_screenshots.py                 # docs/ui/*.png, the presets' steps
    OMP_NUM_THREADS=1 python benchmarks/ui_screenshots.py --tasks inpaint --steps logsnr4 --out /tmp/ui
"""
from __future__ import annotations

import argparse
import base64
import io
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"
# tab -> (sample image, fields to set, what to paint: [(layer, colour, brush px, [(x0, y0, x1, y1) in image pixels])])
TABS = {
    "inpaint": ("coffee.png", {}, [("mask", None, 12, [(225, 150, 265, 195), (225, 195, 265, 150)])]),
    # green strokes on the cat's forehead, edited inside a painted mask only (the rest kept exactly)
    "edit": ("chelsea.png", {"strength": "0.5"}, [("strokes", "#2f7d32", 10, [(20, 30, 110, 40), (20, 45, 110, 55)]),
                                                   ("mask", None, 40, [(20, 42, 110, 42)])]),
    "superres": ("coffee_x4.png", {"scale": "4"}, []),
    "deblur": ("astronaut_blur.png", {"kernel": "gaussian:3.0"}, []),
    "denoise": ("chelsea_noisy.png", {"sigma": "0.05"}, []),
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "ui")
    parser.add_argument("--steps", default=None, help="steps of every network method (default: the page's, the presets')")
    parser.add_argument("--tasks", nargs="*", default=list(TABS), choices=list(TABS))
    args = parser.parse_args()
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        sys.exit("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "guidedinv", "ui", "--port", "0", "--device", "cpu"],
                            stdout=subprocess.PIPE, text=True, cwd=args.out)
    rows = []
    try:
        line = proc.stdout.readline()
        rows.append(("start line printed", f"{time.perf_counter() - start:.2f} s"))
        url = line.split()[2]
        with urllib.request.urlopen(url, timeout=30):
            pass
        rows.append(("first page served", f"{time.perf_counter() - start:.2f} s"))
        with urllib.request.urlopen(url + "api/config", timeout=30):
            pass
        time.sleep(0.5)
        rows.append(("RSS at rest (page + config served)", f"{rss_mb(proc.pid):.0f} MB"))
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                    "--hide-scrollbars"):
            options.add_argument(arg)
        chrome = webdriver.Chrome(options=options, service=Service(driver))
        try:
            for task in args.tasks:
                seconds = shoot(chrome, url, task, args.steps, args.out / f"{task}.png")
                steps = args.steps or "the page's steps"
                rows.append((f"{task}: job ({steps}) and screenshot", f"{seconds:.1f} s"))
        finally:
            chrome.quit()
        rows.append(("RSS after the jobs (prior loaded)", f"{rss_mb(proc.pid):.0f} MB"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    width = max(len(r[0]) for r in rows)
    print(f"guidedinv ui, {os.cpu_count()} CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print(f"wrote {', '.join(str(args.out / f'{t}.png') for t in args.tasks)}")


def shoot(chrome, url: str, task: str, steps: str, path: Path) -> float:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image, fields, paint = TABS[task]
    chrome.get(f"{url}?tab={task}#{task}")  # a new query: a fresh page, not a same-document jump
    WebDriverWait(chrome, 10).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    chrome.find_element(By.ID, "image-file").send_keys(str(SAMPLES / image))
    WebDriverWait(chrome, 10).until(lambda d: image in d.find_element(By.ID, "canvas-note").text)
    for layer, colour, brush, strokes in paint:
        if task == "edit":
            chrome.find_element(By.CSS_SELECTOR, f"input[name=layer][value={layer}]").click()
        if colour:
            chrome.execute_script("document.getElementById('brush-colour').value = arguments[0]", colour)
        chrome.execute_script("document.getElementById('brush-size').value = arguments[0]", brush)
        chrome.execute_script("window.scrollTo(0, 0)")
        canvas = chrome.find_element(By.ID, layer)
        width = int(canvas.get_attribute("width"))
        height = int(canvas.get_attribute("height"))
        scale = canvas.size["width"] / width
        for x0, y0, x1, y1 in strokes:
            ActionChains(chrome).move_to_element_with_offset(canvas, round((x0 - width / 2) * scale), round((y0 - height / 2) * scale)) \
                .click_and_hold().move_by_offset(round((x1 - x0) * scale), round((y1 - y0) * scale)).release().perform()
    form = chrome.find_element(By.ID, "form")
    for name, value in fields.items():
        box = form.find_element(By.NAME, name)
        box.clear()
        box.send_keys(value)
    box = chrome.find_element(By.ID, "steps")
    if box.is_enabled() and steps:
        box.clear()
        box.send_keys(steps)
    started = time.perf_counter()
    chrome.find_element(By.ID, "run").click()
    WebDriverWait(chrome, 600).until(lambda d: d.find_element(By.ID, "output-panel").is_displayed()
                                     or d.find_element(By.ID, "message").text)
    message = chrome.find_element(By.ID, "message").text
    if message:
        raise SystemExit(f"{task}: the page says: {message}")
    WebDriverWait(chrome, 10).until(lambda d: d.execute_script(
        "return [...document.images].every((i) => !i.src || (i.complete && i.naturalWidth > 0))"))
    seconds = time.perf_counter() - started
    shot = chrome.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    picture = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
    picture.quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)  # a quarter of the bytes
    return seconds


if __name__ == "__main__":
    main()
