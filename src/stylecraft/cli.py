"""``stylecraft`` command line: each command parses its arguments and calls one library function.

User mistakes (``StylecraftError``) print one line on stderr and exit with status 1.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from stylecraft.errors import StylecraftError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Fine-tune MusicGen on one artist's catalogue, generate in that style, and score it with FAD.",
)

Overrides = Annotated[list[str] | None, typer.Argument(help="recipe overrides, key=value (e.g. train.max_steps=10)")]
RunDir = Annotated[Path | None, typer.Option("--run-dir", help="run folder (default: the recipe's run_dir)")]
RecipeOpt = Annotated[Path | None, typer.Option("--recipe", help="recipe YAML (default: <run-dir>/recipe.yaml if present)")]


def _config(
    recipe: Path | None, run_dir: Path | None, overrides: list[str] | None, extra: tuple[str, ...] = ()
) -> Any:
    from stylecraft.config import load_recipe

    items = list(extra) + list(overrides or [])
    if recipe is None and run_dir is not None and (run_dir / "recipe.yaml").exists():
        recipe = run_dir / "recipe.yaml"
    if run_dir is not None:
        items.append(f"run_dir={run_dir}")
    # Stage commands on an existing run do not need the catalogue; ingest passes it explicitly.
    return load_recipe(recipe, items, require_catalogue=False)


def _stage(name: str, recipe: Path | None, run_dir: Path | None, overrides: list[str] | None) -> None:
    from stylecraft.pipeline import run_stage

    run_stage(name, _config(recipe, run_dir, overrides), force=True)


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML, e.g. recipes/quickstart.yaml")],
    overrides: Overrides = None,
    run_dir: RunDir = None,
    force: Annotated[bool, typer.Option(help="rerun stages even when their inputs did not change")] = False,
) -> None:
    """Run every stage a recipe names; stages whose inputs did not change are skipped."""
    from stylecraft.config import load_recipe
    from stylecraft.pipeline import run_recipe

    items = list(overrides or []) + ([f"run_dir={run_dir}"] if run_dir else [])
    cfg = load_recipe(recipe, items)
    run_recipe(cfg, force=force)
    typer.echo(f"run folder: {cfg.run_dir}")


@app.command()
def ingest(
    catalogue: Annotated[Path, typer.Argument(help="folder of the artist's audio (FLAC/WAV/OGG/MP3/AIFF)")],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="run folder")],
    recipe: RecipeOpt = None,
    overrides: Overrides = None,
) -> None:
    """Decode every audio file under CATALOGUE into tracks.jsonl; the rest go to rejects.jsonl."""
    from stylecraft.pipeline import run_stage

    cfg = _config(recipe, run_dir, overrides, extra=(f"catalogue={catalogue.resolve()}",))
    run_stage("ingest", cfg, force=True)


@app.command()
def segment(run_dir: RunDir = None, recipe: RecipeOpt = None, overrides: Overrides = None) -> None:
    """Resample, loudness-normalise and cut tracks into windows with MFCC/log-mel/STFT features."""
    _stage("segment", recipe, run_dir, overrides)


@app.command()
def augment(run_dir: RunDir = None, recipe: RecipeOpt = None, overrides: Overrides = None) -> None:
    """Render pitch-shifted and time-stretched variants of every training window."""
    _stage("augment", recipe, run_dir, overrides)


@app.command()
def tokenize(run_dir: RunDir = None, recipe: RecipeOpt = None, overrides: Overrides = None) -> None:
    """Encode windows and variants to EnCodec codes with the recipe's model."""
    _stage("tokenize", recipe, run_dir, overrides)


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML")],
    overrides: Overrides = None,
    run_dir: RunDir = None,
) -> None:
    """Fine-tune the recipe's model on the run's tokens (resumes from the last checkpoint)."""
    from stylecraft.config import load_recipe
    from stylecraft.pipeline import run_stage

    items = list(overrides or []) + ([f"run_dir={run_dir}"] if run_dir else [])
    run_stage("train", load_recipe(recipe, items, require_catalogue=False), force=True)


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="output folder for FLAC files and generated.jsonl")],
    model: Annotated[str, typer.Option("--model", help="preset (tiny), registry name, hub id, model folder or run folder")] = "tiny",
    prompt: Annotated[list[str] | None, typer.Option("--prompt", help="text prompt (repeatable)")] = None,
    seed_audio: Annotated[Path | None, typer.Option("--seed-audio", help="audio file to continue (a riff)")] = None,
    duration: Annotated[float, typer.Option("--duration", help="seconds per file, seed riff included")] = 8.0,
    temperature: Annotated[float, typer.Option(help="sampling temperature")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", help="top-k sampling (0 disables)")] = 250,
    top_p: Annotated[float, typer.Option("--top-p", help="nucleus sampling (0 disables)")] = 0.0,
    guidance_scale: Annotated[float, typer.Option("--guidance-scale", help="classifier-free guidance (<=1 disables)")] = 3.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    n: Annotated[int, typer.Option("--n", help="files per prompt")] = 1,
    watermark_key: Annotated[str, typer.Option("--watermark-key", help="watermark key, or env:NAME to read $NAME")] = "stylecraft",
    watermark_strength: Annotated[float, typer.Option("--watermark-strength", help="watermark strength (0, 0.5]")] = 0.12,
    no_watermark: Annotated[bool, typer.Option("--no-watermark", help="write files without the watermark")] = False,
) -> None:
    """Generate music from text and/or as a continuation of a seed riff (watermarked, with provenance)."""
    from stylecraft.generate.sample import SamplingParams, WatermarkSettings
    from stylecraft.generate.sample import generate as run_generate
    from stylecraft.models.loading import load_model

    if seed_audio is not None and not seed_audio.is_file():
        raise StylecraftError(f"seed audio '{seed_audio}' does not exist")
    if n < 1:
        raise StylecraftError(f"--n must be >= 1, got {n}")
    params = SamplingParams(
        duration_s=duration, temperature=temperature, top_k=top_k, top_p=top_p,
        guidance_scale=guidance_scale, seed=seed,
    )
    params.validate()
    bundle = load_model(model)
    mark = WatermarkSettings(enabled=not no_watermark, key=watermark_key, strength=watermark_strength)
    rows = run_generate(bundle, out, list(prompt or []), params, per_prompt=n, seed_audio=seed_audio, watermark=mark)
    for r in rows:
        typer.echo(str(out / r["file"]))


@app.command()
def fad(
    ref: Annotated[Path, typer.Argument(help="reference set: folder of audio or .npy [N, D] embeddings")],
    gen: Annotated[Path, typer.Argument(help="generated set: folder of audio or .npy [N, D] embeddings")],
    embedding: Annotated[str, typer.Option(help="embedding model")] = "mfcc",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="per-file embedding cache")] = None,
) -> None:
    """Fréchet Audio Distance between two sets (float64 statistics)."""
    from stylecraft.evaluate.fad import compute_fad

    result = compute_fad(ref, gen, embedding_name=embedding, cache_dir=cache_dir)
    if as_json:
        typer.echo(json.dumps(result, default=str))
    else:
        typer.echo(f"FAD ({result['embedding']}) = {result['fad']:.6f}  (n_ref={result['n_ref']}, n_gen={result['n_gen']})")


@app.command()
def fetch(name: Annotated[str, typer.Argument(help="registry name, e.g. musicgen-small")]) -> None:
    """Download known weights into checkpoints/hub/NAME and verify their sha256."""
    from stylecraft.models.fetch import fetch as run_fetch

    typer.echo(str(run_fetch(name)))


@app.command()
def verify(
    run_dir: Annotated[Path, typer.Argument(help="run folder")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Check every artifact of a run against its manifests; exit 1 if anything is missing or altered."""
    from stylecraft.verify import BAD, summary
    from stylecraft.verify import verify as run_verify

    findings = run_verify(run_dir)
    counts = summary(findings)
    problems = [f for f in findings if f.status != "ok"]
    if as_json:
        typer.echo(json.dumps({"counts": counts, "problems": [f.__dict__ for f in problems]}))
    else:
        for f in problems:
            typer.echo(f"{f.status:15s} {f.path}  ({f.detail})")
        typer.echo(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing recorded")
    if any(f.status in BAD for f in findings):
        raise typer.Exit(1)


watermark_app = typer.Typer(no_args_is_help=True, help="Embed or detect the keyed watermark of generated audio.")
app.add_typer(watermark_app, name="watermark")
KeyOpt = Annotated[str, typer.Option("--key", help="watermark key, or env:NAME to read $NAME")]


@watermark_app.command("detect")
def watermark_detect(
    file: Annotated[Path, typer.Argument(help="audio file (any format soundfile reads: FLAC, WAV, OGG, MP3 …)")],
    key: KeyOpt = "stylecraft",
    threshold: Annotated[float, typer.Option(help="score needed to call it watermarked")] = 7.0,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Say whether FILE carries the watermark of KEY, with a score; exit 0 if it does, 2 if not."""
    from stylecraft.generate.watermark import detect_file

    if not file.is_file():
        raise StylecraftError(f"'{file}' is not a file")
    d = detect_file(file, key, threshold)
    if as_json:
        typer.echo(json.dumps({"file": str(file), **d.__dict__}))
    else:
        verdict = "watermarked" if d.detected else "not watermarked"
        typer.echo(f"{file}: {verdict} (score {d.score:.2f}, threshold {d.threshold:.1f}, key id {d.key_id})")
    if not d.detected:
        raise typer.Exit(2)


@watermark_app.command("embed")
def watermark_embed(
    src: Annotated[Path, typer.Argument(help="input audio file")],
    dst: Annotated[Path, typer.Argument(help="output file (.flac, .wav or .ogg)")],
    key: KeyOpt = "stylecraft",
    strength: Annotated[float, typer.Option(help="watermark strength (0, 0.5]")] = 0.12,
) -> None:
    """Write a watermarked copy of SRC to DST."""
    from stylecraft.generate.watermark import embed_file

    if not src.is_file():
        raise StylecraftError(f"'{src}' is not a file")
    typer.echo(str(embed_file(src, dst, key, strength)))


@app.command()
def models() -> None:
    """List presets and registry models, and whether each is on this machine."""
    from stylecraft.models import registry
    from stylecraft.models.loading import PRESETS, resolve_folder

    for p in PRESETS:
        typer.echo(f"{p:24s} preset (random init, offline)")
    for name, entry in registry.load_registry().items():
        try:
            where = str(resolve_folder(name))
        except StylecraftError:
            where = f"not downloaded (stylecraft fetch {name})"
        typer.echo(f"{name:24s} {entry.repo_id:32s} {entry.license:36s} {where}")


def main() -> None:
    """Entry point: run the app, turning user errors into one line and a non-zero exit."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # stylecraft shows its own progress per stage
    try:
        # Without standalone mode click returns a command's typer.Exit code instead of exiting.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except StylecraftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:
        if exc.errno is None:
            raise
        # Disk full, permission denied, read-only file system...: the user's environment, not a bug.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
