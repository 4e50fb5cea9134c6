"""tokenize: EnCodec codes [K, T] for every window and variant, and the dataset that reads them.

Codes are written per track as int16 shards ``tokens/<track_id>.npy`` [items, K, T] (memory-mapped
at training time, so ranks share pages instead of copying) with ``tokens/index.jsonl`` listing
every item: id, track, split, kind, row and caption.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from stylecraft.artifacts import atomic_save_npy, atomic_write_json, read_jsonl, sha256_file, sha256_json
from stylecraft.audio.io import resample
from stylecraft.data.augment import load_variant_shard
from stylecraft.data.manifest import Variant, Window, check_row, load_rows, save_rows
from stylecraft.data.segment import load_track_audio, load_track_stereo
from stylecraft.errors import StageInputError
from stylecraft.progress import make_progress


@torch.no_grad()
def encode_batch(bundle: Any, audio: np.ndarray) -> np.ndarray:
    """EnCodec codes of clips at the model's rate -> int16 ``[B, K, T]``.

    ``audio`` is mono ``[B, samples]``, or ``[B, 2, samples]`` for a stereo model, whose K = 2 x
    the codec's codebooks are the left and right codes interleaved (audiocraft's layout).
    """
    if audio.ndim == 3:
        from stylecraft.generate.codes import encode_audio

        return encode_audio(bundle, audio).numpy().astype(np.int16)
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[:, None, :]
    x = x.to(bundle.model.device)
    out = bundle.model.audio_encoder.encode(x, bandwidth=bundle.bandwidth)
    codes = out.audio_codes  # [chunks=1, B, K, T]
    assert codes.shape[0] == 1, "EnCodec chunking must be disabled for MusicGen"
    return codes[0].cpu().numpy().astype(np.int16)


def tokenize(run_dir: str | Path, bundle: Any, segment_rate: int, batch_size: int = 8) -> list[dict[str, Any]]:
    """Encode every window (all splits) and variant (train) of the run; write shards and the index.

    Tracks whose shard and record match the current inputs and model are kept as they are.
    """
    run = Path(run_dir)
    wpath, vpath = run / "windows.jsonl", run / "variants.jsonl"
    if not wpath.exists():
        raise StageInputError(f"'{wpath}' is missing: run `stylecraft segment` first")
    windows = load_rows(wpath, Window)
    variants = load_rows(vpath, Variant) if vpath.exists() else []
    model_sig = sha256_json({"source": bundle.source, "config": bundle.model.config.audio_encoder.to_dict()})
    if getattr(bundle, "channels", 1) == 2:  # stereo codes differ from mono ones of the same codec
        model_sig = sha256_json([model_sig, "stereo"])
    by_track: dict[str, tuple[list[Window], list[Variant]]] = {}
    for w in windows:
        by_track.setdefault(w.track_id, ([], []))[0].append(w)
    for v in variants:
        by_track.setdefault(v.track_id, ([], []))[1].append(v)

    index: list[dict[str, Any]] = []
    with make_progress() as prog:
        task = prog.add_task("tokenize", total=len(by_track))
        for tid, (wins, vars_) in by_track.items():
            items = _track_items(wins, vars_)
            # Codes depend on the audio, not on the captions: a caption change rewrites only the index.
            audio_items = [{k: v for k, v in it.items() if k != "caption"} for it in items]
            sig = sha256_json({"model": model_sig, "items": audio_items, "rate": segment_rate,
                               "audio": _audio_hashes(run, tid, vars_)})
            rec_path = run / "tokens" / f"{tid}.json"
            shard = run / "tokens" / f"{tid}.npy"
            rec = json.loads(rec_path.read_text()) if rec_path.exists() else None
            if not (rec and rec["sig"] == sig and shard.exists() and sha256_file(shard) == rec["sha256"]):
                codes = _encode_track(run, bundle, tid, wins, vars_, segment_rate, batch_size)
                rec = {"track_id": tid, "sig": sig, "sha256": atomic_save_npy(shard, codes), "shape": list(codes.shape)}
                atomic_write_json(rec_path, rec)
            for row, item in enumerate(items):
                index.append({**item, "track_id": tid, "row": row, "frames": rec["shape"][2]})
            prog.advance(task)
    save_rows(run / "tokens" / "index.jsonl", index)
    return index


def _audio_hashes(run: Path, tid: str, vars_: list[Variant]) -> list[str | None]:
    """sha256 of the track's segmented audio and of the variant shards its items are read from."""
    seg = run / "segment" / f"{tid}.json"
    out = [json.loads(seg.read_text()).get("hashes", {}).get("audio") if seg.exists() else None]
    for shard in sorted({v.shard for v in vars_}):
        rec = run / (shard[: -len(".npy")] + ".json")
        out.append(json.loads(rec.read_text()).get("sha256") if rec.exists() else None)
    return out


def _track_items(wins: list[Window], vars_: list[Variant]) -> list[dict[str, Any]]:
    items = [{"id": w.id, "split": w.split, "kind": "window", "caption": w.caption} for w in wins]
    items += [{"id": v.id, "split": v.split, "kind": v.kind, "caption": v.caption} for v in vars_]
    return items


def _encode_track(
    run: Path, bundle: Any, tid: str, wins: list[Window], vars_: list[Variant], rate: int, batch_size: int
) -> np.ndarray:
    stereo = getattr(bundle, "channels", 1) == 2
    clips: list[np.ndarray] = []  # [samples] mono, or [samples, 2] for a stereo model
    if wins:
        track = load_track_stereo(run, tid) if stereo else load_track_audio(run, tid)
        for w in wins:
            start = int(round(w.start_s * rate))
            clips.append(track[start : start + int(round(w.duration_s * rate))])
    shards: dict[str, np.ndarray] = {}
    for v in vars_:
        if v.shard not in shards:
            shards[v.shard] = load_variant_shard(run, v.shard)
        clip = np.asarray(shards[v.shard][v.row], dtype=np.float32) / 32767.0
        # Augmented variants are rendered in mono; a stereo model sees them on both sides.
        clips.append(np.stack([clip, clip], axis=1) if stereo else clip)
    out = []
    for i in range(0, len(clips), batch_size):
        batch = np.stack(clips[i : i + batch_size])  # [B, samples] or [B, samples, 2]
        if rate != bundle.sample_rate:
            batch = np.stack([resample(c, rate, bundle.sample_rate) for c in batch]) if stereo \
                else resample(batch.T, rate, bundle.sample_rate).T
        out.append(encode_batch(bundle, batch.transpose(0, 2, 1) if stereo else batch))
    return np.concatenate(out)


class TokenDataset(Dataset):
    """Items of one split from ``tokens/``: ``{"codes": LongTensor [K, T], "caption": str, "id": str}``.

    Shards are opened memory-mapped on first use, so forked data workers and ranks share pages.
    """

    def __init__(self, run_dir: str | Path, split: str, kinds: tuple[str, ...] | None = None) -> None:
        self.run = Path(run_dir)
        index_path = self.run / "tokens" / "index.jsonl"
        if not index_path.exists():
            raise StageInputError(f"'{index_path}' is missing: run `stylecraft tokenize` first")
        rows = [r for r in read_jsonl(index_path) if r["split"] == split]
        for r in rows:
            check_row(r, index_path)
        if kinds is not None:
            rows = [r for r in rows if r["kind"] in kinds]
        self.rows = rows
        self._shards: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def _shard(self, tid: str) -> np.ndarray:
        if tid not in self._shards:
            self._shards[tid] = np.load(self.run / "tokens" / f"{tid}.npy", mmap_mode="r", allow_pickle=False)
        return self._shards[tid]

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        codes = torch.from_numpy(np.asarray(self._shard(row["track_id"])[row["row"]], dtype=np.int64))
        return {"codes": codes, "caption": row["caption"], "id": row["id"]}
