"""Build stylecraft-mini from scratch: corpus, codec, tokens, base model, shipped checkpoint.

    python eval/mini/build.py                      # everything, resuming whatever is done
    python eval/mini/build.py --until corpus       # fetch and select the music only
    python eval/mini/build.py --stages ingest,segment,codec

Work goes to ``--work`` (default ``eval/data/mini``): ``debs/`` and ``unpacked/`` (Debian packages),
``rendered/`` (tracker modules as FLAC), ``corpus/catalogue/<soundtrack>/`` and
``test/<soundtrack>/`` (links to the music), ``corpus.json`` (packages, versions, licences,
files, roles) and ``run/`` (the stylecraft run of ``recipes/mini-corpus.yaml``: every stage is
resumable, so the build can be stopped and started again across days). ``--package`` copies the
trained model into ``checkpoints/stylecraft-mini`` with its model card.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import SOURCES, collect  # noqa: E402

RECIPE = ROOT / "recipes" / "mini-corpus.yaml"


def build_corpus(work: Path) -> dict[str, Any]:
    """Fetch every package, choose its music, link it into the corpus and test catalogues."""
    from stylecraft.artifacts import atomic_write_json, sha256_file

    packages = []
    for src in SOURCES:
        pkg = collect(src, work)
        minutes = sum(f["seconds"] for f in pkg.files) / 60
        print(f"{src.package:24s} {pkg.version:22s} {len(pkg.files):3d} files {minutes:6.1f} min  [{src.role}]", flush=True)
        folder = work / ("corpus/catalogue" if src.role == "corpus" else "test") / src.soundtrack
        folder.mkdir(parents=True, exist_ok=True)
        for f in pkg.files:
            link = folder / Path(f["audio"]).name
            if not link.exists():
                link.symlink_to(Path(f["audio"]).resolve())
            f["sha256"] = sha256_file(f["audio"])
        licences = sorted({f["licence"] for f in pkg.files if f["licence"]})
        packages.append({
            "package": src.package, "version": pkg.version, "soundtrack": src.soundtrack, "role": src.role,
            "licences": licences or ["see the package's copyright file"], "copyright_sha256": pkg.copyright_sha256,
            "minutes": round(minutes, 1), "files": pkg.files,
        })
    manifest = {
        "packages": packages,
        "corpus_minutes": round(sum(p["minutes"] for p in packages if p["role"] == "corpus"), 1),
        "test_soundtracks": [p["soundtrack"] for p in packages if p["role"] == "test"],
    }
    atomic_write_json(work / "corpus.json", manifest)
    return manifest


def run_stages(work: Path, stages: str | None, overrides: list[str]) -> None:
    cmd = [sys.executable, "-m", "stylecraft", "run", str(RECIPE), "--run-dir", str(work / "run"),
           f"catalogue={work / 'corpus' / 'catalogue'}", *overrides]
    if stages:
        cmd.append(f"stages=[{stages}]")
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "eval" / "data" / "mini")
    ap.add_argument("--until", choices=["corpus", "run"], default="run")
    ap.add_argument("--stages", default=None, help="comma-separated stages of the corpus recipe (default: all)")
    ap.add_argument("--package", action="store_true", help="copy the trained model into checkpoints/stylecraft-mini")
    ap.add_argument("overrides", nargs="*", help="recipe overrides, key=value")
    args = ap.parse_args()
    manifest = build_corpus(args.work)
    print(f"corpus: {manifest['corpus_minutes']} min; held out: {', '.join(manifest['test_soundtracks'])}", flush=True)
    if args.until == "corpus":
        return
    run_stages(args.work, args.stages, args.overrides)
    if args.package:
        from package import package_mini

        package_mini(args.work / "run", args.work / "corpus.json")


if __name__ == "__main__":
    main()
