"""musicnn parity: stylecraft's PyTorch port against musicnn 0.1.0 on TensorFlow, same published weights.

The reference venv (``eval/parity/musicnn_env.py``) runs ``musicnn.extractor.extractor`` on the
same files; stylecraft reads the same checkpoints out of the same wheel
(:class:`~stylecraft.evaluate.embeddings.musicnn.MusicnnEmbedding`). Compared, for both models (MSD, MTT):

* the input patches (front end: loading, resampling, mel, float16 log);
* the penultimate features and the tag probabilities, end to end from the files;
* the network alone, on the reference's own patches.

The reference's ``extractor`` returns, for every patch after the first of a file, the first
patch's ``penultimate`` features again (its batch loop unpacks them as ``backend_`` but appends
``penultimate_``), so end to end the penultimate features are compared on each file's first patch,
and on every patch by the network-only comparison. A negative control scales one of stylecraft's
convolutions by 1.01 and must be detected.

Usage::

    python eval/parity/musicnn_parity.py --wheel checkpoints/hub/musicnn/musicnn-0.1.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from musicnn_env import ENV, ROOT  # noqa: E402

from stylecraft.artifacts import atomic_write_json, atomic_write_text  # noqa: E402
from stylecraft.evaluate.embeddings.musicnn import MODELS, MusicnnEmbedding, log_mel_patches  # noqa: E402

TOL = 1e-4
RESULTS = ROOT / "eval" / "results"


def clips(folder: Path, music: Path | None) -> list[Path]:
    """Synthetic clips at several rates and channel counts, plus 30 s of a few real tracks if present."""
    rng = np.random.default_rng(0)
    out = []
    for i, (sr, ch) in enumerate([(16000, 1), (44100, 2), (22050, 1), (48000, 2)]):
        t = np.arange(int(12 * sr)) / sr
        y = sum(np.sin(2 * np.pi * rng.uniform(80, 2000) * t + rng.uniform(0, 6)) * np.exp(-((t % 1.5) * rng.uniform(1, 4)))
                for _ in range(5))
        y = 0.2 * y / np.abs(y).max() + 0.01 * rng.standard_normal(t.size)
        p = folder / f"synth{i}.wav"
        sf.write(p, np.stack([y * (1 - 0.2 * c) for c in range(ch)], 1).astype(np.float32), sr)
        out.append(p)
    if music is not None and not music.is_dir():
        print(f"no real music: '{music}' is not a folder; comparing on synthetic clips only", file=sys.stderr)
    if music is not None and music.is_dir():
        for f in sorted(music.glob("*.ogg"))[:4]:
            x, sr = sf.read(f, dtype="float32", start=20 * 44100, frames=30 * 44100)
            p = folder / f"{f.stem}.wav"
            sf.write(p, x, sr)
            out.append(p)
    return out


def _maxdiff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def compare(variant: str, wheel: Path, files: list[Path], tmp: Path) -> dict[str, Any]:
    folder = MODELS[variant][0]
    ref_npz = tmp / f"ref-{variant}.npz"
    ENV.run_worker("extract", {"files": [str(f) for f in files], "model": folder, "out": str(ref_npz)})
    ref = np.load(ref_npz)
    emb = MusicnnEmbedding.from_wheel(wheel, variant, cache_dir=tmp / "cache", device="cpu")
    rows: list[dict[str, Any]] = []
    all_ref_patches = []
    for i, f in enumerate(files):
        x, sr = sf.read(f, dtype="float32")
        mine_p = log_mel_patches(x, sr)
        pen, prob = emb.outputs(mine_p)
        r_p, r_pen, r_tag = ref[f"patches{i}"], ref[f"penultimate{i}"], ref[f"taggram{i}"]
        finite = np.isfinite(r_pen).all(axis=1) & np.isfinite(r_tag).all(axis=1)
        # The front end is compared where the reference did not overflow (inf there, a float32 value here).
        inp_ok = np.isfinite(r_p)
        rows.append({
            "file": f.name, "patches": int(r_p.shape[0]), "reference_nan_patches": int((~finite).sum()),
            "input_max_abs_diff": _maxdiff(mine_p[inp_ok], r_p[inp_ok]),
            "penultimate_max_abs_diff": _maxdiff(pen[:1], r_pen[:1]),
            "reference_repeats_first_penultimate": bool(r_pen.shape[0] > 1 and np.all(r_pen == r_pen[:1])),
            "tags_max_abs_diff": _maxdiff(prob[finite], r_tag[finite]),
        })
        all_ref_patches.append(r_p[np.isfinite(r_p).all(axis=(1, 2))])
    patches = np.concatenate(all_ref_patches)
    np.save(tmp / f"patches-{variant}.npy", patches)
    ENV.run_worker("network", {"patches": str(tmp / f"patches-{variant}.npy"), "model": folder, "out": str(tmp / f"net-{variant}.npz")})
    net_ref = np.load(tmp / f"net-{variant}.npz")
    pen, prob = emb.outputs(patches)
    network = {"patches": int(patches.shape[0]), "penultimate_max_abs_diff": _maxdiff(pen, net_ref["penultimate"]),
               "tags_max_abs_diff": _maxdiff(prob, net_ref["taggram"])}
    with torch.no_grad():  # negative control: the first timbral convolution scaled by 1.01
        emb.net.timbral[0].weight.mul_(1.01)
    pen_bad = emb.outputs(patches)[0]
    network["negative_control_penultimate_max_abs_diff"] = _maxdiff(pen_bad, net_ref["penultimate"])
    worst = {k: max(r[k] for r in rows) for k in ("input_max_abs_diff", "penultimate_max_abs_diff", "tags_max_abs_diff")}
    ok = (max(worst.values()) <= TOL and network["penultimate_max_abs_diff"] <= TOL and network["tags_max_abs_diff"] <= TOL
          and network["negative_control_penultimate_max_abs_diff"] > TOL)
    return {"model": folder, "files": rows, "worst_end_to_end": worst, "network_only": network, "passed": bool(ok)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", type=Path, required=True, help="the musicnn-0.1.0 wheel (stylecraft fetch musicnn)")
    ap.add_argument("--music", type=Path, default=ROOT / "eval" / "data" / "mini" / "corpus" / "catalogue" / "wesnoth",
                    help="real tracks to excerpt (default: the Wesnoth soundtrack as the stylecraft-mini corpus builder unpacks it)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        files = clips(tmp, args.music)
        results = {v: compare(v, args.wheel, files, tmp) for v in MODELS}
    out = {"tolerance": TOL, "reference": "musicnn 0.1.0 on tensorflow-cpu 2.12.1 (isolated venv)",
           "machine": f"{platform.machine()} {platform.processor()}", "torch": torch.__version__, "models": results,
           "passed": all(r["passed"] for r in results.values())}
    atomic_write_json(RESULTS / "parity_musicnn.json", out)
    lines = ["# musicnn parity: PyTorch port vs musicnn 0.1.0 (TensorFlow 2.12), published weights", "",
             f"Tolerance {TOL:g} (max abs diff). Files: 4 synthetic clips (16/22.05/44.1/48 kHz, mono and stereo) and "
             "30 s excerpts of real Wesnoth tracks. Reference patches with non-finite outputs are counted and left out "
             "of the end-to-end columns (none are expected).", ""]
    for r in results.values():
        lines += [f"## {r['model']}: {'passed' if r['passed'] else 'FAILED'}", "",
                  "| file | patches | reference non-finite patches | input patches | penultimate (first patch) | "
                  "tag probabilities | reference repeats patch 0's penultimate |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {x['file']} | {x['patches']} | {x['reference_nan_patches']} | {x['input_max_abs_diff']:.2e} | "
                  f"{x['penultimate_max_abs_diff']:.2e} | {x['tags_max_abs_diff']:.2e} | "
                  f"{'yes' if x['reference_repeats_first_penultimate'] else 'no'} |" for x in r["files"]]
        n = r["network_only"]
        lines += ["", f"Network alone on the reference's {n['patches']} finite patches: penultimate {n['penultimate_max_abs_diff']:.2e}, "
                  f"tags {n['tags_max_abs_diff']:.2e}; negative control (first timbral convolution x1.01): "
                  f"{n['negative_control_penultimate_max_abs_diff']:.2e}.", ""]
    atomic_write_text(RESULTS / "parity_musicnn.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    sys.exit(0 if out["passed"] else 1)


if __name__ == "__main__":
    main()
