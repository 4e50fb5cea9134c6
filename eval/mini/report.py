"""stylecraft-mini's figures: the codec, the base model and the style shift, in eval/results/mini.md.

    python eval/mini/report.py [--clips 32] [--sections codec base shift]

* **codec**: the table of ``eval/mini/codec_eval.py`` (run it first; its JSON is read here).
* **base**: held-out perplexity of the base model (its own validation over the corpus's held-out
  tracks) and samples of 10 s from four prompts, with their spectrograms and two measures of
  movement beside the same measures of real held-out music: onsets per second (rhythm) and the
  mean change of the chroma vector between successive half-seconds (pitch movement). A drone
  scores near 0 on both.
* **shift**: for each test soundtrack X (never heard by the base model): fine-tune with
  ``recipes/mini-finetune.yaml`` (up to its train stage; the ablation's ``baseline`` run), then generate ``--clips`` clips of 10 s
  from the fine-tuned model (X's caption) and from the base model (the corpus's caption), and
  score each set with FAD and KAD (bootstrap 95% intervals over files) against X's held-out
  tracks (the fine-tune run's valid split) and against the other soundtrack's.

Every step writes its outputs before the next starts and is skipped when they exist, so the
script resumes after an interruption. Figures: ``eval/results/mini.json`` and ``mini.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "eval" / "data" / "mini"
RESULTS = ROOT / "eval" / "results"
BASE = "stylecraft-mini"
BASE_PROMPTS = ["corpus style, 120 bpm, A minor", "corpus style, 90 bpm, C major",
                "corpus style, 140 bpm, E minor", "corpus style, 100 bpm, D major"]
EMBEDDINGS = ("mfcc", "musicnn-mtt")


def _cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "stylecraft", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def _generate(model: str, prompts: list[str], n: int, out: Path, seconds: float = 10.0) -> Path:
    """``n`` unwatermarked clips (like with like: the references carry no watermark)."""
    per = max(1, -(-n // len(prompts)))
    if not (out / "generated.jsonl").exists() or sum(1 for _ in out.glob("*.flac")) < per * len(prompts):
        args = ["generate", "--model", model, "--duration", str(seconds), "--n", str(per), "--batch-size", "8",
                "--no-watermark", "--out", str(out)]
        for p in prompts:
            args += ["--prompt", p]
        _cli(*args)
    return out


def _score(ref: Path, gen: Path, embedding: str, out: Path) -> dict[str, Any]:
    if not out.exists():
        _cli("fad", str(ref), str(gen), "--metric", "all", "--embedding", embedding, "--ci", "0.95", "--n-boot", "200",
             "--json", "-o", str(out))
    rec = json.loads(out.read_text())
    return {"fad": rec["fad"], "fad_ci": [rec["ci"]["low"], rec["ci"]["high"]], "kad": rec["kad"],
            "kad_ci": [rec["kad_ci"]["low"], rec["kad_ci"]["high"]], "n_gen_files": rec["n_gen_files"],
            "n_ref_files": rec["n_ref_files"]}


# --- movement: rhythm and pitch -----------------------------------------------------------------


def movement(path: Path, seconds: float = 10.0) -> dict[str, float]:
    """Onsets per second and mean chroma change per half-second of the first ``seconds`` of ``path``."""
    import librosa

    from stylecraft.audio import io as audio_io

    audio, sr = audio_io.load(path, duration_s=seconds)
    y = audio_io.resample(audio_io.to_mono(audio), sr, 22050)
    onsets = librosa.onset.onset_detect(y=y, sr=22050, units="time")
    chroma = librosa.feature.chroma_stft(y=y, sr=22050, hop_length=11025)  # one vector per half-second
    norm = chroma / (np.linalg.norm(chroma, axis=0, keepdims=True) + 1e-9)
    change = 1.0 - (norm[:, 1:] * norm[:, :-1]).sum(axis=0)
    return {"onsets_per_s": len(onsets) / (len(y) / 22050), "chroma_change": float(change.mean()) if change.size else 0.0}


def _movement_table(folders: dict[str, list[Path]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, files in folders.items():
        rows = [movement(f) for f in files]
        out[name] = {k: float(np.median([r[k] for r in rows])) for k in rows[0]} | {"files": len(rows)}
    return out


def _spectrograms(files: list[Path], titles: list[str], out: Path) -> None:
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stylecraft.audio import io as audio_io

    fig, axes = plt.subplots(len(files), 1, figsize=(10, 2.2 * len(files)), squeeze=False)
    for ax, f, title in zip(axes[:, 0], files, titles, strict=True):
        audio, sr = audio_io.load(f, duration_s=10.0)
        y = audio_io.to_mono(audio)
        mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=96), ref=np.max)
        ax.imshow(mel, origin="lower", aspect="auto", extent=(0, len(y) / sr, 0, 96), vmin=-80, vmax=0, cmap="magma")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("mel band")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


# --- sections -----------------------------------------------------------------------------------


def section_base(clips: int) -> dict[str, Any]:
    from stylecraft.models.registry import find

    entry = find(BASE)
    assert entry is not None, f"{BASE} is not in the registry: run eval/mini/package.py"
    card = json.loads((entry.local_dir / "stylecraft.json").read_text())
    facts = card["lm"].get("facts", {})
    gen = _generate(BASE, BASE_PROMPTS, max(8, clips // 4), DATA / "report" / "base_samples")
    wavs = sorted(gen.glob("*.flac"))
    real = [p for d in sorted((DATA / "test").iterdir()) for p in sorted(d.iterdir())[:8]]
    _spectrograms(wavs[:4] + real[:1] + real[-1:], [w.name for w in wavs[:4]] + [f"held-out: {real[0].name}",
                  f"held-out: {real[-1].name}"], RESULTS / "mini_samples.png")
    val = facts.get("best_val_loss") or facts.get("val_loss")
    return {"steps": facts.get("steps"), "val_loss": val, "perplexity": float(np.exp(val)) if val else None,
            "movement": _movement_table({"stylecraft-mini samples": wavs, "held-out music (test soundtracks)": real})}


PREPARATION = ("audio", "features", "outliers", "segment", "tokens", "duplicates.json", "rejects.jsonl",
               "tracks.jsonl", "variants.jsonl", "windows.jsonl", "stages/ingest.json", "stages/segment.json",
               "stages/augment.json", "stages/tokenize.json")


def finetune(artist: str, row: str = "baseline", overrides: tuple[str, ...] = (), prepared: Path | None = None) -> Path:
    """stylecraft-mini fine-tuned on a test soundtrack with ``recipes/mini-finetune.yaml`` plus
    ``overrides``, up to its train stage, in ``eval/data/ablation/<artist>/<row>`` (shared with
    eval/finetune_ablation.py, whose ``baseline`` row is this recipe as it is).

    ``prepared``: a run of the same data preparation (ingest to tokenize) whose outputs are linked
    in first; the pipeline checks their signatures and redoes any stage whose settings differ."""
    run = ROOT / "eval" / "data" / "ablation" / artist / row
    if prepared is not None and not run.exists() and (prepared / "stages" / "tokenize.json").exists():
        tmp = run.with_name(run.name + ".copying")
        shutil.rmtree(tmp, ignore_errors=True)
        for rel in PREPARATION:
            src, dst = prepared / rel, tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, symlinks=True, copy_function=os.link)  # artifacts are replaced, never edited
            elif src.exists():
                os.link(src, dst)
        tmp.rename(run)
    if not (run / "model" / "stylecraft.json").exists():
        _cli("run", str(ROOT / "recipes" / "mini-finetune.yaml"), "--run-dir", str(run),
             f"catalogue={DATA / 'test' / artist}", f"artist={artist}", "stages=[ingest,segment,augment,tokenize,train]",
             *overrides)
    return run


def _held_out(run: Path, into: Path) -> Path:
    """A folder of links to the run's valid tracks."""
    into.mkdir(parents=True, exist_ok=True)
    for line in (run / "tracks.jsonl").read_text().splitlines():
        t = json.loads(line)
        link = into / Path(t["path"]).name
        if t["split"] == "valid" and not link.exists():
            os.symlink(t["path"], link)
    return into


def section_shift(clips: int, artists: list[str]) -> dict[str, Any]:
    from stylecraft.data.manifest import run_caption

    runs = {a: finetune(a) for a in artists}
    held = {a: _held_out(r, DATA / "report" / "held_out" / a) for a, r in runs.items()}
    base = _generate(BASE, BASE_PROMPTS, clips, DATA / "report" / "base_clips")
    rows = []
    for x in artists:
        tuned = _generate(str(runs[x]), [run_caption(runs[x], x)], clips, runs[x] / "clips")  # the ablation's clips
        for emb in EMBEDDINGS:
            for model, gen, key in (("base", base, "base"), (f"fine-tuned on {x}", tuned, f"tuned-{x}")):
                for ref in artists:
                    s = _score(held[ref], gen, emb, DATA / "report" / "scores" / f"{key}__{ref}__{emb}.json")
                    rows.append({"artist": x, "model": model, "against": ref, "embedding": emb, **s})
    return {"rows": rows, "clips": clips}


# --- the report -----------------------------------------------------------------------------------


def _ci(v: float, ci: list[float]) -> str:
    return f"{v:.3g} [{ci[0]:.3g}, {ci[1]:.3g}]"


def write_markdown(fig: dict[str, Any]) -> str:
    lines = ["# stylecraft-mini", "", f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores. "
             f"Python {platform.python_version()}.", ""]
    codec = fig.get("codec")
    if codec:
        lines += ["## Codec (held-out music: the test soundtracks)", "", "| codec | " + " | ".join(codec["measures"]) + " |",
                  "|---|" + "---:|" * len(codec["measures"])]
        lines += [f"| {m} | " + " | ".join(f"{codec['methods'][m][k]:.3f}" for k in codec["measures"]) + " |"
                  for m in codec["methods"]]
        lines += ["", "![spectrograms](mini_codec.png)", ""]
    base = fig.get("base")
    if base:
        lines += ["## Base model", "", f"{base['steps']} steps; held-out loss {base['val_loss']:.3f}, "
                  f"perplexity {base['perplexity']:.1f} (per code token, over the corpus's held-out tracks).", "",
                  "| audio | files | onsets per s (median) | chroma change per 0.5 s (median) |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {v['files']} | {v['onsets_per_s']:.2f} | {v['chroma_change']:.3f} |" for k, v in base["movement"].items()]
        lines += ["", "![samples](mini_samples.png)", ""]
    shift = fig.get("shift")
    if shift:
        lines += ["## Style shift", "", f"{shift['clips']} clips of 10 s per model; FAD and KAD against each soundtrack's "
                  "held-out tracks, bootstrap 95% intervals over generated files.", "",
                  "| fine-tuned artist | model | against | embedding | FAD | KAD |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['artist']} | {r['model']} | {r['against']} | {r['embedding']} | {_ci(r['fad'], r['fad_ci'])} | "
                  f"{_ci(r['kad'], r['kad_ci'])} |" for r in shift["rows"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--sections", nargs="+", default=["codec", "base", "shift"], choices=["codec", "base", "shift"])
    ap.add_argument("--artists", nargs="+", default=["drascula", "colobot"])
    args = ap.parse_args()
    out = RESULTS / "mini.json"
    fig = json.loads(out.read_text()) if out.exists() else {}
    if "codec" in args.sections and (RESULTS / "mini_codec.json").exists():
        summary = json.loads((RESULTS / "mini_codec.json").read_text())["summary"]
        fig["codec"] = {"methods": summary, "measures": list(next(iter(summary.values())))}
    if "base" in args.sections:
        fig["base"] = section_base(args.clips)
    if "shift" in args.sections:
        fig["shift"] = section_shift(args.clips, args.artists)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fig, indent=1))
    (RESULTS / "mini.md").write_text(write_markdown(fig))
    print(RESULTS / "mini.md")


if __name__ == "__main__":
    main()
