"""Stereo MusicGen (interleaved left/right codebooks): preset, codes, training layout, files, export, a stereo run."""

import numpy as np
import pytest
import soundfile as sf
import torch

from stylecraft.generate import codes as gc
from stylecraft.models.loading import load_model
from stylecraft.train.batches import Collator, delay_pattern, stereo_delays


@pytest.fixture(scope="module")
def stereo():
    return load_model("tiny-stereo")


def _two_tones(seconds=1.0, sr=32000):
    t = np.arange(int(seconds * sr)) / sr
    left = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.sin(2 * np.pi * 3000 * t)
    right = 0.3 * np.sign(np.sin(2 * np.pi * 330 * t)) * 0.5
    return np.stack([left, right]).astype(np.float32)  # [2, samples]


def test_tiny_stereo_is_musicgen_stereo_shaped(stereo):
    dec = stereo.model.config.decoder
    assert (stereo.num_codebooks, stereo.channels, int(dec.audio_channels)) == (8, 2, 2)
    assert gc.codebook_delays(stereo) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert int(stereo.model.config.audio_encoder.audio_channels) == 1  # a mono codec per channel


def test_stereo_codes_are_left_and_right_interleaved(stereo):
    audio = _two_tones()
    codes = gc.encode_audio(stereo, audio[None])  # [1, 8, T]
    enc = stereo.model.audio_encoder
    with torch.no_grad():
        left = enc.encode(torch.from_numpy(audio[None, :1]), bandwidth=stereo.bandwidth).audio_codes[0]
        right = enc.encode(torch.from_numpy(audio[None, 1:]), bandwidth=stereo.bandwidth).audio_codes[0]
    assert torch.equal(codes[:, 0::2], left) and torch.equal(codes[:, 1::2], right)
    assert not torch.equal(left, right)
    mono = gc.encode_audio(stereo, audio[:1])  # mono audio: the same codes on both sides
    assert torch.equal(mono[:, 0::2], mono[:, 1::2])


def test_training_layout_is_transformers_generation_layout(stereo):
    torch.manual_seed(0)
    codes = torch.randint(0, stereo.codebook_size, (2, 8, 12))
    ours = delay_pattern(codes, stereo.pad_token_id, stereo_delays(8))  # [B, K, T + 3]
    start = torch.full((16, 1), stereo.pad_token_id)
    _, ref = stereo.model.decoder.build_delay_pattern_mask(
        torch.cat([start, codes.reshape(16, 12)], 1), pad_token_id=stereo.pad_token_id, max_length=12 + 3 + 1
    )
    assert torch.equal(ours, ref.reshape(2, 8, -1)[..., 1:])
    # The training loss of a stereo batch is the likelihood the sampler scores (stereo delays on both sides).
    col = Collator(stereo.tokenizer, stereo.pad_token_id, stereo.pad_token_id, stereo=True)
    batch = col([{"codes": c, "caption": "demo"} for c in codes])
    with torch.no_grad():
        loss = stereo.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            decoder_input_ids=batch["decoder_input_ids"], labels=batch["labels"]).loss
    ll, n = gc.code_log_likelihood(stereo, gc.text_inputs(stereo, ["demo", "demo"]), codes)
    assert float(loss) == pytest.approx(-float(ll.sum()) / (2 * n), rel=1e-5)


def test_stereo_model_writes_stereo_files(stereo, tmp_path):
    from stylecraft.generate.sample import SamplingParams, generate
    from stylecraft.generate.watermark import detect_file

    rows = generate(stereo, tmp_path, ["demo"], SamplingParams(duration_s=1.0, top_k=50))
    data, sr = sf.read(tmp_path / rows[0]["file"])
    assert data.shape == (32000, 2) and sr == 32000
    assert detect_file(tmp_path / rows[0]["file"], "stylecraft").detected


def test_stereo_export_round_trips_through_audiocraft_format(stereo, tmp_path):
    from stylecraft.models.audiocraft import export_model, load_audiocraft

    export_model(stereo, tmp_path / "ac", fmt="audiocraft")
    back = load_audiocraft(tmp_path / "ac")
    assert back.channels == 2 and back.num_codebooks == 8
    codes = torch.randint(0, stereo.codebook_size, (8, 10))
    text = gc.text_inputs(stereo, ["demo"])
    with torch.no_grad():
        a = stereo.model(**text, decoder_input_ids=codes).logits
        b = back.model(**text, decoder_input_ids=codes).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_stereo_run_stays_stereo_through_segment_tokenize_and_train(tmp_path):
    from stylecraft.artifacts import read_jsonl
    from stylecraft.config import load_recipe
    from stylecraft.data.segment import load_track_audio, load_track_stereo
    from stylecraft.data.tokens import TokenDataset
    from stylecraft.pipeline import run_recipe

    run = tmp_path / "run"
    cfg = load_recipe(None, [
        f"run_dir={run}", "model.name=tiny-stereo", "stages=[demo,ingest,segment,tokenize,train]", "demo.tracks=3",
        "demo.duration_s=8", "ingest.valid_fraction=0.34", "segment.window_s=4", "segment.hop_s=4", "segment.workers=1",
        "train.max_steps=2", "train.batch_size=2", "train.eval_every=2", "train.save_every=2", "train.warmup_steps=1",
        "train.mode=full",
    ])
    run_recipe(cfg)
    ds = TokenDataset(run, "train")
    item = ds[0]
    assert item["codes"].shape[0] == 8
    tid = ds.rows[0]["track_id"]
    two = load_track_stereo(run, tid)
    assert two.shape == (load_track_audio(run, tid).shape[0], 2)
    assert np.abs(two[:, 0] - two[:, 1]).max() > 0.01  # the demo's stereo field survives segment
    win = next(w for w in read_jsonl(run / "windows.jsonl") if w["id"] == ds.rows[0]["id"])
    start = int(round(win["start_s"] * 32000))
    window = two[start : start + 4 * 32000].T[None]  # [1, 2, samples]: that item's window, both channels
    ours = gc.encode_audio(load_model("tiny-stereo"), window)[0]
    # tokenize encodes in batches, and batched convolutions round differently, which flips a few
    # nearest-centre ties; the codes otherwise match position for position (mono ones would not).
    assert (ours == item["codes"]).float().mean() > 0.97
    assert (ours[0::2] == ours[1::2]).float().mean() < 0.5
    model = load_model(str(run))
    assert model.channels == 2 and model.num_codebooks == 8
