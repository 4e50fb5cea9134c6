"""Settings of the tokenized mini run used by the training tests."""

from stylecraft.config import load_recipe

MINI = [
    "name=mini",
    "artist=demo artist",
    "stages=[demo,ingest,segment,augment,tokenize]",
    "demo.tracks=3",
    "demo.duration_s=14",
    "ingest.valid_fraction=0.34",
    "segment.window_s=4",
    "segment.hop_s=2",
    "segment.workers=1",
    "augment.pitch_semitones=[1]",
    "augment.stretch_rates=[1.1]",
    "augment.workers=1",
    "train.batch_size=4",
    "train.lr=2e-3",
    "train.warmup_steps=2",
    "train.eval_per_track=4",
]


def mini_cfg(run, *extra):
    return load_recipe(None, MINI + [f"run_dir={run}", "stages=[train]", *extra])
