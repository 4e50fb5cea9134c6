"""Outliers: known outliers (another artist, noise, corrupted audio, near duplicates, noise bursts
inside tracks) injected into two disjoint halves of the real Wesnoth soundtrack; thresholds chosen
on one half, recall and false-positive rate measured on the other."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from report_tools import table_head

from .common import RESULTS, ROOT, verdict
from .encoders import _mp3_ffmpeg
from .sources import OTHER_PACKAGES, _deb_dir, _mono, audio_files, music_dir


def _write(path: Path, x: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(x, -1, 1).astype(np.float32), sr, subtype="PCM_16")


def _write_ogg(path: Path, x: np.ndarray, sr: int) -> None:
    """Ogg Vorbis in 1 s pieces: libsndfile's Vorbis encoder overflows its stack on a whole track in one call."""
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, format="OGG", subtype="VORBIS") as f:
        for s0 in range(0, x.shape[0], sr):
            f.write(np.clip(x[s0 : s0 + sr], -1, 1).astype(np.float32))


def split_catalogue(music: Path) -> dict[str, list[Path]]:
    """Fixed split of the real catalogue (by sorted name, decided before any measurement).

    The Wesnoth files carry no composer tags, so the halves alternate by name. Six tracks are held
    out of both catalogues as the sources of the corrupted copies (a corrupted copy of a track that
    is also in the catalogue would be caught as a near duplicate, which is not what is measured).
    """
    files = audio_files(music)
    corrupt = files[::7][:6]
    rest = [f for f in files if f not in corrupt]
    return {"tune": rest[0::2], "test": rest[1::2], "corrupt_tune": corrupt[0::2], "corrupt_test": corrupt[1::2]}


def _noise(kind: str, n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.arange(spec.shape[0]), 1)
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = np.fft.irfft(spec / np.sqrt(f), n)
    elif kind == "brown":
        x = np.fft.irfft(spec / f, n)
    elif kind == "hum":  # mains hum with harmonics under hiss: a dead input channel
        t = np.arange(n) / sr
        x = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8)) + 0.3 * rng.standard_normal(n)
    else:  # "band": noise band-passed to 300-3000 Hz (radio static)
        hz = np.fft.rfftfreq(n, 1 / sr)
        x = np.fft.irfft(spec * ((hz > 300) & (hz < 3000)), n)
    return 0.25 * x / np.max(np.abs(x))


def _corrupt(kind: str, x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    if kind.startswith("bitrot"):  # a share of short blocks replaced by garbage
        share, ms = (0.3, 50) if kind == "bitrot" else (0.15, 20)
        step = int(ms / 1000 * sr)
        y = x.copy()
        for s in range(0, x.shape[0] - step, step):
            if rng.random() < share:
                y[s : s + step] = rng.uniform(-1, 1, step)
        return y
    if kind.startswith("clipped"):  # overdriven: gain then hard clipping
        gain_db = 30.0 if kind == "clipped" else 18.0
        return np.clip(x * 10 ** (gain_db / 20), -1, 1)
    if kind.startswith("crushed"):  # sample-and-hold and few bits
        hold, levels = (11, 8) if kind == "crushed" else (15, 16)
        return np.repeat(np.round(x[::hold] * levels) / levels, hold)[: x.shape[0]]
    if kind == "dropouts":  # 40% of 100 ms blocks silenced, with a click at every cut
        step = int(0.1 * sr)
        y = x.copy()
        for s in range(0, x.shape[0] - step, step):
            if rng.random() < 0.4:
                y[s : s + step] = 0.0
                y[s] = 0.9
        return y
    raise ValueError(kind)


# What each catalogue gets injected; the held-out catalogue's outliers are of other sources and kinds.
INJECTIONS: dict[str, dict[str, Any]] = {
    "tune": {"other": [("asc-music", 3), ("drascula-music", 4)], "noise": ["white", "pink"],
             "corrupt": ["bitrot", "clipped", "crushed"], "dup": ["mp3", "trimmed"], "synth": 1},
    "test": {"other": [("colobot-music", 5), ("drascula-music", 3)], "noise": ["brown", "hum", "band"],
             "corrupt": ["bitrot-fine", "clipped-mild", "dropouts"], "dup": ["resampled", "ogg-trimmed"], "synth": 1},
}


def build_injected_catalogue(split: str, out: Path, seed: int) -> dict[str, Any]:
    """One catalogue of real tracks plus known outliers; returns the ground truth by file name."""
    from stylecraft.data.demo import synth_track

    rng = np.random.default_rng(seed)
    parts = split_catalogue(music_dir(None))
    clean, corrupt_src = parts[split], parts[f"corrupt_{split}"]
    inj = INJECTIONS[split]
    truth: dict[str, str] = {}
    for f in clean:
        shutil.copy2(f, out / f.name)
        truth[f.name] = "clean"
    sr = 44100
    # Another artist: long enough tracks of other soundtracks; drascula's tracks alternate between the
    # two catalogues so none is in both.
    for name, count in inj["other"]:
        pool = [f for f in audio_files(_deb_dir(*next(o for o in OTHER_PACKAGES if o[0] == name)))
                if sf.info(str(f)).duration >= 60.0]
        if name == "drascula-music":
            pool = pool[0::2] if split == "tune" else pool[1::2]
        for f in pool[:count]:
            shutil.copy2(f, out / f"other-{name}-{f.name}")
            truth[f"other-{name}-{f.name}"] = "another artist"
    for i in range(inj["synth"]):
        name = f"other-synth-{i}.flac"
        _write(out / name, synth_track(120.0, sr, seed=40 + i + (10 if split == "test" else 0), channels=2), sr)
        truth[name] = "another artist"
    for kind in inj["noise"]:
        _write(out / f"noise-{kind}.flac", _noise(kind, 90 * sr, rng, sr), sr)
        truth[f"noise-{kind}.flac"] = "noise"
    for kind, f in zip(inj["corrupt"], corrupt_src, strict=True):
        name = f"corrupt-{kind}-{f.stem}.flac"
        _write(out / name, _corrupt(kind, _mono(f, sr), rng, sr), sr)
        truth[name] = "corrupted"
    # Near duplicates of catalogue tracks.
    duplicate_of = {}
    for kind, f in zip(inj["dup"], clean[3::6], strict=False):
        x = _mono(f, sr)
        if kind == "mp3":
            name = f"copy-{f.stem}.mp3"
            _mp3_ffmpeg(x, sr, out)
            shutil.move(out / "clip.mp3", out / name)
            (out / "clip.wav").unlink()
        elif kind == "trimmed":
            name = f"copy-{f.stem}-trimmed.flac"
            _write(out / name, x[int(3.3 * sr) :] * 10 ** (-4 / 20), sr)
        elif kind == "resampled":
            name = f"copy-{f.stem}-22k.flac"
            _write(out / name, _mono(f, 22050), 22050)
        else:
            name = f"copy-{f.stem}-trimmed.ogg"
            _write_ogg(out / name, x[int(5 * sr) : x.shape[0] - int(5 * sr)] * 10 ** (2 / 20), sr)
        duplicate_of[name] = f.name
        truth[name] = "near duplicate"
    # Bursts inside real tracks: 15 s of noise or a glitch loop.
    bursts: dict[str, list[float]] = {}
    long_enough = [f for f in clean if f.name not in duplicate_of.values() and sf.info(str(f)).duration >= 60.0]
    for k, f in enumerate(long_enough[1 :: max(1, len(long_enough) // 3)][:3]):
        x = _mono(f, sr)
        span = int(15 * sr)
        s0 = int(min(60 * sr, (x.shape[0] - span) // 2))
        if k % 2 == 0:
            x[s0 : s0 + span] = 0.3 * rng.standard_normal(span)
        else:
            x[s0 : s0 + span] = np.tile(rng.uniform(-0.8, 0.8, int(0.02 * sr)), span // int(0.02 * sr) + 1)[:span]
        name = f.stem + ".flac"
        (out / f.name).unlink()
        truth.pop(f.name)
        _write(out / name, x, sr)
        truth[name] = "clean"
        bursts[name] = [s0 / sr, (s0 + span) / sr]
    return {"truth": truth, "duplicate_of": duplicate_of, "bursts": bursts}


def prepare_catalogue(split: str) -> tuple[Path, dict[str, Any]]:
    """Build (once) and segment one injected catalogue; returns its run folder and ground truth."""
    from stylecraft.config import load_recipe
    from stylecraft.pipeline import run_stage

    work = ROOT / "eval" / ".cache" / f"reliability-outliers-{split}"
    cat, truth_file = work / "catalogue", work / "truth.json"
    if not truth_file.exists():
        shutil.rmtree(work, ignore_errors=True)
        cat.mkdir(parents=True)
        truth_file.write_text(json.dumps(build_injected_catalogue(split, cat, seed=7 if split == "tune" else 11)))
    run = work / "run"
    cfg = load_recipe(None, [f"catalogue={cat}", f"run_dir={run}", "stages=[ingest,segment]", "ingest.valid_fraction=0.0",
                             "segment.sample_rate=16000", "outliers.enabled=false"])
    run_stage("ingest", cfg)
    run_stage("segment", cfg)
    return run, json.loads(truth_file.read_text())


FEATURES_VERSION = 2  # bump when the detector's window features change: cached features are recomputed


def catalogue_features(split: str) -> dict[str, Any]:
    """An injected catalogue segmented once, with its window features and all pairwise fingerprint
    correlations (cached beside it, so thresholds can be swept without recomputing anything)."""
    from stylecraft.artifacts import atomic_path, read_jsonl
    from stylecraft.data import outliers as od
    from stylecraft.data.manifest import Window, load_rows

    run, gt = prepare_catalogue(split)
    windows = load_rows(run / "windows.jsonl", Window)
    tracks = {r["id"]: Path(r["path"]).name for r in read_jsonl(run / "tracks.jsonl")}
    cache = run.parent / f"features-v{FEATURES_VERSION}.npz"
    tids = sorted({w.track_id for w in windows})
    cached = np.load(cache) if cache.exists() else None
    if cached is None or list(cached["tids"]) != tids:  # a different catalogue: recompute
        emb = od.window_embeddings(run, windows, 16000, progress=False)
        prints = {t: od.fingerprint(od.track_pcm(run, t), 16000) for t in tids}
        corr = np.zeros((len(tids), len(tids)))
        for i, ta in enumerate(tids):
            for j in range(i):
                corr[i, j] = corr[j, i] = od._max_overlap_corr(prints[tids[j]], prints[ta])
        with atomic_path(cache) as p, open(p, "wb") as f:  # a killed run leaves no half-written cache
            np.savez(f, emb=emb, corr=corr, tids=np.array(tids))
        cached = {"emb": emb, "corr": corr}
    return {"split": split, "run": run, "gt": gt, "windows": windows, "tracks": tracks, "tids": tids,
            "emb": cached["emb"], "corr": cached["corr"]}


LEARNED_EMBEDDING = "musicnn-mtt"  # learned window features compared with the MFCC default


def with_learned_features(cat: dict[str, Any], embedding: str) -> dict[str, Any] | None:
    """``cat`` with the window features of :func:`stylecraft.data.outliers.window_embeddings` for a
    learned ``embedding`` (cached beside the catalogue), or None when its weights are not here."""
    from stylecraft.artifacts import atomic_path
    from stylecraft.data import outliers as od
    from stylecraft.errors import ModelNotFoundError

    cache = cat["run"].parent / f"features-{embedding}-v{FEATURES_VERSION}.npz"
    cached = np.load(cache) if cache.exists() else None
    if cached is not None and list(cached["tids"]) == cat["tids"]:
        learned = cached["learned"]
    else:
        try:
            learned = od.learned_window_features(cat["run"], cat["windows"], 16000, embedding, progress=True)
        except ModelNotFoundError as exc:
            print(f"outliers: {embedding} comparison skipped: {exc}", file=sys.stderr)
            return None
        with atomic_path(cache) as p, open(p, "wb") as f:
            np.savez(f, learned=learned, tids=np.array(cat["tids"]))
    # The same texture and damage columns as the MFCC rows: only the features that are whitened change.
    return {**cat, "emb": np.concatenate([learned, cat["emb"][:, -od.EXTRA_DIMS :]], axis=1)}


def _duplicates(cat: dict[str, Any], min_corr: float) -> dict[str, str]:
    """What :func:`stylecraft.data.outliers.find_duplicates` returns, from the cached correlations."""
    ids, out = cat["tids"], {}
    for j, b in enumerate(ids):
        for i, a in enumerate(ids[:j]):
            if a not in out and cat["corr"][i, j] >= min_corr:
                out[b] = a
                break
    return out


def evaluate_detector(cat: dict[str, Any], params: Any) -> dict[str, Any]:
    """Track- and window-level recall and false-positive rate of the detector on one catalogue.

    A pair of copies counts as caught when either copy is flagged as a duplicate of the other;
    the original is then neither a positive nor a false positive.
    """
    from stylecraft.data.outliers import detect_outliers

    report = detect_outliers(cat["windows"], cat["emb"], params, _duplicates(cat, params.duplicate_corr))
    tracks, gt = cat["tracks"], cat["gt"]
    truth, bursts = gt["truth"], gt["bursts"]
    flagged = {tracks[t]: why for t, why in report.flagged_tracks.items()}
    present = set(tracks.values())
    originals = set(gt["duplicate_of"].values())
    per_kind: dict[str, list[int]] = {}
    fp_names = []
    for name, kind in truth.items():
        if name not in present:
            continue
        if kind == "near duplicate":
            orig = gt["duplicate_of"][name]
            per_kind.setdefault(kind, []).append(int(name in flagged or "duplicate" in flagged.get(orig, "")))
        elif kind == "clean":
            if name in originals and "duplicate" in flagged.get(name, ""):
                continue
            if name in flagged:
                fp_names.append(name)
            per_kind.setdefault("clean", []).append(int(name in flagged))
        else:
            per_kind.setdefault(kind, []).append(int(name in flagged))
    positives = [v for k, vs in per_kind.items() if k != "clean" for v in vs]
    negatives = per_kind.get("clean", [])
    # Windows at least half inside an injected burst, against windows of clean unflagged tracks
    # that do not touch a burst.
    w_pos, w_neg = [], []
    for w in cat["windows"]:
        name = tracks[w.track_id]
        if truth.get(name) != "clean" or name in flagged:
            continue
        hit = w.id in report.flagged_windows
        if name in bursts:
            b0, b1 = bursts[name]
            overlap = max(0.0, min(b1, w.start_s + w.duration_s) - max(b0, w.start_s))
            if overlap >= 0.5 * w.duration_s:
                w_pos.append(int(hit))
                continue
            if overlap > 0:
                continue
        w_neg.append(int(hit))
    return {
        "track_level": {
            "recall": round(float(np.mean(positives)), 4), "positives": len(positives), "caught": int(np.sum(positives)),
            "false_positive_rate": round(float(np.mean(negatives)), 4), "negatives": len(negatives),
            "false_positives": fp_names,
            "recall_by_kind": {k: f"{sum(v)}/{len(v)}" for k, v in per_kind.items() if k != "clean"},
            "missed": sorted(n for n, k in truth.items() if k not in ("clean", "near duplicate") and n in present
                             and n not in flagged),
        },
        "window_level": {
            "recall": round(float(np.mean(w_pos)), 4) if w_pos else None, "positives": len(w_pos),
            "false_positive_rate": round(float(np.mean(w_neg)), 4), "negatives": len(w_neg),
        },
        "flagged": flagged,
        "report": report,
    }


# Grid swept on the tuning catalogue only; the rule picks the highest recall at <= 5% false
# positives there (half the target's budget, for what does not carry over), ties going to the
# strictest thresholds.
GRID = {"track_z": [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0], "noise_coherence": [0.05, 0.1, 0.15],
        "flatness_z": [1.0, 1.5, 2.0, 2.5, 3.0],
        "clipped_share": [0.01, 0.02, 0.05], "dropout_share": [0.02, 0.05], "duplicate_corr": [0.8, 0.9]}
TUNE_MAX_FPR = 0.05


def tune_params(cat: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    import itertools

    from stylecraft.data import outliers as od
    from stylecraft.data.outliers import OutlierParams

    # The whitening does not depend on any threshold: compute it once per catalogue for the sweep.
    whiten, memo = od._whiten, {}

    def cached(x: np.ndarray) -> np.ndarray:
        k = (x.__array_interface__["data"][0], x.shape)
        if k not in memo:
            memo[k] = whiten(x)
        return memo[k]

    od._whiten = cached  # type: ignore[assignment]
    try:
        return _sweep(cat, itertools.product(*GRID.values()), OutlierParams)
    finally:
        od._whiten = whiten  # type: ignore[assignment]


def _sweep(cat: dict[str, Any], points: Any, params_cls: Any) -> tuple[Any, list[dict[str, Any]]]:
    OutlierParams = params_cls  # noqa: N806
    rows = []
    for values in points:
        p = OutlierParams(**dict(zip(GRID, values, strict=True)))
        t = evaluate_detector(cat, p)["track_level"]
        rows.append({**dict(zip(GRID, values, strict=True)), "recall": t["recall"], "false_positive_rate": t["false_positive_rate"]})
    ok = [r for r in rows if r["false_positive_rate"] <= TUNE_MAX_FPR]
    best = max(ok, key=lambda r: (r["recall"], -r["false_positive_rate"], r["track_z"], r["flatness_z"],
                                  -r["noise_coherence"], r["clipped_share"], r["dropout_share"], r["duplicate_corr"]))
    return OutlierParams(**{k: best[k] for k in GRID}), rows


def _summary(ev: dict[str, Any]) -> dict[str, Any]:
    return {"track_level": ev["track_level"], "window_level": ev["window_level"], "flagged": ev["flagged"]}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import asdict

    from stylecraft.data.outliers import OutlierParams, plot_report

    t0 = time.time()
    tune, test = catalogue_features("tune"), catalogue_features("test")
    chosen, grid = tune_params(tune)
    defaults = OutlierParams()
    ev_test = evaluate_detector(test, chosen)
    plot_report(ev_test["report"], test["windows"], RESULTS / "reliability_outliers.png", chosen)
    sweep = []
    for thr in GRID["track_z"]:  # the track threshold alone, others as chosen, on the held-out catalogue
        t = evaluate_detector(test, OutlierParams(**{**asdict(chosen), "track_z": thr}))["track_level"]
        sweep.append({"track_z": thr, "recall": t["recall"], "false_positive_rate": t["false_positive_rate"]})
    learned: dict[str, Any] = {"embedding": LEARNED_EMBEDDING}
    l_tune, l_test = with_learned_features(tune, LEARNED_EMBEDDING), with_learned_features(test, LEARNED_EMBEDDING)
    if l_tune is not None and l_test is not None:
        l_chosen, _ = tune_params(l_tune)
        learned.update({"chosen_params": {**asdict(l_chosen), "embedding": LEARNED_EMBEDDING},
                        "held_out_with_chosen": _summary(evaluate_detector(l_test, l_chosen)),
                        "tune_with_chosen": _summary(evaluate_detector(l_tune, l_chosen))})
    cats = {}
    for cat in (tune, test):
        truth = cat["gt"]["truth"]
        cats[cat["split"]] = {"composition": {k: sum(1 for v in truth.values() if v == k) for k in sorted(set(truth.values()))},
                              "ingested_tracks": len(cat["tracks"]), "windows": len(cat["windows"]),
                              "injections": INJECTIONS[cat["split"]]}
    return {
        "protocol": ("the Wesnoth tracks are split by name into two disjoint halves, each injected with different "
                     "outliers (other sources and kinds); thresholds are chosen on the 'tune' catalogue by a fixed "
                     f"rule (highest recall at <= {100 * TUNE_MAX_FPR:g}% false positives) and measured on the 'test' "
                     "catalogue, which played no part in choosing them"),
        "catalogues": cats,
        "chosen_params": asdict(chosen),
        "default_params": asdict(defaults),
        "held_out_with_chosen": _summary(ev_test),
        "held_out_with_defaults": _summary(evaluate_detector(test, defaults)),
        "tune_with_chosen": _summary(evaluate_detector(tune, chosen)),
        "grid_points": len(grid),
        "held_out_track_threshold_sweep": sweep,
        "learned_embedding": learned,
        "settings": {"window_s": 10.0, "hop_s": 5.0, "sample_rate": 16000, "features_version": FEATURES_VERSION},
        "picture": "reliability_outliers.png",
        "seconds": round(time.time() - t0, 1),
    }



OUTLIER_TABLE_HEAD = table_head(["evaluation", "track recall", "track FPR", "recall by kind", "missed",
                                 "clean tracks flagged", "window recall (bursts)", "window FPR"])


def _outlier_line(name: str, ev: dict[str, Any]) -> str:
    t, w = ev["track_level"], ev["window_level"]
    w_recall = "n/a" if w["recall"] is None else f"{100 * w['recall']:.1f}%"
    return (f"| {name} | {100 * t['recall']:.1f}% ({t['caught']}/{t['positives']}) | {100 * t['false_positive_rate']:.1f}% "
            f"({len(t['false_positives'])}/{t['negatives']}) | {t['recall_by_kind']} | {', '.join(t['missed']) or 'none'} | "
            f"{', '.join(t['false_positives']) or 'none'} | {w_recall} of {w['positives']} | "
            f"{100 * w['false_positive_rate']:.2f}% of {w['negatives']} |")


def render(p: dict[str, Any]) -> list[str]:
    c = p["catalogues"]
    out = ["## Outlier detector", "", f"Protocol: {p['protocol']}.", ""]
    for name, v in c.items():
        out.append(f"- `{name}`: {v['composition']} ({v['ingested_tracks']} tracks ingested, {v['windows']} windows); "
                   f"injected: {v['injections']}.")
    out += ["", f"Chosen on `tune` ({p['grid_points']} grid points): {p['chosen_params']}. Library defaults: "
            f"{p['default_params']}.", "",
            *OUTLIER_TABLE_HEAD,
            _outlier_line("held-out `test`, chosen thresholds", p["held_out_with_chosen"]),
            _outlier_line("held-out `test`, library defaults", p["held_out_with_defaults"]),
            _outlier_line("`tune` (where chosen; not a measurement)", p["tune_with_chosen"]), "",
            "Track threshold on the held-out catalogue, other thresholds as chosen: "
            + "; ".join(f"{s['track_z']}: recall {100 * s['recall']:.0f}%, FPR {100 * s['false_positive_rate']:.1f}%"
                        for s in p["held_out_track_threshold_sweep"]) + ".", "",
            f"![outlier report on the held-out catalogue]({p['picture']})", ""]
    le = p.get("learned_embedding") or {}
    if "held_out_with_chosen" in le:
        out += [f"With a learned embedding (`outliers.embedding={le['embedding']}`: musicnn's MagnaTagATune tagger, "
                "200-D penultimate features averaged over each window's 3 s patches, in place of the MFCC features; "
                "texture and damage checks unchanged), thresholds chosen on `tune` by the same rule: "
                f"{le['chosen_params']}.", "",
                *OUTLIER_TABLE_HEAD,
                _outlier_line(f"held-out `test`, {le['embedding']}, chosen thresholds", le["held_out_with_chosen"]),
                _outlier_line(f"`tune`, {le['embedding']} (where chosen)", le["tune_with_chosen"]), ""]
    elif le:
        out += [f"The learned-embedding comparison ({le['embedding']}) was skipped: its weights are not on this machine "
                "(`stylecraft fetch musicnn`).", ""]
    return out


def targets(o: dict[str, Any]) -> list[str]:
    out = []
    le = o.get("learned_embedding") or {}
    rows = [("thresholds chosen on the other half", o["held_out_with_chosen"]),
            ("library defaults", o["held_out_with_defaults"])]
    if "held_out_with_chosen" in le:
        rows.append((f"{le['embedding']} window features, thresholds chosen on the other half", le["held_out_with_chosen"]))
    for label, ev in rows:
        t = ev["track_level"]
        ok = t["recall"] >= 0.9 and t["false_positive_rate"] <= 0.1
        out.append(f"- Outlier recall >= 90% at <= 10% false positives, held-out catalogue, {label}: {verdict(ok)} "
                   f"(recall {100 * t['recall']:.1f}% of {t['positives']}, FPR {100 * t['false_positive_rate']:.1f}% of "
                   f"{t['negatives']}).")
    return out
