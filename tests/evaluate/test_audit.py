"""Style audit: attribution, confidence, profiles, memorisation check, report (rendered in Chromium)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_runner import run_cli

from stylecraft.errors import StylecraftError
from stylecraft.evaluate.audit import AuditSettings, audit_json, parse_references, run_audit
from stylecraft.evaluate.audit.fingerprint import FingerprintIndex
from stylecraft.evaluate.audit.report import write_report

SR = 22050


def _music(seconds: float, seed: int, low: bool) -> np.ndarray:
    """Decaying harmonic notes: 'low' artist in 80-300 Hz with slow notes, the other 600-2000 Hz, fast and noisy."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    y = np.zeros(n)
    note_s = 0.6 if low else 0.2
    for onset in np.arange(0, seconds, note_s):
        f0 = rng.uniform(80, 300) if low else rng.uniform(600, 2000)
        a, b = int(onset * SR), min(n, int((onset + 3.0) * SR))  # notes have decayed after 3 s
        tt = t[a:b] - onset
        y[a:b] += np.exp(-tt * (2 if low else 12)) * sum(np.sin(2 * np.pi * f0 * k * tt) / k for k in range(1, 4))
    if not low:
        y += 0.3 * rng.normal(size=n)
    return (0.25 * y / np.abs(y).max()).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    for artist, low in (("low", True), ("high", False)):
        (root / artist).mkdir()
        for i in range(4):
            sf.write(root / artist / f"{artist}{i}.wav", _music(12.0, seed=10 * low + i, low=low), SR)
    cands = root / "cands"
    cands.mkdir()
    sf.write(cands / "new_low.wav", _music(12.0, seed=99, low=True), SR)
    sf.write(cands / "new_high.wav", _music(12.0, seed=98, low=False), SR)
    # A near-copy: 8 s of a reference track from 3.0 s, quieter, with a little noise.
    src, _ = sf.read(root / "high" / "high2.wav", dtype="float32")
    rng = np.random.default_rng(0)
    copy = src[int(3.0 * SR) : int(11.0 * SR)] * 0.6 + rng.normal(scale=0.003, size=int(8 * SR)).astype(np.float32)
    sf.write(cands / "copy_of_high2.wav", copy, SR)
    return root


def test_audit_attributes_held_out_tracks_and_flags_the_copy(corpus):
    refs = parse_references([f"low={corpus / 'low'}", f"high={corpus / 'high'}"])
    record = run_audit(refs, [corpus / "cands"], AuditSettings(n_boot=30), progress=False)
    by_name = {Path(c["path"]).name: c for c in record["candidates"]}
    assert set(by_name) == {"new_low.wav", "new_high.wav", "copy_of_high2.wav"}
    for name, artist in (("new_low.wav", "low"), ("new_high.wav", "high"), ("copy_of_high2.wav", "high")):
        c = by_name[name]
        assert set(c["scores"]) == {"low", "high"} and c["closest"] == artist
        assert c["scores"][artist] < c["scores"]["low" if artist == "high" else "high"]
        assert set(c["kad_scores"]) == {"low", "high"} and c["kad_closest"] == artist  # KAD agrees
        assert c["confidence"]["bootstrap"] >= 0.9
        assert c["probabilities"][artist] > 0.5
        assert c["profile"]["tempo_bpm"] > 0 and c["profile"]["spectral_centroid_hz"] > 0
    copy = by_name["copy_of_high2.wav"]["memorization"]
    assert copy["near_copy"] and copy["fingerprint"]["reference"].endswith("high2.wav")
    assert abs(copy["fingerprint"]["offset_s"] - 3.0) < 0.1
    assert not by_name["new_high.wav"]["memorization"]["near_copy"]
    assert not by_name["new_low.wav"]["memorization"]["near_copy"]
    assert Path(copy["nearest_segments"][0]["path"]).name == "high2.wav"
    high_prof = record["references"]["high"]["profile"]
    low_prof = record["references"]["low"]["profile"]
    assert high_prof["spectral_centroid_hz"]["mean"] > low_prof["spectral_centroid_hz"]["mean"]
    assert json.loads(json.dumps(audit_json(record)))["embedding"] == "mfcc"


def test_fingerprint_offsets_and_rejects_unrelated_audio():
    idx = FingerprintIndex()
    a = _music(20.0, seed=1, low=False)
    idx.add("a", a, SR)
    idx.add("b", _music(20.0, seed=2, low=False), SR)
    m = idx.match(a[int(5.5 * SR) : int(12.5 * SR)] * 0.3, SR)
    assert m.reference == "a" and abs(m.offset_s - 5.5) < 0.05 and m.is_copy()
    assert not idx.match(_music(8.0, seed=3, low=False), SR).is_copy()


def test_reference_arguments_are_checked(tmp_path):
    with pytest.raises(StylecraftError, match="NAME=PATH"):
        parse_references(["nopath"])
    with pytest.raises(StylecraftError, match="not a folder"):
        parse_references([f"x={tmp_path / 'missing'}"])
    (tmp_path / "a").mkdir()
    with pytest.raises(StylecraftError, match="twice"):
        parse_references([f"x={tmp_path / 'a'}", f"x={tmp_path / 'a'}"])


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STYLECRAFT_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "stylecraft", *args], capture_output=True, text=True, env=env, timeout=600)


def test_audit_cli_json_report_and_errors(corpus, tmp_path):
    out, report = tmp_path / "audit.json", tmp_path / "report.html"
    proc = _cli("audit", "--reference", f"low={corpus / 'low'}", "--reference", f"high={corpus / 'high'}",
                str(corpus / "cands" / "new_low.wav"), str(corpus / "cands" / "copy_of_high2.wav"),
                "--n-boot", "20", "--json", str(out), "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(out.read_text())
    assert [Path(c["path"]).name for c in rec["candidates"]] == ["new_low.wav", "copy_of_high2.wav"]
    assert [c["closest"] for c in rec["candidates"]] == ["low", "high"]
    assert [c["kad_closest"] for c in rec["candidates"]] == ["low", "high"] and "KAD-closest high" in proc.stdout
    assert "NEAR-COPY" in proc.stdout.splitlines()[1] and "NEAR-COPY" not in proc.stdout.splitlines()[0]
    page = report.read_text()
    assert "<th>KAD to low</th>" in page
    assert page.count("<audio") == 4 and 'id="embedding-map"' in page
    assert len(list((tmp_path / "report_files").glob("*.ogg"))) == 4

    bad = run_cli("audit", "--reference", "oops", str(corpus / "cands"))
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and bad.stderr.count("\n") == 1


# Runs inside the page once everything has loaded; --dump-dom then carries its verdict out.
_PAGE_CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = JSON.stringify({
    images: imgs.length,
    decoded: imgs.filter((i) => i.complete && i.naturalWidth > 0).length,
    audio: document.querySelectorAll("audio").length,
    ogg: document.createElement("audio").canPlayType("audio/ogg; codecs=vorbis"),
  });
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(corpus, tmp_path):
    refs = parse_references([f"low={corpus / 'low'}", f"high={corpus / 'high'}"])
    record = run_audit(refs, [corpus / "cands" / "new_high.wav"], AuditSettings(n_boot=10), progress=False)
    page = write_report(record, tmp_path / "report.html")
    # A copy beside the original (so relative asset paths resolve) that reports what it rendered.
    checked = page.with_name("report_checked.html")
    checked.write_text(page.read_text().replace("</body>", _PAGE_CHECK + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    chromium = _chromium()
    assert chromium is not None
    dom = subprocess.run([chromium, *flags, "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<h1 id="title">Style audit</h1>' in dom.stdout
    verdict = json.loads(dom.stdout.split('<pre id="render-check">', 1)[1].split("</pre>", 1)[0])
    # Every plot and spectrogram decoded as an image; the players have a codec for their clips.
    assert verdict["images"] >= 4 and verdict["decoded"] == verdict["images"], verdict
    assert verdict["audio"] >= 2 and verdict["ogg"] in ("probably", "maybe"), verdict
    shot = tmp_path / "shot.png"
    proc = subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    # A rendered page: not blank, with both dark (text, plots) and light (background) areas.
    assert img.shape == (1600, 1200) and img.std() > 20 and (img < 80).mean() > 0.005 and (img > 200).mean() > 0.3


def test_loudness_normalised_embedding_ignores_gain():
    from stylecraft.evaluate.audit import LoudnessNormalized
    from stylecraft.evaluate.embeddings import get_embedding

    y = _music(4.0, seed=5, low=True)
    emb = LoudnessNormalized(get_embedding("mfcc"), -23.0)
    assert np.allclose(emb.embed(y, SR), emb.embed(y * 0.1, SR), atol=1e-3)
    raw = get_embedding("mfcc")
    assert not np.allclose(raw.embed(y, SR), raw.embed(y * 0.1, SR), atol=1e-1)
    assert emb.settings()["loudness_normalized_lufs"] == -23.0 and emb.name == "mfcc"


def test_a_reference_of_only_very_short_tracks_is_a_one_line_error(corpus, tmp_path):
    short = tmp_path / "short"
    short.mkdir()
    for i in range(3):  # together enough rows for the artist, each too short for its own statistics
        sf.write(short / f"s{i}.wav", _music(1.2, seed=50 + i, low=True), SR)
    refs = {"high": corpus / "high", "short": short}
    with pytest.raises(StylecraftError, match="'short' has no track long enough"):
        run_audit(refs, [corpus / "cands" / "new_low.wav"], AuditSettings(n_boot=10), progress=False)
