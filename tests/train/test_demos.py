"""Demo generations during training: files and manifest, TensorBoard, FAD early stopping, and an
unchanged training stream of random numbers."""

import json
import struct

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


BASE = ("train.max_steps=2", "train.eval_every=2", "train.save_every=2", "train.eval_batches=1",
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
    args = ("train.max_steps=1", "train.eval_every=1", "train.eval_batches=1", "train.tensorboard=false",
            "train.cond_dropout=0")
    train(fresh_run, mini_cfg(fresh_run, *args, "train.dropout=0.0"))
    train(other, mini_cfg(other, *args, "train.dropout=0.5"))
    a = read_jsonl(fresh_run / "train" / "metrics.jsonl")[0]
    b = read_jsonl(other / "train" / "metrics.jsonl")[0]
    assert a["loss"] != b["loss"]  # the same batch, other units dropped


def test_fad_early_stopping(fresh_run):
    args = ("train.max_steps=10", "train.eval_every=10", "train.save_every=10", "train.eval_batches=1",
            "train.demo.every=1", "train.demo.duration_s=1.0", "train.demo.guidance_scales=[3.0]",
            "train.demo.seeds=[0,1]", "train.early_stopping.enabled=true", "train.early_stopping.metric=fad",
            "train.early_stopping.patience=1", "train.early_stopping.min_delta=1e9", "train.tensorboard=true")
    summary = train(fresh_run, mini_cfg(fresh_run, *args))
    rows = read_jsonl(fresh_run / "train" / "metrics.jsonl")
    assert summary["stopped_at"] == 2 and [r["step"] for r in rows] == [1, 2]
    fads = [r["fad"] for r in rows]
    assert all(f > 0 for f in fads), fads
    events = _events(fresh_run / "train" / "tensorboard")
    assert (1, "fad", "simple_value") in events
    facts = json.loads((fresh_run / "model" / "stylecraft.json").read_text())["facts"]
    assert facts["fad_embedding"] == "mfcc" and facts["fad"] == fads[-1] and facts["best_fad"] == min(fads)
