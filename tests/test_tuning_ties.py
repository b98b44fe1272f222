"""Tuning picks its best trial by a documented rule, also when trials tie."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from regbench.engine.tuning import pick_best


def _trial(trial_id: str, score: float, val_loss: float | None):
    def last(name: str):
        if val_loss is None:
            raise KeyError(name)
        return val_loss

    return SimpleNamespace(
        trial_id=trial_id, score=score, metrics=SimpleNamespace(get_last_value=last)
    )


def test_the_lower_val_loss_breaks_a_tie():
    trials = [_trial("00", 0.5, 1.2), _trial("01", 0.5, 0.9), _trial("02", 0.4, 0.1)]
    best, tied = pick_best(trials)
    assert best.trial_id == "01"
    assert [t.trial_id for t in tied] == ["00", "01"]


def test_then_the_earlier_trial():
    trials = [_trial("03", 0.5, None), _trial("01", 0.5, None)]
    best, tied = pick_best(trials)
    assert best.trial_id == "01" and len(tied) == 2


@given(st.lists(st.tuples(st.sampled_from([0.1, 0.2, 0.3]), st.floats(0, 5)), min_size=1))
def test_the_best_has_the_top_score_and_no_tie_is_reported_alone(scores):
    trials = [_trial(f"{i:02d}", s, loss) for i, (s, loss) in enumerate(scores)]
    best, tied = pick_best(trials)
    top = max(s for s, _ in scores)
    assert best.score == top
    assert len(tied) != 1
    assert (len(tied) > 1) == (sum(s == top for s, _ in scores) > 1)
