"""Per-track captions: the text condition a track's windows and variants are trained with.

``captions.mode`` chooses what a caption says:

* ``artist``: ``"<artist> style"``;
* ``analysis``: the artist, then the tempo and key estimated from the audio
  (``"<artist> style, 96 bpm, A minor"``; :func:`analyse`);
* ``tags``: analysis, then musicnn's most likely genre, instrument and mood tags
  (``"..., classical, strings, sad"``; :class:`MusicnnTagger`, needs ``stylecraft fetch musicnn``);
* ``file``: the user's own caption per file, from a CSV or JSONL file of ``path, caption`` rows
  (:func:`read_caption_file`).

``captions.artist_from: folder`` names each track's artist after its first folder under the
catalogue (a multi-artist corpus); ``recipe`` uses the recipe's ``artist``.

Augmented variants get their caption rewritten (:func:`variant_caption`): a pitch shift
transposes the key, a time stretch scales the tempo. Keys are spelled with sharps, as the key
estimator names them, so one key is always one string.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stylecraft.errors import ConfigError, ModelNotFoundError, StageInputError

MODES = ("artist", "analysis", "tags", "file")
ARTIST_FROM = ("recipe", "folder")
ANALYSIS_SR = 16000  # rate of the excerpt that tempo, key and tags are estimated from
KEY_SPAN_S = 120.0  # the middle of the excerpt that the key and tempo are read from
TEMPO_WINDOW_S = 10.0  # tempo is the median of estimates over windows of this length,
TEMPO_WINDOWS = 8  # this many from the middle (librosa's tempogram costs ~20 ms per 10 s window)

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_LETTER = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTAL = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1}
# "A minor", "Bb major", "F♯ minor": an upper-case note letter not inside a word.
_KEY_RE = re.compile(r"(?<![\w-])([A-G])([#♯b♭]?)\s+(major|minor)(?![\w-])")
_BPM_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*bpm\b", re.IGNORECASE)


@dataclass(frozen=True)
class CaptionSettings:
    """The recipe's ``captions`` section, plus the artist and catalogue it applies to."""

    mode: str = "analysis"
    artist_from: str = "recipe"
    file: str = ""
    artist: str = "artist"
    catalogue: str = ""

    @property
    def needs_analysis(self) -> bool:
        return self.mode in ("analysis", "tags")


@dataclass(frozen=True)
class TrackCaption:
    """What a track's caption is made of, and the caption itself."""

    artist: str
    caption: str
    tempo_bpm: float | None = None
    key: str | None = None
    tags: list[str] = field(default_factory=list)


# --- formatting and rewriting --------------------------------------------------------------


def format_caption(artist: str, tempo_bpm: float | None = None, key: str | None = None, tags: list[str] | None = None) -> str:
    """``"<artist> style[, <bpm> bpm][, <key>][, <tag>…]"``; unknown parts are left out."""
    parts = [f"{artist} style"]
    if tempo_bpm:
        parts.append(f"{tempo_bpm:.0f} bpm")
    if key and key != "unknown key":
        parts.append(key)
    parts.extend(tags or [])
    return ", ".join(parts)


def transpose_key(key: str, semitones: int) -> str:
    """``"A minor"`` moved by ``semitones`` (``+2`` -> ``"B minor"``), spelled with sharps.

    Raises:
        ValueError: ``key`` is not ``"<note> major|minor"``.
    """
    m = _KEY_RE.fullmatch(key.strip())
    if m is None:
        raise ValueError(f"not a key: {key!r}")
    return _transposed(m, semitones)


def _transposed(m: re.Match[str], semitones: int) -> str:
    pc = (_LETTER[m.group(1)] + _ACCIDENTAL[m.group(2)] + semitones) % 12
    return f"{PITCH_CLASSES[pc]} {m.group(3)}"


def variant_caption(caption: str, kind: str, value: float) -> str:
    """The caption of a variant: key transposed by a pitch shift, tempo scaled by a time stretch.

    A stretch by rate ``r`` plays ``r`` times faster (librosa's ``time_stretch``), so ``N bpm``
    becomes ``N * r bpm``. Every ``"<note> major|minor"`` and ``"<number> bpm"`` in the caption is
    rewritten, so a user's own captions (``captions.mode: file``) are rewritten too. A shift by a
    fraction of a semitone lies between keys: the key is left out then.
    """
    if kind == "stretch":
        return _BPM_RE.sub(lambda m: f"{float(m.group(1)) * value:.0f} bpm", caption)
    if kind == "pitch":
        if float(value).is_integer():
            return _KEY_RE.sub(lambda m: _transposed(m, int(value)), caption)
        out = _KEY_RE.sub("", caption)
        return re.sub(r"(,\s*){2,}", ", ", out).strip().strip(",").strip()
    raise ValueError(f"unknown variant kind {kind!r}")


# --- artist ---------------------------------------------------------------------------------


def artist_of(path: str, settings: CaptionSettings) -> str:
    """The track's artist: the recipe's, or the name of its first folder under the catalogue.

    Raises:
        StageInputError: with ``artist_from: folder``, the file lies directly in the catalogue.
    """
    if settings.artist_from == "recipe":
        return settings.artist
    rel = Path(path).relative_to(settings.catalogue).parts
    if len(rel) < 2:
        raise StageInputError(
            f"captions.artist_from=folder: '{path}' lies directly in the catalogue, not in an artist's folder; "
            "put each artist's files in a folder named after the artist"
        )
    return rel[0]


# --- the user's caption file ----------------------------------------------------------------


def read_caption_file(path: str | Path, catalogue: str | Path) -> dict[str, str]:
    """Captions from a CSV (header ``path,caption``) or JSONL (``{"path": …, "caption": …}``) file.

    Paths may be relative to the catalogue or absolute. Returns resolved absolute path -> caption.

    Raises:
        ConfigError: the file is missing, unreadable, lacks the columns, holds an empty caption
            or two different captions for one file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"captions.file '{p}' does not exist: give a CSV or JSONL file of path, caption rows")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"captions.file '{p}' cannot be read as UTF-8 text: {exc}") from None
    rows = _jsonl_rows(p, text) if p.suffix.lower() in (".jsonl", ".json") else _csv_rows(p, text)
    root = Path(catalogue).expanduser().resolve()
    out: dict[str, str] = {}
    for line, (rel, caption) in rows:
        if not caption.strip():
            raise ConfigError(f"captions.file '{p}' line {line}: empty caption for '{rel}'")
        target = str((root / rel).resolve() if not Path(rel).is_absolute() else Path(rel).resolve())
        if out.get(target, caption.strip()) != caption.strip():
            raise ConfigError(f"captions.file '{p}' line {line}: a second, different caption for '{rel}'")
        out[target] = caption.strip()
    return out


def _csv_rows(p: Path, text: str) -> list[tuple[int, tuple[str, str]]]:
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or not {"path", "caption"} <= {f.strip() for f in reader.fieldnames}:
        raise ConfigError(f"captions.file '{p}': a CSV needs a header row with the columns path and caption")
    return [(i + 2, (str(r.get("path") or "").strip(), str(r.get("caption") or ""))) for i, r in enumerate(reader)]


def _jsonl_rows(p: Path, text: str) -> list[tuple[int, tuple[str, str]]]:
    rows = []
    for i, ln in enumerate(text.splitlines(), start=1):
        if not ln.strip():
            continue
        try:
            obj = json.loads(ln)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"captions.file '{p}' line {i} is not JSON: {exc.msg}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("path"), str) or not isinstance(obj.get("caption"), str):
            raise ConfigError(f"captions.file '{p}' line {i}: expected {{\"path\": \"…\", \"caption\": \"…\"}}")
        rows.append((i, (obj["path"].strip(), obj["caption"])))
    return rows


def captions_from_file(paths: list[str], captions: dict[str, str], file: str) -> list[str]:
    """The caption of each path, in order.

    Raises:
        StageInputError: some paths have no caption in the file (how many, and the first few).
    """
    found = [captions.get(str(Path(p).resolve())) for p in paths]
    missing = [p for p, c in zip(paths, found, strict=True) if c is None]
    if missing:
        first = ", ".join(f"'{m}'" for m in missing[:3])
        raise StageInputError(
            f"captions.file '{file}' has no caption for {len(missing)} of {len(paths)} catalogue file(s), e.g. {first}: "
            "add a path, caption row for each"
        )
    return [c for c in found if c is not None]


# --- analysis: tempo and key ----------------------------------------------------------------


def _middle(y: np.ndarray, seconds: float, sr: int) -> np.ndarray:
    n = int(seconds * sr)
    start = max(0, (y.shape[0] - n) // 2)
    return y[start : start + n]


def analyse(excerpt: np.ndarray, sample_rate: int = ANALYSIS_SR) -> tuple[float | None, str | None]:
    """Tempo (BPM) and key of a mono excerpt.

    The key is the Krumhansl-Schmuckler estimate on a long-window chroma of the middle two minutes
    (:func:`stylecraft.data.features.estimate_key`); the tempo is the median of librosa's tempo
    estimates over the middle eight 10 s windows (:func:`stylecraft.data.features.estimate_tempo`),
    with the segment features' time resolution (hop of 16 ms).

    Returns:
        ``(tempo_bpm, key)``, each None when the audio gives no estimate (silence, too short).
    """
    from stylecraft.data import features as feat

    y = np.ascontiguousarray(_middle(excerpt, KEY_SPAN_S, sample_rate), dtype=np.float32)
    if not y.size or float(np.max(np.abs(y))) < 1e-5:  # silence: librosa's tempo prior would still answer ~120
        return None, None
    key = feat.estimate_key(feat.chroma_of_audio(y, sample_rate))
    win = int(TEMPO_WINDOW_S * sample_rate)
    mid = _middle(y, TEMPO_WINDOWS * TEMPO_WINDOW_S, sample_rate)
    n = max(1, mid.shape[0] // win)
    windows = [mid[i * win : (i + 1) * win] for i in range(n)] if mid.shape[0] >= win else [mid]
    tempo = 0.0
    if windows[0].shape[0] >= sample_rate:  # at least a second of audio
        hop = int(round(0.016 * sample_rate))  # the segment features' 512 samples at 32 kHz
        fp = feat.FeatureParams(sample_rate=sample_rate, n_fft=2 * hop, hop_length=hop)
        logmel = feat.compute(np.stack(windows), fp, names=("logmel",))["logmel"]
        tempo = feat.estimate_tempo(logmel, sample_rate, fp.hop_length)
    return (round(tempo, 1) if tempo > 0 and math.isfinite(tempo) else None), (None if key == "unknown key" else key)


# --- tags: musicnn ----------------------------------------------------------------------------

# Which of musicnn's tags answer "genre", "instrument" and "mood" (MSD: Million Song Dataset tags,
# MTT: MagnaTagATune tags; stylecraft.evaluate.embeddings.musicnn). Decades, voices and loudness are left out.
GENRE_TAGS = {
    "msd": ("rock", "pop", "alternative", "indie", "electronic", "dance", "alternative rock", "jazz", "metal",
            "chillout", "classic rock", "soul", "indie rock", "electronica", "folk", "punk", "blues", "hard rock",
            "ambient", "experimental", "Hip-Hop", "country", "easy listening", "funk", "electro", "heavy metal",
            "Progressive rock", "rnb", "indie pop", "House"),
    "mtt": ("classical", "techno", "electronic", "rock", "ambient", "indian", "opera", "pop", "new age", "dance",
            "country", "metal"),
}
INSTRUMENT_TAGS = {
    "mtt": ("guitar", "strings", "drums", "piano", "violin", "synth", "harpsichord", "flute", "sitar", "harp",
            "cello", "choir"),
}
MOOD_TAGS = {
    "msd": ("beautiful", "Mellow", "chill", "sad", "happy", "sexy", "catchy", "party"),
}


class MusicnnTagger:
    """musicnn's MSD and MTT taggers over one front end: a track's top genre, instrument and mood."""

    def __init__(self, msd: Any, mtt: Any) -> None:
        self.models = {"msd": msd, "mtt": mtt}

    @classmethod
    def from_registry(cls) -> MusicnnTagger:
        """The published weights, after ``stylecraft fetch musicnn``.

        Raises:
            ModelNotFoundError: the weights are not on this machine (one line naming the fetch command).
        """
        from stylecraft.evaluate.embeddings.musicnn import MusicnnEmbedding

        try:
            return cls(MusicnnEmbedding.from_registry("msd"), MusicnnEmbedding.from_registry("mtt"))
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"captions.mode=tags needs musicnn's weights: {exc}") from None

    @property
    def weights_id(self) -> str:
        return "|".join(str(m.weights_id) for m in self.models.values())

    def tag(self, audio: np.ndarray, sample_rate: int) -> list[str]:
        """``[genre, instrument, mood]``: the most probable tag of each group, averaged over the 3 s patches."""
        front = self.models["msd"]
        patches = front.front_end(audio, sample_rate)  # both models share musicnn's front end
        probs = {name: m.outputs(patches)[1].mean(axis=0) for name, m in self.models.items()}
        out = []
        for groups in (GENRE_TAGS, INSTRUMENT_TAGS, MOOD_TAGS):
            scored = [(float(probs[name][self.models[name].labels.index(t)]), t) for name, tags in groups.items() for t in tags]
            out.append(max(scored)[1].lower())
        return list(dict.fromkeys(out))  # "electronic" can win two groups only once

    def tag_file(self, path: str, max_s: float) -> list[str]:
        """Tags of a file's first ``max_s`` seconds (mono, 16 kHz; padded to one 3 s patch if shorter)."""
        from stylecraft.audio import io as audio_io

        audio, sr = audio_io.load(path, duration_s=max_s)
        y = audio_io.resample(audio_io.to_mono(audio), sr, ANALYSIS_SR)
        if y.shape[0] < 3 * ANALYSIS_SR + ANALYSIS_SR // 10:
            y = np.concatenate([y, np.zeros(3 * ANALYSIS_SR + ANALYSIS_SR // 10 - y.shape[0], dtype=np.float32)])
        return self.tag(y, ANALYSIS_SR)


def tag_tracks(tracks: list[tuple[str, str]], tagger: MusicnnTagger, cache_dir: Path, max_s: float,
               progress: bool = True) -> list[list[str]]:
    """Tags of each ``(path, sha256)`` track, cached per file under ``cache_dir`` (keyed by the weights).

    A rerun (or one resumed after a kill) tags only the files whose cached tags are missing or
    came from other weights.
    """
    from stylecraft.artifacts import atomic_write_json
    from stylecraft.progress import progress_iter

    out = []
    for path, sha in progress_iter(tracks, "tags (musicnn)", enabled=progress):
        cache = cache_dir / f"{sha[:16]}.json"
        rec = json.loads(cache.read_text()) if cache.is_file() else {}
        if rec.get("weights") != tagger.weights_id or rec.get("max_s") != max_s or not isinstance(rec.get("tags"), list):
            rec = {"weights": tagger.weights_id, "max_s": max_s, "tags": tagger.tag_file(path, max_s)}
            atomic_write_json(cache, rec)
        out.append([str(t) for t in rec["tags"]])
    return out


def track_captions(
    paths: list[str],
    analyses: list[tuple[float | None, str | None]],
    settings: CaptionSettings,
    file_captions: dict[str, str] | None = None,
    tags: list[list[str]] | None = None,
) -> list[TrackCaption]:
    """Each track's caption, from its path, its analysis (tempo, key) and, per mode, tags or the user's file.

    Raises:
        StageInputError: ``file`` mode and files without a caption, or ``artist_from: folder`` and
            a file outside any artist folder.
    """
    artists = [artist_of(p, settings) for p in paths]
    if settings.mode == "file":
        assert file_captions is not None, "file mode reads captions.file first"
        texts = captions_from_file(paths, file_captions, settings.file)
        return [TrackCaption(artist=a, caption=c) for a, c in zip(artists, texts, strict=True)]
    out = []
    for i, artist in enumerate(artists):
        tempo, key = analyses[i] if settings.needs_analysis else (None, None)
        t = list(tags[i]) if tags is not None and settings.mode == "tags" else []
        out.append(TrackCaption(artist=artist, caption=format_caption(artist, tempo, key, t), tempo_bpm=tempo, key=key, tags=t))
    return out
