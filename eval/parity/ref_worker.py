"""Runs inside the reference venv (eval/parity/refenv.py): the reference tools' own code on given inputs.

Invoked as ``python ref_worker.py TASK JSON_ARGS``; prints one JSON line with the answer.
Nothing from stylecraft is imported here. Modules that the reference packages import at module
level but that the exercised code paths never call (torchaudio, laion_clap, torchlibrosa) are
replaced by empty stand-ins before the packages are imported; anything those paths did call
would fail loudly with AttributeError rather than silently change a number.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
from worker_stubs import Unused, stub
from worker_stubs import versions as worker_versions


def install_stubs() -> None:
    """Stand-ins for heavy imports the reference packages make at import time."""
    ta = stub("torchaudio")
    ta.transforms = stub("torchaudio.transforms", Resample=Unused)
    ta.functional = stub("torchaudio.functional")
    ta.load = ta.save = Unused
    stub("laion_clap", CLAP_Module=Unused)
    tl = stub("torchlibrosa")
    tl.stft = stub("torchlibrosa.stft", Spectrogram=Unused, LogmelFilterBank=Unused, STFT=Unused)
    tl.augmentation = stub("torchlibrosa.augmentation", SpecAugmentation=Unused)


def versions() -> dict[str, str]:
    return worker_versions(
        ("frechet-audio-distance", "fadtk", "torchvggish", "encodec", "numpy", "scipy", "torch", "resampy", "transformers")
    )


def task_frechet(args: dict[str, Any]) -> dict[str, Any]:
    """FAD of each (a, b) embedding pair with both tools' statistics and Fréchet functions."""
    import fadtk.fad as fadtk_fad
    from frechet_audio_distance.fad import FrechetAudioDistance as FAD1

    fad1 = object.__new__(FAD1)  # only the numpy methods are used; skip model loading
    data = np.load(args["npz"])
    out: dict[str, Any] = {}
    for case in args["cases"]:
        a, b = data[f"{case}_a"], data[f"{case}_b"]
        row: dict[str, Any] = {}
        try:
            mu1, s1 = fad1.calculate_embd_statistics(a)
            mu2, s2 = fad1.calculate_embd_statistics(b)
            row["frechet_audio_distance"] = float(np.real(fad1.calculate_frechet_distance(mu1, s1, mu2, s2)))
        except Exception as exc:  # recorded, not hidden: the suite reports reference failures
            row["frechet_audio_distance_error"] = f"{type(exc).__name__}: {exc}"
        try:
            mu1, s1 = fadtk_fad.calc_embd_statistics(a)
            mu2, s2 = fadtk_fad.calc_embd_statistics(b)
            row["fadtk"] = float(np.real(fadtk_fad.calc_frechet_distance(mu1, s1, mu2, s2)))
        except Exception as exc:
            row["fadtk_error"] = f"{type(exc).__name__}: {exc}"
        out[case] = row
    return {"results": out, "versions": versions()}


def task_fad_inf(args: dict[str, Any]) -> dict[str, Any]:
    """fadtk's ``score_inf`` on a baseline Gaussian and eval embedding files, seeded global RNG."""
    import fadtk.fad as fadtk_fad

    fad = object.__new__(fadtk_fad.FrechetAudioDistance)
    fad.ml = types.SimpleNamespace(name=args["model_name"])
    np.random.seed(args["seed"])
    res = fad.score_inf(args["baseline_npz"], [Path(p) for p in args["eval_files"]], steps=args["steps"], min_n=args["min_n"])
    return {
        "score": float(res.score),
        "slope": float(res.slope),
        "r2": float(res.r2),
        "points": [[int(n), float(v)] for n, v in res.points],
        "versions": versions(),
    }


def _hub_vggish(state_path: str, pca_path: str | None) -> Any:
    """The model ``torch.hub.load('harritaylor/torchvggish', 'vggish')`` returns, on given weights.

    The hub entry point (torchvggish master) is the pip package's VGG network plus a ``forward(x,
    fs)`` that first runs ``waveform_to_examples``; the hub download is replaced by local files.
    """
    import torch
    import torchvggish
    from torchvggish import torchvggish as tv

    class HubVGGish(tv.VGG):
        def __init__(self) -> None:
            super().__init__(tv.make_layers(), postprocess=False)
            self.load_state_dict(torch.load(state_path, map_location="cpu"))
            self.postprocess = pca_path is not None
            if pca_path is not None:
                params = torch.load(pca_path, map_location="cpu", weights_only=False)
                pproc = object.__new__(tv.Postprocessor)
                pproc._pca_matrix = torch.as_tensor(params["pca_eigen_vectors"]).float()
                pproc._pca_means = torch.as_tensor(params["pca_means"].reshape(-1, 1)).float()
                self.pproc = pproc
            self.device = torch.device("cpu")

        def forward(self, x: Any, fs: Any = None) -> Any:
            x = torchvggish.waveform_to_examples(x, fs)
            return tv.VGG.forward(self, x.to(self.device))

    return HubVGGish()


def task_vggish(args: dict[str, Any]) -> dict[str, Any]:
    """Per-clip torchvggish embeddings and frechet-audio-distance's end-to-end VGGish FAD."""
    import time

    import torch
    from frechet_audio_distance import fad as fad_mod
    from frechet_audio_distance.utils import load_audio_task

    def hub_load(*a: Any, **k: Any) -> Any:
        return _hub_vggish(args["weights"], args.get("pca"))

    torch.hub.load = hub_load
    torch.set_num_threads(args.get("threads", 1))
    out: dict[str, Any] = {"versions": versions()}
    if args.get("clips"):
        model = hub_load()
        if not args["use_pca"]:
            model.postprocess = False
        if not args["use_activation"]:
            model.embeddings = torch.nn.Sequential(*list(model.embeddings.children())[:-1])
        model.eval()
        embs = {}
        for i, path in enumerate(args["clips"]):
            wav = load_audio_task(path, 16000, 1, "float32")
            embs[f"clip{i}"] = model.forward(wav, 16000).detach().numpy()
        np.savez(args["out_npz"], **embs)
    if args.get("background"):
        t0 = time.perf_counter()
        c0 = time.process_time()  # CPU seconds of every thread of this process
        fad = fad_mod.FrechetAudioDistance(
            model_name="vggish", sample_rate=16000, use_pca=args["use_pca"], use_activation=args["use_activation"],
            audio_load_worker=args.get("load_workers", 8),
        )
        out["fad"] = float(fad.score(args["background"], args["eval"]))
        out["fad_seconds"] = time.perf_counter() - t0
        out["fad_cpu_seconds"] = time.process_time() - c0
    return out


def task_encodec(args: dict[str, Any]) -> dict[str, Any]:
    """Random-init ``encodec`` package model: its state dict, per-clip features, end-to-end FAD."""
    import time

    import torch
    from encodec import EncodecModel
    from frechet_audio_distance import fad as fad_mod
    from frechet_audio_distance.utils import load_audio_task

    torch.set_num_threads(args.get("threads", 1))
    variant = args["variant"]
    torch.manual_seed(args["seed"])
    model = EncodecModel.encodec_model_24khz(pretrained=False) if variant == "24k" else EncodecModel.encodec_model_48khz(pretrained=False)
    model.eval()
    torch.save(model.state_dict(), args["state_out"])
    sr = model.sample_rate
    channels = model.channels
    out: dict[str, Any] = {"versions": versions(), "sample_rate": sr}

    # frechet-audio-distance's own get_embeddings on its own loader's output.
    fad = object.__new__(fad_mod.FrechetAudioDistance)
    fad.model_name, fad.model, fad.device, fad.verbose = "encodec", model, torch.device("cpu"), False
    embs = {}
    for i, path in enumerate(args["clips"]):
        wav = load_audio_task(path, sr, channels, "float32")
        embs[f"clip{i}"] = fad.get_embeddings([wav], sr)
    if variant == "48k":
        # fadtk 1.1.0 cuts the 48 kHz input into the model's 1 s segments.
        from fadtk.model_loader import EncodecEmbModel

        ml = object.__new__(EncodecEmbModel)
        ml.model, ml.device, ml.sr = model, torch.device("cpu"), sr
        for i, path in enumerate(args["clips"]):
            wav = load_audio_task(path, sr, channels, "float32")
            x = torch.tensor(np.atleast_2d(wav.T if wav.ndim == 2 else np.stack([wav, wav]))).float()[None]
            embs[f"fadtk{i}"] = ml._get_embedding(x).numpy()
    np.savez(args["out_npz"], **embs)

    if args.get("background"):
        fad_mod.EncodecModel.encodec_model_24khz = staticmethod(lambda: model)
        fad_mod.EncodecModel.encodec_model_48khz = staticmethod(lambda: model)
        t0 = time.perf_counter()
        scorer = fad_mod.FrechetAudioDistance(model_name="encodec", sample_rate=sr, channels=channels)
        out["fad"] = float(scorer.score(args["background"], args["eval"]))
        out["fad_seconds"] = time.perf_counter() - t0
    return out


def task_clap(args: dict[str, Any]) -> dict[str, Any]:
    """fadtk 1.1.0's CLAP windowing loop with transformers' ClapFeatureExtractor + ClapModel per window.

    The loop (int16 round trip, 10 s windows every 1 s, zero padding) is fadtk's
    ``CLAPLaionModel._get_embedding``; laion_clap's ``get_audio_embedding_from_data`` is replaced
    by transformers' documented pipeline on the same saved model, one window at a time.
    """
    import torch
    from frechet_audio_distance.utils import load_audio_task
    from transformers import ClapFeatureExtractor, ClapModel

    torch.set_num_threads(args.get("threads", 1))
    model = ClapModel.from_pretrained(args["model_dir"]).eval()
    fe = ClapFeatureExtractor.from_pretrained(args["model_dir"])
    sr = 48000

    def int16_to_float32(x: np.ndarray) -> np.ndarray:
        return (x / 32767.0).astype(np.float32)

    def float32_to_int16(x: np.ndarray) -> np.ndarray:
        x = np.clip(x, a_min=-1.0, a_max=1.0)
        return (x * 32767.0).astype(np.int16)

    embs = {}
    for i, path in enumerate(args["clips"]):
        audio = load_audio_task(path, sr, 1, "float32").reshape(1, -1)
        audio = int16_to_float32(float32_to_int16(audio))
        chunk_size, hop_size = 10 * sr, sr
        chunks = [audio[:, j : j + chunk_size] for j in range(0, audio.shape[1], hop_size)]
        rows = []
        for chunk in chunks:
            with torch.no_grad():
                chunk = chunk if chunk.shape[1] == chunk_size else np.pad(chunk, ((0, 0), (0, chunk_size - chunk.shape[1])))
                inputs = fe(chunk[0], sampling_rate=sr, return_tensors="pt")
                out = model.get_audio_features(**inputs)
                rows.append(out.pooler_output if hasattr(out, "pooler_output") else out)
        embs[f"clip{i}"] = torch.cat(rows, dim=0).numpy()
    np.savez(args["out_npz"], **embs)
    return {"versions": versions()}


TASKS = {"frechet": task_frechet, "fad_inf": task_fad_inf, "vggish": task_vggish, "encodec": task_encodec, "clap": task_clap}


def main() -> None:
    install_stubs()
    task, raw = sys.argv[1], sys.argv[2]
    result = TASKS[task](json.loads(raw))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
