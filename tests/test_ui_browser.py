"""``guidedinv ui`` in a real headless Chromium (selenium + Debian's chromium and chromium-driver):
upload a sample image, paint a stroke on the mask canvas, inpaint with the embedded prior in four
steps, download the result and its recipe; a text file gives a visible one-line message.

Skipped, saying why, only where no browser or driver can be found (.ci/run installs them).
"""
from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from guidedinv.ui.server import make_server, start_in_thread

SMALL = Path(__file__).resolve().parent.parent / "sample_images" / "coffee_x4.png"  # 80 x 60
BRUSH = 16  # the page's default brush diameter, image pixels


def _browser_paths() -> tuple[str, str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    browser = os.environ.get("GUIDEDINV_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome")) if p), None)
    driver = os.environ.get("GUIDEDINV_CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip(f"no headless browser: chromium {'found' if browser else 'not found'}, chromedriver "
                    f"{'found' if driver else 'not found'} (apt-get install chromium chromium-driver)")
    return browser, driver


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A server on a free loopback port and one headless Chromium (downloads into a temporary folder)."""
    browser, driver = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    folder = tmp_path_factory.mktemp("ui-browser")
    server = make_server("127.0.0.1", 0, root=folder / "server", device="cpu")
    start_in_thread(server)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,1000"):
        options.add_argument(arg)
    downloads = folder / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
    try:
        chrome = webdriver.Chrome(options=options, service=Service(driver))
    except Exception as exc:  # a driver that does not match the browser, no display libraries, ...
        server.close()
        pytest.skip(f"the browser does not start: {' '.join(str(exc).split())[:300]}")
    yield chrome, server, downloads
    chrome.quit()
    server.close()


def _open(chrome, server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chrome.get(server.url)
    WebDriverWait(chrome, 10).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")


def _wait_for_answer(chrome, timeout: float):
    """Until the output panel shows or the message line says something; returns the message."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(chrome, timeout).until(lambda d: d.find_element(By.ID, "output-panel").is_displayed()
                                         or d.find_element(By.ID, "message").text)
    return chrome.find_element(By.ID, "message").text


def test_paint_a_stroke_inpaint_and_download(page, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chrome, server, downloads = page
    _open(chrome, server)
    chrome.find_element(By.ID, "image-file").send_keys(str(SMALL))
    WebDriverWait(chrome, 10).until(lambda d: d.find_element(By.ID, "photo").get_attribute("width") == "80")
    canvas = chrome.find_element(By.ID, "mask")
    scale = canvas.size["width"] / 80  # screen pixels per image pixel
    y0, x0, x1 = 30, 20, 55  # a horizontal stroke in image pixels, through the middle of the image
    ActionChains(chrome).move_to_element_with_offset(canvas, round((x0 - 40) * scale), round((y0 - 30) * scale)) \
        .click_and_hold().move_by_offset(round((x1 - x0) * scale), 0).release().perform()
    steps = chrome.find_element(By.ID, "steps")
    with urllib.request.urlopen(server.url + "api/config", timeout=10) as answer:
        assert steps.get_attribute("value") == json.load(answer)["tasks"]["inpaint"]["methods"]["pnp"]["steps"]  # the preset's
    steps.clear()
    steps.send_keys("logsnr4")
    chrome.find_element(By.ID, "run").click()
    assert _wait_for_answer(chrome, 60) == ""
    assert "pnp, logsnr4 steps, seed 0" in chrome.find_element(By.ID, "result-info").text
    chrome.find_element(By.ID, "download-result").click()
    chrome.find_element(By.ID, "download-recipe").click()
    end = time.time() + 10
    while len([p for p in downloads.iterdir() if not p.name.endswith(".crdownload")]) < 2 and time.time() < end:
        time.sleep(0.1)
    chrome.save_screenshot(str(tmp_path / "ui-inpaint.png"))
    assert (tmp_path / "ui-inpaint.png").stat().st_size > 0

    result_file = next(downloads.glob("*.result.png"))
    recipe = next(downloads.glob("*.result.recipe.toml")).read_text()
    assert 'task = "inpaint"' in recipe and 'steps = "logsnr4"' in recipe and 'method = "pnp"' in recipe
    assert "guidedinv:recipe" in Image.open(result_file).text  # the recipe travels inside the PNG too
    result = np.asarray(Image.open(result_file).convert("RGB")).astype(int)
    original = np.asarray(Image.open(SMALL).convert("RGB")).astype(int)
    assert result.shape == original.shape == (60, 80, 3)
    yy, xx = np.mgrid[:60, :80]
    along = np.clip(xx, x0, x1)  # distance of each pixel to the stroke's segment
    distance = np.hypot(xx - along, yy - y0)
    inside, outside = distance <= BRUSH / 2 - 2, distance >= BRUSH / 2 + 2
    assert np.array_equal(result[outside], original[outside])  # kept exactly: the PNG's 8 bits, unchanged
    assert np.abs(result[inside] - original[inside]).mean() > 5  # filled from the prior, not copied
    changed = np.abs(result - original).max(-1) > 0
    assert changed[inside].mean() > 0.9


def test_a_text_file_gives_a_visible_one_line_message(page, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chrome, server, _ = page
    _open(chrome, server)
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    chrome.find_element(By.ID, "image-file").send_keys(str(notes))
    WebDriverWait(chrome, 10).until(lambda d: "notes.txt" in d.find_element(By.ID, "canvas-note").text)
    chrome.find_element(By.ID, "run").click()
    message = _wait_for_answer(chrome, 20)
    assert message.startswith("notes.txt: not an image file that can be read (accepted: PNG, JPEG"), message
    assert "\n" not in message and chrome.find_element(By.ID, "message").is_displayed()
    assert not chrome.find_element(By.ID, "output-panel").is_displayed()
    with urllib.request.urlopen(server.url + "api/config", timeout=10) as answer:  # the server keeps running
        assert json.load(answer)["tasks"]["inpaint"]["method"] == "pnp"
    assert [p.name for p in (server.root).iterdir() if p.name.startswith("job-")] == [
        p.name for p in server.root.iterdir() if (p / "result.png").exists()]  # no folder left by the refused upload
