"""The studio's library layer without a page: request checks, riff cropping, takes, runs and compare."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from stylecraft.errors import AudioDecodeError, StylecraftError
from stylecraft.studio import takes as tk
from stylecraft.studio.settings import StudioSettings


@pytest.fixture
def settings(tmp_path):
    return StudioSettings(out_dir=tmp_path / "studio", max_upload_mb=1, max_duration_s=10)


def test_riff_is_cropped_to_the_asked_span(settings, tmp_path):
    sr = 32000
    t = np.arange(3 * sr) / sr
    src = tmp_path / "riff.wav"
    sf.write(src, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    out = tk.crop_riff(src, 0.5, 2.0, settings)
    data, rate = sf.read(out)
    assert rate == sr and data.shape[0] == int(1.5 * sr)
    np.testing.assert_allclose(data, 0.3 * np.sin(2 * np.pi * 220 * t[sr // 2 : 2 * sr]), atol=1e-4)
    assert sf.read(tk.crop_riff(src, 1.0, 0, settings))[0].shape[0] == 2 * sr  # end 0: to the end
    with pytest.raises(StylecraftError, match="starts at 5 s but the riff is 3.0 s long"):
        tk.crop_riff(src, 5.0, 0, settings)
    with pytest.raises(StylecraftError, match="the end must be after the start"):
        tk.crop_riff(src, 2.0, 1.0, settings)


def test_bad_and_large_uploads_are_user_errors(settings, tmp_path):
    junk = tmp_path / "notes.wav"
    junk.write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioDecodeError, match="not audio stylecraft can read"):
        tk.check_upload(junk, settings, "seed riff")
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros(400_000, dtype=np.float32), 32000, subtype="FLOAT")  # 1.6 MB
    with pytest.raises(StylecraftError, match="over the studio's upload limit of 1 MB"):
        tk.check_upload(big, settings, "melody")


def test_request_limits_are_checked_before_any_model_loads(settings):
    with pytest.raises(StylecraftError, match="longer than this studio allows"):
        tk.validate_request(tk.GenerateRequest(model="tiny", prompts=["x"], duration_s=11), settings)
    with pytest.raises(StylecraftError, match="takes a page shows"):
        tk.validate_request(tk.GenerateRequest(model="tiny", prompts=["a", "b", "c"], takes=2), settings)
    with pytest.raises(StylecraftError, match="unknown model"):
        tk.ModelCache().get("no-such-model")
