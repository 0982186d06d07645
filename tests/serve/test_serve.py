"""`saliency serve`: the Flask app through its test client (the page, an upload's map, mask and cut-out,
bad uploads answered in one line), the command's errors, and the page in a real headless Chromium
against a real server process, checked against what `saliency predict` writes."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

from saliency.segmentation.predict import Detector
from tests.conftest import write_tiny_unet

REPO = Path(__file__).resolve().parents[2]
LIMIT = 1 << 20  # the test app's --max-upload-mb: 1 MB (ECSSD's images are under 200 kB)
FORMATS = ("probability", "mask", "cutout")


def unavailable(message: str) -> None:
    """A test that needs what the test extra or .ci/run installs: skipped with the reason on a
    developer's machine, failed under CI (CI=true), where a skip would let the suite pass untested
    (as ``missing_shared_data`` in tests/conftest.py)."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def needs_serve_extra() -> None:
    try:
        import flask  # noqa: F401
        import waitress  # noqa: F401
    except ImportError as error:
        unavailable(f"saliency serve's extra is missing ({error.name}): pip install -e '.[test]'")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_unet(tmp_path_factory.mktemp("serve") / "model.pt")


@pytest.fixture(scope="module")
def detector(checkpoint: Path) -> Detector:
    return Detector.load(checkpoint, "cpu")


@pytest.fixture(scope="module")
def image_path(ecssd_root: Path) -> Path:
    return sorted((ecssd_root / "images").glob("*.jpg"))[0]


@pytest.fixture
def client(detector: Detector) -> Any:
    needs_serve_extra()
    from saliency.serve.app import create_app

    return create_app(detector, LIMIT).test_client()


def upload(client: Any, data: bytes, name: str) -> Any:
    return client.post("/predict", data={"image": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def decode_data_url(url: str) -> np.ndarray:
    """The pixels of a PNG data URL, by PIL (the package encodes with OpenCV)."""
    head, _, payload = url.partition(",")
    assert head == "data:image/png;base64", head[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))))


def one_line_error(response: Any) -> str:
    assert response.is_json, response.data[:200]
    message = response.get_json()["error"]
    assert message and "\n" not in message and len(message) < 300, message
    return message


def test_the_page_its_script_and_style_are_served(client: Any) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'type="file"' in html and 'id="error"' in html
    assert "http" not in html.replace('name="viewport"', "")  # nothing from elsewhere: it works offline
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for asset, kind in (("static/page.js", "text/javascript"), ("static/page.css", "text/css")):
        answer = client.get(f"/{asset}")
        assert answer.status_code == 200 and answer.mimetype == kind
        assert "//cdn" not in answer.get_data(as_text=True)
    settings = client.get("/settings").get_json()
    assert settings["max_upload_bytes"] == LIMIT and settings["inference"]["shorter_side"] == 64
    assert settings["refine"] == "none" and len(settings["checkpoint_sha256"]) == 64
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and "/no/such/page" in one_line_error(missing)
    assert client.get("/predict").status_code == 405


def test_an_upload_answers_the_map_mask_and_cutout_the_detector_renders(client: Any, detector: Detector,
                                                                        image_path: Path) -> None:
    answer = upload(client, image_path.read_bytes(), image_path.name)
    assert answer.status_code == 200, answer.data[:300]
    body = answer.get_json()
    image = np.array(Image.open(image_path).convert("RGB"))
    assert (body["height"], body["width"]) == image.shape[:2]
    assert [output["format"] for output in body["outputs"]] == list(FORMATS)
    for output in body["outputs"]:
        np.testing.assert_array_equal(decode_data_url(output["url"]), detector.render(image, output["format"]),
                                      err_msg=output["format"])
    mask = decode_data_url(body["outputs"][1]["url"])
    assert mask.ndim == 2 and set(np.unique(mask)) == {0, 255}  # a real mask: both values
    assert decode_data_url(body["outputs"][2]["url"]).shape == (*image.shape[:2], 4)  # RGBA


def bad_uploads(image: bytes) -> dict[str, tuple[dict[str, Any], int, str]]:
    """Name -> (the form sent, the status expected, a word the message holds)."""
    def file(data: bytes, name: str) -> dict[str, Any]:
        return {"image": (io.BytesIO(data), name)}

    return {
        "over the limit": (file(b"\xff" * (LIMIT + 1), "big.jpg"), 413, "MB"),
        "over the request limit": (file(b"\xff" * (2 * LIMIT), "huge.png"), 413, "MB"),
        "corrupt": (file(image[: len(image) // 2], "cut.jpg"), 415, "cut.jpg"),
        "not an image": (file(b"just some notes\n" * 20, "notes.txt"), 415, "notes.txt"),
        "empty": (file(b"", "empty.png"), 400, "empty"),
        "no file": ({"other": "field"}, 400, "image"),
        "no file name": (file(image, ""), 400, "image"),
    }


@pytest.mark.parametrize("case", list(bad_uploads(b"")))
def test_a_bad_upload_answers_one_line_and_the_next_upload_works(client: Any, image_path: Path, case: str) -> None:
    image = image_path.read_bytes()
    form, status, word = bad_uploads(image)[case]
    answer = client.post("/predict", data=form, content_type="multipart/form-data")
    assert answer.status_code == status, (case, answer.data[:300])
    assert word in one_line_error(answer)
    assert upload(client, image, image_path.name).status_code == 200


def test_uploads_at_once_are_answered_alike(detector: Detector, image_path: Path) -> None:
    """Waitress answers from several threads; the detector runs one image at a time."""
    needs_serve_extra()
    from saliency.serve.app import create_app

    app = create_app(detector, LIMIT)
    data = image_path.read_bytes()
    masks: list[np.ndarray] = []

    def work() -> None:
        body = upload(app.test_client(), data, image_path.name).get_json()
        masks.append(decode_data_url(body["outputs"][1]["url"]))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(masks) == 4 and all(np.array_equal(mask, masks[0]) for mask in masks)


# The command -------------------------------------------------------------------------------------

def test_serve_help_imports_neither_torch_nor_flask() -> None:
    code = ("import sys\n"
            "sys.argv = ['saliency', 'serve', '--help']\n"
            "from saliency.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('loaded:', *(name for name in ('torch', 'flask', 'waitress') if name in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--max-upload-mb" in done.stdout and "--checkpoint" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "loaded:"


def test_serve_without_flask_says_what_to_install(run_cli: Any, checkpoint: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flask", None)  # import flask raises ImportError
    result = run_cli("serve", "--checkpoint", checkpoint)
    assert result.code == 2
    assert result.err.count("\n") == 1 and "pip install 'gan-saliency[serve]'" in result.err, result.err


def test_serve_errors_are_one_line(run_cli: Any, checkpoint: Path, tmp_path: Path) -> None:
    needs_serve_extra()
    missing = run_cli("serve", "--checkpoint", tmp_path / "nothing.pt", "--port", "0")
    assert missing.code == 2 and missing.err.startswith("error: checkpoint") and missing.err.count("\n") == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run_cli("serve", "--checkpoint", checkpoint, "--port", taken.getsockname()[1])
    assert busy.code == 2 and "--port" in busy.err and busy.err.count("\n") == 1, busy.err


# The page in a browser ---------------------------------------------------------------------------

def browser() -> tuple[str, str]:
    """Chromium and its driver (Debian's chromium and chromium-driver; .ci/run installs them), found on
    PATH. Missing, the browser test is skipped on a developer's machine and fails under CI."""
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if found is None or driver is None:
        lacking = " and ".join(name for name, path in (("chromium", found), ("chromedriver", driver)) if path is None)
        unavailable(f"the browser test needs {lacking} on PATH: apt-get install chromium chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        unavailable("the browser test needs selenium: pip install -e '.[test]'")
    assert found is not None and driver is not None
    return found, driver


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(checkpoint: Path, tmp_path: Path) -> Iterator[str]:
    """`saliency serve` in its own process, on a free port, until the test ends."""
    needs_serve_extra()
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "saliency", "serve", "--checkpoint", str(checkpoint),
                                    "--port", str(port)], stdout=output, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"saliency serve exited with {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"saliency serve did not answer on {url} within 120 s:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url + "settings", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def driver() -> Iterator[Any]:
    chromium, chromedriver = browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    session = webdriver.Chrome(options=options, service=Service(chromedriver))
    try:
        yield session
    finally:
        session.quit()


def pick(driver: Any, path: Path) -> str:
    """Give the page's file input ``path`` and wait for its answer: the page's state, done or error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    body = driver.find_element(By.TAG_NAME, "body")
    driver.execute_script("document.body.dataset.state = 'sent';")
    driver.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(driver, 60).until(lambda _: body.get_attribute("data-state") in ("done", "error"))
    return str(body.get_attribute("data-state"))


def test_the_page_in_a_browser_shows_the_mask_saliency_predict_writes(
        driver: Any, server: str, checkpoint: Path, image_path: Path, tmp_path: Path, run_cli: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    written = run_cli("predict", "--checkpoint", checkpoint, "--format", "mask", "--out", tmp_path / "masks",
                      image_path)
    assert written.code == 0, written.err
    expected = np.asarray(Image.open(tmp_path / "masks" / f"{image_path.stem}.png"))
    assert set(np.unique(expected)) == {0, 255}

    driver.get(server)
    WebDriverWait(driver, 30).until(lambda d: "U-Net" in d.find_element(By.ID, "settings").text)
    assert pick(driver, image_path) == "done", driver.find_element(By.ID, "error").text
    shown = driver.find_element(By.ID, "result-mask")
    assert shown.is_displayed()
    np.testing.assert_array_equal(decode_data_url(str(shown.get_attribute("src"))), expected)
    for output in FORMATS:
        link = driver.find_element(By.ID, f"download-{output}")
        assert link.get_attribute("download") == f"{image_path.stem}-{output}.png"
        assert str(link.get_attribute("href")).startswith("blob:")
    assert not driver.find_element(By.ID, "error").is_displayed()

    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    assert pick(driver, notes) == "error"
    error = driver.find_element(By.ID, "error")
    assert error.is_displayed() and "notes.txt" in error.text and "\n" not in error.text, error.text
    assert not driver.find_element(By.ID, "results").is_displayed()

    big = tmp_path / "big.jpg"  # over the default 20 MB: the page refuses it before sending
    with big.open("wb") as file:
        file.truncate(21 << 20)
    assert pick(driver, big) == "error"
    assert "big.jpg" in error.text and "20 MB" in error.text, error.text

    with urllib.request.urlopen(server + "settings", timeout=10) as answer:  # the server still answers
        assert json.load(answer)["max_upload_bytes"] == 20 << 20
    assert pick(driver, image_path) == "done"  # and the page still works
    assert not driver.find_element(By.ID, "error").is_displayed()

    # A file dropped on the page (Selenium cannot drag from the desktop: the drop event, as a browser sends it).
    driver.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], "dropped.jpg", {type: "image/jpeg"}));
        document.body.dataset.state = "sent";
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
    """, base64.b64encode(image_path.read_bytes()).decode())
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
    assert driver.find_element(By.ID, "download-mask").get_attribute("download") == "dropped-mask.png"
    shown = driver.find_element(By.ID, "result-mask")
    np.testing.assert_array_equal(decode_data_url(str(shown.get_attribute("src"))), expected)
