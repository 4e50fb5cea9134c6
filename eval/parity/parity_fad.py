"""Fréchet distance and FAD∞ parity: stylecraft vs frechet-audio-distance 0.3.4 and fadtk 1.1.0.

Both tools' own statistics and Fréchet functions run in the reference venv on the very same
embedding arrays (saved to .npz); stylecraft's run here. Cases cover a well-conditioned
high-dimensional pair, sets with fewer rows than dimensions (singular covariances), identical
sets and one dimension. FAD∞ is compared with fadtk's ``score_inf`` under the same seed.

Usage::

    python eval/parity/parity_fad.py     # writes eval/results/parity_fad.{json,md}
"""

from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refenv import ROOT, run_worker  # noqa: E402

from stylecraft.artifacts import atomic_write_json, atomic_write_text  # noqa: E402
from stylecraft.evaluate.frechet import frechet_distance, gaussian_stats  # noqa: E402
from stylecraft.evaluate.stats import fad_inf  # noqa: E402

TOLERANCE = 1e-6
RESULTS = ROOT / "eval" / "results"


def _correlated(rng: np.random.Generator, n: int, d: int, shift: float, rank: int | None = None) -> np.ndarray:
    """Rows with a non-trivial covariance (a random mixing matrix), like real embeddings."""
    k = rank or d
    mix = rng.normal(size=(k, d)) / np.sqrt(k)
    return (rng.normal(size=(n, k)) @ mix + shift).astype(np.float32)


def make_cases(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Embedding pairs ``(a, b)`` per case name, float32 as the tools store them."""
    rng = np.random.default_rng(seed)
    a_same = _correlated(rng, 300, 32, 0.0)
    return {
        "well_conditioned_n2000_d128": (_correlated(rng, 2000, 128, 0.0), _correlated(rng, 1500, 128, 0.3)),
        "vggish_like_n4000_d128_relu": (
            np.maximum(_correlated(rng, 4000, 128, 0.2), 0) * 3,
            np.maximum(_correlated(rng, 3000, 128, 0.25), 0) * 3,
        ),
        "singular_n64_lt_d128": (_correlated(rng, 64, 128, 0.0), _correlated(rng, 2000, 128, 0.1)),
        "singular_both_n50_n80_d128": (_correlated(rng, 50, 128, 0.0), _correlated(rng, 80, 128, 0.2)),
        "rank_deficient_features_n1000_d64_rank20": (
            _correlated(rng, 1000, 64, 0.0, rank=20),
            _correlated(rng, 1000, 64, 0.5, rank=20),
        ),
        "identical_sets_n300_d32": (a_same, a_same.copy()),
        "one_dimension_n500": (_correlated(rng, 500, 1, 0.0), _correlated(rng, 400, 1, 1.0)),
    }


def ours(a: np.ndarray, b: np.ndarray) -> float:
    mu1, s1 = gaussian_stats(a)
    mu2, s2 = gaussian_stats(b)
    return frechet_distance(mu1, s1, mu2, s2)


def rel_diff(x: float, ref: float, scale: float = 0.0) -> float:
    """``|x - ref|`` relative to ``max(|ref|, scale)``.

    For identical sets the true distance is exactly 0 and every implementation returns rounding
    noise (~1e-13), so the difference is taken relative to the problem's scale
    ``|Δμ|² + tr S1 + tr S2`` there instead of relative to a noise value.
    """
    return abs(x - ref) / max(abs(ref), scale)


def run_frechet(workdir: Path) -> dict[str, Any]:
    cases = make_cases()
    npz = workdir / "cases.npz"
    np.savez(npz, **{f"{k}_{s}": arr for k, (a, b) in cases.items() for s, arr in (("a", a), ("b", b))})
    ref = run_worker("frechet", {"npz": str(npz), "cases": list(cases)})
    rows = []
    for name, (a, b) in cases.items():
        mine = ours(a, b)
        mu1, s1 = gaussian_stats(a)
        mu2, s2 = gaussian_stats(b)
        # Only the identical-sets case (true value 0) is measured against the scale.
        scale = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2)) if name.startswith("identical") else 0.0
        row: dict[str, Any] = {"case": name, "shape_a": list(a.shape), "shape_b": list(b.shape), "stylecraft": mine}
        for tool in ("frechet_audio_distance", "fadtk"):
            r = ref["results"][name]
            if tool in r:
                row[tool] = r[tool]
                row[f"rel_diff_{tool}"] = rel_diff(mine, r[tool], scale)
                row[f"ok_{tool}"] = row[f"rel_diff_{tool}"] <= TOLERANCE
            else:
                row[f"{tool}_error"] = r[f"{tool}_error"]
                row[f"ok_{tool}"] = False
        rows.append(row)
    return {"cases": rows, "versions": ref["versions"]}


def run_fad_inf(workdir: Path, seed: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    base = _correlated(rng, 3000, 64, 0.0)
    files = []
    for i in range(6):
        e = _correlated(rng, 400, 64, 0.2)
        p = workdir / f"eval_{i}.npy"
        np.save(p, e)
        files.append(p)
    mu, cov = gaussian_stats(base)
    bz = workdir / "baseline.npz"
    np.savez(bz, **{"m.mu": mu, "m.cov": cov})
    ref = run_worker(
        "fad_inf",
        {"model_name": "m", "seed": seed, "baseline_npz": str(bz), "eval_files": [str(p) for p in files], "steps": 25, "min_n": 500},
    )
    gen = np.concatenate([np.load(p) for p in files])
    mine = fad_inf(mu, cov, gen, steps=25, min_n=500, seed=seed)
    point_diff = max(rel_diff(m[1], r[1]) for m, r in zip(mine.points, ref["points"], strict=True))
    return {
        "stylecraft": {"score": mine.score, "slope": mine.slope, "r2": mine.r2},
        "fadtk": {"score": ref["score"], "slope": ref["slope"], "r2": ref["r2"]},
        "rel_diff_score": rel_diff(mine.score, ref["score"]),
        "rel_diff_r2": rel_diff(mine.r2 or 0.0, ref["r2"]),
        "max_rel_diff_points": point_diff,
        "ok": rel_diff(mine.score, ref["score"]) <= TOLERANCE and point_diff <= TOLERANCE,
    }


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Fréchet distance parity",
        "",
        "stylecraft `frechet_distance` (float64, eigen-decomposition of S1^½ S2 S1^½) vs the reference tools' own",
        f"statistics + Fréchet functions on the same float32 embedding arrays. Tolerance: {TOLERANCE:g} relative.",
        "For identical sets (true distance 0) the difference is relative to |Δμ|² + tr S1 + tr S2.",
        "A reference error is the reference tool failing on that input (shown, not counted as agreement).",
        "",
        "| case | shape a | shape b | stylecraft | frechet-audio-distance | rel. diff | fadtk | rel. diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    def cell(r: dict[str, Any], tool: str) -> str:
        if tool in r:
            return f"{r[tool]:.9g} | {r[f'rel_diff_{tool}']:.2e}"
        return f"error: {r[f'{tool}_error'][:60]} | -"

    for r in result["frechet"]["cases"]:
        lines.append(
            f"| {r['case']} | {r['shape_a']} | {r['shape_b']} | {r['stylecraft']:.9g} | "
            f"{cell(r, 'frechet_audio_distance')} | {cell(r, 'fadtk')} |"
        )
    fi = result["fad_inf"]
    lines += [
        "",
        "## FAD∞ (fadtk `score_inf`, 25 steps, min_n 500, same seed)",
        "",
        "| | FAD∞ | slope | R² |",
        "|---|---|---|---|",
        f"| stylecraft | {fi['stylecraft']['score']:.9g} | {fi['stylecraft']['slope']:.6g} | {fi['stylecraft']['r2']:.6f} |",
        f"| fadtk | {fi['fadtk']['score']:.9g} | {fi['fadtk']['slope']:.6g} | {fi['fadtk']['r2']:.6f} |",
        "",
        f"Relative difference of FAD∞: {fi['rel_diff_score']:.2e}; largest over the 25 points: {fi['max_rel_diff_points']:.2e}.",
        "",
        f"Versions (reference env): {result['frechet']['versions']}",
        f"Machine: {result['machine']}",
        "",
    ]
    return "\n".join(lines)


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "tolerance_rel": TOLERANCE,
            "frechet": run_frechet(Path(tmp)),
            "fad_inf": run_fad_inf(Path(tmp)),
            "machine": f"{platform.machine()} {platform.system()} python {platform.python_version()} numpy {np.__version__}",
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "parity_fad.json", result)
    atomic_write_text(RESULTS / "parity_fad.md", to_markdown(result))
    return result


if __name__ == "__main__":
    res = main()
    print(to_markdown(res))
