"""An isolated reference virtualenv: built once from a package list, then used to run one worker script.

Reference tools (frechet-audio-distance, fadtk, audiocraft, ...) pin or import stacks that must not
enter stylecraft's environment. Each gets its own venv under ``eval/.cache/envs/<name>``: torch
pinned first (so nothing later pulls an unpinned CUDA build), the tools themselves with
``--no-deps``, then the few libraries their code paths import. A stamp file records the package
list; a venv whose stamp differs is rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TORCH = "torch==2.13.0"


@dataclass(frozen=True)
class IsolatedEnv:
    """One reference venv and the worker script that runs inside it.

    Attributes:
        name: Folder name under ``eval/.cache/envs``.
        worker: Script run by :meth:`run_worker` as ``python WORKER TASK JSON_ARGS``; it prints its
            answer as JSON on its last stdout line.
        no_deps: Packages installed with ``--no-deps`` (the reference tools).
        with_deps: Packages installed with their dependencies (what the tools import).
        offline: Set the Hugging Face offline switches in the worker's environment.
        with_torch: Install the pinned CPU torch first (off for tools that do not use torch and
            whose pins conflict with it, such as TensorFlow 2.12's typing-extensions).
    """

    name: str
    worker: Path
    no_deps: list[str]
    with_deps: list[str]
    offline: bool = False
    with_torch: bool = True

    @property
    def dir(self) -> Path:
        """The venv's folder."""
        return ROOT / "eval" / ".cache" / "envs" / self.name

    def python_exe(self) -> Path:
        """Path of the venv's interpreter (may not exist yet)."""
        return self.dir / "bin" / "python"

    def _stamp(self) -> dict[str, object]:
        return {"torch": TORCH if self.with_torch else None, "no_deps": self.no_deps, "with_deps": self.with_deps,
                "python": "3.11"}

    def ensure_env(self, python: str | None = None) -> Path:
        """Create the venv unless a complete one with the same package list exists.

        Args:
            python: Interpreter used to create the venv (default: ``python3.11`` on PATH).

        Returns:
            The venv's python executable.
        """
        stamp = self.dir / "stamp.json"
        if stamp.is_file() and json.loads(stamp.read_text()) == self._stamp() and self.python_exe().exists():
            return self.python_exe()
        if self.dir.exists():
            shutil.rmtree(self.dir)
        base = python or shutil.which("python3.11")  # the stamp records 3.11
        if base is None:
            raise SystemExit(f"python3.11 is needed to build the {self.name} reference environment")
        subprocess.run([base, "-m", "venv", str(self.dir)], check=True)
        pip = [str(self.python_exe()), "-m", "pip", "install", "--quiet"]
        torch = [TORCH] if self.with_torch else []
        if torch:
            subprocess.run(pip + torch, check=True)
        subprocess.run(pip + ["--no-deps", *self.no_deps], check=True)
        # Naming torch again keeps the installed CPU build while the rest resolves.
        subprocess.run(pip + [*self.with_deps, *torch], check=True)
        stamp.write_text(json.dumps(self._stamp(), indent=2) + "\n")
        return self.python_exe()

    def run_worker(self, task: str, args: dict[str, object]) -> dict[str, object]:
        """Run one task of the worker script in the venv and return its JSON answer."""
        exe = self.ensure_env()
        env = dict(os.environ, PYTHONNOUSERSITE="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        env.pop("PYTHONPATH", None)
        if self.offline:
            # Nothing may be fetched: the tools would otherwise try the hub.
            env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        proc = subprocess.run(
            [str(exe), str(self.worker), task, json.dumps(args)],
            check=False,
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name} worker {task} failed:\n{proc.stderr[-4000:]}")
        answer: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
        return answer
