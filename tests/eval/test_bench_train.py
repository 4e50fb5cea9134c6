"""eval/bench_train.py on the tiny preset: both loops do the same work, every figure is written."""

import copy
import json
import math

import pytest
import torch
from eval_scripts import load_eval_script


@pytest.fixture(scope="module")
def bench():
    return load_eval_script("bench_train")


def test_main_writes_every_field_and_the_loops_agree(bench, tmp_path):
    """Two steps of each loop on 0.8 s windows (40 frames) through main() (in this process, for speed)."""
    rc = bench.main(["--arch", "tiny", "--in-process", "--windows", "0.8", "--modes", "full", "--warmup", "1",
                     "--steps", "1", "--batch", "2", "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "bench_train.json").read_text())
    for key in ("date", "args", "machine", "versions", "load_before", "load_after", "runs", "pairs", "same_work",
                "cpu_matmul_flops_before", "cpu_matmul_flops_after", "e2e_note"):
        assert key in res, key
    assert res["cpu_matmul_flops"] > 0
    assert [r["loop"] for r in res["runs"]] == ["plain", "stylecraft"]
    plain, sc = res["runs"]
    for r in res["runs"]:
        assert len(r["step_s_all"]) == len(r["loss_all"]) == 2
        for key in ("step_s", "frames_per_s", "tokens_per_s", "flops_per_s", "model_flops_per_step", "peak_bytes",
                    "peak_rss_delta_bytes", "trainable_params"):
            assert r[key] > 0 and math.isfinite(r[key]), key
        assert r["tokens_per_s"] == pytest.approx(4 * r["frames_per_s"])  # 4 codebooks per frame
        assert r["mfu"] is None  # no CPU peak is claimed
    # The same items in the same order and the same losses, step by step.
    assert plain["items_read"] == sc["items_read"] and len(sc["items_read"]) == 4
    assert plain["loss_all"] == pytest.approx(sc["loss_all"], abs=1e-4)
    assert res["same_work"] == [{"window_s": 0.8, "mode": "full", "repeat": 0, "ok": True, "steps": 2,
                                 "tolerance": 1e-4, "max_abs_loss_diff": pytest.approx(0.0, abs=1e-4)}]
    # stylecraft's loop logged its own per-step wall time and token rate in metrics.jsonl
    assert all(x > 0 for x in sc["tokens_per_s_logged"])
    pair = res["pairs"][0]
    assert pair["speedup"] > 0 and pair["memory_ratio"] > 0
    assert 0 < pair["stylecraft"]["share_of_cpu_matmul"] == pytest.approx(
        pair["stylecraft"]["flops_per_s"] / res["cpu_matmul_flops"])
    md = (tmp_path / "bench_train.md").read_text()
    assert "| 1 s (40 frames) | full |" in md and "| 1 s | full | 0 | same |" in md


def test_same_work_check_fails_loudly(bench):
    """Runs that differ in their losses, items or optimizer steps are refused, naming the difference."""
    base = {"loop": "plain", "mode": "lora", "frames": 40, "batch": 2, "steps": 1, "warmup": 1, "layers": 2,
            "arch": "tiny", "device": "cpu", "seed": 0, "items_read": [3, 1, 0, 2], "trainable_params": 10,
            "lora_params": 10, "loss_all": [5.5, 5.49], "lr_all": [5e-5, 1e-4]}
    sc = {**copy.deepcopy(base), "loop": "stylecraft", "optimizer_steps": [1, 2]}
    assert bench.check_same_work(base, sc)["ok"]
    with pytest.raises(RuntimeError, match="losses differ"):
        bench.check_same_work(base, {**sc, "loss_all": [5.5, 5.4905]})
    with pytest.raises(RuntimeError, match="different items"):
        bench.check_same_work(base, {**sc, "items_read": [1, 3, 0, 2]})
    with pytest.raises(RuntimeError, match="optimizer steps"):
        bench.check_same_work(base, {**sc, "optimizer_steps": [1, 3]})
    with pytest.raises(RuntimeError, match="learning rates"):
        bench.check_same_work(base, {**sc, "lr_all": [1e-4, 1e-4]})
    with pytest.raises(RuntimeError, match="frames"):
        bench.check_same_work(base, {**sc, "frames": 80})


def test_flops_formula_is_six_params_per_position_plus_attention(bench):
    """Full fine-tuning with no text: 6 x (decoder matmul weights) x positions, plus the attention term."""
    from stylecraft.models.presets import tiny_config

    dec = tiny_config().decoder
    layer_weights = 4 * dec.hidden_size**2 + 2 * dec.hidden_size * dec.ffn_dim  # self q,k,v,o + fc1, fc2
    cross_q_o = 2 * dec.hidden_size**2
    heads = dec.num_codebooks * dec.hidden_size * dec.vocab_size
    n = dec.num_hidden_layers * (layer_weights + cross_q_o) + heads
    s = 100 + dec.num_codebooks - 1
    attention = 6 * dec.num_hidden_layers * s * s * 2 * dec.hidden_size
    assert bench.train_flops(dec, 1, 100, 0, "full") == pytest.approx(6 * n * s + attention)
    assert bench.train_flops(dec, 1, 100, 0, "lora", 0) == pytest.approx((6 * n * s + attention) * 2 / 3)
    # X text tokens: cross k,v over them, attention scores over S + X keys, and a T5 -> decoder projection.
    x, t5 = 7, 2 * dec.hidden_size
    with_text = 6 * (n * s + dec.num_hidden_layers * (x * 2 * dec.hidden_size**2 + s * x * 2 * dec.hidden_size)
                     + x * t5 * dec.hidden_size) + attention
    assert bench.train_flops(dec, 1, 100, x, "full", 0, t5) == pytest.approx(with_text)


def test_musicgen_small_config_has_small_shapes(bench):
    cfg = bench.musicgen_small_config()
    dec = cfg.decoder
    assert (dec.num_hidden_layers, dec.hidden_size, dec.num_attention_heads, dec.ffn_dim) == (24, 1024, 16, 4096)
    assert (dec.num_codebooks, dec.vocab_size, cfg.text_encoder.d_model, cfg.audio_encoder.sampling_rate) == (
        4, 2048, 768, 32000)


def test_e2e_of_an_hour_refuses_on_cpu_with_one_line(bench, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert bench.main(["--e2e"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device cuda" in err


@pytest.mark.slow
def test_e2e_mode_trains_two_epochs_and_writes_its_report(bench, tmp_path):
    """The one-command GPU measurement, on the tiny preset and one minute of audio (2 windows, 2 epochs)."""
    rc = bench.main(["--e2e", "--arch", "tiny", "--e2e-audio-s", "60", "--batch", "1", "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "bench_train_e2e_cpu.json").read_text())
    e = res["e2e"]
    assert (e["items"], e["steps"], e["epochs"], e["audio_s"]) == (2, 4, 2, 60)
    assert e["summary"]["steps"] == 4 and e["wall_s"] > 0 and e["peak_rss_delta_bytes"] > 0
    assert "4 steps (2 epochs)" in (tmp_path / "bench_train_e2e_cpu.md").read_text()


def test_plain_loop_uses_none_of_stylecraft_training_code(bench):
    """The baseline is built from transformers', peft's and accelerate's pieces: no stylecraft
    collator, sampler or LoRA helper (it takes only the recipe's numbers)."""
    import inspect

    source = inspect.getsource(bench.run_plain) + inspect.getsource(bench.plain_collate)
    assert "stylecraft.train" not in source and "Collator" not in source and "_apply_lora" not in source
    assert "build_delay_pattern_mask" in source and "get_peft_model" in source and "Accelerator" in source
