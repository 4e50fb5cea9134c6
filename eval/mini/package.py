"""Ship a trained base model as ``checkpoints/stylecraft-mini``: half-precision safetensors, a model
card, and the sha256 of every file pinned in ``checkpoints/registry.yaml``.

    python eval/mini/package.py --run eval/data/mini/run

The model card is written from the corpus manifest (packages, versions, licences), the run's
training records and, when present, ``eval/results/mini.json`` (the figures of eval/mini/report.py).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NAME = "stylecraft-mini"
MAX_MB = 50.0


def _card(corpus: dict[str, Any], lm: dict[str, Any], codec: dict[str, Any], figures: dict[str, Any],
          files: dict[str, str], size_mb: float) -> str:
    rows = "\n".join(
        f"| {p['package']} | {p['version']} | {p['soundtrack']} | {p['role']} | {len(p['files'])} | {p['minutes']} | "
        f"{', '.join(p['licences'])} |" for p in corpus["packages"])
    fig = "\n".join(f"- {k}: {v}" for k, v in figures.items()) or "- see eval/results/mini.md"
    hashes = "\n".join(f"| {k} | `{v}` |" for k, v in files.items())
    return f"""# stylecraft-mini

A small music model trained by stylecraft from scratch, on this machine, from freely licensed music:
an EnCodec codec ({codec.get('bitrate_kbps')} kbit/s: {codec.get('codebooks')} codebooks of {codec.get('codebook_size')} codes at
{codec.get('frame_rate')} Hz, {codec.get('sample_rate')} Hz mono), a MusicGen decoder and a small T5 text encoder over bytes,
all transformers architectures (`MusicgenForConditionalGeneration`). It loads by name with no download:
`--model {NAME}` or `model.name: {NAME}`. Weights are stored in float16 ({size_mb:.1f} MB) and computed in float32.

It is small and was trained on two CPU cores for under an hour ({lm.get('facts', {}).get('steps')} steps of the base
model). Its clips change over time but are still noisy textures without clear pitch lines: it does not make music
yet, and training continues from its checkpoints. Its purpose is that every run of stylecraft works offline with a
model trained on licensed music, and that fine-tuning on an artist can be measured.

## Training

- Codec: `{codec.get('architecture')}` architecture, {codec.get('steps')} steps (recipe `recipes/mini-corpus.yaml`, `codec:`).
- Base model: `{lm.get('model', {}).get('name', 'new:mini')}`, {lm.get('steps')} steps, text encoder trained with the decoder;
  held-out (valid) loss {lm.get('best_val_loss')}.
- Captions: per track, `corpus style, <tempo> bpm, <key>` from what the audio says (librosa's tempo and key).
- Built by `eval/mini/build.py` (resumable), packaged by `eval/mini/package.py`.

## Corpus

Only the music of these Debian packages; two soundtracks are held out as test artists and never heard in
training. Licences are those the package's copyright file gives for the music files (several are copyleft; the
weights are offered under the same terms as the music they were trained on, for whoever holds that a model is a
derivative of its training data).

| package | version | soundtrack | role | files | minutes | licences |
|---|---|---|---|---|---|---|
{rows}

Corpus: {corpus['corpus_minutes']} minutes. Held out: {', '.join(corpus['test_soundtracks'])}.

## Figures

{fig}

## Files (sha256, also pinned in checkpoints/registry.yaml and checked at every load)

| file | sha256 |
|---|---|
{hashes}
"""


def _pin(checkpoints: Path, files: dict[str, str], license_text: str, params: str) -> None:
    """Write the entry of the shipped model into ``checkpoints/registry.yaml`` (replacing an older one)."""
    path = checkpoints / "registry.yaml"
    text = path.read_text()
    text = re.sub(rf"\n# {NAME}:.*?(?=\n[^\s#]|\Z)", "", text, flags=re.S)
    text = re.sub(rf"\n{NAME}:\n(?:[ #].*\n?)*", "\n", text).rstrip() + "\n"
    body = "\n".join(f"    {k}: {v}" for k, v in files.items())
    text += (f"{NAME}:\n  kind: musicgen\n  # Ships in checkpoints/{NAME} (eval/mini/build.py trained it): no fetch.\n"
             f"  source: shipped:{NAME}\n  license: {license_text}\n  params: {params}\n  sha256:\n{body}\n")
    path.write_text(text)


def package_mini(run: Path, corpus_json: Path, checkpoints: Path = ROOT / "checkpoints") -> dict[str, Any]:
    import torch

    from stylecraft.artifacts import atomic_write_json, files_sha256
    from stylecraft.models.loading import load_model

    bundle = load_model(str(run))
    model = bundle.model.to(torch.float16)
    out = checkpoints / NAME
    tmp = out.with_name(f".{NAME}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    bundle.tokenizer.save_pretrained(tmp)
    weights = files_sha256(tmp)
    size_mb = sum((tmp / f).stat().st_size for f in weights) / 1e6
    if size_mb > MAX_MB:
        raise SystemExit(f"{NAME} would take {size_mb:.1f} MB (limit {MAX_MB} MB)")
    lm = json.loads((run / "model" / "stylecraft.json").read_text())
    codec = json.loads((run / "codec" / "model" / "stylecraft.json").read_text())
    mini_json = ROOT / "eval" / "results" / "mini.json"
    figures = json.loads(mini_json.read_text()).get("card", {}) if mini_json.exists() else {}
    corpus = json.loads(corpus_json.read_text())
    (tmp / "README.md").write_text(_card(corpus, lm, codec, figures, weights, size_mb))
    provenance = {"name": NAME, "lm": lm, "codec": {k: v for k, v in codec.items() if k != "files"},
                  "corpus": {k: v for k, v in corpus.items() if k != "packages"} | {
                      "packages": [{k: v for k, v in p.items() if k != "files"} for p in corpus["packages"]]}}
    atomic_write_json(tmp / "stylecraft.json", provenance)
    files = files_sha256(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    _pin(checkpoints, files, "trained by stylecraft from the Debian music listed in its model card (their licences)", f"{n_params:.1f}M")
    return {"folder": str(out), "size_mb": round(size_mb, 2), "files": files}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=ROOT / "eval" / "data" / "mini" / "run")
    ap.add_argument("--corpus", type=Path, default=ROOT / "eval" / "data" / "mini" / "corpus.json")
    ap.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    args = ap.parse_args()
    print(json.dumps(package_mini(args.run, args.corpus, args.checkpoints), indent=1))


if __name__ == "__main__":
    main()
