"""The studio's page: Generate, Compare and Runs tabs, and the ``/generate`` and ``/audit`` endpoints.

Every handler is a thin call into :mod:`stylecraft.studio.takes`, :mod:`.compare` or :mod:`.runs`.
User mistakes (``StylecraftError``) reach the page as a one-line message; anything else is logged
with its traceback on the server and shown as a short message, never as a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from stylecraft.errors import StylecraftError
from stylecraft.studio import compare as cmp
from stylecraft.studio import runs as rv
from stylecraft.studio import takes as tk
from stylecraft.studio.settings import DEFAULT_HOST, DEFAULT_PORT, MAX_TAKES, StudioSettings

logger = logging.getLogger(__name__)
DEMO_PLAYERS = 4  # demo players per step on the Runs tab
REFERENCE_PLAYERS = 3


def page_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn exceptions into messages shown in the page (``gr.Error``), never tracebacks."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except StylecraftError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # a bug, not a user mistake: keep the traceback in the server log only
            logger.exception("studio handler %s failed", fn.__name__)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise gr.Error(f"unexpected error ({type(exc).__name__}: {first}); details are in the studio's log",
                           print_exception=False) from None

    return wrapped


def _prompts(text: str) -> list[str]:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines or [""]


def _slot_updates(takes: list[tk.Take]) -> list[Any]:
    """Updates for every take slot: group, player, spectrogram, download, watermark, provenance."""
    out: list[Any] = []
    for i in range(MAX_TAKES):
        if i < len(takes):
            t = takes[i]
            mark = t.watermark
            verdict = "watermark found" if mark["detected"] else "NO watermark found"
            out += [
                gr.update(visible=True), gr.update(value=str(t.path), label=t.path.name), gr.update(value=str(t.spectrogram)),
                gr.update(value=str(t.path)),
                gr.update(value=f"**{verdict}** (score {mark['score']}, threshold {mark['threshold']:g}, key id `{mark['key_id']}`)"),
                gr.update(value=t.provenance),
            ]
        else:
            out += [gr.update(visible=False), gr.update(value=None), gr.update(value=None), gr.update(value=None),
                    gr.update(value=""), gr.update(value=None)]
    return out


class Studio:
    """Handlers bound to one set of settings and one model cache."""

    def __init__(self, settings: StudioSettings) -> None:
        self.settings = settings
        self.models = tk.ModelCache()

    def preview_riff(self, riff: str | None, start_s: float, end_s: float) -> str | None:
        if not riff:
            return None
        return str(tk.crop_riff(riff, float(start_s or 0), float(end_s or 0), self.settings))

    def generate_page(self, model: str, prompts: str, riff: str | None, riff_start: float, riff_end: float,
                      melody: str | None, duration: float, window: float, context: float, temperature: float,
                      top_k: float, top_p: float, guidance: float, seed: float, n_takes: float, best_of: float,
                      beams: float, length_penalty: float, progress: gr.Progress = gr.Progress()) -> list[Any]:
        cropped = self.preview_riff(riff, riff_start, riff_end)
        req = tk.GenerateRequest(
            model=model, prompts=_prompts(prompts), duration_s=float(duration), window_s=float(window),
            context_s=float(context), temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
            guidance_scale=float(guidance), seed=int(seed), takes=int(n_takes), best_of=int(best_of), beams=int(beams),
            length_penalty=float(length_penalty), seed_riff=cropped, melody=melody or None,
        )
        takes = tk.generate_takes(self.settings, self.models, req, lambda f, text: progress(f, desc=text))
        folder = str(takes[0].path.parent)
        return [folder, folder, *_slot_updates(takes)]

    def generate_api(self, prompt: str, duration_s: float, seed: float, model: str) -> tuple[str, dict[str, Any]]:
        req = tk.GenerateRequest(model=model, prompts=[prompt], duration_s=float(duration_s), seed=int(seed))
        take = tk.generate_takes(self.settings, self.models, req)[0]
        return str(take.path), {**take.provenance, "watermark_check": take.watermark}

    def compare_page(self, run: str, takes_dir: str, others: str, progress: gr.Progress = gr.Progress()) -> list[Any]:
        if not run:
            raise StylecraftError("choose a run: its held-out tracks are the artist's reference")
        progress(0.1, desc="embedding takes and references")
        res = cmp.compare(self.settings, Path(run), Path(takes_dir.strip()), cmp.parse_others(others or ""))
        players = [gr.update(value=str(p), label=f"{res.artist}: {p.name}", visible=True) for p in res.references[:REFERENCE_PLAYERS]]
        players += [gr.update(value=None, visible=False)] * (REFERENCE_PLAYERS - len(players))
        return [*players, str(res.spectrograms), _table(res.metrics), _table(res.verdicts)]

    def audit_api(self, run: str, takes_dir: str) -> dict[str, Any]:
        res = cmp.compare(self.settings, Path(run), Path(takes_dir))
        return {"artist": res.artist, "metrics": res.metrics, "verdicts": res.verdicts,
                "takes": [str(t) for t in res.takes], "references": [str(r) for r in res.references]}

    def run_page(self, run: str) -> list[Any]:
        if not run:
            raise StylecraftError("choose a run folder")
        view = rv.view_run(Path(run), self.settings)
        last = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in view.last.items()
                         if k in ("step", "loss", "val_loss", "lr", "fad")) or "no training steps yet"
        step = view.demo_steps[-1] if view.demo_steps else None
        return [str(view.curves) if view.curves else None, f"last step: {last}",
                gr.update(choices=view.demo_steps, value=step), *self.demo_players(run, step),
                view.model_card, rv.verify_markdown(view)]

    def demo_players(self, run: str, step: str | None) -> list[Any]:
        files = rv.demo_files(Path(run), step) if run and step else []
        out = [gr.update(value=str(p), label=label, visible=True) for p, label in files[:DEMO_PLAYERS]]
        return out + [gr.update(value=None, visible=False)] * (DEMO_PLAYERS - len(out))


def _table(rows: list[dict[str, Any]]) -> Any:
    if not rows:
        return gr.update(value=None)
    cols = list(rows[0])
    return gr.update(value=[[r.get(c) for c in cols] for r in rows], headers=cols)


def _generate_tab(studio: Studio, takes_state: gr.Textbox) -> None:
    s = studio.settings
    choices = s.model_choices()
    with gr.Row():
        with gr.Column(scale=2):
            model = gr.Dropdown(choices=choices, value=choices[0], allow_custom_value=True, label="Model",
                                info="run folder, preset, registry name or model folder", elem_id="gen-model")
            prompts = gr.Textbox(lines=3, label="Prompts (one per line)", elem_id="gen-prompts")
            with gr.Accordion("Seed riff and melody", open=False):
                riff = gr.Audio(type="filepath", sources=["upload"], label="Seed riff (continued)", elem_id="gen-riff")
                with gr.Row():
                    riff_start = gr.Number(value=0, label="crop start (s)", minimum=0)
                    riff_end = gr.Number(value=0, label="crop end (s, 0 = end)", minimum=0)
                preview = gr.Audio(type="filepath", label="Cropped riff (preview)", interactive=False)
                gr.Button("Preview crop", size="sm").click(page_errors(studio.preview_riff), [riff, riff_start, riff_end],
                                                           preview, api_visibility="private")
                melody = gr.Audio(type="filepath", sources=["upload"], label="Melody (melody models)")
        with gr.Column(scale=2):
            duration = gr.Slider(1, s.max_duration_s, value=min(8, s.max_duration_s), step=1, label="Duration (s)", elem_id="gen-duration")
            with gr.Row():
                window = gr.Number(value=30, label="long-form window (s)")
                context = gr.Number(value=10, label="context (s)")
            with gr.Row():
                temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="temperature")
                guidance = gr.Slider(1.0, 10.0, value=3.0, step=0.5, label="guidance")
            with gr.Row():
                top_k = gr.Number(value=250, precision=0, label="top-k (0: off)")
                top_p = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="top-p (0: off)")
            with gr.Row():
                seed = gr.Number(value=0, precision=0, label="seed", elem_id="gen-seed")
                n_takes = gr.Slider(1, MAX_TAKES, value=1, step=1, label="takes per prompt")
            with gr.Row():
                best_of = gr.Slider(1, 8, value=1, step=1, label="best of N")
                beams = gr.Slider(0, 8, value=0, step=1, label="beam width (0: sample)")
                length_penalty = gr.Number(value=1.0, label="length penalty")
    go = gr.Button("Generate", variant="primary", elem_id="gen-button")
    folder = gr.Textbox(label="Takes folder", interactive=False, elem_id="gen-folder")
    slots: list[Any] = []
    for i in range(MAX_TAKES):
        with gr.Group(visible=False, elem_id=f"take-{i}") as group:
            with gr.Row():
                with gr.Column(scale=1):
                    player = gr.Audio(type="filepath", interactive=False, label=f"take {i + 1}", elem_id=f"take-{i}-audio")
                    download = gr.File(label="download", interactive=False, elem_id=f"take-{i}-file")
                    mark = gr.Markdown(elem_id=f"take-{i}-watermark")
                with gr.Column(scale=1):
                    picture = gr.Image(type="filepath", label="spectrogram", interactive=False)
            with gr.Accordion("provenance", open=False):
                prov = gr.JSON()
        slots += [group, player, picture, download, mark, prov]
    inputs = [model, prompts, riff, riff_start, riff_end, melody, duration, window, context, temperature, top_k,
              top_p, guidance, seed, n_takes, best_of, beams, length_penalty]
    go.click(page_errors(studio.generate_page), inputs, [folder, takes_state, *slots], api_visibility="private")


def _compare_tab(studio: Studio, takes_state: gr.Textbox) -> None:
    runs = [str(r) for r in studio.settings.runs]
    with gr.Row():
        run = gr.Dropdown(choices=runs, value=runs[0] if runs else None, allow_custom_value=True, label="Run (the artist)")
        takes_dir = gr.Textbox(label="Takes folder (the last generation by default)", elem_id="cmp-takes")
    others = gr.Textbox(lines=2, label="Other artists for the audit (NAME=FOLDER per line, optional)")
    takes_state.change(lambda f: f, takes_state, takes_dir, api_visibility="private")
    go = gr.Button("Compare", variant="primary", elem_id="cmp-button")
    with gr.Row():
        refs = [gr.Audio(type="filepath", interactive=False, visible=False, label="reference") for _ in range(REFERENCE_PLAYERS)]
    picture = gr.Image(type="filepath", label="takes (top) and the artist's tracks (bottom)", interactive=False)
    metrics = gr.Dataframe(label=f"FAD and KAD against the artist's held-out tracks ({cmp.CI_LEVEL:.0%} bootstrap CI)",
                           interactive=False, elem_id="cmp-metrics")
    verdicts = gr.Dataframe(label="audit verdict per take", interactive=False, elem_id="cmp-verdicts")
    go.click(page_errors(studio.compare_page), [run, takes_dir, others], [*refs, picture, metrics, verdicts],
             api_visibility="private")


def _runs_tab(studio: Studio) -> None:
    runs = [str(r) for r in studio.settings.runs]
    with gr.Row():
        run = gr.Dropdown(choices=runs, value=runs[0] if runs else None, allow_custom_value=True, label="Run", scale=3)
        show = gr.Button("Show run", variant="primary", elem_id="run-button", scale=1)
    with gr.Row():
        curves = gr.Image(type="filepath", label="loss and validation curves", interactive=False)
        with gr.Column():
            last = gr.Markdown()
            verify = gr.Markdown(elem_id="run-verify")
    step = gr.Dropdown(choices=[], label="demos of step", elem_id="run-step")
    with gr.Row():
        players = [gr.Audio(type="filepath", interactive=False, visible=False) for _ in range(DEMO_PLAYERS)]
    with gr.Accordion("model card", open=True):
        card = gr.Markdown()
    show.click(page_errors(studio.run_page), run, [curves, last, step, *players, card, verify], api_visibility="private")
    step.change(page_errors(studio.demo_players), [run, step], players, api_visibility="private")


def _api(studio: Studio) -> None:
    """Endpoints for gradio_client (``/generate``, ``/audit``), on components never shown."""
    with gr.Row(visible=False):
        prompt, duration = gr.Textbox(label="prompt"), gr.Number(label="duration_s", value=8)
        seed, model = gr.Number(label="seed", value=0, precision=0), gr.Textbox(label="model", value="tiny")
        audio, provenance = gr.Audio(type="filepath", label="audio"), gr.JSON(label="provenance")
        run, takes = gr.Textbox(label="run"), gr.Textbox(label="takes_dir")
        verdict = gr.JSON(label="audit")
        gen, aud = gr.Button(), gr.Button()
    gen.click(page_errors(studio.generate_api), [prompt, duration, seed, model], [audio, provenance], api_name="generate")
    aud.click(page_errors(studio.audit_api), [run, takes], verdict, api_name="audit")


def build_app(settings: StudioSettings) -> gr.Blocks:
    """The studio page for ``settings`` (not started)."""
    settings.validate()
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    studio = Studio(settings)
    with gr.Blocks(title="stylecraft studio") as demo:
        gr.Markdown("## stylecraft studio")
        takes_state = gr.Textbox(visible=False)
        with gr.Tab("Generate", id="generate"):
            _generate_tab(studio, takes_state)
        with gr.Tab("Compare", id="compare"):
            _compare_tab(studio, takes_state)
        with gr.Tab("Runs", id="runs"):
            _runs_tab(studio)
        _api(studio)
    demo.queue(default_concurrency_limit=1)  # one model call at a time: the machine's cores are shared
    return demo


def launch(settings: StudioSettings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, block: bool = True) -> tuple[gr.Blocks, str]:
    """Start the studio's server; returns (page, local URL); ``page.close()`` stops it.

    ``block=False`` returns once the server listens (tests, scripts); otherwise this blocks.
    """
    demo = build_app(settings)
    allowed = [str(settings.out_dir), *(str(r) for r in settings.runs)]
    # The held-out tracks the Compare tab plays live in the runs' catalogues.
    for run in settings.runs:
        try:
            allowed += sorted({str(p.parent) for p in cmp.reference_tracks(run)})
        except StylecraftError:
            pass
    _, url, _ = demo.launch(
        server_name=host, server_port=port, prevent_thread_lock=not block, allowed_paths=allowed,
        max_file_size=f"{settings.max_upload_mb:g}mb", show_error=False, quiet=True, footer_links=["api"],
        ssr_mode=False,
    )
    return demo, url
