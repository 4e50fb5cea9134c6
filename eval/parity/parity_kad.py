"""Kernel Audio Distance parity: stylecraft vs kadtk 1.1.0 on the same embedding arrays.

kadtk runs in its own venv (eval/parity/kad_env.py) on arrays saved to ``.npz``; stylecraft runs
here. Compared, all in float64 (kadtk's ``precision`` argument set to ``torch.float64``):

* ``calc_kernel_audio_distance`` with its defaults (Gaussian kernel, bandwidth = median pairwise
  distance of the evaluated set, which kadtk computes in float32, ×100) on N from 10 to 5,000 and
  D from 8 to 512, identical sets, duplicated rows, a single row, and heavy-tailed and
  large-offset (ReLU-like) embeddings;
* the same at a bandwidth both are given (kadtk's median of ``y``), which isolates the estimator
  from the float32 rounding of kadtk's median;
* the options against kadtk's ``bandwidth=`` argument: a fixed bandwidth, and the bandwidth of
  the reference set;
* KAD∞ against ``KernelAudioDistance.score_inf`` (same seed) and per-track KAD against
  ``score_individual``;
* negative controls, which must differ: the bandwidth of the wrong set, the ``unbiased``
  estimator where kadtk keeps the cross diagonal, and an input scaled by 1 + 1e-5.

Usage::

    python eval/parity/parity_kad.py     # writes eval/results/parity_kad.{json,md}
"""

from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kad_env import ROOT, run_worker  # noqa: E402

from stylecraft.artifacts import atomic_write_json, atomic_write_text  # noqa: E402
from stylecraft.errors import StylecraftError  # noqa: E402
from stylecraft.evaluate.kad import kad_inf, kernel_audio_distance, per_track_kad  # noqa: E402

TOLERANCE = 1e-6
RESULTS = ROOT / "eval" / "results"


def _correlated(rng: np.random.Generator, n: int, d: int, shift: float, rank: int | None = None) -> np.ndarray:
    """Rows with a non-trivial covariance (a random mixing matrix), like real embeddings."""
    k = rank or d
    mix = rng.normal(size=(k, d)) / np.sqrt(k)
    return rng.normal(size=(n, k)) @ mix + shift


def make_cases(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``(x, y)`` = (reference, evaluated) float64 arrays per case name."""
    rng = np.random.default_rng(seed)
    same = _correlated(rng, 400, 64, 0.0)
    dup_y = _correlated(rng, 300, 32, 0.2)
    dup_x = _correlated(rng, 500, 32, 0.0)
    dup_x[250:] = dup_x[:250]
    return {
        "n10_d8": (_correlated(rng, 10, 8, 0.0), _correlated(rng, 10, 8, 0.5)),
        "n12_vs_n10_d8": (_correlated(rng, 12, 8, 0.0), _correlated(rng, 10, 8, 0.1)),
        "n100_d16": (_correlated(rng, 100, 16, 0.0), _correlated(rng, 80, 16, 0.3)),
        "same_distribution_n1000_d128": (_correlated(rng, 1000, 128, 0.0), _correlated(rng, 1000, 128, 0.0)),
        "n2000_d512": (_correlated(rng, 2000, 512, 0.0), _correlated(rng, 1500, 512, 0.05)),
        "n5000_d128": (_correlated(rng, 5000, 128, 0.0), _correlated(rng, 5000, 128, 0.02)),
        "n3000_d8_heavy_tails": (rng.standard_t(3, size=(3000, 8)), rng.standard_t(3, size=(2500, 8)) * 1.1),
        "relu_offset_n1500_d128": (
            np.maximum(_correlated(rng, 1500, 128, 0.2), 0) * 3 + 50.0,
            np.maximum(_correlated(rng, 1200, 128, 0.25), 0) * 3 + 50.0,
        ),
        "rank_deficient_n800_d256_rank10": (_correlated(rng, 800, 256, 0.0, rank=10), _correlated(rng, 700, 256, 0.1, rank=10)),
        "identical_sets_n400_d64": (same, same.copy()),
        "duplicated_rows_n600_d32": (dup_x, np.concatenate([dup_y, dup_y])),
        "single_row_evaluated_d16": (_correlated(rng, 50, 16, 0.0), _correlated(rng, 1, 16, 0.0)),
        "single_row_reference_d16": (_correlated(rng, 1, 16, 0.0), _correlated(rng, 50, 16, 0.0)),
        "all_rows_identical_evaluated_d16": (_correlated(rng, 50, 16, 0.0), np.repeat(_correlated(rng, 1, 16, 0.0), 40, axis=0)),
    }


def rel_diff(x: float, ref: float) -> float:
    return abs(x - ref) / abs(ref) if ref != 0 else abs(x - ref)


def _ours(x: np.ndarray, y: np.ndarray, **kw: Any) -> tuple[float | None, str | None]:
    try:
        return kernel_audio_distance(x, y, **kw).kad, None
    except StylecraftError as exc:
        return None, str(exc)


def _kadtk(workdir: Path, cases: dict[str, tuple[np.ndarray, np.ndarray]], tag: str,
           bandwidths: dict[str, float] | None = None) -> dict[str, Any]:
    npz = workdir / f"{tag}.npz"
    np.savez(npz, **{f"{k}_{s}": arr for k, (x, y) in cases.items() for s, arr in (("x", x), ("y", y))})
    args: dict[str, Any] = {"npz": str(npz), "cases": list(cases), "precision": "float64"}
    if bandwidths:
        args["bandwidths"] = bandwidths
    return run_worker("kad", args)


def _compare_row(name: str, x: np.ndarray, y: np.ndarray, ref: dict[str, Any], mine: float | None,
                 mine_error: str | None) -> dict[str, Any]:
    kadtk_value = ref.get("kad")
    row: dict[str, Any] = {"case": name, "shape_ref": list(x.shape), "shape_eval": list(y.shape),
                           "stylecraft": mine, "kadtk": kadtk_value}
    if mine_error is not None:
        row["stylecraft_error"] = mine_error
    if "kad_error" in ref:
        row["kadtk_error"] = ref["kad_error"]
    finite = kadtk_value is not None and np.isfinite(kadtk_value)
    if mine is not None and finite:
        row["rel_diff"] = rel_diff(mine, kadtk_value)
        row["ok"] = row["rel_diff"] <= TOLERANCE
    else:
        # Agreement on "no number": kadtk gives NaN (0/0 pair means) where stylecraft refuses.
        row["ok"] = None
    return row


def run_defaults(workdir: Path) -> dict[str, Any]:
    """Defaults on every case, then the estimator alone at kadtk's own (float32) bandwidth."""
    cases = make_cases()
    ref = _kadtk(workdir, cases, "defaults")
    rows = []
    for name, (x, y) in cases.items():
        mine, err = _ours(x, y)
        row = _compare_row(name, x, y, ref["results"][name], mine, err)
        if "median" in ref["results"][name] and mine is not None:
            h = kernel_audio_distance(x, y).bandwidth
            row["bandwidth"] = h
            row["bandwidth_kadtk"] = ref["results"][name]["median"]
            row["bandwidth_rel_diff"] = rel_diff(h, ref["results"][name]["median"])
        rows.append(row)
    # The estimator alone: both at kadtk's median.
    given = {n: r["bandwidth_kadtk"] for n, r in zip(cases, rows, strict=True) if "bandwidth_kadtk" in r}
    ref_given = _kadtk(workdir, {n: cases[n] for n in given}, "given", bandwidths=given)
    at_bandwidth = []
    for name, h in given.items():
        x, y = cases[name]
        mine, err = _ours(x, y, bandwidth=h)
        at_bandwidth.append(_compare_row(name, x, y, ref_given["results"][name], mine, err))
    return {"cases": rows, "at_kadtk_bandwidth": at_bandwidth, "versions": ref["versions"]}


def run_options(workdir: Path) -> dict[str, Any]:
    """Fixed bandwidth and reference-set bandwidth against kadtk's ``bandwidth=`` argument."""
    cases = {k: v for k, v in make_cases(1).items() if k in ("n100_d16", "n2000_d512", "relu_offset_n1500_d128", "n12_vs_n10_d8")}
    fixed = {k: 0.75 * float(np.sqrt(2 * v[0].shape[1])) for k, v in cases.items()}
    ref_fixed = _kadtk(workdir, cases, "fixed", bandwidths=fixed)
    # kadtk's median of the reference set: from its own function, on x given as "y".
    ref_median = _kadtk(workdir, {k: (y, x) for k, (x, y) in cases.items()}, "xmedian")
    x_medians = {k: ref_median["results"][k]["median"] for k in cases}
    ref_xbw = _kadtk(workdir, cases, "xbw", bandwidths=x_medians)
    rows = []
    for name, (x, y) in cases.items():
        mine, err = _ours(x, y, bandwidth=fixed[name])
        rows.append({"option": "fixed bandwidth", **_compare_row(name, x, y, ref_fixed["results"][name], mine, err),
                     "bandwidth": fixed[name]})
        mine, err = _ours(x, y, bandwidth="ref")
        rows.append({"option": "bandwidth of the reference set",
                     **_compare_row(name, x, y, ref_xbw["results"][name], mine, err)})
    return {"cases": rows}


def run_negative_controls(workdir: Path) -> dict[str, Any]:
    """Variants that must *not* agree with kadtk's defaults (so the comparison can fail)."""
    cases = make_cases()
    picks = {
        "bandwidth of the wrong (reference) set": ("n100_d16", {"bandwidth": "ref"}, 1.0),
        "cross diagonal left out (unbiased) on identical sets": ("identical_sets_n400_d64", {"estimator": "unbiased"}, 1.0),
        "evaluated set scaled by 1 + 1e-5": ("same_distribution_n1000_d128", {}, 1.0 + 1e-5),
    }
    ref = _kadtk(workdir, {c: cases[c] for c, _, _ in picks.values()}, "negative")
    rows = []
    for label, (case, kw, scale) in picks.items():
        x, y = cases[case]
        mine, _ = _ours(x, y * scale, **kw)
        kadtk_value = ref["results"][case]["kad"]
        diff = rel_diff(mine, kadtk_value) if mine is not None else float("inf")
        rows.append({"control": label, "case": case, "stylecraft": mine, "kadtk": kadtk_value, "rel_diff": diff,
                     "detected": diff > TOLERANCE})
    return {"controls": rows}


def _embedding_folder(folder: Path, model: str, arrays: dict[str, np.ndarray]) -> list[Path]:
    """kadtk's layout: ``folder/<name>.wav`` stand-ins with ``folder/embeddings/<model>/<name>.npy``."""
    (folder / "embeddings" / model).mkdir(parents=True)
    files = []
    for name, arr in arrays.items():
        (folder / f"{name}.wav").write_bytes(b"")
        np.save(folder / "embeddings" / model / f"{name}.npy", arr)
        files.append(folder / "embeddings" / model / f"{name}.npy")
    return files


def run_kad_inf(workdir: Path, seed: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    base = _correlated(rng, 1500, 64, 0.0)
    evals = {f"eval_{i}": _correlated(rng, 300, 64, 0.2) for i in range(5)}
    _embedding_folder(workdir / "inf_base", "m", {"base": base})
    eval_files = _embedding_folder(workdir / "inf_eval", "m", evals)
    ref = run_worker("kad_inf", {"model_name": "m", "seed": seed, "baseline_dir": str(workdir / "inf_base"),
                                 "eval_files": [str(p) for p in eval_files], "steps": 25, "min_n": 500, "precision": "float64"})
    gen = np.concatenate([np.load(p) for p in eval_files])
    mine = kad_inf(base, gen, steps=25, min_n=500, seed=seed)
    point_diff = max(rel_diff(m[1], r[1]) for m, r in zip(mine.points, ref["points"], strict=True))
    same_n = all(m[0] == r[0] for m, r in zip(mine.points, ref["points"], strict=True))
    return {
        "stylecraft": {"score": mine.score, "slope": mine.slope, "r2": mine.r2},
        "kadtk": {"score": ref["score"], "slope": ref["slope"], "r2": ref["r2"]},
        "rel_diff_score": rel_diff(mine.score, ref["score"]),
        "rel_diff_slope": rel_diff(mine.slope, ref["slope"]),
        "abs_diff_r2": abs((mine.r2 or 0.0) - ref["r2"]),
        "max_rel_diff_points": point_diff,
        "same_sizes": same_n,
        "ok": same_n and rel_diff(mine.score, ref["score"]) <= TOLERANCE and point_diff <= TOLERANCE,
    }


def run_per_track(workdir: Path) -> dict[str, Any]:
    rng = np.random.default_rng(11)
    base = _correlated(rng, 1200, 32, 0.0)
    tracks = {f"track{i:02d}": _correlated(rng, int(rng.integers(5, 200)), 32, 0.1 * i) for i in range(8)}
    tracks["one_row"] = _correlated(rng, 1, 32, 0.0)
    _embedding_folder(workdir / "ind_base", "m", {"base": base})
    _embedding_folder(workdir / "ind_eval", "m", tracks)
    (workdir / "ind_cwd").mkdir()
    ref = run_worker("kad_individual", {"model_name": "m", "baseline_dir": str(workdir / "ind_base"),
                                        "eval_dir": str(workdir / "ind_eval"), "csv_name": "kad-indiv.csv",
                                        "workdir": str(workdir / "ind_cwd"), "precision": "float64"})
    mine, skipped = per_track_kad(base, tracks)
    rows = []
    for name in tracks:
        theirs = ref["scores"].get(f"{name}.wav")
        row: dict[str, Any] = {"track": name, "rows": int(tracks[name].shape[0]), "stylecraft": mine.get(name),
                               "kadtk": theirs}
        if name in skipped:
            row["stylecraft_skipped"] = skipped[name]
        if mine.get(name) is not None and theirs is not None and np.isfinite(theirs):
            row["rel_diff"] = rel_diff(mine[name], theirs)
        rows.append(row)
    diffs = [r["rel_diff"] for r in rows if "rel_diff" in r]
    return {"tracks": rows, "max_rel_diff": max(diffs), "compared": len(diffs),
            "ok": len(diffs) == len(tracks) - 1 and max(diffs) <= TOLERANCE}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.10g}"
    return str(v)


def to_markdown(result: dict[str, Any]) -> str:
    d = result["defaults"]
    lines = [
        "# Kernel Audio Distance parity (kadtk 1.1.0)",
        "",
        "stylecraft `kernel_audio_distance` (float64, blocked, exact median by radix selection) against kadtk's own",
        "`calc_kernel_audio_distance`, `score_inf` and `score_individual` run in the isolated reference venv on the",
        f"same float64 arrays, kadtk's `precision` set to float64. Tolerance: {TOLERANCE:g} relative. kadtk computes",
        "its default bandwidth (median pairwise distance) in float32 whatever the precision; the second table gives",
        "both the same bandwidth, which isolates the estimator.",
        "",
        "## Defaults (Gaussian kernel, bandwidth = median pairwise distance of the evaluated set, ×100)",
        "",
        "| case | reference | evaluated | stylecraft | kadtk | rel. diff | bandwidth rel. diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in d["cases"]:
        mine = _fmt(r["stylecraft"]) if r["stylecraft"] is not None else f"refused: {r.get('stylecraft_error', '')[:70]}"
        lines.append(f"| {r['case']} | {r['shape_ref']} | {r['shape_eval']} | {mine} | {_fmt(r['kadtk'])} | "
                     f"{_fmt(r.get('rel_diff'))} | {_fmt(r.get('bandwidth_rel_diff'))} |")
    worst = max(r["rel_diff"] for r in d["cases"] if "rel_diff" in r)
    worst_given = max(r["rel_diff"] for r in d["at_kadtk_bandwidth"] if "rel_diff" in r)
    lines += [
        "",
        f"Largest relative difference: {worst:.2e} (defaults); {worst_given:.2e} with both at kadtk's bandwidth",
        "(every case above with a number).",
        "",
        "Where kadtk gives NaN (a set of one row: its within-set mean is 0/0, and its median of no distance is NaN)",
        "stylecraft refuses with a one-line error. Where more than half of the evaluated set's row pairs are identical",
        "(all_rows_identical) the median distance is 0 (kadtk, exact differences) or rounding noise (stylecraft, Gram",
        "matrix); both then use γ ≈ 1/1e-8, which separates only exact copies, and stylecraft logs a warning.",
        "",
        "## Options against kadtk's `bandwidth=` argument",
        "",
        "| option | case | stylecraft | kadtk | rel. diff |",
        "|---|---|---|---|---|",
    ]
    for r in result["options"]["cases"]:
        lines.append(f"| {r['option']} | {r['case']} | {_fmt(r['stylecraft'])} | {_fmt(r['kadtk'])} | {_fmt(r.get('rel_diff'))} |")
    fi = result["kad_inf"]
    lines += [
        "",
        "## KAD∞ (kadtk `score_inf`, 25 steps, min_n 500, same seed)",
        "",
        "| | KAD∞ | slope | R² |",
        "|---|---|---|---|",
        f"| stylecraft | {fi['stylecraft']['score']:.10g} | {fi['stylecraft']['slope']:.6g} | {fi['stylecraft']['r2']:.6f} |",
        f"| kadtk | {fi['kadtk']['score']:.10g} | {fi['kadtk']['slope']:.6g} | {fi['kadtk']['r2']:.6f} |",
        "",
        f"Relative difference of KAD∞: {fi['rel_diff_score']:.2e}; largest over the 25 points: {fi['max_rel_diff_points']:.2e}.",
        "",
        "## Per-track KAD (kadtk `score_individual`)",
        "",
        "| track | rows | stylecraft | kadtk | rel. diff |",
        "|---|---|---|---|---|",
    ]
    for r in result["per_track"]["tracks"]:
        mine = _fmt(r["stylecraft"]) if r["stylecraft"] is not None else f"skipped: {r.get('stylecraft_skipped', '')[:50]}"
        lines.append(f"| {r['track']} | {r['rows']} | {mine} | {_fmt(r['kadtk'])} | {_fmt(r.get('rel_diff'))} |")
    lines += [
        "",
        "## Negative controls (must differ by more than the tolerance)",
        "",
        "| control | case | stylecraft | kadtk | rel. diff | detected |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["negative_controls"]["controls"]:
        lines.append(f"| {r['control']} | {r['case']} | {_fmt(r['stylecraft'])} | {_fmt(r['kadtk'])} | "
                     f"{r['rel_diff']:.2e} | {'yes' if r['detected'] else 'NO'} |")
    lines += ["", f"Versions (reference env): {d['versions']}", f"Machine: {result['machine']}", ""]
    return "\n".join(lines)


def main() -> dict[str, Any]:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "tolerance_rel": TOLERANCE,
            "defaults": run_defaults(Path(tmp)),
            "options": run_options(Path(tmp)),
            "kad_inf": run_kad_inf(Path(tmp)),
            "per_track": run_per_track(Path(tmp)),
            "negative_controls": run_negative_controls(Path(tmp)),
            "machine": f"{platform.machine()} {platform.system()} python {platform.python_version()} "
                       f"numpy {np.__version__} torch {torch.__version__}",
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "parity_kad.json", result)
    atomic_write_text(RESULTS / "parity_kad.md", to_markdown(result))
    return result


if __name__ == "__main__":
    res = main()
    print(to_markdown(res))
