"""Safe loading: pickled checkpoints that would run code are refused, manifests cannot lead outside.

The malicious files below hold an object whose ``__reduce__`` would create a marker file when
unpickled; every test checks the marker never appears.
"""

import json
import os
import pickle
import re
from pathlib import Path

import pytest
from cli_runner import run_cli

from stylecraft.artifacts import inside, read_jsonl, write_jsonl
from stylecraft.errors import CheckpointError, StageInputError
from stylecraft.models.loading import load_model

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious_pickle(path: Path, marker: Path) -> None:
    # The layout torch.save uses (a zip holding data.pkl) with code in it, plus a plain pickle.
    import torch

    torch.save({"state": _Payload(marker)}, path)


def test_model_folder_with_pickled_weights_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "model"
    load_model("tiny").model.config.save_pretrained(folder)
    _malicious_pickle(folder / "pytorch_model.bin", marker)
    with pytest.raises(CheckpointError, match="pickled weights"):
        load_model(str(folder))
    assert not marker.exists()


def test_cli_refuses_pickled_model_in_one_line(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "model"
    load_model("tiny").model.config.save_pretrained(folder)
    _malicious_pickle(folder / "pytorch_model.bin", marker)
    proc = run_cli("generate", "--model", str(folder), "--out", str(tmp_path / "o"), "--duration", "1")
    assert proc.returncode == 1 and proc.stderr.startswith("error:") and "pickled weights" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not marker.exists()


def test_torch_load_weights_only_refuses_payload(tmp_path):
    """What accelerate's resume relies on: weights_only unpickling refuses the payload."""
    import torch

    marker = tmp_path / "pwned"
    _malicious_pickle(tmp_path / "optimizer.bin", marker)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "optimizer.bin", weights_only=True)
    assert not marker.exists()


def test_inside_refuses_escapes(tmp_path):
    assert inside(tmp_path, "variants/a.c00.npy") == tmp_path / "variants" / "a.c00.npy"
    for bad in ("../x.npy", "/etc/passwd", "variants/../../x.npy", ""):
        with pytest.raises(StageInputError, match="escapes"):
            inside(tmp_path, bad)


def test_tampered_manifests_are_refused(mini_run_copy):
    from stylecraft.data.segment import segment

    run = mini_run_copy.run_dir
    rows = read_jsonl(run / "tracks.jsonl")
    # A track id with ../ would make segment write audio/<id>.npy outside the run.
    write_jsonl(run / "tracks.jsonl", [{**rows[0], "id": "../../escaped"}, *rows[1:]])
    with pytest.raises(StageInputError, match="bad id"):
        segment(run, mini_run_copy.params)
    # A source path outside the catalogue.
    write_jsonl(run / "tracks.jsonl", [{**rows[0], "path": str(mini_run_copy.catalogue / ".." / "elsewhere.flac")}, *rows[1:]])
    with pytest.raises(StageInputError, match="outside"):
        segment(run, mini_run_copy.params, catalogue=mini_run_copy.catalogue)
    assert not (run.parent.parent / "escaped.npy").exists()


def test_tampered_variant_shard_and_verify(mini_run_copy):
    from stylecraft.data.augment import load_variant_shard
    from stylecraft.verify import verify

    run = mini_run_copy.run_dir
    with pytest.raises(StageInputError, match="escapes"):
        load_variant_shard(run, "../../../etc/passwd")
    stamp_path = run / "stages" / "segment.json"
    stamp_path.parent.mkdir(exist_ok=True)
    stamp_path.write_text(json.dumps({"stage": "segment", "outputs": {"../outside.txt": "0" * 64}}))
    (run.parent / "outside.txt").write_text("not part of the run")
    findings = [f for f in verify(run) if f.path == "../outside.txt"]
    assert findings and findings[0].status == "altered" and "escapes" in findings[0].detail


def test_source_has_no_unsafe_loading():
    """Audit: no pickle, no torch.load without weights_only=True, no np.load with pickles."""
    problems = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(ROOT)
        if re.search(r"^\s*(import pickle|from pickle|import dill|import joblib)", text, re.M):
            if "pickle.UnpicklingError" not in text or re.search(r"pickle\.(load|loads)\(", text):
                problems.append(f"{rel}: unpickles")
        for m in re.finditer(r"torch\.load\((.*)$", text, re.M):  # calls here fit on one line
            if "weights_only=True" not in m.group(1):
                problems.append(f"{rel}: torch.load without weights_only=True")
        for m in re.finditer(r"np\.load\((.*)$", text, re.M):
            if "allow_pickle=False" not in m.group(1):
                problems.append(f"{rel}: np.load without allow_pickle=False")
        if "allow_pickle=True" in text or "weights_only=False" in text:
            problems.append(f"{rel}: explicitly unsafe loading")
    assert problems == []
