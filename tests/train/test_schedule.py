"""The learning-rate schedule: a new run follows transformers' cosine with warm-up; a resume with a
larger max_steps continues from the rate it had reached instead of jumping."""

import math

import torch
from mini_run import mini_cfg
from transformers import get_cosine_schedule_with_warmup

from stylecraft.artifacts import read_jsonl
from stylecraft.train.loop import train
from stylecraft.train.schedule import continue_phases, factor, new_phase


def test_one_phase_is_transformers_cosine_with_warmup():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = get_cosine_schedule_with_warmup(opt, 10, 100).lr_lambdas[0]
    phases = [new_phase(0, 100, 0.0, 10)]
    assert all(math.isclose(factor(phases, s), reference(s), abs_tol=1e-12) for s in range(0, 101))


def test_a_new_phase_starts_where_the_rate_was():
    phases = [new_phase(0, 100, 0.0, 10)]
    before = factor(phases, 60)
    assert continue_phases(phases, 60, 200, 10)
    assert math.isclose(factor(phases, 60), before)  # no jump at the resume step
    assert factor(phases, 70) == 1.0 and math.isclose(factor(phases, 200), 0.0, abs_tol=1e-12)
    assert not continue_phases(phases, 120, 200, 10)  # same max_steps: nothing added


def test_training_longer_warms_up_again_from_where_the_rate_was(fresh_run):
    args = ("train.save_every=2", "train.eval_every=100", "train.tensorboard=false", "train.warmup_steps=3",
            "train.log_every=1")
    train(fresh_run, mini_cfg(fresh_run, "train.max_steps=4", *args))
    train(fresh_run, mini_cfg(fresh_run, "train.max_steps=8", *args))
    lr = {r["step"]: r["lr"] / 2e-3 for r in read_jsonl(fresh_run / "train" / "metrics.jsonl")}
    # The first run's cosine ended at 0. Rebuilt for 8 steps, the schedule would resume at
    # 0.5 * (1 + cos(0.4 pi)) = 0.65 of the peak; the new phase rises from 0 over 3 steps instead.
    assert lr[4] < 1e-9
    assert [round(lr[s], 6) for s in (5, 6, 7)] == [round(1 / 3, 6), round(2 / 3, 6), 1.0]
    assert lr[8] < 1e-9
