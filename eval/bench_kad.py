"""Benchmark: Kernel Audio Distance, stylecraft vs kadtk 1.1.0, time and peak memory on the same embeddings.

Both compute KAD with kadtk's defaults (Gaussian kernel, bandwidth = median pairwise distance of
the evaluated set, ×100) on the same two arrays of N rows each (N = 1k, 10k, 50k by default), on
CPU, one thread each, in the same run; every measurement is its own process, so its peak resident
memory (``ru_maxrss``) is its own. kadtk runs its ``calc_kernel_audio_distance`` in its isolated
venv (eval/parity/kad_env.py) at its default precision (float32) and, where it fits, at float64;
stylecraft runs ``kernel_audio_distance`` (float64, blocked). Time is measured inside each process
around the call (imports and loading the arrays are not counted); "memory before" is the
process's peak resident memory just before the call.

kadtk holds several whole ``N × N`` matrices at once, so each kadtk process runs under an
address-space limit (``--kadtk-budget-gib`` above what it has mapped before the call) on this
shared machine: a run that would need more fails with its own allocation error, recorded as such.

The embeddings are synthetic, VGGish-like (128-D, correlated, ReLU-ed, as in the FAD parity
suite), since no real catalogue gives 50,000 rows of a learned embedding here quickly; KAD's cost
depends on N and D only.

Usage::

    python eval/bench_kad.py                      # writes eval/results/bench_kad.{json,md}
    python eval/bench_kad.py --sizes 1000 10000   # fewer sizes
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "parity"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from kad_env import ROOT, run_worker  # noqa: E402

RESULTS = ROOT / "eval" / "results"


def embeddings(n: int, d: int, seed: int, shift: float) -> np.ndarray:
    """VGGish-like rows: correlated Gaussians through a ReLU, float32 as embedding caches store them."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(1234).normal(size=(d, d)) / np.sqrt(d)
    return (np.maximum(rng.normal(size=(n, d)) @ mix + shift, 0.0) * 3.0).astype(np.float32)


def _load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def worker(npz: str, threads: int, block_rows: int | None) -> None:
    """One stylecraft measurement in this process (prints one JSON line)."""
    import torch

    from stylecraft.evaluate.kad import DEFAULT_BLOCK_ROWS, kernel_audio_distance

    torch.set_num_threads(threads)
    data = np.load(npz)
    x, y = data["x"], data["y"]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    res = kernel_audio_distance(x, y, block_rows=block_rows or DEFAULT_BLOCK_ROWS, device="cpu")
    out = {"kad": res.kad, "bandwidth": res.bandwidth, "seconds": time.perf_counter() - t0,
           "cpu_seconds": time.process_time() - c0, "rss_before_kib": before,
           "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    print(json.dumps(out))


def run_ours(npz: Path, threads: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "STYLECRAFT_PROGRESS": "0"}
    load = _load_avg()
    proc = subprocess.run([sys.executable, __file__, "--worker", str(npz), "--threads", str(threads)],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "load_avg_1min": load}


def run_kadtk(npz: Path, threads: int, precision: str, budget_gib: float) -> dict[str, Any]:
    load = _load_avg()
    try:
        out = run_worker("bench", {"npz": str(npz), "threads": threads, "precision": precision,
                                   "budget_bytes": int(budget_gib * 2**30)})
    except RuntimeError as exc:  # the worker process itself died (killed, or failed outside the call)
        return {"error": " ".join(str(exc).split())[-400:], "load_avg_1min": load}
    return {**out, "load_avg_1min": load}


def kadtk_matrices_gib(n: int, precision: str) -> float:
    """Memory of the N × N matrices kadtk's ``calc_kernel_audio_distance`` keeps alive by its end
    (x·xᵀ, d²ₓₓ, kₓₓ, y·yᵀ, d²ᵧᵧ, kᵧᵧ, x·yᵀ, d²ₓᵧ, kₓᵧ) plus the N(N−1)/2 float32 distances of its median."""
    item = 4 if precision == "float32" else 8
    return (9 * n * n * item + n * (n - 1) // 2 * 4) / 2**30


def _rel(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return abs(a - b) / abs(b) if b else abs(a - b)


def bench(sizes: list[int], dim: int, threads: int, budget_gib: float, ours_only: list[int],
          float64_up_to: int) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(set(sizes) | set(ours_only)):
            npz = Path(tmp) / f"n{n}.npz"
            np.savez(npz, x=embeddings(n, dim, 1, 0.2), y=embeddings(n, dim, 2, 0.25))
            row: dict[str, Any] = {"n": n, "dim": dim}
            print(f"N={n}: stylecraft", flush=True)
            row["stylecraft"] = run_ours(npz, threads)
            if n in sizes:
                print(f"N={n}: kadtk float32", flush=True)
                row["kadtk_float32"] = run_kadtk(npz, threads, "float32", budget_gib)
                if n <= float64_up_to:
                    print(f"N={n}: kadtk float64", flush=True)
                    row["kadtk_float64"] = run_kadtk(npz, threads, "float64", budget_gib)
            row["kadtk_matrices_gib"] = {p: round(kadtk_matrices_gib(n, p), 2) for p in ("float32", "float64")}
            ours = row["stylecraft"].get("kad")
            for key in ("kadtk_float32", "kadtk_float64"):
                if key in row:
                    row[f"rel_diff_{key}"] = _rel(ours, row[key].get("kad"))
            rows.append(row)
            npz.unlink()
    return {"rows": rows}


def _fmt_s(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"failed: {r['error'][:140]}"
    return f"{r['seconds']:.2f} s (CPU {r['cpu_seconds']:.2f} s)"


def _fmt_mem(r: dict[str, Any]) -> str:
    if "peak_rss_kib" not in r:
        return "-"
    return f"{r['peak_rss_kib'] / 1024:.0f} MiB (before: {r['rss_before_kib'] / 1024:.0f})"


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        "# KAD benchmark: stylecraft vs kadtk 1.1.0",
        "",
        f"Same embeddings for both (synthetic VGGish-like, D = {result['rows'][0]['dim']}, N rows in each set), kadtk's",
        f"defaults, CPU, {result['threads']} thread(s) each, every measurement its own process; time around the call only.",
        f"kadtk runs under an address-space limit of {result['kadtk_budget_gib']} GiB above what it had mapped before the call.",
        "",
        "| N | stylecraft (float64, blocked) | peak memory | kadtk float32 | peak memory | kadtk float64 | peak memory | KAD rel. diff (vs kadtk float32 / float64) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        k32, k64 = r.get("kadtk_float32"), r.get("kadtk_float64")
        diffs = " / ".join("-" if r.get(f"rel_diff_{k}") is None else f"{r[f'rel_diff_{k}']:.1e}"
                           for k in ("kadtk_float32", "kadtk_float64"))
        lines.append(
            f"| {r['n']:,} | {_fmt_s(r['stylecraft'])} | {_fmt_mem(r['stylecraft'])} | "
            f"{_fmt_s(k32) if k32 else 'not run'} | {_fmt_mem(k32) if k32 else '-'} | "
            f"{_fmt_s(k64) if k64 else 'not run'} | {_fmt_mem(k64) if k64 else '-'} | {diffs} |"
        )
    lines += ["", "Speed-up (kadtk float32 / stylecraft, same N), in wall time and in CPU time (on a loaded shared",
              "machine the CPU time says more: a process waiting for a core adds wall time, not CPU time):", ""]
    for r in result["rows"]:
        k32, ours = r.get("kadtk_float32"), r["stylecraft"]
        if k32 and "seconds" in k32 and "error" not in k32 and "seconds" in ours:
            lines.append(f"- N = {r['n']:,}: {k32['seconds'] / ours['seconds']:.2f}x wall, "
                         f"{k32['cpu_seconds'] / ours['cpu_seconds']:.2f}x CPU")
        elif k32 and "error" in k32:
            lines.append(f"- N = {r['n']:,}: kadtk failed after {k32['seconds']:.0f} s ({k32['cpu_seconds']:.0f} CPU s) "
                         f"at {k32['peak_rss_kib'] / 2**20:.1f} GiB; stylecraft finished in {ours['cpu_seconds']:.0f} CPU s "
                         f"at {ours['peak_rss_kib'] / 2**20:.2f} GiB")
    lines += ["", "The N × N matrices kadtk's code keeps alive by the end of one call (computed, GiB):", ""]
    for r in result["rows"]:
        m = r["kadtk_matrices_gib"]
        lines.append(f"- N = {r['n']:,}: {m['float32']} (float32), {m['float64']} (float64)")
    lines += [
        "",
        "1-minute load average at the start of each measurement (the machine is shared): "
        + ", ".join(f"N={r['n']}: " + "/".join(str(v.get("load_avg_1min", "-")) for k, v in r.items()
                                                  if isinstance(v, dict) and "load_avg_1min" in v)
                    for r in result["rows"]),
        "",
        f"Machine: {result['machine']}",
        f"Versions: stylecraft env {result['versions']}; kadtk env {result.get('kadtk_versions')}",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    ap.add_argument("--ours-only", type=int, nargs="*", default=[100000], help="sizes run by stylecraft alone")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kadtk-budget-gib", type=float, default=10.0)
    ap.add_argument("--kadtk-float64-up-to", type=int, default=1000, help="largest N also run by kadtk in float64")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--report-only", action="store_true", help="write bench_kad.md again from bench_kad.json")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.threads, None)
        return
    if args.report_only:
        from stylecraft.artifacts import atomic_write_text

        atomic_write_text(RESULTS / "bench_kad.md", to_markdown(json.loads((RESULTS / "bench_kad.json").read_text())))
        return
    from report_tools import machine_info, versions

    from stylecraft.artifacts import atomic_write_json, atomic_write_text

    result = {"threads": args.threads, "kadtk_budget_gib": args.kadtk_budget_gib,
              **bench(args.sizes, args.dim, args.threads, args.kadtk_budget_gib, args.ours_only,
                      args.kadtk_float64_up_to)}
    result["machine"] = machine_info()
    result["versions"] = versions()
    kad_rows = [r.get("kadtk_float32", {}) for r in result["rows"]]
    result["kadtk_versions"] = next((r["versions"] for r in kad_rows if "versions" in r), None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "bench_kad.json", result)
    atomic_write_text(RESULTS / "bench_kad.md", to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
