"""``report.html`` of a style audit: plots, spectrograms and audio players in one page.

Pictures are embedded as base64 PNG so the page is one self-contained file apart from the
audio excerpts, which are written next to it in ``<report stem>_files/`` (short mono clips, so
the page stays small while candidates and their nearest reference segments can be heard).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from stylecraft.artifacts import atomic_path, atomic_write_text
from stylecraft.evaluate.audit.profile import NUMERIC_PROFILE
from stylecraft.evaluate.fad import load_audio_for_embedding

__all__ = ["write_report"]

EXCERPT_S = 10.0
EXCERPT_SR = 22050


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fad_plot(audit: dict[str, Any]) -> str:
    plt = _plt()
    cands = audit["candidates"]
    names = list(audit["references"])
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(cands) * len(names) + 1.2), dpi=90, layout="constrained")
    height = 0.8 / len(names)
    for k, name in enumerate(names):
        ys = np.arange(len(cands)) + k * height
        ax.barh(ys, [c["scores"][name] for c in cands], height=height, label=name)
    ax.set_yticks(np.arange(len(cands)) + 0.4 - height / 2, [Path(c["path"]).name for c in cands], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"per-track FAD ({audit['embedding']}), lower = closer")
    ax.legend(fontsize=8)
    return _png(fig)


def _embedding_map(audit: dict[str, Any], ref_rows: dict[str, np.ndarray], cand_rows: dict[str, np.ndarray]) -> str:
    """2-D PCA of standardised reference rows (points) with each candidate's rows (mean marked)."""
    plt = _plt()
    allr = np.concatenate(list(ref_rows.values()))
    mu, sd = allr.mean(0), allr.std(0) + 1e-9
    z = (allr - mu) / sd
    _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
    proj = vt[:2].T
    fig, ax = plt.subplots(figsize=(8, 6), dpi=90, layout="constrained")
    rng = np.random.default_rng(0)
    for name, rows in ref_rows.items():
        p = ((rows - mu) / sd) @ proj
        keep = rng.choice(p.shape[0], size=min(1500, p.shape[0]), replace=False)
        ax.scatter(p[keep, 0], p[keep, 1], s=4, alpha=0.35, label=f"{name} (reference)")
    for path, rows in cand_rows.items():
        p = ((rows - mu) / sd) @ proj
        c = p.mean(0)
        ax.scatter(p[:, 0], p[:, 1], s=6, marker="x", alpha=0.5, color="black")
        ax.annotate(Path(path).name, c, fontsize=7, weight="bold")
        ax.scatter([c[0]], [c[1]], s=60, marker="*", color="black")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=8, markerscale=3)
    ax.set_title("embedding map: reference rows (dots), candidate rows (x) and means (*)", fontsize=9)
    return _png(fig)


def _profile_plot(audit: dict[str, Any], cand: dict[str, Any]) -> str:
    """Candidate descriptors as z-scores against each artist's track distribution."""
    plt = _plt()
    names = list(audit["references"])
    fig, ax = plt.subplots(figsize=(8, 2.8), dpi=90, layout="constrained")
    width = 0.8 / len(names)
    x = np.arange(len(NUMERIC_PROFILE))
    for k, name in enumerate(names):
        prof = audit["references"][name]["profile"]
        zs = []
        for key in NUMERIC_PROFILE:
            stat, val = prof.get(key), cand["profile"].get(key)
            zs.append(0.0 if stat is None or val is None else (val - stat["mean"]) / (stat["std"] + 1e-9))
        ax.bar(x + k * width, np.clip(zs, -5, 5), width=width, label=name)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x + 0.4 - width / 2, [k.replace("_", " ") for k in NUMERIC_PROFILE], fontsize=7, rotation=15)
    ax.set_ylabel("z vs artist (clipped ±5)")
    ax.legend(fontsize=7)
    return _png(fig)


def _spectrograms(clips: list[tuple[str, np.ndarray]]) -> str:
    import librosa
    import librosa.display

    plt = _plt()
    fig, axes = plt.subplots(len(clips), 1, figsize=(8, 1.9 * len(clips)), dpi=80, squeeze=False, layout="constrained")
    for ax, (title, y) in zip(axes[:, 0], clips, strict=True):
        mel = librosa.feature.melspectrogram(y=y, sr=EXCERPT_SR, n_fft=1024, hop_length=512, n_mels=64)
        librosa.display.specshow(librosa.power_to_db(mel, ref=1.0, top_db=None), sr=EXCERPT_SR, hop_length=512,
                                 x_axis="time", y_axis="mel", ax=ax, vmin=-80, vmax=20, cmap="magma")
        ax.set_title(title, fontsize=8, loc="left")
    return _png(fig)


def _excerpt(path: str, start_s: float) -> np.ndarray:
    from stylecraft.audio.io import resample

    audio, sr = load_audio_for_embedding(path)
    mono = audio.mean(axis=1)
    start = int(max(0.0, start_s - EXCERPT_S / 2) * sr)
    seg = mono[start : start + int(EXCERPT_S * sr)]
    return np.asarray(resample(seg, sr, EXCERPT_SR) if sr != EXCERPT_SR else seg, dtype=np.float32)


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _write_clip(folder: Path, name: str, y: np.ndarray) -> str:
    import soundfile as sf

    path = folder / name
    with atomic_path(path) as tmp:
        sf.write(tmp, y, EXCERPT_SR, format="OGG", subtype="VORBIS")
    return f"{folder.name}/{name}"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>stylecraft audit</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; max-width: 1100px; }}
table {{ border-collapse: collapse; font-size: 0.85em; }} td, th {{ border: 1px solid #bbb; padding: 3px 6px; }}
.copy {{ color: #b00; font-weight: bold; }} .cand {{ border-top: 2px solid #444; margin-top: 1.5em; padding-top: 0.5em; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1 id="title">Style audit</h1>
<p>Embedding <b>{embedding}</b>; references: {refs}. {n} candidate track(s); {skipped} skipped.</p>
<h2>Summary</h2>
<table id="summary"><tr><th>candidate</th>{ref_headers}<th>closest</th><th>bootstrap confidence</th><th>attributed (calibrated P)</th><th>near-copy</th></tr>
{rows}
</table>
<h2>FAD per track</h2><img id="fad-plot" alt="FAD per track" src="{fad_plot}">
<h2>Embedding map</h2><img id="embedding-map" alt="embedding map" src="{emb_map}">
<h2>Artist profiles</h2>
<table><tr><th>artist</th><th>tracks</th>{profile_headers}<th>most common keys</th></tr>{artist_rows}</table>
<h2>Candidates</h2>
{sections}
</body></html>
"""


def write_report(audit: dict[str, Any], path: str | Path) -> Path:
    """Write the audit's HTML report (and its audio excerpts) to ``path``.

    Args:
        audit: The record returned by :func:`~stylecraft.evaluate.audit.run_audit` (with its
            ``_rows`` embeddings, which the embedding map needs).
        path: The ``.html`` file to write.

    Returns:
        ``path``.
    """
    path = Path(path)
    assets = path.parent / f"{path.stem}_files"
    assets.mkdir(parents=True, exist_ok=True)
    names = list(audit["references"])
    esc = html.escape

    ref_rows = {n: np.asarray(audit["_rows"]["references"][n]) for n in names}
    cand_rows = {p: np.asarray(r) for p, r in audit["_rows"]["candidates"].items()}

    rows_html = []
    sections = []
    for i, c in enumerate(audit["candidates"]):
        mem = c["memorization"]
        fp = mem["fingerprint"]
        copy = '<span class="copy">yes</span>' if mem["near_copy"] else "no"
        probs = c["probabilities"] or {}
        rows_html.append(
            "<tr><td>" + esc(Path(c["path"]).name) + "</td>"
            + "".join(f"<td>{c['scores'][n]:.3f}</td>" for n in names)
            + "".join(f"<td>{c['kad_scores'][n]:.3f}</td>" for n in names)
            + f"<td><b>{esc(c['closest'])}</b></td><td>{c['confidence']['bootstrap']:.0%}</td>"
            + "<td>" + esc(f"{c['attributed'] or '-'}: " + ", ".join(f"{k} {v:.0%}" for k, v in probs.items()))
            + f"</td><td>{copy}</td></tr>"
        )
        near = mem["nearest_segments"][0] if mem["nearest_segments"] else None
        clips = [(f"candidate {Path(c['path']).name} @ {near['candidate_time_s'] if near else 0:.1f} s",
                  _excerpt(c["path"], near["candidate_time_s"] if near else EXCERPT_S / 2))]
        if near:
            clips.append((f"nearest reference segment: {near['reference']} / {Path(near['path']).name} @ {near['reference_time_s']:.1f} s",
                          _excerpt(near["path"], near["reference_time_s"])))
        players = "".join(
            f'<figure><figcaption>{esc(title)}</figcaption><audio controls preload="none" src="{esc(_write_clip(assets, f"c{i}_{k}.ogg", y))}"></audio></figure>'
            for k, (title, y) in enumerate(clips)
        )
        nearest_rows = "".join(
            f"<tr><td>{esc(s['reference'])}</td><td>{esc(Path(s['path']).name)}</td><td>{s['reference_time_s']:.1f}</td>"
            f"<td>{s['candidate_time_s']:.1f}</td><td>{s['distance']:.3f}</td><td>{_num(s['relative_distance'], '.2f')}</td></tr>"
            for s in mem["nearest_segments"]
        )
        fp_text = (
            f"best aligned match: {esc(Path(fp['reference']).name)} at offset {fp['offset_s']:.2f} s, "
            f"{fp['aligned']} of {fp['n_hashes']} hashes ({fp['fraction']:.1%})" if fp["reference"] else "no shared hashes"
        )
        prof = c["profile"]
        sections.append(
            f'<div class="cand" id="cand-{i}"><h3>{esc(Path(c["path"]).name)}</h3>'
            f"<p>closest: <b>{esc(c['closest'])}</b> (bootstrap {c['confidence']['bootstrap']:.0%}); "
            f"tempo {prof['tempo_bpm']:.0f} BPM, {esc(prof['key'])}, "
            f"{_num(prof['loudness_lufs'], '.1f')} LUFS</p>"
            f'<img alt="style profile" src="{_profile_plot(audit, c)}">'
            f"<p>Memorisation: near-copy <b>{'YES' if mem['near_copy'] else 'no'}</b>; fingerprint {fp_text}.</p>"
            "<table><tr><th>reference</th><th>track</th><th>ref. time (s)</th><th>cand. time (s)</th><th>distance</th>"
            f"<th>relative to usual</th></tr>{nearest_rows}</table>"
            f'<img alt="spectrograms" src="{_spectrograms(clips)}">{players}</div>'
        )

    def stat(p: dict[str, Any], key: str) -> str:
        s = p.get(key)
        return "n/a" if s is None else f"{s['mean']:.4g} ± {s['std']:.2g}"

    artist_rows = "".join(
        f"<tr><td>{esc(n)}</td><td>{audit['references'][n]['profile']['n_tracks']}</td>"
        + "".join(f"<td>{stat(audit['references'][n]['profile'], k)}</td>" for k in NUMERIC_PROFILE)
        + "<td>" + esc(", ".join(f"{k} ({v})" for k, v in list(audit["references"][n]["profile"]["keys"].items())[:3])) + "</td></tr>"
        for n in names
    )
    page = _PAGE.format(
        embedding=esc(audit["embedding"]),
        refs=esc(", ".join(f"{n} ({len(audit['references'][n]['files'])} tracks)" for n in names)),
        n=len(audit["candidates"]),
        skipped=len(audit["skipped"]),
        ref_headers="".join(f"<th>FAD to {esc(n)}</th>" for n in names) + "".join(f"<th>KAD to {esc(n)}</th>" for n in names),
        rows="\n".join(rows_html),
        fad_plot=_fad_plot(audit),
        emb_map=_embedding_map(audit, ref_rows, cand_rows),
        profile_headers="".join(f"<th>{k.replace('_', ' ')}</th>" for k in NUMERIC_PROFILE),
        artist_rows=artist_rows,
        sections="\n".join(sections),
    )
    atomic_write_text(path, page)
    return path
