"""``stylecraft`` command line: each command parses its arguments and calls one library function.

User mistakes (``StylecraftError``) print one line on stderr and exit with status 1.
"""

from __future__ import annotations

import dataclasses
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
    out: Annotated[Path, typer.Option("--out", help="output folder for FLAC files, generated.jsonl and overview.png")],
    model: Annotated[str, typer.Option("--model", help="preset (tiny, tiny-melody), registry name, hub id, model folder or run folder")] = "tiny",
    prompt: Annotated[list[str] | None, typer.Option("--prompt", help="text prompt (repeatable)")] = None,
    prompts_file: Annotated[Path | None, typer.Option("--prompts-file", help="text file, one prompt per line (blank lines and # comments ignored)")] = None,
    seed_audio: Annotated[Path | None, typer.Option("--seed-audio", help="audio file to continue (a riff)")] = None,
    seed_audio_s: Annotated[float, typer.Option("--seed-seconds", help="seconds of the seed riff's end to continue (0: up to half of --duration)")] = 0.0,
    melody: Annotated[Path | None, typer.Option("--melody", help="audio file whose chroma conditions a melody model")] = None,
    duration: Annotated[float, typer.Option("--duration", help="seconds per file, seed riff included")] = 8.0,
    window: Annotated[float, typer.Option("--window", help="long-form: seconds the decoder sees at once")] = 30.0,
    context: Annotated[float, typer.Option("--context", help="long-form: seconds of the piece so far that prompt each next window")] = 10.0,
    temperature: Annotated[float, typer.Option(help="sampling temperature")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", help="top-k sampling (0 disables)")] = 250,
    top_p: Annotated[float, typer.Option("--top-p", help="nucleus sampling (0 disables)")] = 0.0,
    guidance_scale: Annotated[float, typer.Option("--guidance-scale", help="classifier-free guidance (<=1 disables)")] = 3.0,
    best_of: Annotated[int, typer.Option("--best-of", help="candidates per file; the reranker's favourite is kept")] = 1,
    rerank: Annotated[str, typer.Option("--rerank", help="best-of: likelihood (the model's most likely) or style (nearest the --style-reference, least repetitive)")] = "likelihood",
    style_reference: Annotated[str, typer.Option("--style-reference", help="--rerank style: folder of the artist's audio")] = "",
    beams: Annotated[int, typer.Option("--beams", help="beam search of this width instead of sampling (1: greedy; 0: sample)")] = 0,
    length_penalty: Annotated[float, typer.Option("--length-penalty", help="beam search: score = log-likelihood / tokens ** this")] = 1.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    n: Annotated[int, typer.Option("--n", help="files per prompt")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="files sampled together")] = 4,
    watermark_key: Annotated[str, typer.Option("--watermark-key", help="watermark key, or env:NAME to read $NAME")] = "stylecraft",
    watermark_strength: Annotated[float, typer.Option("--watermark-strength", help="watermark strength (0, 0.5]")] = 0.12,
    no_watermark: Annotated[bool, typer.Option("--no-watermark", help="write files without the watermark")] = False,
    watermark_method: Annotated[str, typer.Option("--watermark-method", help="dsp, or audioseal (needs its weights)")] = "dsp",
    audioseal_path: Annotated[str, typer.Option("--audioseal-path", help="folder of AudioSeal weights (default: fetched)")] = "",
) -> None:
    """Generate music from text, a seed riff and/or a melody (watermarked, with provenance).

    Pieces longer than --window are generated window by window, each continuing the last
    --context seconds. Files already written by the same request and intact are skipped.
    --beams N decodes by beam search over the delayed codebooks (guidance inside the beam)
    instead of sampling; --best-of N reranks N samples instead.
    """
    from stylecraft.generate.longform import LongForm
    from stylecraft.generate.sample import SamplingParams, WatermarkSettings, read_prompts_file
    from stylecraft.generate.sample import generate as run_generate
    from stylecraft.models.loading import load_model

    for what, path in (("seed audio", seed_audio), ("melody file", melody)):
        if path is not None and not path.is_file():
            raise StylecraftError(f"{what} '{path}' does not exist")
    if n < 1:
        raise StylecraftError(f"--n must be >= 1, got {n}")
    if batch_size < 1:
        raise StylecraftError(f"--batch-size must be >= 1, got {batch_size}")
    if prompt and prompts_file is not None:
        raise StylecraftError("pass --prompt or --prompts-file, not both")
    prompts = read_prompts_file(prompts_file) if prompts_file is not None else list(prompt or [])
    params = SamplingParams(
        duration_s=duration, temperature=temperature, top_k=top_k, top_p=top_p,
        guidance_scale=guidance_scale, seed=seed, seed_audio_s=seed_audio_s, best_of=best_of,
        rerank=rerank, style_reference=style_reference,
        beams=beams, length_penalty=length_penalty,
    )
    params.validate()
    long_form = LongForm(window_s=window, context_s=context)
    long_form.validate()
    bundle = load_model(model)
    mark = WatermarkSettings(
        enabled=not no_watermark, key=watermark_key, strength=watermark_strength,
        method=watermark_method, audioseal_path=audioseal_path,
    )
    rows = run_generate(
        bundle, out, prompts, params, per_prompt=n, seed_audio=seed_audio, watermark=mark,
        batch_size=batch_size, long_form=long_form, melody=melody,
    )
    for r in rows:
        typer.echo(str(out / r["file"]))


def _kad_bandwidth(value: str) -> float | str:
    """``--kad-bandwidth``: gen, ref or a positive number."""
    if value in ("gen", "ref"):
        return value
    try:
        h = float(value)
    except ValueError:
        raise StylecraftError(f"--kad-bandwidth must be gen, ref or a positive number, got {value!r}") from None
    if not h > 0:
        raise StylecraftError(f"--kad-bandwidth must be gen, ref or a positive number, got {value!r}")
    return h


@app.command()
def fad(
    ref: Annotated[Path, typer.Argument(help="reference set: folder of audio or .npy [N, D] embeddings")],
    gen: Annotated[Path, typer.Argument(help="generated set: folder of audio or .npy [N, D] embeddings")],
    embedding: Annotated[str, typer.Option(help="embedding model (mfcc, vggish, vggish-tiny)")] = "mfcc",
    metric: Annotated[str, typer.Option("--metric", help="fad, kad (Kernel Audio Distance, kadtk's defaults) or all")] = "fad",
    kad_bandwidth: Annotated[str, typer.Option("--kad-bandwidth", help="KAD kernel bandwidth: gen (median pairwise distance of GEN, kadtk's default), ref (of REF) or a number")] = "gen",
    kad_estimator: Annotated[str, typer.Option("--kad-estimator", help="kadtk (default) or unbiased (cross-term diagonal left out for equal sizes: KAD(X, X) = 0)")] = "kadtk",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="also write the JSON record here")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="per-file embedding cache (float32 .npy)")] = None,
    inf: Annotated[bool, typer.Option("--inf", help="also compute FAD-inf / KAD-inf (fadtk's / kadtk's extrapolation) with R²")] = False,
    inf_min_n: Annotated[int, typer.Option("--inf-min-n", help="smallest FAD-inf / KAD-inf sample size")] = 500,
    per_track: Annotated[bool, typer.Option("--per-track", help="also score each generated file on its own")] = False,
    ci: Annotated[float | None, typer.Option("--ci", help="bootstrap confidence level, e.g. 0.95 (needs 8 or more generated files)")] = None,
    n_boot: Annotated[int, typer.Option("--n-boot", help="bootstrap replicates")] = 200,
    workers: Annotated[int, typer.Option("--workers", help="files decoded at once (threads); on CPU, batched models (vggish, musicnn) also run this many batches at once, one torch thread each; models use CUDA when present")] = 1,
    seed: Annotated[int, typer.Option(help="seed of FAD-inf / KAD-inf draws and bootstrap resampling")] = 0,
) -> None:
    """Fréchet Audio Distance and/or Kernel Audio Distance between two sets (float64 statistics)."""
    from stylecraft.artifacts import atomic_write_json
    from stylecraft.evaluate.fad import KadOptions, compute_fad

    if workers < 1:
        raise StylecraftError(f"--workers must be at least 1, got {workers}")
    if metric not in ("fad", "kad", "all"):
        raise StylecraftError(f"--metric must be fad, kad or all, got {metric!r}")
    if kad_estimator not in ("kadtk", "unbiased"):
        raise StylecraftError(f"--kad-estimator must be kadtk or unbiased, got {kad_estimator!r}")
    kad_opts = KadOptions(bandwidth=_kad_bandwidth(kad_bandwidth), estimator=kad_estimator)  # type: ignore[arg-type]
    result = compute_fad(
        ref, gen, embedding_name=embedding, cache_dir=cache_dir, inf=inf, per_track=per_track, ci=ci,
        n_boot=n_boot, workers=workers, seed=seed, inf_min_n=inf_min_n, metric=metric, kad=kad_opts,  # type: ignore[arg-type]
    )
    if output is not None:
        atomic_write_json(output, result)
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    _print_scores(result)


def _print_scores(result: dict[str, Any]) -> None:
    """The text output of ``stylecraft fad``."""
    sizes = f"(n_ref={result['n_ref']}, n_gen={result['n_gen']})"
    for name, key, ci_key, inf_key in (("FAD", "fad", "ci", "fad_inf"), ("KAD", "kad", "kad_ci", "kad_inf")):
        if key not in result:
            continue
        typer.echo(f"{name} ({result['embedding']}) = {result[key]:.6f}  {sizes}")
        if ci_key in result:
            c = result[ci_key]
            held = "" if c["resampled_ref"] else ", reference held fixed"
            typer.echo(f"{c['level']:.0%} CI [{c['low']:.6f}, {c['high']:.6f}]  ({c['n_boot']} resamples of "
                       f"{c['n_units']} {c['unit']}s{held})")
        if inf_key in result:
            fi = result[inf_key]
            r2 = "n/a" if fi["r2"] is None else f"{fi['r2']:.4f}"
            typer.echo(f"{name}-inf = {fi['score']:.6f}  (R² {r2})")
    div = result.get("diversity", {})
    if "ratio" in div:
        typer.echo(f"diversity: mean pairwise distance {div['generated']:.4f} generated, {div['reference']:.4f} reference "
                   f"(per {div['unit_generated']})")
    for row in result.get("per_track", []):
        values = "  ".join(f"{k.upper()} {row[k]:12.6f}" for k in ("fad", "kad") if k in row)
        typer.echo(f"{values}  {row['path']}")
    for warning in result.get("warnings", []):
        typer.echo(f"warning: {warning}", err=True)


@app.command()
def audit(
    candidates: Annotated[list[Path], typer.Argument(help="candidate audio files or folders")],
    reference: Annotated[list[str] | None, typer.Option("--reference", help="NAME=PATH: a reference artist's folder (repeat)")] = None,
    index: Annotated[str | None, typer.Option("--index", help="answer from a catalogue index (SQLite file or postgresql:// URL) instead of --reference folders")] = None,
    embedding: Annotated[str | None, typer.Option(help="embedding model (mfcc, vggish, encodec-24k, clap, ...); with --index, one of the index's")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the audit record here")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="write report.html here")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="per-file embedding cache")] = None,
    n_boot: Annotated[int, typer.Option("--n-boot", help="bootstrap replicates")] = 100,
    workers: Annotated[int, typer.Option("--workers", help="files embedded at once")] = 1,
    seed: Annotated[int, typer.Option(help="seed of bootstrap and classifier sampling")] = 0,
    loudness: Annotated[float | None, typer.Option("--loudness", help="LUFS every track is scaled to before embedding")] = -23.0,
    raw_level: Annotated[bool, typer.Option("--raw-level", help="embed files at their own level (no loudness scaling)")] = False,
) -> None:
    """Which reference artist each candidate resembles, how sure that is, and whether it copies a recording."""
    from stylecraft.artifacts import atomic_write_json
    from stylecraft.errors import StylecraftError
    from stylecraft.evaluate.audit import AuditSettings, audit_json, parse_references, run_audit

    if index is not None:
        if reference:
            raise StylecraftError("give either --index or --reference folders, not both")
        from stylecraft.index.query import IndexAuditSettings, audit_with_index

        record = audit_with_index(index, candidates, IndexAuditSettings(embedding=embedding, n_boot=n_boot, seed=seed))
    else:
        refs = parse_references(reference or [])
        settings = AuditSettings(embedding=embedding or "mfcc", n_boot=n_boot, seed=seed, workers=workers,
                                 loudness_lufs=None if raw_level else loudness)
        record = run_audit(refs, candidates, settings, cache_dir=cache_dir)
    if json_out is not None:
        atomic_write_json(json_out, audit_json(record))
    if report is not None:
        from stylecraft.evaluate.audit.report import write_report

        write_report(record, report)
    for c in record["candidates"]:
        probs = c["probabilities"] or {}
        flag = "  NEAR-COPY of " + str(c["memorization"]["fingerprint"]["reference"]) if c["memorization"]["near_copy"] else ""
        attributed = c["attributed"] or c["closest"]
        typer.echo(
            f"{c['closest']:16s} bootstrap {c['confidence']['bootstrap']:4.0%}  KAD-closest {c['kad_closest']}  attributed {attributed} "
            f"{probs.get(attributed, float('nan')):4.0%}  {c['path']}{flag}"
        )
    for s in record["skipped"]:
        typer.echo(f"skipped {s['path']}: {s['reason']}")


index_app = typer.Typer(no_args_is_help=True, help="A label's catalogue, indexed once: build, add, remove, stats.")
app.add_typer(index_app, name="index")
DbArg = Annotated[str, typer.Argument(help="index: a SQLite file path or a postgresql:// URL")]


def _print_build(report: object) -> None:
    r = report.__dict__
    if not r["main_process"]:  # under accelerate launch, the writer reports for all
        return
    speed = r["audio_s"] / r["wall_s"] if r["wall_s"] > 0 else 0.0
    typer.echo(f"added {r['added']}, already indexed {r['already_indexed']}, rejected {r['rejected']} "
               f"(and {r['already_rejected']} rejected before) "
               f"({r['audio_s'] / 60:.1f} min of audio in {r['wall_s']:.1f} s, {speed:.0f}x realtime)")
    for rej in r["rejects"]:
        typer.echo(f"rejected {rej['path']}: {rej['reason']}")


@index_app.command("build")
def index_build(
    db: DbArg,
    reference: Annotated[list[str], typer.Option("--reference", help="NAME=PATH: an artist's folder (repeat)")],
    embedding: Annotated[list[str] | None, typer.Option("--embedding", help="embedding stored per track (repeat; default mfcc)")] = None,
    workers: Annotated[int, typer.Option("--workers", help="files analysed at once (0: one per core)")] = 0,
    loudness: Annotated[float, typer.Option("--loudness", help="LUFS every track is scaled to before embedding")] = -23.0,
    raw_level: Annotated[bool, typer.Option("--raw-level", help="embed files at their own level")] = False,
) -> None:
    """Create or extend an index from artists' folders; resumes where a killed build stopped."""
    from stylecraft.index.build import IndexSettings, build_index, parse_reference

    refs = dict(parse_reference(r) for r in reference)
    settings = IndexSettings(embeddings=tuple(embedding or ["mfcc"]), loudness_lufs=None if raw_level else loudness)
    _print_build(build_index(db, refs, settings if embedding or raw_level or loudness != -23.0 else None, workers=workers))


@index_app.command("add")
def index_add(
    db: DbArg,
    reference: Annotated[str, typer.Argument(help="NAME=PATH: an artist's folder (or more of it)")],
    workers: Annotated[int, typer.Option("--workers", help="files analysed at once (0: one per core)")] = 0,
) -> None:
    """Add an artist's folder to an existing index (files already indexed are skipped)."""
    from stylecraft.index.build import build_index, parse_reference
    from stylecraft.index.store import open_store

    open_store(db).close()  # an existing index only: `build` creates
    name, folder = parse_reference(reference)
    _print_build(build_index(db, {name: folder}, None, workers=workers))


@index_app.command("remove")
def index_remove(db: DbArg, what: Annotated[str, typer.Argument(help="an artist's NAME, or a PATH (a file or folder) of indexed tracks")]) -> None:
    """Remove an artist or the tracks at or under a path."""
    from stylecraft.index.build import remove_from_index

    typer.echo(f"removed {remove_from_index(db, what)} track(s)")


@index_app.command("stats")
def index_stats_cmd(db: DbArg, as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False) -> None:
    """Artists, tracks, hours, fingerprint postings, rejects and models of an index."""
    from stylecraft.index.build import index_stats

    st = index_stats(db)
    if as_json:
        typer.echo(json.dumps(st))
        return
    typer.echo(f"{st['backend']} index, generation {st['generation']}: {st['tracks']} tracks, {st['hours']:.2f} h, "
               f"{len(st['artists'])} artists, {st['fingerprint_postings']} fingerprint postings, {len(st['rejects'])} rejects")
    for name, a in st["artists"].items():
        typer.echo(f"  {name:24s} {a['tracks']:6d} tracks {a['hours']:8.2f} h")
    for r in st["rejects"]:
        typer.echo(f"  rejected {r['path']}: {r['reason']}")


@app.command()
def fetch(name: Annotated[str, typer.Argument(help="registry name, e.g. musicgen-small")]) -> None:
    """Download known weights into checkpoints/hub/NAME and verify their sha256."""
    if name.startswith("spleeter:"):
        from stylecraft.separate import fetch_spleeter

        typer.echo(str(fetch_spleeter(name)))
        return
    if name.startswith("demucs:"):
        from stylecraft.separate.demucs import fetch_demucs

        for path in fetch_demucs(name.split(":", 1)[1]):
            typer.echo(str(path))
        return
    from stylecraft.models.fetch import fetch as run_fetch

    typer.echo(str(run_fetch(name)))


@app.command()
def separate(
    inputs: Annotated[list[Path], typer.Argument(help="audio files or folders")],
    out: Annotated[Path, typer.Option("--out", help="output folder: OUT/<input name>/<stem>.<format>")],
    model: Annotated[
        str, typer.Option("--model", help="spleeter:2stems|4stems|5stems[-16kHz], demucs:htdemucs, …-tiny for random weights")
    ] = "spleeter:2stems",
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="weights: Spleeter checkpoint dir, Demucs .th or folder")] = None,
    fmt: Annotated[str, typer.Option("--format", help="flac (24-bit) or wav (float32)")] = "flac",
    mix: Annotated[list[str] | None, typer.Option("--mix", help="extra file summing stems, NAME=stem+stem (repeatable)")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 (default: cuda when present)")] = None,
    batch_segments: Annotated[int | None, typer.Option("--batch-segments", help="Spleeter 11.9 s segments per forward pass")] = None,
    mwf: Annotated[bool, typer.Option("--mwf", help="Spleeter's multichannel Wiener filtering (two passes)")] = False,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="write OUT/<name>/stems.png (spectrograms)")] = True,
) -> None:
    """Separate audio into stems; exit 1 if no input could be separated."""
    from stylecraft.errors import ConfigError
    from stylecraft.separate import load_separator
    from stylecraft.separate.batch import separate_paths

    if fmt not in ("flac", "wav"):
        raise ConfigError(f"--format must be flac or wav, not {fmt!r}")
    mixes: dict[str, list[str]] = {}
    for item in mix or []:
        name, sep, parts = item.partition("=")
        if not sep or not name or not parts:
            raise ConfigError(f"--mix {item!r}: expected NAME=stem+stem, e.g. instrumental=drums+bass+other")
        mixes[name] = parts.split("+")
    separator = load_separator(model, checkpoint, device=device, batch_segments=batch_segments, mwf=mwf)
    result = separate_paths(separator, inputs, out, fmt=fmt, mixes=mixes, plot=plot)
    for row in result.rejects:
        typer.echo(f"rejected {row['path']}: {row['reason']}", err=True)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"{len(result.done)} separated, {len(result.skipped)} already done, {len(result.rejects)} rejected -> {out}")
    if not result.done and not result.skipped:
        raise typer.Exit(1)


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
    threshold: Annotated[float | None, typer.Option(help="score needed to call it watermarked (dsp 7.0, audioseal 0.5)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    method: Annotated[str, typer.Option("--method", help="dsp, or audioseal (needs its weights)")] = "dsp",
    audioseal_path: Annotated[str, typer.Option("--audioseal-path", help="folder of AudioSeal weights (default: fetched)")] = "",
) -> None:
    """Say whether FILE carries the watermark of KEY, with a score; exit 0 if it does, 2 if not."""
    from stylecraft.generate.watermark import detect_file_as

    if not file.is_file():
        raise StylecraftError(f"'{file}' is not a file")
    d = detect_file_as(method, file, key, threshold, audioseal_path)
    if as_json:
        typer.echo(json.dumps({"file": str(file), **d.__dict__}))
    else:
        verdict = "watermarked" if d.detected else "not watermarked"
        typer.echo(f"{file}: {verdict} (score {d.score:.2f}, threshold {d.threshold:.2f}, key id {d.key_id})")
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
def export(
    model: Annotated[str, typer.Argument(help="preset, registry name, model folder, audiocraft folder or run folder")],
    out: Annotated[Path, typer.Option("--out", help="output folder: new, empty or an earlier export (replaced when complete)")],
    fmt: Annotated[str, typer.Option("--format", help="audiocraft or transformers")] = "audiocraft",
    text_encoder: Annotated[str | None, typer.Option("--text-encoder", help="T5 folder for an audiocraft MODEL")] = None,
    t5_name: Annotated[str | None, typer.Option("--t5-name", help="text encoder name written for audiocraft (e.g. t5-base)")] = None,
) -> None:
    """Write MODEL in audiocraft format (loadable by MusicGen.get_pretrained) or transformers format."""
    from stylecraft.models.audiocraft import FORMATS, export_model
    from stylecraft.models.loading import load_model

    if fmt not in FORMATS:
        raise StylecraftError(f"unknown export format '{fmt}': use one of {', '.join(FORMATS)}")
    if t5_name is not None and fmt != "audiocraft":
        # The transformers format carries the text encoder's own config; a name would be ignored.
        raise StylecraftError(f"--t5-name applies to --format audiocraft only (got --format {fmt})")
    manifest = export_model(load_model(model, text_encoder=text_encoder), out, fmt=fmt, t5_name=t5_name)
    if fmt == "audiocraft" and not manifest.get("audiocraft_loads_without_changes", True):
        typer.echo(f"note: text encoder '{manifest['t5_name']}' is not one audiocraft knows; its weights are in {out}/text_encoder")
    typer.echo(str(out))


codec_app = typer.Typer(no_args_is_help=True, help="Train an EnCodec codec, or hear what a codec keeps.")
app.add_typer(codec_app, name="codec")


@codec_app.command("train")
def codec_train(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML with a codec: section (e.g. recipes/codec-mini.yaml)")],
    overrides: Overrides = None,
    run_dir: RunDir = None,
) -> None:
    """Train the recipe's codec on the run's segmented audio; started again, it resumes."""
    _stage("codec", recipe, run_dir, overrides)


@codec_app.command("roundtrip")
def codec_roundtrip(
    inputs: Annotated[list[Path], typer.Argument(help="audio files")],
    model: Annotated[str, typer.Option("--model", help="codec folder, or any model with a codec (stylecraft-mini, a run …)")],
    out: Annotated[Path, typer.Option("--out", help="output folder: DIR/<input stem>.flac")],
) -> None:
    """Encode and decode files through a codec and write what it keeps."""
    from stylecraft.codec.roundtrip import roundtrip_files

    for row in roundtrip_files([str(p) for p in inputs], model, out):
        typer.echo(row["output"])


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
        typer.echo(f"{name:24s} {entry.source.removeprefix('hf://'):32s} {entry.license:36s} {where}")


@app.command()
def studio(
    runs: Annotated[list[Path] | None, typer.Argument(help="run folders to show (their models are offered on Generate)")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="another model to offer: preset, registry name or folder (repeatable)")] = None,
    host: Annotated[str, typer.Option("--host", help="interface to bind (default: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port to listen on")] = 7860,
    out: Annotated[Path | None, typer.Option("--out", help="folder for takes (default: a stylecraft-studio folder in the temp dir)")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="largest upload accepted")] = 50.0,
    max_duration: Annotated[float, typer.Option("--max-duration", help="longest piece one request may ask for (s)")] = 120.0,
    watermark_key: Annotated[str, typer.Option("--watermark-key", help="watermark key, or env:NAME to read $NAME")] = "stylecraft",
    embedding: Annotated[str, typer.Option("--embedding", help="embedding of Compare's FAD and audit")] = "mfcc",
) -> None:
    """Start the studio: a local web page to generate, listen, compare and inspect runs (needs stylecraft[studio])."""
    try:
        from stylecraft.studio.app import launch
    except ImportError as exc:
        raise StylecraftError(f"the studio needs its extra: pip install 'stylecraft[studio]' ({exc.name} is missing)") from None
    from stylecraft.studio.settings import StudioSettings

    settings = StudioSettings(
        runs=tuple(runs or ()), models=tuple(model or ()), max_upload_mb=max_upload_mb, max_duration_s=max_duration,
        watermark_key=watermark_key, embedding=embedding,
    )
    if out is not None:
        settings = dataclasses.replace(settings, out_dir=out)
    launch(settings, host=host, port=port)


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
    except Exception as exc:  # usage errors arrive here in non-standalone mode
        _exit_for_usage_error(exc)
        raise


def _exit_for_usage_error(exc: Exception) -> None:
    """Show a command-line usage error the way click does (usage line and one message) and exit.

    typer >= 0.2x raises its own click-derived exceptions (``typer.exceptions``); earlier versions
    raise click's. Anything else returns, for the caller to re-raise.
    """
    import click
    from typer.exceptions import TyperException

    if isinstance(exc, (typer.Exit, click.exceptions.Exit)):
        sys.exit(exc.exit_code)
    if isinstance(exc, (typer.Abort, click.exceptions.Abort)):
        sys.exit(1)
    if isinstance(exc, (TyperException, click.ClickException)) and hasattr(exc, "show"):
        exc.show()
        sys.exit(int(getattr(exc, "exit_code", 2)))

if __name__ == "__main__":
    main()
