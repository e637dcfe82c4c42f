"""The explanation explorer in a real browser: `serve` on 127.0.0.1, driven by headless Chromium
(Debian's chromium and chromium-driver, through Selenium; nothing downloads a browser).

Upload an image, check the label, the k feature panels and their numbers against model.predict,
refuse bad uploads in the page, open the class and comparison tabs, save a screenshot, and
measure the time from upload to prediction shown. Set QPM_APP_SCREENSHOT=FILE.png to keep the
screenshot (docs/app.png is made this way), QPM_APP_MODEL=DIR to serve another checkpoint
(e.g. the demo's) instead of the test model and QPM_APP_IMAGE=FILE to upload another image.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_app import assert_shows

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: A prediction with its heatmaps should show within 1 s (issue 21); the assertion leaves room
#: for a machine shared with other jobs, the measured times are printed.
SHOWN_WITHIN_S = 5.0

pytestmark = pytest.mark.slow


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium and chromium-driver are missing (.ci/run installs them)")
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1100")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(qpm_dir) -> Path:
    return Path(os.environ.get("QPM_APP_MODEL") or qpm_dir)


@pytest.fixture(scope="module", params=["torch", "onnx"])
def page(request, model_dir, tmp_path_factory):
    """The page served on 127.0.0.1 with the PyTorch model, then with its ONNX export."""
    pytest.importorskip("gradio")
    from qpm_zoo.app import load_model, serve

    if request.param == "onnx" and not (model_dir / "model.onnx").is_file():
        export = pytest.importorskip("export.onnx_export")
        model_dir = Path(shutil.copytree(model_dir, tmp_path_factory.mktemp("onnx") / "model"))
        assert export.export_checkpoint(model_dir).written
    model = load_model(str(model_dir), onnx=request.param == "onnx")
    served = serve(model, host="127.0.0.1", port=_free_port(), block=False)
    assert served.local_url.startswith("http://127.0.0.1:")
    yield model, served.local_url
    served.close()


@pytest.fixture(scope="module")
def browser():
    driver = _browser()
    yield driver
    driver.quit()


def _upload(browser, path: Path, done_selector: str, done_text: str | None = None) -> float:
    """Seconds from handing `path` to the page's file input until `done_selector` shows (holding
    `done_text`, where given: an earlier upload's element of the same class may still be showing
    while the page clears it)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    clear = browser.find_elements(By.CSS_SELECTOR, "#qpm-upload button[aria-label=Clear]")
    if clear:
        clear[0].click()
    field = wait.until(
        shown.presence_of_element_located((By.CSS_SELECTOR, "#qpm-upload input[type=file]"))
    )
    start = time.perf_counter()
    field.send_keys(str(path))
    done = (By.CSS_SELECTOR, done_selector)
    if done_text is None:
        wait.until(shown.visibility_of_element_located(done))
    else:
        wait.until(shown.text_to_be_present_in_element(done, done_text))
    return time.perf_counter() - start


def _prediction_html(browser) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, ".qpm-prediction").get_attribute("outerHTML")


@pytest.fixture(scope="module")
def photo(image_file) -> Path:
    return Path(os.environ.get("QPM_APP_IMAGE") or image_file)


def test_explorer_in_chromium(page, browser, photo, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    model, url = page
    browser.get(url)
    images = []
    for i in range(3):  # distinct names: each upload is a new prediction panel
        images.append(tmp_path / f"photo{i}{photo.suffix}")
        shutil.copy(photo, images[-1])
    seconds = [
        _upload(browser, path, f".qpm-prediction[data-input='{path.name}']") for path in images
    ]
    backend = type(model).__name__
    shown_in = ", ".join(f"{s:.2f}" for s in seconds)
    print(f"\n{backend}: upload → prediction with heatmaps shown: {shown_in} s")
    assert min(seconds) < SHOWN_WITHIN_S

    prediction = model.predict(str(photo))
    assert_shows(_prediction_html(browser), prediction)
    label = browser.find_element(By.CSS_SELECTOR, ".qpm-label").text
    assert label == prediction.label
    panels = browser.find_elements(By.CSS_SELECTOR, ".qpm-feature img")
    assert len(panels) == len(prediction.explanation.features) == model.config.k
    assert all(p.get_property("naturalWidth") > 0 for p in panels), "every heatmap is drawn"
    screenshot = tmp_path / "app.png"
    browser.save_screenshot(str(screenshot))
    assert Image.open(screenshot).size[0] > 0
    if os.environ.get("QPM_APP_SCREENSHOT") and backend == "QPM":
        shutil.copy(screenshot, os.environ["QPM_APP_SCREENSHOT"])

    # a click on a class of the top-k opens its global explanation
    wait = WebDriverWait(browser, 30)
    runner_up = prediction.top_k[1].label
    choices = browser.find_elements(By.CSS_SELECTOR, "#qpm-top-classes input[type=radio]")
    assert [c.get_attribute("value") for c in choices] == [s.label for s in prediction.top_k]
    next(c for c in choices if c.get_attribute("value") == runner_up).click()
    wait.until(
        shown.visibility_of_element_located(
            (By.CSS_SELECTOR, f"#qpm-class .qpm-class[data-label='{runner_up}']")
        )
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#qpm-class .qpm-class-feature")
    assert len(rows) == len(model.explain_class(runner_up).features)

    browser.find_element(By.ID, "qpm-compare-tab-button").click()
    compared = wait.until(
        shown.visibility_of_element_located((By.CSS_SELECTOR, "#qpm-comparison .qpm-comparison"))
    )
    assert compared.get_attribute("data-class-a") == prediction.label
    assert compared.get_attribute("data-class-b") == runner_up
    comparison = model.compare(prediction.label, runner_up)
    groups = browser.find_elements(By.CSS_SELECTOR, "#qpm-comparison .qpm-compare-group")
    assert [int(g.get_attribute("data-count")) for g in groups] == [
        len(comparison.shared),
        len(comparison.only_a),
        len(comparison.only_b),
    ]
    browser.save_screenshot(str(tmp_path / "compare.png"))


def test_bad_uploads_show_an_error_in_the_page(page, browser, tmp_path):
    from qpm_zoo.app.uploads import MAX_UPLOAD_PIXELS

    _, url = page
    browser.get(url)
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    huge = tmp_path / "huge.png"
    side = int(np.sqrt(MAX_UPLOAD_PIXELS)) + 100
    Image.new("L", (side, side)).save(huge)
    from selenium.webdriver.common.by import By

    for path, message in [(text, "not an image file"), (huge, "megapixels")]:
        _upload(browser, path, ".qpm-error", done_text=path.name)
        error = browser.find_element(By.CSS_SELECTOR, ".qpm-error").text
        assert path.name in error and message in error, error
    # the server still answers: a good image after the bad ones
    good = tmp_path / "good.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(good)
    _upload(browser, good, ".qpm-prediction[data-input='good.png']")
