"""The shared loop's learning-rate multipliers, the plateau schedule and its resume state."""

from __future__ import annotations

import pytest
import torch

from affectkit.core.config import TrainConfig
from affectkit.core.loop import LrFactor, make_scheduler


def test_plateau_drops_after_patience_and_resets() -> None:
    f = LrFactor(TrainConfig(schedule="plateau", gamma=0.5, plateau_patience=2))
    assert f(0) == 1.0
    for improved in (True, False, False):
        f.observe(improved)
    assert f(10) == 1.0  # two bad evaluations: not yet more than the patience
    f.observe(False)
    assert f(10) == 0.5 and f.bad == 0
    for _ in range(3):
        f.observe(False)
    assert f(10) == 0.25


def test_other_schedules_ignore_observations() -> None:
    f = LrFactor(TrainConfig(schedule="multistep", milestones=[5], gamma=0.1, warmup_steps=2))
    for _ in range(10):
        f.observe(False)
    assert f(0) == 0.5 and f(3) == 1.0 and f(6) == pytest.approx(0.1)


def test_plateau_level_survives_the_scheduler_state_dict() -> None:
    tc = TrainConfig(schedule="plateau", gamma=0.5, plateau_patience=0, lr=1.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, tc)
    sched.lr_lambdas[0].observe(False)
    sched.step()
    assert sched.get_last_lr()[0] == 0.5
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = make_scheduler(opt2, tc)
    sched2.load_state_dict(state)
    assert sched2.lr_lambdas[0].level == 1
    sched2.step()
    assert sched2.get_last_lr()[0] == 0.5
