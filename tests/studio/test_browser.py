"""The studio in a real browser (Debian's chromium driven by Playwright) and through gradio_client.

Skipped with the reason where chromium, the studio extra or Playwright is missing; CI installs
chromium (.ci/run) and the dev extra brings the rest, so CI runs it.
"""

from __future__ import annotations

import io
import shutil
import socket
import tempfile

import pytest
import soundfile as sf

from stylecraft.artifacts import sha256_file

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
gr = pytest.importorskip("gradio", reason="the studio extra is not installed (pip install 'stylecraft[studio]')")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

# Flags that keep a headless chromium quiet, offline and disposable.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DURATION_S = 2
PLAY_JS = """href => new Promise((resolve, reject) => {
    const a = document.createElement('audio');
    a.preload = 'auto';
    a.oncanplaythrough = () => resolve(a.duration);
    a.onerror = () => reject(new Error('media error ' + (a.error && a.error.code)));
    a.src = href;
    document.body.appendChild(a);
})"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from stylecraft.studio.app import launch
    from stylecraft.studio.settings import StudioSettings

    settings = StudioSettings(models=("tiny",), out_dir=tmp_path_factory.mktemp("studio"), max_duration_s=30,
                              max_upload_mb=1)
    demo, url = launch(settings, port=_free_port(), block=False)
    yield settings, url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, viewport={"width": 1280, "height": 1000},
        )
        yield context
        context.close()


def test_studio_binds_to_this_machine_only(studio):
    _, url = studio
    assert url.startswith("http://127.0.0.1:")


def test_generate_in_the_page_gives_a_playable_watermarked_take(studio, browser):
    settings, url = studio
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#gen-button")
    page.fill("#gen-prompts textarea", "demo artist style")
    page.fill("#gen-duration input[type=number]", str(DURATION_S))
    page.press("#gen-duration input[type=number]", "Enter")
    page.click("#gen-button")
    page.wait_for_selector("#take-0-audio a[download]", timeout=180_000)
    # The player drew the take's waveform and shows its length (the browser decoded it)...
    page.wait_for_function("() => document.querySelector('#take-0-audio').innerText.includes('0:02')", timeout=30_000)
    link = page.get_attribute("#take-0-audio a[download]", "href")
    # ...and chromium's own media element plays the linked file through (canplaythrough) at that length.
    played = page.evaluate(PLAY_JS, link)
    assert abs(played - DURATION_S) < 0.05
    # The file the page links to is the take: FLAC of the asked length.
    body = page.request.get(link).body()
    data, sr = sf.read(io.BytesIO(body))
    assert sf.info(io.BytesIO(body)).format == "FLAC" and sr == 32000 and data.shape[0] == DURATION_S * sr
    folder = page.input_value("#gen-folder textarea, #gen-folder input")
    takes = list((settings.out_dir / "takes").glob("*/generated.jsonl"))
    assert len(takes) == 1 and str(takes[0].parent) == folder
    assert "watermark found" in page.inner_text("#take-0-watermark")
    page.close()


def test_user_errors_are_messages_in_the_page(studio, browser):
    _, url = studio
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#gen-button")
    page.fill("#gen-model input", "no-such-model")
    page.press("#gen-model input", "Enter")
    page.click("#gen-button")
    toast = page.wait_for_selector(".toast-body", timeout=60_000)
    text = toast.inner_text()
    assert "unknown model 'no-such-model'" in text and "Traceback" not in text
    page.close()


def test_api_generate_returns_the_file_and_its_provenance(studio):
    from gradio_client import Client

    _, url = studio
    client = Client(url, verbose=False)
    path, provenance = client.predict("demo artist style", DURATION_S, 7, "tiny", api_name="/generate")
    assert sha256_file(path) == provenance["sha256"]  # the downloaded file is the one the row describes
    assert provenance["params"]["seed"] == 7 and provenance["model"]["name"] == "tiny"
    assert provenance["watermark_check"]["detected"] is True
    with pytest.raises(Exception, match="longer than this studio allows"):
        client.predict("x", 999, 0, "tiny", api_name="/generate")


def test_uploads_above_the_limit_are_refused(studio):
    import httpx

    _, url = studio
    big = httpx.post(url + "gradio_api/upload", files={"files": ("riff.wav", b"\0" * 1_100_000)})
    assert big.status_code == 413 and "maximum allowed size" in big.text
    small = httpx.post(url + "gradio_api/upload", files={"files": ("riff.wav", b"\0" * 1000)})
    assert small.status_code == 200
