"""Stopping a fine-tune that can no longer reach the accuracy constraint.

Optuna's own pruners serve single-objective studies only (``Trial.should_prune`` raises for
multi-objective ones), so the search keeps each trial's learning curve in its user attributes and
decides here. The rule: at step ``s`` with accuracy ``a``, stop when

    a + headroom(s) < min_accuracy

where ``headroom(s)`` is the largest gain from step ``s`` to the final accuracy that an earlier
finished trial of the same recipe made (its curve is measured, not assumed); while fewer than
``min_history`` such curves exist, ``default_headroom`` stands in. Nothing stops before
``warmup_steps``. The rule only ever stops a trial that would have needed a larger late gain than
any seen so far, so it errs towards finishing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class AccuracyPruner:
    """min_accuracy: the accuracy (fraction) a trial must reach to meet the constraint.
    default_headroom: the gain (fraction) still allowed while no curve of the recipe is known."""

    min_accuracy: float
    default_headroom: float = 0.05
    warmup_steps: int = 1
    min_history: int = 1

    def headroom(self, step: int, history: Sequence[tuple[dict[int, float], float]]) -> float:
        """history: (curve step -> accuracy, final accuracy) of finished trials of the recipe."""
        gains = [final - curve[step] for curve, final in history if step in curve]
        if len(gains) < self.min_history:
            return self.default_headroom
        return max(0.0, max(gains))

    def check(self, step: int, accuracy: float,
              history: Sequence[tuple[dict[int, float], float]]) -> str | None:
        """None to go on, or the reason to stop (a plain sentence)."""
        if step < self.warmup_steps:
            return None
        room = self.headroom(step, history)
        if accuracy + room < self.min_accuracy:
            return (f"stopped at step {step}: accuracy {accuracy:.4f} + at most {room:.4f} still to gain "
                    f"< {self.min_accuracy:.4f} needed")
        return None
