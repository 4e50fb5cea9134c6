"""Embedding parity on shared random weights: stylecraft's VGGish vs torchvggish / frechet-audio-distance.

The full-size VGGish is initialised at random (seed 0, no published weights are needed), its
state dict is saved, and the reference venv loads it into torchvggish's network and runs the
reference front end (``waveform_to_examples``, resampy loading as frechet-audio-distance does).
Compared: per-clip embeddings (max abs diff), with and without the PCA post-processor, and the
end-to-end FAD of ``FrechetAudioDistance(model_name="vggish").score`` against stylecraft's
:func:`~stylecraft.evaluate.fad.compute_fad` on the same folders.

Usage::

    python eval/parity/parity_embeddings.py    # writes eval/results/parity_embeddings.{json,md}
"""

from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refenv import ROOT, run_worker  # noqa: E402

from stylecraft.artifacts import atomic_write_json, atomic_write_text  # noqa: E402
from stylecraft.evaluate.embeddings.vggish import VGGishEmbedding  # noqa: E402
from stylecraft.evaluate.fad import compute_fad, load_audio_for_embedding  # noqa: E402

EMB_TOL = 1e-4
FAD_TOL = 1e-4
RESULTS = ROOT / "eval" / "results"


def synth_clip(rng: np.random.Generator, seconds: float, sr: int, channels: int) -> np.ndarray:
    """A few decaying partials over pink-ish noise: music-like spectra, cheap to make."""
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros_like(t)
    for _ in range(6):
        f0 = rng.uniform(80, 1200)
        onset = rng.uniform(0, seconds * 0.7)
        env = np.where(t >= onset, np.exp(-(t - onset) * rng.uniform(0.5, 4)), 0.0)
        y += env * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))
    y += 0.05 * np.cumsum(rng.normal(size=t.size)) / np.sqrt(t.size)
    y = 0.3 * y / max(1e-9, np.abs(y).max())
    out = np.stack([y * (0.7 + 0.3 * c) for c in range(channels)], axis=1)
    return out.astype(np.float32)


def write_folder(folder: Path, seed: int, n: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        sr, ch = [(16000, 1), (44100, 2), (22050, 1), (48000, 2)][i % 4]
        p = folder / f"clip{i}.wav"
        sf.write(p, synth_clip(rng, rng.uniform(3.0, 6.0), sr, ch), sr, subtype="FLOAT")
        paths.append(p)
    return paths


def random_pca(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(128, 128)))
    return {"pca_eigen_vectors": (q * 20).astype(np.float64), "pca_means": rng.normal(scale=0.05, size=(128,))}


def run_vggish(workdir: Path) -> dict[str, Any]:
    emb = VGGishEmbedding.preset("full", seed=0, name="vggish")
    weights = workdir / "vggish_random.pth"
    torch.save(emb.net.state_dict(), weights)
    pca_params = random_pca()
    pca_path = workdir / "pca.pth"
    torch.save(pca_params, pca_path)
    bg = write_folder(workdir / "background", seed=10, n=8)
    ev = write_folder(workdir / "eval", seed=11, n=8)
    clips = bg[:4] + ev[:4]
    result: dict[str, Any] = {"clips": [c.name for c in clips], "variants": {}}
    for use_pca in (False, True):
        ours = VGGishEmbedding(
            emb.net, weights_id="random:full:seed0", use_pca=use_pca, use_activation=False,
            pca=(pca_params["pca_eigen_vectors"], pca_params["pca_means"]),
        )
        out_npz = workdir / f"ref_{use_pca}.npz"
        ref = run_worker(
            "vggish",
            {"weights": str(weights), "pca": str(pca_path), "use_pca": use_pca, "use_activation": False,
             "clips": [str(c) for c in clips], "out_npz": str(out_npz)},
        )
        ref_embs = np.load(out_npz)
        diffs = []
        for i, c in enumerate(clips):
            audio, sr = load_audio_for_embedding(c)
            mine = ours.embed(audio, sr)
            theirs = np.atleast_2d(ref_embs[f"clip{i}"])
            assert mine.shape == theirs.shape, (c, mine.shape, theirs.shape)
            diffs.append(float(np.max(np.abs(mine - theirs))))
        key = "pca_quantised" if use_pca else "raw_no_final_relu"
        result["variants"][key] = {"max_abs_diff_per_clip": diffs, "max_abs_diff": max(diffs), "ok": max(diffs) <= EMB_TOL}
        result["versions"] = ref["versions"]

    # End to end: frechet-audio-distance's score() on the two folders vs stylecraft's compute_fad.
    ref = run_worker(
        "vggish",
        {"weights": str(weights), "pca": None, "use_pca": False, "use_activation": False,
         "background": str(workdir / "background"), "eval": str(workdir / "eval")},
    )
    from stylecraft.evaluate.embeddings import registry

    registry._REGISTRY["vggish-parity"] = lambda: VGGishEmbedding(emb.net, weights_id="random:full:seed0", name="vggish-parity")
    try:
        mine = compute_fad(workdir / "background", workdir / "eval", embedding_name="vggish-parity", progress=False)
    finally:
        del registry._REGISTRY["vggish-parity"]
    rel = abs(mine["fad"] - ref["fad"]) / abs(ref["fad"])
    result["fad"] = {"stylecraft": mine["fad"], "frechet_audio_distance": ref["fad"], "rel_diff": rel, "ok": rel <= FAD_TOL}
    return result


def run_encodec(workdir: Path, variant: str) -> dict[str, Any]:
    """EnCodec features: encodec package (random init) vs transformers' EncodecModel via the key mapping."""
    from transformers import EncodecModel

    from stylecraft.evaluate.embeddings.encodec import (
        EncodecEmbedding,
        encodec_config,
        encodec_package_to_transformers,
    )

    sub = workdir / f"encodec_{variant}"
    bg = write_folder(sub / "background", seed=20, n=6)
    ev = write_folder(sub / "eval", seed=21, n=6)
    if variant == "48k":
        # frechet-audio-distance resamples a [T, 2] array along its channel axis (resampy's
        # default axis=-1), so only 48 kHz stereo input is meaningful to compare.
        for p in bg + ev:
            audio, sr = sf.read(p, dtype="float32", always_2d=True)
            from stylecraft.audio.io import resample

            y = resample(audio, sr, 48000) if sr != 48000 else audio
            sf.write(p, np.repeat(y[:, :1], 2, axis=1) * np.array([1.0, 0.8], dtype=np.float32), 48000, subtype="FLOAT")
    clips = bg[:3] + ev[:3]
    state_path = sub / "encodec_state.pt"
    out_npz = sub / "ref.npz"
    ref = run_worker(
        "encodec",
        {"variant": variant, "seed": 0, "state_out": str(state_path), "clips": [str(c) for c in clips],
         "out_npz": str(out_npz), "background": str(sub / "background"), "eval": str(sub / "eval")},
    )
    model = EncodecModel(encodec_config(variant))
    mapped = encodec_package_to_transformers(torch.load(state_path, map_location="cpu"))
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    mapping = {"missing": list(missing), "unexpected": list(unexpected)}
    emb = EncodecEmbedding(model, weights_id="random:encodec-package:seed0", variant=variant, name=f"encodec-{variant}")
    fadtk_emb = EncodecEmbedding(model, weights_id="random:encodec-package:seed0", variant=variant, segment="fadtk")
    ref_embs = np.load(out_npz)
    diffs, fadtk_diffs = [], []
    for i, c in enumerate(clips):
        audio, sr = load_audio_for_embedding(c)
        mine = emb.embed(audio, sr)
        theirs = ref_embs[f"clip{i}"]
        assert mine.shape == theirs.shape, (c, mine.shape, theirs.shape)
        diffs.append(float(np.max(np.abs(mine - theirs))))
        if variant == "48k":
            m2, t2 = fadtk_emb.embed(audio, sr), ref_embs[f"fadtk{i}"]
            assert m2.shape == t2.shape, (c, m2.shape, t2.shape)
            fadtk_diffs.append(float(np.max(np.abs(m2 - t2))))
    from stylecraft.evaluate.embeddings import registry

    registry._REGISTRY["encodec-parity"] = lambda: emb
    try:
        mine_fad = compute_fad(sub / "background", sub / "eval", embedding_name="encodec-parity", progress=False)
    finally:
        del registry._REGISTRY["encodec-parity"]
    rel = abs(mine_fad["fad"] - ref["fad"]) / abs(ref["fad"])
    res: dict[str, Any] = {
        "key_mapping": mapping,
        "max_abs_diff_per_clip": diffs,
        "max_abs_diff": max(diffs),
        "fad": {"stylecraft": mine_fad["fad"], "frechet_audio_distance": ref["fad"], "rel_diff": rel},
        "ok": max(diffs) <= EMB_TOL and rel <= FAD_TOL and not mapping["missing"] and not mapping["unexpected"],
    }
    if fadtk_diffs:
        res["fadtk_segments_max_abs_diff"] = max(fadtk_diffs)
    return res


def run_clap(workdir: Path) -> dict[str, Any]:
    """CLAP: stylecraft's batched windows vs fadtk's loop around transformers' pipeline, same tiny model."""
    from stylecraft.evaluate.embeddings.clap import ClapEmbedding

    sub = workdir / "clap"
    clips = write_folder(sub / "clips", seed=30, n=4)
    emb = ClapEmbedding.preset(seed=0, name="clap")
    model_dir = sub / "model"
    emb.model.save_pretrained(model_dir)
    emb.fe.save_pretrained(model_dir)
    out_npz = sub / "ref.npz"
    ref = run_worker("clap", {"model_dir": str(model_dir), "clips": [str(c) for c in clips], "out_npz": str(out_npz)})
    ref_embs = np.load(out_npz)
    diffs = []
    for i, c in enumerate(clips):
        audio, sr = load_audio_for_embedding(c)
        mine = emb.embed(audio, sr)
        theirs = ref_embs[f"clip{i}"]
        assert mine.shape == theirs.shape, (c, mine.shape, theirs.shape)
        diffs.append(float(np.max(np.abs(mine - theirs))))
    scale = float(np.max(np.abs(np.concatenate([ref_embs[k] for k in ref_embs.files]))))
    return {"max_abs_diff_per_clip": diffs, "max_abs_diff": max(diffs), "embedding_scale": scale,
            "ok": max(diffs) <= EMB_TOL, "versions": ref["versions"]}


def to_markdown(result: dict[str, Any]) -> str:
    v = result["vggish"]
    lines = [
        "# Embedding parity (shared random weights)",
        "",
        f"Tolerances: embeddings max abs diff ≤ {EMB_TOL:g}; end-to-end FAD ≤ {FAD_TOL:g} relative.",
        "",
        "## vggish vs torchvggish 0.2 (+ frechet-audio-distance 0.3.4 loading and switches)",
        "",
        "Full-size VGGish, random init (seed 0); 8 synthetic clips of 3-6 s at 16/22.05/44.1/48 kHz, mono and stereo",
        "(resampled with resampy as frechet-audio-distance loads audio).",
        "",
        "| variant | max abs diff | per clip |",
        "|---|---|---|",
    ]
    for name, r in v["variants"].items():
        lines.append(f"| {name} | {r['max_abs_diff']:.3e} | {', '.join(f'{d:.1e}' for d in r['max_abs_diff_per_clip'])} |")
    f = v["fad"]
    lines += [
        "",
        f"End-to-end FAD (8 vs 8 files): stylecraft {f['stylecraft']:.9g}, frechet-audio-distance {f['frechet_audio_distance']:.9g}, "
        f"relative difference {f['rel_diff']:.2e}.",
        "",
        "## encodec vs the encodec 0.1.1 package (frechet-audio-distance 0.3.4 get_embeddings / score; fadtk 1.1.0 1 s segments)",
        "",
        "encodec package model at random init (seed 0), its state dict mapped onto transformers' EncodecModel with",
        "`encodec_package_to_transformers` (strict: no missing or unexpected keys); 6 synthetic clips.",
        "",
        "| variant | key mapping missing/unexpected | max abs diff (features) | fadtk segments max abs diff | FAD stylecraft | FAD frechet-audio-distance | rel. diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in ("24k", "48k"):
        e = result.get(f"encodec_{variant}")
        if e is None:
            continue
        seg = e.get("fadtk_segments_max_abs_diff")
        lines.append(
            f"| {variant} | {len(e['key_mapping']['missing'])}/{len(e['key_mapping']['unexpected'])} | {e['max_abs_diff']:.3e} | "
            f"{'-' if seg is None else f'{seg:.3e}'} | {e['fad']['stylecraft']:.9g} | {e['fad']['frechet_audio_distance']:.9g} | "
            f"{e['fad']['rel_diff']:.2e} |"
        )
    c = result.get("clap")
    if c is not None:
        lines += [
            "",
            "## clap vs transformers' pipeline in fadtk 1.1.0's window loop",
            "",
            "Tiny random ClapModel (seed 0) saved with save_pretrained and loaded in the reference venv; fadtk's",
            "int16 round trip and 10 s / 1 s-hop windows, each window through ClapFeatureExtractor + get_audio_features",
            "one at a time there, batched here. 4 synthetic clips of 3-6 s (so 3-6 windows each).",
            "",
            f"Max abs diff: {c['max_abs_diff']:.3e} (largest embedding magnitude {c['embedding_scale']:.3g}).",
        ]
    lines += [
        "",
        f"Versions (reference env): {v['versions']}",
        f"Machine: {result['machine']}",
        "",
    ]
    return "\n".join(lines)


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "vggish": run_vggish(Path(tmp)),
            "encodec_24k": run_encodec(Path(tmp), "24k"),
            "encodec_48k": run_encodec(Path(tmp), "48k"),
            "clap": run_clap(Path(tmp)),
            "machine": f"{platform.machine()} {platform.system()} python {platform.python_version()} torch {torch.__version__}",
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "parity_embeddings.json", result)
    atomic_write_text(RESULTS / "parity_embeddings.md", to_markdown(result))
    return result


if __name__ == "__main__":
    print(to_markdown(main()))
