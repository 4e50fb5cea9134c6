"""Validation covers every held-out track with a fixed, stratified set, and logs per-track losses."""

import json

import pytest
import torch
from mini_run import mini_cfg

from stylecraft.artifacts import read_jsonl
from stylecraft.errors import StylecraftError
from stylecraft.train.batches import Collator
from stylecraft.train.conditioning import TextConditioner, item_losses, loss_on_batch
from stylecraft.train.data import ValidationSet, stratified_rows
from stylecraft.train.loop import train


class _Rows:
    """A held-out split as the token index orders it: track by track, 30 windows of A then 20 of B and 5 of C."""

    def __init__(self) -> None:
        self.rows = [{"track_id": t, "id": f"{t}-{i:04d}"} for t, n in (("A", 30), ("B", 20), ("C", 5)) for i in range(n)]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return {"codes": torch.zeros(2, 3, dtype=torch.long), "caption": "x", "id": self.rows[i]["id"]}


def test_stratified_set_covers_every_track_evenly_and_is_fixed():
    valid = _Rows()
    # The old rule, the first 8 batches of 4 in index order, saw only track A.
    assert {valid.rows[i]["track_id"] for i in range(32)} == {"A", "B"} and sum(
        valid.rows[i]["track_id"] == "A" for i in range(32)) == 30
    chosen = ValidationSet(valid, per_track=4)
    assert [chosen.tracks.count(t) for t in "ABC"] == [4, 4, 4]
    # Evenly spaced through each track: first and last window of A are in, not the first four.
    assert chosen.ids[:4] == ["A-0000", "A-0009", "A-0019", "A-0029"]
    assert stratified_rows([r["track_id"] for r in valid.rows], 4) == chosen.positions  # the same every time
    assert len(ValidationSet(valid, per_track=0)) == 55  # 0: every held-out window
    assert chosen[5]["index"] == 5


def test_item_losses_average_to_the_batch_loss():
    from stylecraft.models.loading import load_model

    bundle = load_model("tiny")
    codes = torch.randint(0, 16, (3, bundle.num_codebooks, 20))
    collate = Collator(bundle.tokenizer, bundle.pad_token_id, int(bundle.model.config.decoder.decoder_start_token_id))
    batch = collate([{"codes": c, "caption": cap} for c, cap in zip(codes, ["a", "b c", "d e f"], strict=True)])
    cond = TextConditioner(bundle, torch.device("cpu"))
    with torch.no_grad():
        per_item = item_losses(bundle.model, cond, batch)
        whole = loss_on_batch(bundle.model, cond, batch, 0.0)
        first = item_losses(bundle.model, cond, collate([{"codes": codes[0], "caption": "a"}]))
    assert per_item.shape == (3,)
    assert per_item.mean().item() == pytest.approx(whole.item(), rel=1e-5)
    assert per_item[0].item() == pytest.approx(first.item(), rel=1e-5)  # an item's loss does not depend on its batch


def test_training_logs_per_track_losses_and_refuses_another_validation_set(fresh_run):
    train(fresh_run, mini_cfg(fresh_run, "train.max_steps=2", "train.eval_every=2", "train.save_every=1",
                              "train.tensorboard=false"))
    held_out = {t["id"] for t in read_jsonl(fresh_run / "tracks.jsonl") if t["split"] == "valid"}
    row = next(r for r in read_jsonl(fresh_run / "train" / "metrics.jsonl") if "val_loss" in r)
    assert set(row["val_tracks"]) == held_out
    chosen = json.loads((fresh_run / "train" / "validation.json").read_text())
    assert set(chosen["tracks"]) == held_out and chosen["eval_per_track"] == 4
    means = list(row["val_tracks"].values())
    assert min(means) <= row["val_loss"] <= max(means)
    with pytest.raises(StylecraftError, match="eval_per_track"):
        train(fresh_run, mini_cfg(fresh_run, "train.max_steps=3", "train.eval_per_track=2"))
