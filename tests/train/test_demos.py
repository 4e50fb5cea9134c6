"""Demo generations during training: files and manifest, TensorBoard, FAD early stopping, and an
unchanged training stream of random numbers."""

import json
import struct

import pytest
import soundfile as sf
from mini_run import mini_cfg

from stylecraft.artifacts import read_jsonl, sha256_file
from stylecraft.train.loop import train


def _events(folder):
    """Every summary value (tag, kind) in the TensorBoard event files under ``folder``."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in folder.rglob("events.out.tfevents.*"):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4  # length, its crc, the record, its crc
            for v in event.summary.value:
                out.append((event.step, v.tag, v.WhichOneof("value")))
    return out


BASE = ("train.max_steps=2", "train.eval_every=2", "train.save_every=2", "train.eval_per_track=1",
        "train.dropout=0.2", "train.cond_dropout=0.3")


def test_demos_are_written_logged_and_leave_training_unchanged(fresh_run, tmp_path):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(fresh_run, plain, symlinks=True)
    demo = ("train.demo.every=1", "train.demo.duration_s=0.5", "train.demo.guidance_scales=[1.0,3.0]",
            "train.demo.seeds=[7]", "train.demo.prompts=[calm piano]")
    train(fresh_run, mini_cfg(fresh_run, *BASE, *demo, "train.log_every=2"))
    folder = fresh_run / "train" / "demos" / "step-0000002"
    manifest = json.loads((folder / "manifest.json").read_text())
    names = sorted(r["file"] for r in manifest["files"])
    assert names == ["calm-piano-g1-s7.flac", "calm-piano-g3-s7.flac"]
    for r in manifest["files"]:
        assert sha256_file(folder / r["file"]) == r["sha256"]
        info = sf.info(str(folder / r["file"]))
        assert info.samplerate == manifest["sample_rate"] and abs(info.duration - 0.5) < 1e-3
    assert (fresh_run / "train" / "demos" / "step-0000001" / "manifest.json").exists()

    events = _events(fresh_run / "train" / "tensorboard")
    assert (2, "loss", "simple_value") in events and (2, "val_loss", "simple_value") in events
    assert (1, "loss", "simple_value") not in events  # train.log_every=2 holds for TensorBoard as for metrics.jsonl
    assert (1, "demo/calm-piano-g3-s7", "audio") in events

    # Sampling demos draws no numbers from the training stream: dropout and the loss are unchanged.
    train(plain, mini_cfg(plain, *BASE, "train.tensorboard=false"))
    a = read_jsonl(fresh_run / "train" / "metrics.jsonl")
    b = read_jsonl(plain / "train" / "metrics.jsonl")
    assert [r["step"] for r in a] == [2] and [r["step"] for r in b] == [1, 2]  # log_every=2 against 1
    assert a[0]["loss"] == b[1]["loss"]
    assert not (plain / "train" / "tensorboard").exists()


def test_dropout_override_changes_training(fresh_run, tmp_path):
    import shutil

    from stylecraft.models.loading import load_model
    from stylecraft.train.loop import _set_dropout

    decoder = load_model("tiny").model.decoder
    _set_dropout(decoder, 0.35)
    layers = decoder.model.decoder.layers
    assert decoder.config.dropout == 0.35 and all(layer.dropout == 0.35 for layer in layers)
    assert layers[0].self_attn.dropout != 0.35 or decoder.config.attention_dropout == 0.35  # attention keeps its own

    other = tmp_path / "other"
    shutil.copytree(fresh_run, other, symlinks=True)
    args = ("train.max_steps=1", "train.eval_every=1", "train.eval_per_track=1", "train.tensorboard=false",
            "train.cond_dropout=0")
    train(fresh_run, mini_cfg(fresh_run, *args, "train.dropout=0.0"))
    train(other, mini_cfg(other, *args, "train.dropout=0.5"))
    a = read_jsonl(fresh_run / "train" / "metrics.jsonl")[0]
    b = read_jsonl(other / "train" / "metrics.jsonl")[0]
    assert a["loss"] != b["loss"]  # the same batch, other units dropped


def _expected_stop(values: list[tuple[int, float]], patience: int) -> int | None:
    """The step at which `patience` evaluations in a row have not improved on the best (min_delta 0)."""
    best, bad = float("inf"), 0
    for step, value in values:
        if value < best:
            best, bad = value, 0
        else:
            bad += 1
            if bad >= patience:
                return step
    return None


def _demo_rows(run, embedding, scale):
    """Embedding rows of each step's demos at one guidance scale, from the files on disk."""
    import numpy as np

    from stylecraft.audio.loudness import normalize_gain

    out = {}
    for folder in sorted((run / "train" / "demos").glob("step-*")):
        manifest = json.loads((folder / "manifest.json").read_text())
        rows = []
        for r in manifest["files"]:
            if r["guidance_scale"] == scale:
                audio, sr = sf.read(folder / r["file"], dtype="float32")
                rows.append(embedding.embed(normalize_gain(audio, sr, -16.0)[0], sr))
        out[manifest["step"]] = np.concatenate(rows)
    return out


def _heldout_rows(run, embedding):
    import numpy as np

    from stylecraft.data.segment import load_track_audio

    tracks = [t for t in read_jsonl(run / "tracks.jsonl") if t["split"] == "valid"]
    return np.concatenate([embedding.embed(load_track_audio(run, t["id"]), 32000) for t in tracks])


def test_fad_early_stopping_stops_when_fad_stops_improving(fresh_run):
    """A real stop: min_delta 0, and the step it stops at follows from FAD values recomputed here."""
    from reference_metrics import fad_reference

    from stylecraft.evaluate.embeddings import get_embedding

    # encodec-24k-tiny gives 75 rows per second in D = 128: two 1 s demos per scale give 150 rows.
    args = ("train.max_steps=12", "train.eval_every=12", "train.save_every=12", "train.eval_per_track=1",
            "train.demo.every=1", "train.demo.duration_s=1.0", "train.demo.guidance_scales=[1.0,3.0]",
            "train.demo.seeds=[0,1]", "train.early_stopping.enabled=true", "train.early_stopping.metric=fad",
            "train.early_stopping.embedding=encodec-24k-tiny", "train.early_stopping.patience=2",
            "train.early_stopping.min_delta=0", "train.tensorboard=true")
    summary = train(fresh_run, mini_cfg(fresh_run, *args))
    rows = read_jsonl(fresh_run / "train" / "metrics.jsonl")
    stopped = summary["stopped_at"]
    assert stopped is not None and stopped < 12 and [r["step"] for r in rows][-1] == stopped
    emb = get_embedding("encodec-24k-tiny")
    ref = _heldout_rows(fresh_run, emb)
    demos = _demo_rows(fresh_run, emb, 3.0)
    for r in rows:
        # The logged FAD is that of the guidance-3 demos alone (the early-stopping scale), at -16 LUFS.
        assert r["fad"] == pytest.approx(fad_reference(ref, demos[r["step"]]), rel=2e-3), r["step"]
        assert r["fad_g3"] == r["fad"] and "fad_g1" in r and r["kad"] == r["kad_g3"]
    assert _expected_stop([(r["step"], r["fad"]) for r in rows], 2) == stopped
    events = _events(fresh_run / "train" / "tensorboard")
    assert (1, "fad", "simple_value") in events and (1, "kad", "simple_value") in events
    facts = json.loads((fresh_run / "model" / "stylecraft.json").read_text())["facts"]
    fads = [r["fad"] for r in rows]
    assert facts["fad_embedding"] == "encodec-24k-tiny" and facts["fad"] == fads[-1] and facts["best_fad"] == min(fads)


def test_kad_early_stopping_stops_when_kad_stops_improving(fresh_run):
    from reference_metrics import kad_reference

    from stylecraft.evaluate.embeddings import get_embedding

    args = ("train.max_steps=12", "train.eval_every=12", "train.save_every=12", "train.eval_per_track=1",
            "train.demo.every=1", "train.demo.duration_s=2.0", "train.demo.guidance_scales=[3.0]",
            "train.demo.seeds=[0,1]", "train.early_stopping.enabled=true", "train.early_stopping.metric=kad",
            "train.early_stopping.patience=2", "train.early_stopping.min_delta=0", "train.tensorboard=false")
    summary = train(fresh_run, mini_cfg(fresh_run, *args))
    rows = read_jsonl(fresh_run / "train" / "metrics.jsonl")
    stopped = summary["stopped_at"]
    assert stopped is not None and stopped < 12
    emb = get_embedding("mfcc")
    ref = _heldout_rows(fresh_run, emb)
    demos = _demo_rows(fresh_run, emb, 3.0)
    for r in rows:
        assert r["kad"] == pytest.approx(kad_reference(ref, demos[r["step"]]), rel=1e-3, abs=1e-6), r["step"]
        assert "fad" not in r  # 4 MFCC rows in D = 80: no FAD is logged
    assert _expected_stop([(r["step"], r["kad"]) for r in rows], 2) == stopped


def test_fad_early_stopping_refuses_fewer_rows_than_dimensions(fresh_run):
    from stylecraft.errors import ConfigError

    args = ("train.max_steps=4", "train.demo.every=1", "train.demo.duration_s=1.0", "train.demo.guidance_scales=[3.0]",
            "train.demo.seeds=[0,1]", "train.early_stopping.enabled=true", "train.early_stopping.metric=fad",
            "train.tensorboard=false")
    with pytest.raises(ConfigError, match="2 embedding rows in 80 dimensions"):
        train(fresh_run, mini_cfg(fresh_run, *args))
    with pytest.raises(ConfigError, match="guidance scale 7 .*not in train.demo.guidance_scales"):
        mini_cfg(fresh_run, *args, "train.early_stopping.guidance_scale=7")
