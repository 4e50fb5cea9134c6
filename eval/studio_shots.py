"""The studio in headless chromium: a screenshot of each tab, page load time and generate latency.

Starts ``stylecraft studio`` in this process for a trained run, opens it in Debian's chromium
(Playwright, no browser download) and measures, for ``--model`` (stylecraft-mini unless told):

* page load: ``goto`` until the Generate button is on the page (fresh browser context each time);
* generate latency: click on Generate until the take's download link is on the page, against
  the baseline a user would otherwise run: the same request through the library's ``generate``
  in the same process (what ``stylecraft generate`` calls), alternated with the page.

Then it compares the run's generated clips (its generate stage's folder; else the takes just
made) with the run's held-out tracks (Compare tab) and shows the run (Runs tab), saving a
screenshot of each tab. Results: ``eval/results/studio.{json,md}`` and ``studio_<tab>.png``.

Usage::

    .venv/bin/python eval/studio_shots.py --run runs/quickstart [--model stylecraft-mini] [--duration 8] [--reps 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _library_generate(model: str, prompt: str, out: Path, duration: float, seed: int) -> float:
    from stylecraft.generate.sample import SamplingParams, generate
    from stylecraft.models.loading import load_model

    t = time.perf_counter()
    generate(load_model(model), out, [prompt], SamplingParams(duration_s=duration, seed=seed))
    return time.perf_counter() - t


PLAYERS_READY_JS = """n => [...document.querySelectorAll('body *')].filter(e => e.children.length === 0
    && e.offsetParent !== null && /^\\d+:\\d\\d$/.test(e.textContent.trim()) && e.textContent.trim() !== '0:00').length >= n"""


def _wait_players(page, n: int) -> None:
    """Wait until ``n`` audio players show a length (their waveform is drawn)."""
    page.wait_for_function(PLAYERS_READY_JS, arg=n, timeout=120_000)


def _page_generate(page, model: str, prompt: str, duration: float, seed: int) -> float:
    page.fill("#gen-model input", model)
    page.press("#gen-model input", "Enter")
    page.fill("#gen-prompts textarea", prompt)
    for sel, value in (("#gen-duration input[type=number]", duration),):
        page.fill(sel, str(value))
        page.press(sel, "Enter")
    page.fill("#gen-seed input", str(seed))
    before = page.get_attribute("#take-0-audio a[download]", "href") if page.query_selector("#take-0-audio a[download]") else None
    t = time.perf_counter()
    page.click("#gen-button")
    page.wait_for_function(
        "prev => { const a = document.querySelector('#take-0-audio a[download]'); return a && a.href !== prev; }",
        arg=before, timeout=600_000,
    )
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a trained run folder (shown on Compare and Runs)")
    ap.add_argument("--model", default="stylecraft-mini", help="model to generate with (registry name, preset, run or folder)")
    ap.add_argument("--prompt", default="corpus style, 120 bpm, A minor")
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the machine's cores)")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    torch.set_num_threads(args.threads)
    from playwright.sync_api import sync_playwright

    from stylecraft.studio.app import launch
    from stylecraft.studio.settings import StudioSettings

    work = Path(tempfile.mkdtemp(prefix="studio-shots-"))
    settings = StudioSettings(runs=(args.run.resolve(),), models=(args.model,), out_dir=work / "studio")
    t0 = time.perf_counter()
    demo, url = launch(settings, port=_port(), block=False)
    server_start = time.perf_counter() - t0
    loads, page_gen, lib_gen = [], [], []
    _library_generate(args.model, args.prompt, work / "warm", args.duration, 999)  # loads the model once for both sides
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
            for _ in range(args.reps):
                ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
                page = ctx.new_page()
                t = time.perf_counter()
                page.goto(url)
                page.wait_for_selector("#gen-button")
                loads.append(time.perf_counter() - t)
                ctx.close()
            ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
            page = ctx.new_page()
            page.goto(url)
            page.wait_for_selector("#gen-button")
            for rep in range(args.reps):
                page_gen.append(_page_generate(page, args.model, args.prompt, args.duration, rep))
                lib_gen.append(_library_generate(args.model, args.prompt, work / f"lib-{rep}", args.duration, rep))
            RESULTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(RESULTS / "studio_generate.png"), full_page=True)
            page.get_by_role("tab", name="Compare").click()
            if (args.run / "generated" / "generated.jsonl").is_file():  # the run's own clips: enough for intervals
                page.fill("#cmp-takes textarea, #cmp-takes input", str((args.run / "generated").resolve()))
            page.click("#cmp-button")
            page.wait_for_function("() => document.querySelector('#cmp-verdicts').innerText.includes('closest')", timeout=600_000)
            _wait_players(page, 2)  # the artist's tracks (the run has two held out)
            page.screenshot(path=str(RESULTS / "studio_compare.png"), full_page=True)
            page.get_by_role("tab", name="Runs").click()
            page.click("#run-button")
            page.wait_for_function("() => document.querySelector('#run-verify').innerText.includes('verify')", timeout=600_000)
            _wait_players(page, 2)  # the last step's demos
            page.screenshot(path=str(RESULTS / "studio_runs.png"), full_page=True)
            browser.close()
    finally:
        demo.close()
        shutil.rmtree(work, ignore_errors=True)
    write_results(args, server_start, loads, page_gen, lib_gen)
    return 0


def write_results(args: argparse.Namespace, server_start: float, loads: list[float], page_gen: list[float],
                  lib_gen: list[float]) -> None:
    import gradio
    import playwright
    import transformers

    from stylecraft.artifacts import atomic_write_json, atomic_write_text

    ratio = [p / lib for p, lib in zip(page_gen, lib_gen, strict=True)]
    record = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                    "load_avg": list(os.getloadavg())},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "gradio": gradio.__version__,
                     "playwright": getattr(playwright, "__version__", "?")},
        "model": args.model, "prompt": args.prompt, "duration_s": args.duration, "reps": args.reps, "server_start_s": server_start,
        "page_load_s": loads, "page_generate_s": page_gen, "library_generate_s": lib_gen, "page_over_library": ratio,
    }
    atomic_write_json(RESULTS / "studio.json", record)
    med = statistics.median
    md = [
        "# stylecraft studio in headless chromium",
        "",
        f"{record['date']}; {record['machine']['platform']}, {record['machine']['cpus']} CPUs (torch {args.threads} threads), "
        f"load {record['machine']['load_avg'][0]:.2f}; gradio {record['versions']['gradio']}, torch {torch.__version__}. "
        "Machine shared with other jobs: absolute times are indicative, the ratio is measured in the same run.",
        "",
        f"Model `{args.model}`, prompt \"{args.prompt}\", one take of {args.duration:g} s, {args.reps} repetitions, page and library alternated.",
        "",
        "| what | median (s) | all (s) |",
        "|---|---|---|",
        f"| server start (`launch`) | {server_start:.2f} | |",
        f"| page load (goto until the Generate button is on the page, fresh context) | {med(loads):.2f} | {', '.join(f'{x:.2f}' for x in loads)} |",
        f"| generate in the page (click until the take's link is on the page) | {med(page_gen):.2f} | {', '.join(f'{x:.2f}' for x in page_gen)} |",
        f"| same request through the library (`generate`, baseline) | {med(lib_gen):.2f} | {', '.join(f'{x:.2f}' for x in lib_gen)} |",
        f"| page / library | {med(ratio):.2f}x | {', '.join(f'{x:.2f}' for x in ratio)} |",
        "",
        "The page's extra time is the studio's own work per take (watermark check, spectrogram) and the transfer "
        "to the browser. Screenshots: `studio_generate.png`, `studio_compare.png`, `studio_runs.png`. "
        f"Rerun: `python eval/studio_shots.py --run RUN --model {args.model} --duration {args.duration:g} --reps {args.reps}`.",
        "",
    ]
    atomic_write_text(RESULTS / "studio.md", "\n".join(md))
    print(json.dumps({k: record[k] for k in ("page_load_s", "page_generate_s", "library_generate_s")}))


if __name__ == "__main__":
    raise SystemExit(main())
