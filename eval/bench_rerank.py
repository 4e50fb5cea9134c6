"""Best-of-N rerankers compared on the same candidates: likelihood against style.

    python eval/bench_rerank.py [--model stylecraft-mini] [--outputs 16] [--candidates 4]

For each of ``--outputs`` prompts, ``--candidates`` clips are sampled once (the seeds best-of uses)
and each is scored by both rerankers: the model's mean log-likelihood of its own codes
(``likelihood``) and the style score (``style``: nearness of its MFCC embedding to the reference
music's centroid minus the repetition of its codes). Each reranker keeps its favourite per
prompt; the kept sets are compared with the first candidate alone (what N = 1 gives) on:

* repetition (share of repeated 8-frame code n-grams; a loop scores near 1);
* style distance to the reference (in units of a reference file's own distance);
* FAD and KAD (mfcc, bootstrap 95% intervals over files) against held-out music that is neither
  the reference nor seen in training.

Default data: reference = the corpus's training tracks of five soundtracks, held out = the
corpus run's valid tracks (``eval/data/mini``). Results: ``eval/results/bench_rerank.json``/``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "eval" / "data" / "mini"
RESULTS = ROOT / "eval" / "results"
REFERENCE_SOUNDTRACKS = ("wesnoth", "supertux", "hedgewars", "widelands", "freedroidrpg")
PROMPTS = ["corpus style, 120 bpm, A minor", "corpus style, 90 bpm, C major", "corpus style, 140 bpm, E minor",
           "corpus style, 100 bpm, D major"]


def _links(paths: list[str], into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    for p in paths:
        link = into / f"{abs(hash(p)) % 10**8}-{Path(p).name}"
        if not link.exists():
            os.symlink(p, link)
    return into


def corpus_folders(run: Path, work: Path) -> tuple[Path, Path]:
    tracks = [json.loads(line) for line in (run / "tracks.jsonl").read_text().splitlines()]
    ref = [t["path"] for t in tracks if t["split"] == "train" and Path(t["path"]).parent.name in REFERENCE_SOUNDTRACKS]
    held = [t["path"] for t in tracks if t["split"] == "valid"]
    return _links(ref, work / "reference"), _links(held, work / "held_out")


def candidates(bundle: Any, prompts: list[str], n: int, seconds: float, seed: int) -> list[Any]:
    from stylecraft.generate.sample import CANDIDATE_STRIDE, SamplingParams, generate_piece_codes

    params = SamplingParams(duration_s=seconds, seed=seed)
    out = []
    for c in range(n):
        p = SamplingParams(**{**asdict(params), "seed": seed + c * CANDIDATE_STRIDE})
        out.append(generate_piece_codes(bundle, prompts, p, score=True))
        print(f"candidate {c + 1}/{n} sampled", flush=True)
    return out


def score_all(bundle: Any, cands: list[Any], seconds: float, ref: Any) -> dict[str, np.ndarray]:
    from stylecraft.generate.rerank import repetition, style_distance
    from stylecraft.generate.sample import codes_to_audio

    n, b = len(cands), cands[0].codes.shape[0]
    like, dist, rep = np.zeros((n, b)), np.zeros((n, b)), np.zeros((n, b))
    audio = []
    for c, cand in enumerate(cands):
        wav = codes_to_audio(bundle, cand.codes, seconds)
        audio.append(wav)
        like[c] = cand.log_likelihood.numpy()
        for i in range(b):
            dist[c, i] = style_distance(wav[i], bundle.sample_rate, ref)
            rep[c, i] = repetition(cand.codes[i])
    return {"likelihood": like, "distance": dist, "repetition": rep, "audio": np.stack(audio)}


def _fad_kad(held: Path, clips: np.ndarray, sr: int) -> dict[str, Any]:
    from stylecraft.evaluate.fad import compute_fad

    with tempfile.TemporaryDirectory() as tmp:
        for i, clip in enumerate(clips):
            sf.write(Path(tmp) / f"clip-{i:03d}.wav", clip, sr)
        rec = compute_fad(str(held), tmp, "mfcc", progress=False, metric="all", ci=0.95, n_boot=200)
    return {"fad": rec["fad"], "fad_ci": [rec["ci"]["low"], rec["ci"]["high"]], "kad": rec["kad"],
            "kad_ci": [rec["kad_ci"]["low"], rec["kad_ci"]["high"]]}


def main() -> None:
    from stylecraft.generate.rerank import style_reference
    from stylecraft.models.loading import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="stylecraft-mini")
    ap.add_argument("--outputs", type=int, default=16)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    ref_dir, held = corpus_folders(DATA / "run", DATA / "bench_rerank")
    ref = style_reference(str(ref_dir))
    bundle = load_model(args.model)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.outputs)]
    s = score_all(bundle, candidates(bundle, prompts, args.candidates, args.seconds, args.seed), args.seconds, ref)
    style = -s["distance"] - s["repetition"]
    picks = {"first candidate (N = 1)": np.zeros(args.outputs, dtype=int),
             "likelihood": s["likelihood"].argmax(axis=0), "style": style.argmax(axis=0)}
    rows = []
    for name, pick in picks.items():
        cols = np.arange(args.outputs)
        kept = s["audio"][pick, cols]
        rows.append({"reranker": name, "repetition": float(s["repetition"][pick, cols].mean()),
                     "style_distance": float(s["distance"][pick, cols].mean()),
                     "log_likelihood": float(s["likelihood"][pick, cols].mean()),
                     **_fad_kad(held, kept, bundle.sample_rate)})
        print(rows[-1], flush=True)
    corr = float(np.corrcoef(s["likelihood"].ravel(), s["repetition"].ravel())[0, 1])
    record = {"model": args.model, "outputs": args.outputs, "candidates": args.candidates, "seconds": args.seconds,
              "reference_files": ref.clips, "likelihood_repetition_corr": corr, "rows": rows,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_rerank.json").write_text(json.dumps(record, indent=1))
    lines = ["# Best-of-N rerankers on the same candidates", "",
             f"Model `{args.model}`; {args.outputs} outputs of {args.seconds:g} s, {args.candidates} candidates each, "
             f"scored by both rerankers. Reference: {ref.clips} corpus training tracks; FAD/KAD (mfcc, 95% bootstrap over "
             f"files) against the corpus's held-out tracks. {record['machine']}.", "",
             "| kept | repetition | style distance | log-likelihood | FAD | KAD |", "|---|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['reranker']} | {r['repetition']:.3f} | {r['style_distance']:.2f} | {r['log_likelihood']:.3f} | "
                     f"{r['fad']:.2f} [{r['fad_ci'][0]:.2f}, {r['fad_ci'][1]:.2f}] | "
                     f"{r['kad']:.3f} [{r['kad_ci'][0]:.3f}, {r['kad_ci'][1]:.3f}] |")
    lines += ["", f"Correlation of a candidate's log-likelihood with its repetition: {corr:.2f}."]
    (RESULTS / "bench_rerank.md").write_text("\n".join(lines) + "\n")
    print(RESULTS / "bench_rerank.md")
    sys.exit(0)


if __name__ == "__main__":
    main()
