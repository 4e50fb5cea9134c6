"""AudioSeal backend: the package's real networks at random init (no download), safe loading, no fallback."""

import numpy as np
import pytest

pytest.importorskip("audioseal")

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from stylecraft.artifacts import sha256_file  # noqa: E402
from stylecraft.config import load_recipe  # noqa: E402
from stylecraft.errors import CheckpointError, ConfigError, ModelNotFoundError  # noqa: E402
from stylecraft.generate import watermark as wm  # noqa: E402
from stylecraft.generate import watermark_audioseal as was  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A folder laid out like the fetched weights: generator as .pth (with its config, like the
    released files), detector as safetensors; both from a deterministic random init."""
    folder = tmp_path_factory.mktemp("audioseal")
    gen, det = was.build("generator", seed=1), was.build("detector", seed=2)
    cfg = OmegaConf.create({"seanet": {"dimension": 128, "ratios": [8, 5, 4, 2]}, "nbits": 16})
    torch.save({"xp.cfg": cfg, "model": gen.state_dict()}, folder / "generator_base.pth")
    save_file({k: v.contiguous() for k, v in det.state_dict().items()}, str(folder / "detector_base.safetensors"))
    return folder, gen, det


def test_built_from_the_package_cards(weights):
    _, gen, det = weights
    assert sum(p.numel() for p in gen.parameters()) > 10_000_000  # the real SEANet, not a stand-in
    assert gen.msg_processor.nbits == 16 and det.nbits == 16
    x = torch.zeros(1, 1, 8000)
    with torch.inference_mode(), was._eager():
        assert gen.get_watermark(x, 16000, message=torch.zeros(1, 16, dtype=torch.long)).shape == (1, 1, 8000)
        result, message = det(x, 16000)
    assert result.shape == (1, 2, 8000) and message.shape == (1, 16)


def test_embed_detect_shapes_and_provenance(weights):
    folder, gen, det = weights
    models = was.load_models(str(folder))
    assert all(torch.equal(a, b) for a, b in zip(models.generator.state_dict().values(), gen.state_dict().values(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(models.detector.state_dict().values(), det.state_dict().values(), strict=True))
    rng = np.random.default_rng(0)
    mono = (0.1 * rng.standard_normal(32000)).astype(np.float32)
    stereo = (0.1 * rng.standard_normal((44100, 2))).astype(np.float32)
    y1 = wm.embed_as("audioseal", mono, 32000, "label-key", audioseal_path=str(folder))
    y2 = wm.embed_as("audioseal", stereo, 44100, "label-key", audioseal_path=str(folder))
    assert y1.shape == mono.shape and y1.dtype == np.float32 and not np.array_equal(y1, mono)
    assert y2.shape == stereo.shape and np.allclose(y2[:, 0] - stereo[:, 0], y2[:, 1] - stereo[:, 1], atol=1e-6)
    d = was.detect(y1, 32000, "label-key", models)
    assert 0.0 <= d.score <= 1.0 and 0 <= d.bits_matched <= 16 and d.duration_s == 1.0
    assert d.key_id == was.key_id("label-key") != was.key_id("other-key")
    rec = wm.record_as("audioseal", "label-key", audioseal_path=str(folder))
    assert rec["method"] == was.METHOD and rec["key_id"] == d.key_id and "label-key" not in str(rec)
    assert rec["weights_sha256"] == {"generator_base.pth": sha256_file(folder / "generator_base.pth"),
                                     "detector_base.safetensors": sha256_file(folder / "detector_base.safetensors")}
    assert was.key_message("label-key").shape == (16,) and set(np.unique(was.key_message("label-key"))) <= {0, 1}


def test_missing_weights_is_one_line_and_never_falls_back(tmp_path):
    audio = np.zeros(16000, dtype=np.float32)
    with pytest.raises(ModelNotFoundError) as e:
        wm.embed_as("audioseal", audio, 16000, "k", audioseal_path=str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "stylecraft fetch audioseal" in msg and "generator" in msg
    with pytest.raises(ModelNotFoundError):
        wm.record_as("audioseal", "k", audioseal_path=str(tmp_path / "nowhere"))


def test_pickled_code_in_weights_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"model": {"w": torch.zeros(1)}, "evil": Payload()}, tmp_path / "generator_base.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        was.read_state_dict(tmp_path / "generator_base.pth")
    assert not marker.exists()


def test_wrong_weights_are_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="do not fit"):
        was.build("detector", {"encoder.bogus.weight": torch.zeros(3)})


def test_method_is_validated():
    with pytest.raises(ConfigError, match="dsp or audioseal"):
        load_recipe(None, ["catalogue=/tmp", "generate.watermark.method=lsb"])
    cfg = load_recipe(None, ["catalogue=/tmp", "generate.watermark.method=audioseal", "generate.watermark.audioseal_path=/x"])
    assert cfg.generate.watermark.method == "audioseal"
    with pytest.raises(ConfigError, match="unknown watermark method"):
        wm.embed_as("lsb", np.zeros(100, np.float32), 16000, "k")


def test_cli_detect_with_audioseal(weights, tmp_path):
    import json

    import soundfile as sf
    from cli_runner import run_cli

    folder, _, _ = weights
    src = tmp_path / "clip.wav"
    sf.write(src, (0.1 * np.random.default_rng(1).standard_normal(16000)).astype(np.float32), 16000)

    def cli(*args):
        return run_cli("watermark", "detect", str(src), "--key", "k", *args)

    ok = cli("--method", "audioseal", "--audioseal-path", str(folder), "--json")
    assert ok.returncode in (0, 2), ok.stderr  # random weights: either verdict, but a full record
    rec = json.loads(ok.stdout)
    assert rec["key_id"] == was.key_id("k") and 0 <= rec["bits_matched"] <= 16 and rec["threshold"] == was.DETECT_PROB
    missing = cli("--method", "audioseal", "--audioseal-path", str(tmp_path / "none"))
    assert missing.returncode == 1 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "stylecraft fetch audioseal" in missing.stderr
