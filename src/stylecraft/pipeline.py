"""Run a recipe's stages in order, skipping any whose inputs did not change.

Each finished stage writes ``stages/<stage>.json`` with a signature of its inputs (its settings
and the hashes of the manifests it reads) and the hashes of its outputs. A stage is skipped when
the signature matches and its outputs are intact; otherwise it runs (and resumes its own
unfinished work).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from stylecraft.artifacts import atomic_write_json, atomic_write_text, read_jsonl, sha256_file, sha256_json
from stylecraft.config import section
from stylecraft.errors import StageInputError
from stylecraft.progress import info

STAGE_VERSION = 1  # bump when a stage's outputs change meaning


def catalogue_path(cfg: DictConfig, run: Path) -> Path:
    """The catalogue folder; for the demo stage it defaults to ``<run_dir>/catalogue``."""
    if OmegaConf.is_missing(cfg, "catalogue") or not str(cfg.catalogue).strip():
        if "demo" in cfg.stages:
            return run / "catalogue"
        raise StageInputError("no catalogue set: pass catalogue=/path/to/artist/audio")
    return Path(cfg.catalogue).expanduser()


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    """Cheap change detector for a catalogue: relative path, size and mtime of every file."""
    out = []
    if folder.is_dir():
        for root, _, names in os.walk(folder, followlinks=True):
            for n in sorted(names):
                p = Path(root) / n
                try:
                    st = p.stat()
                except OSError:
                    continue
                out.append((str(p.relative_to(folder)), st.st_size, int(st.st_mtime_ns)))
    return sorted(out)


def _file_hash(path: Path) -> str | None:
    return sha256_file(path) if path.exists() else None


def _stereo_model(cfg: DictConfig) -> bool:
    """Whether the recipe's model is stereo (its catalogue then stays stereo through segment and tokenize)."""
    from stylecraft.errors import StylecraftError
    from stylecraft.models.loading import model_channels

    try:
        return model_channels(str(cfg.model.name)) == 2
    except StylecraftError:
        return False  # a model that cannot be found fails in tokenize, with its own message


def signature(stage: str, cfg: DictConfig, run: Path) -> str:
    """Hash of everything a stage's result depends on."""
    parts: dict[str, Any] = {"stage": stage, "version": STAGE_VERSION}
    if stage == "demo":
        parts["demo"] = section(cfg, "demo")
        parts["catalogue"] = str(catalogue_path(cfg, run))
    elif stage == "ingest":
        parts["ingest"] = {k: v for k, v in section(cfg, "ingest").items() if k != "workers"}
        parts["captions"] = section(cfg, "captions")
        parts["artist"] = cfg.artist
        if cfg.captions.mode == "file" and cfg.captions.file:
            parts["captions_file"] = _file_hash(Path(cfg.captions.file).expanduser())
        try:
            parts["listing"] = _listing(catalogue_path(cfg, run))
        except StageInputError:
            parts["listing"] = None
    elif stage == "separate":
        parts["separate"] = {k: v for k, v in section(cfg, "separate").items() if k not in ("device", "batch_segments")}
        parts["tracks"] = _file_hash(run / "tracks.jsonl")
    elif stage == "segment":
        parts["segment"] = section(cfg, "segment")
        if _stereo_model(cfg):
            parts["channels"] = 2
        parts["outliers"] = section(cfg, "outliers")
        parts["artist"] = cfg.artist
        parts["tracks"] = _file_hash(run / "tracks.jsonl")
        if "separate" in cfg.stages:
            parts["stems"] = _file_hash(run / "stems.jsonl")
    elif stage == "codec":
        parts["codec"] = section(cfg, "codec")
        parts["rate"] = cfg.segment.sample_rate
        parts["tracks"] = _file_hash(run / "tracks.jsonl")
        parts["windows"] = _file_hash(run / "windows.jsonl")
    elif stage == "augment":
        parts["augment"] = section(cfg, "augment")
        parts["rate"] = cfg.segment.sample_rate
        parts["windows"] = _file_hash(run / "windows.jsonl")
    elif stage == "tokenize":
        parts["tokenize"] = section(cfg, "tokenize")
        parts["model"] = _model_signature(cfg, run)
        parts["windows"] = _file_hash(run / "windows.jsonl")
        parts["variants"] = _file_hash(run / "variants.jsonl")
    elif stage == "train":
        parts["train"] = section(cfg, "train")
        parts["model"] = _model_signature(cfg, run)
        parts["tokens"] = _file_hash(run / "tokens" / "index.jsonl")
    elif stage == "generate":
        parts["generate"] = section(cfg, "generate")
        parts["model"] = _file_hash(run / "model" / "stylecraft.json")
    elif stage == "evaluate":
        parts["evaluate"] = section(cfg, "evaluate")
        parts["generated"] = _file_hash(run / "generated" / "generated.jsonl")
        parts["tracks"] = _file_hash(run / "tracks.jsonl")
        # Training windows (novelty, baseline), held-out codes, the loudness target and the model
        # that decodes the unwatermarked audio.
        parts["windows"] = _file_hash(run / "windows.jsonl")
        parts["tokens"] = _file_hash(run / "tokens" / "index.jsonl")
        parts["loudness_lufs"] = cfg.segment.loudness_lufs
        parts["model"] = _file_hash(run / "model" / "stylecraft.json")
    return sha256_json(parts)


def _model_signature(cfg: DictConfig, run: Path) -> Any:
    """The model a stage starts from: its name, and for a new model its seed and codec's weights."""
    name = str(cfg.model.name)
    if not name.startswith("new:"):
        return name
    codec = Path(str(cfg.model.codec) or str(run / "codec" / "model"))
    return {"name": name, "seed": int(cfg.model.seed), "codec": _file_hash(codec / "model.safetensors")}


OUTPUTS: dict[str, list[str]] = {
    "demo": [],
    "ingest": ["tracks.jsonl", "rejects.jsonl", "duplicates.json"],
    "separate": ["stems.jsonl"],
    "segment": ["windows.jsonl", "outliers/report.json"],
    "codec": ["codec/model/model.safetensors", "codec/model/stylecraft.json"],
    "augment": ["variants.jsonl"],
    "tokenize": ["tokens/index.jsonl"],
    "train": ["model/model.safetensors", "model/stylecraft.json", "train/metrics.jsonl"],
    "generate": ["generated/generated.jsonl"],
    "evaluate": ["eval/fad.json"],
}


# Folders each stage writes into: where a killed run of that stage can leave temporary files.
STAGE_DIRS: dict[str, list[str]] = {
    "ingest": [".", "ingest/tags"],
    "segment": [".", "audio", "features", "segment", "outliers"],
    "codec": ["codec", "codec/audiocraft"],
    "augment": [".", "variants"],
    "tokenize": ["tokens"],
    "generate": ["generated"],
    "evaluate": ["eval"],
}


def remove_leftovers(stage: str, run: Path) -> list[Path]:
    """Delete the temporary files (``.name.XXXX.tmp.ext``) a killed run of ``stage`` left behind."""
    removed = []
    for sub in STAGE_DIRS.get(stage, []):
        folder = run / sub
        if not folder.is_dir():
            continue
        for p in folder.glob(".*.tmp*"):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def _stamp_path(run: Path, stage: str) -> Path:
    return run / "stages" / f"{stage}.json"


def is_up_to_date(stage: str, cfg: DictConfig, run: Path) -> bool:
    path = _stamp_path(run, stage)
    if not path.exists():
        return False
    stamp = json.loads(path.read_text())
    if stamp.get("signature") != signature(stage, cfg, run):
        return False
    return all(_file_hash(run / rel) == digest for rel, digest in stamp.get("outputs", {}).items())


def _write_stamp(stage: str, cfg: DictConfig, run: Path, seconds: float, result: Any) -> None:
    outputs = {rel: _file_hash(run / rel) for rel in OUTPUTS[stage] if (run / rel).exists()}
    atomic_write_json(
        _stamp_path(run, stage),
        {"stage": stage, "signature": signature(stage, cfg, run), "outputs": outputs, "seconds": round(seconds, 3), "result": result},
    )


# ---------------------------------------------------------------------------------------------
# Stage functions: each takes the resolved recipe and the run folder and calls one library entry.


def stage_demo(cfg: DictConfig, run: Path) -> dict[str, Any]:
    from stylecraft.data.demo import make_demo_catalogue

    d = cfg.demo
    files = make_demo_catalogue(catalogue_path(cfg, run), d.tracks, d.duration_s, d.sample_rate, d.seed)
    return {"files": len(files)}


def stage_ingest(cfg: DictConfig, run: Path) -> dict[str, Any]:
    from stylecraft.data.captions import CaptionSettings
    from stylecraft.data.ingest import DuplicateSettings, ingest

    i, c = cfg.ingest, cfg.captions
    tracks, rejects = ingest(
        catalogue_path(cfg, run), run, extensions=list(i.extensions), valid_fraction=i.valid_fraction,
        min_duration_s=i.min_duration_s, split_seed=i.split_seed, workers=i.workers,
        captions=CaptionSettings(mode=c.mode, artist_from=c.artist_from, file=c.file, artist=cfg.artist),
        duplicates=DuplicateSettings(enabled=i.near_duplicates, min_corr=i.duplicate_corr),
    )
    n_valid = sum(t.split == "valid" for t in tracks)
    groups = {t.duplicate_group for t in tracks if t.duplicate_group}
    in_groups = sum(bool(t.duplicate_group) for t in tracks)
    if groups:
        info(f"ingest: {in_groups} tracks are near-duplicates of one another ({len(groups)} group(s)); each group "
             f"stays in one split, see {run / 'duplicates.json'}")
    return {"tracks": len(tracks), "valid_tracks": n_valid, "rejects": len(rejects),
            "duplicate_groups": len(groups), "tracks_in_duplicate_groups": in_groups,
            "captions": len({t.caption for t in tracks})}


def stage_separate(cfg: DictConfig, run: Path) -> dict[str, Any]:
    from stylecraft.separate.stage import run_separate

    rows = run_separate(run, section(cfg, "separate"))
    return {"tracks": len(rows), "kept": rows[0]["kept"] if rows else []}


def stage_segment(cfg: DictConfig, run: Path) -> dict[str, Any]:
    from stylecraft.data.segment import segment

    try:
        catalogue: Path | None = catalogue_path(cfg, run)
    except StageInputError:
        catalogue = None  # a run segmented on its own: tracks.jsonl is all there is
    sources = None
    if "separate" in cfg.stages:
        from stylecraft.separate.stage import stem_sources

        sources = stem_sources(run)
    windows = segment(run, section(cfg, "segment"), artist=cfg.artist, catalogue=catalogue, sources=sources,
                      channels=2 if _stereo_model(cfg) else 1)
    result: dict[str, Any] = {}
    o = cfg.outliers
    if o.enabled:
        from dataclasses import fields

        from stylecraft.data.manifest import save_rows
        from stylecraft.data.outliers import OutlierParams, check_run

        params = OutlierParams(**{f.name: o[f.name] for f in fields(OutlierParams)})
        report = check_run(run, windows, cfg.segment.sample_rate, params)
        result["outlier_tracks"] = len(report.flagged_tracks)
        result["outlier_windows"] = len(report.flagged_windows)
        if report.flagged_windows:
            info(f"segment: {len(report.flagged_windows)} window(s) in {len(report.flagged_tracks)} flagged track(s) and "
                 f"elsewhere look unlike the catalogue; see {run / 'outliers' / 'report.png'}"
                 + (" (excluded)" if o.exclude else " (kept: outliers.exclude=true leaves them out)"))
        if o.exclude and report.flagged_windows:
            windows = [w for w in windows if w.id not in report.flagged_windows]
            if not windows:
                raise StageInputError("every window was flagged as an outlier: check outliers/report.json, or set outliers.exclude=false")
            save_rows(run / "windows.jsonl", windows)
    elif (run / "outliers" / "report.json").exists():
        (run / "outliers" / "report.json").unlink()  # a stale report would describe other settings
    return {"windows": len(windows), "train_windows": sum(w.split == "train" for w in windows), **result}


def stage_codec(cfg: DictConfig, run: Path) -> dict[str, Any]:
    from stylecraft.codec.train import train_codec

    return train_codec(run, cfg)


def stage_augment(cfg: DictConfig, run: Path) -> dict[str, Any]:
    from stylecraft.data.augment import augment

    variants = augment(run, section(cfg, "augment"), cfg.segment.sample_rate)
    windows = sum(1 for w in read_jsonl(run / "windows.jsonl") if w.get("split") == "train")
    share = len(variants) / (len(variants) + windows) if variants or windows else 0.0
    return {"variants": len(variants), "train_windows": windows, "variant_share": round(share, 4)}


def stage_tokenize(cfg: DictConfig, run: Path) -> dict[str, Any]:
    from stylecraft.data.tokens import tokenize
    from stylecraft.models.loading import recipe_model

    bundle = recipe_model(cfg, run)
    index = tokenize(run, bundle, cfg.segment.sample_rate, cfg.tokenize.batch_size)
    return {"items": len(index), "codebooks": bundle.num_codebooks, "frames": index[0]["frames"] if index else 0}


def stage_train(cfg: DictConfig, run: Path) -> dict[str, Any]:
    from stylecraft.train.loop import train

    return train(run, cfg)


def stage_generate(cfg: DictConfig, run: Path) -> dict[str, Any]:
    from stylecraft.config import to_container
    from stylecraft.data.manifest import run_caption
    from stylecraft.generate.longform import LongForm
    from stylecraft.generate.sample import SamplingParams, WatermarkSettings, generate, read_prompts_file
    from stylecraft.models.loading import load_model

    g = cfg.generate
    for key in ("prompts_file", "seed_audio", "melody"):
        if g[key] and not Path(g[key]).is_file():
            raise StageInputError(f"generate.{key} '{g[key]}' does not exist")
    bundle = load_model(str(run))
    prompts = read_prompts_file(g.prompts_file) if g.prompts_file else list(g.prompts) or [run_caption(run, cfg.artist)]
    params = SamplingParams(
        duration_s=g.duration_s, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p,
        guidance_scale=g.guidance_scale, seed=g.seed, seed_audio_s=g.seed_audio_s, best_of=g.best_of,
        rerank=g.rerank, style_reference=str(g.style_reference or (catalogue_path(cfg, run) if g.rerank == "style" else "")),
        beams=g.beams, length_penalty=g.length_penalty,
    )
    mark = WatermarkSettings(enabled=g.watermark.enabled, key=g.watermark.key, strength=g.watermark.strength,
                             method=g.watermark.method, audioseal_path=g.watermark.audioseal_path)
    rows = generate(
        bundle, run / "generated", prompts, params, per_prompt=g.per_prompt, watermark=mark,
        recipe_sha256=sha256_json(to_container(cfg)), batch_size=g.batch_size,
        long_form=LongForm(window_s=g.long_form.window_s, context_s=g.long_form.context_s),
        seed_audio=g.seed_audio or None, melody=g.melody or None,
    )
    return {"files": len(rows)}


def stage_evaluate(cfg: DictConfig, run: Path) -> dict[str, Any]:
    """FAD and KAD of the generated audio against the held-out tracks, compared like with like.

    Every embedding named by ``evaluate.embedding`` and ``evaluate.embeddings`` is scored; the
    first gives the headline figures and all appear under ``by_embedding``. See
    :mod:`stylecraft.evaluate.stage` for what is compared and how.
    """
    from stylecraft.evaluate.embeddings import get_embedding
    from stylecraft.evaluate.fad import environment_versions
    from stylecraft.evaluate.plots import novelty_plot
    from stylecraft.evaluate.stage import evaluate_run

    names = list(dict.fromkeys([cfg.evaluate.embedding, *cfg.evaluate.embeddings]))
    # Build every model first, so a missing weight file fails before minutes of embedding.
    models = [get_embedding(name) for name in names]
    sr = int(cfg.segment.sample_rate)
    result = evaluate_run(run, sr, float(cfg.segment.loudness_lufs), models, int(cfg.evaluate.n_boot))
    result["versions"] = environment_versions()
    atomic_write_json(run / "eval" / "fad.json", result)
    novelty_plot(result, run / "eval" / "diversity.png")
    _spectrograms(run, result["generated_files"], sr)
    keys = ("fad", "kad", "n_ref", "n_gen")
    summary = {k: result[k] for k in keys}
    summary["train_clips_vs_ref"] = {k: v for k, v in result.get("train_clips_vs_ref", {}).items() if k in ("fad", "kad")}
    return summary


def _spectrograms(run: Path, generated: list[str], sr: int, seconds: float = 8.0) -> None:
    """eval/spectrograms.png: held-out excerpts above the generated files, for a look and a listen."""
    from stylecraft.audio import io as audio_io
    from stylecraft.data.manifest import Track, load_rows
    from stylecraft.data.segment import load_track_audio, track_audio_path
    from stylecraft.evaluate.plots import spectrogram_grid

    n = int(seconds * sr)
    clips = []
    tracks = [t for t in load_rows(run / "tracks.jsonl", Track) if t.split == "valid" and track_audio_path(run, t.id).exists()]
    for t in tracks[:2]:
        y = load_track_audio(run, t.id)
        start = max(0, (y.shape[0] - n) // 2)
        clips.append((f"held-out: {Path(t.path).name} (middle {seconds:.0f} s)", y[start : start + n]))
    for name in generated[:4]:
        audio, file_sr = audio_io.load(run / "generated" / name)
        clips.append((f"generated: {name}", audio_io.resample(audio_io.to_mono(audio), file_sr, sr)[:n]))
    spectrogram_grid(clips, sr, run / "eval" / "spectrograms.png")


STAGE_FUNCS: dict[str, Callable[[DictConfig, Path], Any]] = {
    "demo": stage_demo,
    "ingest": stage_ingest,
    "separate": stage_separate,
    "segment": stage_segment,
    "codec": stage_codec,
    "augment": stage_augment,
    "tokenize": stage_tokenize,
    "train": stage_train,
    "generate": stage_generate,
    "evaluate": stage_evaluate,
}


def save_resolved(cfg: DictConfig, run: Path) -> None:
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "recipe.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def run_stage(stage: str, cfg: DictConfig, force: bool = False) -> Any:
    """Run one stage (or report it up to date) and stamp it."""
    run = Path(cfg.run_dir)
    save_resolved(cfg, run)
    if not force and is_up_to_date(stage, cfg, run):
        info(f"[green]✓[/green] {stage}: up to date, skipped")
        return json.loads(_stamp_path(run, stage).read_text()).get("result")
    remove_leftovers(stage, run)
    t0 = time.perf_counter()
    result = STAGE_FUNCS[stage](cfg, run)
    seconds = time.perf_counter() - t0
    _write_stamp(stage, cfg, run, seconds, result)
    info(f"[green]✓[/green] {stage} ({seconds:.1f} s): {json.dumps(result, default=str)}")
    return result


def run_recipe(cfg: DictConfig, force: bool = False) -> dict[str, Any]:
    """Run every stage the recipe names, in pipeline order."""
    from stylecraft.config import STAGES

    results = {}
    for stage in [s for s in STAGES if s in cfg.stages]:
        results[stage] = run_stage(stage, cfg, force=force)
    return results
