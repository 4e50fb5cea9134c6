"""eval/bench_ingest.py on a small synthetic catalogue with one re-encoded copy: it runs, finds the copy, writes its figures."""

import json

import soundfile as sf
from eval_scripts import load_eval_script

from stylecraft.data.demo import synth_track


def test_bench_ingest_writes_its_figures_and_finds_the_copy(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    for i in range(3):
        sf.write(music / f"t{i}.flac", synth_track(15.0, 22050, seed=60 + i), 22050)
    sf.write(music / "t0-copy.ogg", synth_track(15.0, 22050, seed=60), 22050, format="OGG", subtype="VORBIS")
    bench = load_eval_script("bench_ingest")
    assert bench.main(["--music", str(music), "--reps", "1", "--naive-max", "4", "--out", str(tmp_path / "b")]) == 0
    res = json.loads((tmp_path / "b.json").read_text())
    assert set(res["ingest"]) == {"plain", "+duplicates", "+duplicates +analysis"}
    assert [sorted(g) for g in res["groups"]] == [["t0-copy.ogg", "t0.flac"]]
    assert res["search"]["naive_pairs_found_by_fast"] and len(res["search"]["matches_all"]) == 1
    assert "| plain |" in (tmp_path / "b.md").read_text()
