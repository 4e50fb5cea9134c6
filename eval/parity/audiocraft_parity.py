"""Parity of stylecraft's audiocraft-format import and export with audiocraft 1.3.0 itself.

What it does
------------
1. Builds (once, cached in ``eval/.cache/envs/audiocraft``) the isolated audiocraft 1.3.0
   environment (``audiocraft_env.py``).
2. **Import** (a): audiocraft's own builders make a tiny MusicGen LM (2 layers, width 32, 4
   codebooks of 64) and EnCodec (SEANet with LSTM, RVQ 4 x 64; audiocraft's defaults
   ``true_skip`` and ``pad_mode: constant``), every weight perturbed, saved as
   ``state_dict.bin`` + ``compression_state_dict.bin``. stylecraft converts the folder into
   transformers' ``MusicgenForConditionalGeneration``; the text encoder is the tiny preset's T5,
   registered in the reference process under the name the checkpoint's config uses.
3. **Export** (b): stylecraft's ``tiny`` preset is exported in audiocraft format and loaded with
   ``MusicGen.get_pretrained(folder)``.
4. For both, the same inputs go to both sides: LM logits for the same codes and the same text
   encoder states (audiocraft: ``output_proj`` then the LM; stylecraft: ``enc_to_dec_proj`` then
   the decoder), logits end to end from text, EnCodec codes of the same audio (must be identical)
   and audio decoded from the same codes.
5. Negative control: one attention weight of the converted model transposed must move the
   logits far past the tolerance, so the check can fail.

Targets: logits max abs diff <= 1e-5, codes identical. Results go to
``eval/results/parity_audiocraft.json`` and ``.md``.

Usage::

    .venv/bin/python eval/parity/audiocraft_parity.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import audiocraft_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "eval" / "results"
LOGIT_TOL = 1e-5
TIE_TOL = 1e-6  # gap between two centres' distances, relative to |x|^2 + |e|^2, below which float32 rounding decides
T5_NAME = "stylecraft/t5-d64"
# Equal token counts (byte tokenizer): no padding, where the two sides differ by design (see compare()).
TEXTS = ["warm analog synth arpeggio", "solo piano, slow and quiet"]
TEXTS_PADDED = ["warm analog synth arpeggio, 120 bpm", "solo piano"]


def make_inputs(path: Path, card: int, n_q: int, t5_dim: int, sample_rate: int, seed: int = 0,
                channels: int = 1) -> dict[str, np.ndarray]:
    """Codes [B, K, T] (special token included), text states [B, L, D], full mask, audio [B, C, S]."""
    rng = np.random.default_rng(seed)
    t = np.arange(sample_rate) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 331 * t * (1 + 0.1 * t))
    audio = np.stack([tone, 0.2 * rng.standard_normal(sample_rate)])[:, None, :].astype(np.float32)
    if channels == 2:  # left: tone / noise; right: the other one, so the channels differ
        audio = np.concatenate([audio, audio[::-1]], axis=1)
    inputs = {
        "codes": rng.integers(0, card + 1, size=(2, n_q, 12)).astype(np.int64),
        "hidden": rng.standard_normal((2, 7, t5_dim)).astype(np.float32),
        "mask": np.ones((2, 7), dtype=np.int64),
        "audio": audio,
        "decode_codes": rng.integers(0, card, size=(2, n_q, 25)).astype(np.int64),
    }
    np.savez(path, **inputs)
    return inputs


@torch.no_grad()
def stylecraft_outputs(bundle: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same quantities as the reference worker's ``reference`` task, through stylecraft's model."""
    model = bundle.model
    codes = torch.from_numpy(inputs["codes"])
    b, k, t = codes.shape
    hidden = torch.from_numpy(inputs["hidden"])
    mask = torch.from_numpy(inputs["mask"])
    logits = model(encoder_outputs=(hidden,), attention_mask=mask, decoder_input_ids=codes.reshape(b * k, t)).logits
    text_logits = {}
    for key, texts in (("text_logits", TEXTS), ("text_logits_padded", TEXTS_PADDED)):
        tok = bundle.tokenizer(texts, return_tensors="pt", padding=True)
        out = model(input_ids=tok.input_ids, attention_mask=tok.attention_mask, decoder_input_ids=codes.reshape(b * k, t))
        text_logits[key] = out.logits.reshape(b, k, t, -1).numpy()
    from stylecraft.generate import beam
    from stylecraft.generate import codes as gc

    audio_enc = model.audio_encoder
    audio = torch.from_numpy(inputs["audio"])  # [B, C, S]
    latents = audio_enc.encoder(audio[:, :1])  # [B, D, T] (left channel for stereo)
    decode_codes = torch.from_numpy(inputs["decode_codes"])
    if bundle.channels == 2:  # each channel through the mono codec, codes interleaved (gc.encode_audio)
        codes_out = gc.encode_audio(bundle, inputs["audio"]).numpy()
        decoded = gc.decode_codes(bundle, decode_codes)
    else:
        codes_out = audio_enc.encode(audio, bandwidth=bundle.bandwidth).audio_codes[0].numpy()
        decoded = audio_enc.decode(decode_codes[None], [None]).audio_values.numpy()
    delays = gc.codebook_delays(bundle)
    pattern = np.stack([beam.delayed_layout(delays, c, 0, bundle.pad_token_id)[0].numpy() for c in codes])
    return {
        "logits": logits.reshape(b, k, t, -1).numpy(),
        **text_logits,
        "codes": codes_out,  # [B, K, T]
        "latents": latents.numpy(),
        "decoded": np.asarray(decoded),
        "pattern": pattern,  # [B, K, T + max delay + 1]: the delayed sequence sampling and training use
    }


def compare(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("logits", "text_logits", "text_logits_padded", "latents", "decoded"):
        a, r = ours[key], ref[key]
        if a.shape != r.shape:
            out[f"{key}_shape_mismatch"] = [list(a.shape), list(r.shape)]
            out[f"{key}_max_abs_diff"] = float("inf")
            continue
        out[f"{key}_max_abs_diff"] = float(np.abs(a - r).max())
        out[f"{key}_max_abs"] = float(np.abs(r).max())
    out["pattern_identical"] = bool(ours["pattern"].shape == ref["pattern"].shape and np.array_equal(ours["pattern"], ref["pattern"]))
    out["codes_mismatches"] = int((ours["codes"] != ref["codes"]).sum()) if ours["codes"].shape == ref["codes"].shape else -1
    out["codes_identical"] = bool(ours["codes"].shape == ref["codes"].shape and np.array_equal(ours["codes"], ref["codes"]))
    out["codes_shape"] = list(ref["codes"].shape)
    out["codes_distinct"] = int(len(np.unique(ref["codes"])))
    return out


@torch.no_grad()
def code_ties(bundle: Any, audio: np.ndarray, ours: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Where the two sides' codes first differ per frame, how close the two choices were.

    Each codebook picks the centre nearest to the residual; when two centres are (nearly) equally
    near, float rounding of the distance decides, and every later codebook of that frame follows
    from the different residual. For each frame's first differing codebook this returns the
    gap between the squared distances of the two picks relative to the size of the terms both
    sides round (``|x|^2 + |e|^2``), computed on stylecraft's latents.
    """
    enc = bundle.model.audio_encoder
    residual = enc.encoder(torch.from_numpy(audio)).transpose(1, 2)  # [B, T, D]
    o, r = torch.from_numpy(ours), torch.from_numpy(ref)  # [B, K, T]
    diverged = torch.zeros(o.shape[0], o.shape[2], dtype=torch.bool)
    gaps: list[float] = []
    for k, layer in enumerate(enc.quantizer.layers[: o.shape[1]]):
        embed = layer.codebook.embed  # [bins, D]
        d_o = ((residual - embed[o[:, k]]) ** 2).sum(-1)  # [B, T]
        d_r = ((residual - embed[r[:, k]]) ** 2).sum(-1)
        first = (o[:, k] != r[:, k]) & ~diverged
        # Both sides compute |x|^2 - 2 x.e + |e|^2 in float32, whose rounding scales with the terms, not the result.
        scale = (residual**2).sum(-1) + (embed[o[:, k]] ** 2).sum(-1)  # [B, T]
        gaps += ((d_o - d_r).abs() / scale.clamp_min(1e-12))[first].tolist()
        diverged |= first
        residual = residual - embed[o[:, k]]
    return {"frames_diverging": int(diverged.sum()), "frames": int(diverged.numel()),
            "max_rel_distance_gap": max(gaps) if gaps else 0.0}


@torch.no_grad()
def negative_control(bundle: Any, inputs: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, Any]:
    """Transpose layer 0's self-attention query weight and measure how far the logits move."""
    q = bundle.model.decoder.model.decoder.layers[0].self_attn.q_proj
    original = q.weight.detach().clone()
    q.weight.copy_(original.T)
    try:
        broken = stylecraft_outputs(bundle, inputs)
    finally:
        q.weight.copy_(original)
    diff = float(np.abs(broken["logits"] - ref["logits"]).max())
    return {"perturbation": "decoder layer 0 self_attn.q_proj.weight transposed", "logits_max_abs_diff": diff,
            "detected": diff > LOGIT_TOL}


def run_import(work: Path, t5_dir: Path) -> dict[str, Any]:
    """(a) audiocraft builds and saves, stylecraft imports."""
    from stylecraft.models.audiocraft import load_audiocraft

    folder = work / "audiocraft-built"
    built = audiocraft_env.run_worker("build", {"t5_name": T5_NAME, "t5_dir": str(t5_dir), "seed": 0, "dir": str(folder)})
    bundle = load_audiocraft(folder, text_encoder=t5_dir)
    dec = bundle.model.config.decoder
    inputs = make_inputs(work / "inputs_a.npz", int(dec.vocab_size), int(dec.num_codebooks),
                         int(bundle.model.config.text_encoder.d_model), bundle.sample_rate)
    ref_info = audiocraft_env.run_worker("reference", {"t5_name": T5_NAME, "t5_dir": str(t5_dir), "dir": str(folder),
                                                       "inputs": str(work / "inputs_a.npz"), "out": str(work / "ref_a.npz"),
                                                       "texts": TEXTS, "texts_padded": TEXTS_PADDED})
    ref = dict(np.load(work / "ref_a.npz"))
    ours = stylecraft_outputs(bundle, inputs)
    result = compare(ours, ref)
    result["code_ties"] = code_ties(bundle, inputs["audio"], ours["codes"], ref["codes"])
    result.update(built=built, reference=ref_info, negative_control=negative_control(bundle, inputs, ref))
    return result


def stereo_code_ties(bundle: Any, audio: np.ndarray, ours: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """:func:`code_ties` per channel of interleaved stereo codes, merged."""
    left = code_ties(bundle, audio[:, :1], ours[:, 0::2], ref[:, 0::2])
    right = code_ties(bundle, audio[:, 1:], ours[:, 1::2], ref[:, 1::2])
    return {"frames_diverging": left["frames_diverging"] + right["frames_diverging"],
            "frames": left["frames"] + right["frames"],
            "max_rel_distance_gap": max(left["max_rel_distance_gap"], right["max_rel_distance_gap"])}


def run_export(work: Path, preset: str = "tiny") -> dict[str, Any]:
    """(b) stylecraft exports a preset (``tiny``, ``tiny-stereo``), audiocraft loads it with MusicGen.get_pretrained."""
    from stylecraft.models.audiocraft import export_model
    from stylecraft.models.loading import load_model

    bundle = load_model(preset)
    folder = work / f"stylecraft-export-{preset}"
    manifest = export_model(bundle, folder, fmt="audiocraft")
    dec = bundle.model.config.decoder
    inputs = make_inputs(work / f"inputs_{preset}.npz", int(dec.vocab_size), int(dec.num_codebooks),
                         int(bundle.model.config.text_encoder.d_model), bundle.sample_rate, seed=1,
                         channels=bundle.channels)
    ref_info = audiocraft_env.run_worker("reference", {"t5_name": manifest["t5_name"], "t5_dir": str(folder / "text_encoder"),
                                                       "dir": str(folder), "inputs": str(work / f"inputs_{preset}.npz"),
                                                       "out": str(work / f"ref_{preset}.npz"), "texts": TEXTS,
                                                       "texts_padded": TEXTS_PADDED})
    ref = dict(np.load(work / f"ref_{preset}.npz"))
    ours = stylecraft_outputs(bundle, inputs)
    result = compare(ours, ref)
    ties = stereo_code_ties if bundle.channels == 2 else code_ties
    result["code_ties"] = ties(bundle, inputs["audio"], ours["codes"], ref["codes"])
    result.update(reference=ref_info, manifest_files=sorted(manifest["files"]),
                  negative_control=negative_control(bundle, inputs, ref))
    return result


def codes_ok(r: dict[str, Any]) -> bool:
    """Identical codes, or differences that start only at float-rounding ties (see code_ties)."""
    return bool(r["codes_identical"] or (r["codes_mismatches"] >= 0 and r["code_ties"]["max_rel_distance_gap"] <= TIE_TOL))


def passed(r: dict[str, Any]) -> bool:
    return bool(r["logits_max_abs_diff"] <= LOGIT_TOL and r["text_logits_max_abs_diff"] <= LOGIT_TOL and codes_ok(r)
                and r["latents_max_abs_diff"] <= LOGIT_TOL and r["decoded_max_abs_diff"] <= LOGIT_TOL
                and r["pattern_identical"] and r["negative_control"]["detected"])


def run(work: Path) -> dict[str, Any]:
    """Both directions; returns the results record (also written by :func:`main`)."""
    from stylecraft.models.audiocraft import export_model
    from stylecraft.models.loading import load_model

    audiocraft_env.ensure_env()
    # The tiny preset's T5 and tokenizer stand in for t5-base, which no checkpoint contains.
    t5_export = work / "tiny-t5-source"
    export_model(load_model("tiny"), t5_export, fmt="audiocraft")
    result_a = run_import(work, t5_export / "text_encoder")
    result_b = run_export(work)
    result_c = run_export(work, "tiny-stereo")
    import transformers

    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "tolerance_logits_max_abs": LOGIT_TOL,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": list(os.getloadavg())},
        "versions": {"stylecraft_side": {"torch": torch.__version__, "transformers": transformers.__version__,
                                         "python": platform.python_version()},
                     "reference_side": result_a["reference"]["versions"]},
        "import_audiocraft_built": result_a,
        "export_loaded_by_audiocraft": result_b,
        "stereo_export_loaded_by_audiocraft": result_c,
        "passed": passed(result_a) and passed(result_b) and passed(result_c),
    }


def write_results(record: dict[str, Any]) -> None:
    from stylecraft.artifacts import atomic_write_json, atomic_write_text

    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "parity_audiocraft.json", record)
    ref_v = record["versions"]["reference_side"]
    lines = [
        "# MusicGen audiocraft-format parity (stylecraft vs audiocraft 1.3.0)",
        "",
        f"{record['date']}; {record['machine']['platform']}, {record['machine']['cpus']} CPUs, "
        f"load {record['machine']['load_avg'][0]:.2f}. Reference: audiocraft {ref_v.get('audiocraft')}, "
        f"torch {ref_v.get('torch')}, transformers {ref_v.get('transformers')} (isolated venv, torchaudio/spacy/xformers "
        f"stubbed, SDPA attention). stylecraft: torch {record['versions']['stylecraft_side']['torch']}, "
        f"transformers {record['versions']['stylecraft_side']['transformers']}.",
        "",
        f"Tolerance: logits, latents and decoded audio max abs diff <= {record['tolerance_logits_max_abs']:g}; EnCodec codes identical "
        f"or differing only from float32 rounding ties (gap <= {TIE_TOL:g}).",
        "",
        "| direction | logits (cond. states) | logits (from text) | logits (padded text, not gated) | EnCodec latents | codes identical | decoded audio | delay pattern identical | negative control (logits) | pass |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, key in (("audiocraft builds -> stylecraft imports", "import_audiocraft_built"),
                       ("stylecraft exports -> `MusicGen.get_pretrained`", "export_loaded_by_audiocraft"),
                       ("stylecraft exports tiny-stereo -> `MusicGen.get_pretrained`", "stereo_export_loaded_by_audiocraft")):
        r = record[key]
        lines.append(
            f"| {label} | {r['logits_max_abs_diff']:.2e} | {r['text_logits_max_abs_diff']:.2e} | "
            f"{r['text_logits_padded_max_abs_diff']:.2e} | {r['latents_max_abs_diff']:.2e} | "
            f"{r['codes_identical']} ({r['codes_mismatches']} of {np.prod(r['codes_shape'])} differ; {r['code_ties']['frames_diverging']} "
            f"frames, max gap {r['code_ties']['max_rel_distance_gap']:.1e}) | {r['decoded_max_abs_diff']:.2e} | "
            f"{r['pattern_identical']} | {r['negative_control']['logits_max_abs_diff']:.2e} | {passed(r)} |"
        )
    lines += [
        "",
        "Logits: max abs diff over `[B=2, K=4, T=12, card]` for the same codes and the same text encoder states "
        "(all-ones mask), and end to end from two prompts through each side's tokenizer and T5. Decoded audio: max abs "
        "diff of EnCodec decoding the same codes `[2, 4, 25]`. Negative control: layer 0's self-attention query weight "
        "transposed in stylecraft's model.",
        "",
        "Codes: where the sides differ, the table gives the frames whose first differing codebook starts the "
        "difference and the largest gap between the two picked centres' squared distances relative to "
        f"|x|^2 + |e|^2 (both sides round that expansion in float32); at or below {TIE_TOL:g} the pick is a rounding "
        "tie (later codebooks of that frame follow from the other residual). Larger gaps fail the check.",
        "",
        "Stereo: `tiny-stereo` (8 codebooks, left and right interleaved) exported with `interleave_stereo_codebooks.use`; "
        "audiocraft wraps the mono codec in `InterleaveStereoCompressionModel`. Logits over `[B=2, K=8, T=12, card]`; codes of "
        "stereo audio `[2, 2, S]` (left and right differ) against stylecraft's per-channel encoding interleaved; decoded stereo "
        "audio of codes `[2, 8, 25]`; latents of the left channel. Delay pattern: audiocraft's "
        "`pattern_provider.get_pattern(T).build_pattern_sequence` against the layout stylecraft samples, scores and trains on "
        "(delays 0,0,1,1,2,2,3,3 for stereo; 0,1,2,3 for mono).",
        "",
        "Padded text batches are not gated: transformers' MusicGen masks padded text positions out of "
        "cross-attention, audiocraft attends to them as zero vectors, so prompts of different token lengths in one "
        "batch give different logits by design (stylecraft follows transformers). Unpadded prompts agree.",
        "",
        "The text encoder in both directions is the tiny preset's T5 (no t5-base weights are reachable offline), "
        "registered in the reference process under the name the exported config uses; audiocraft's T5Conditioner "
        "accepts only the T5 names it lists, so real models (t5-base) need no registration.",
        "",
        f"Overall: {'PASS' if record['passed'] else 'FAIL'}. Rerun: `make parity` or `python eval/parity/audiocraft_parity.py`.",
        "",
    ]
    atomic_write_text(RESULTS / "parity_audiocraft.md", "\n".join(lines))


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="audiocraft-parity-"))
    try:
        record = run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results(record)
    print(json.dumps({k: record[k] for k in ("passed",)}))
    for key in ("import_audiocraft_built", "export_loaded_by_audiocraft", "stereo_export_loaded_by_audiocraft"):
        r = record[key]
        print(key, {k: v for k, v in r.items() if k.endswith("diff") or k == "codes_identical"}, r["negative_control"])
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
