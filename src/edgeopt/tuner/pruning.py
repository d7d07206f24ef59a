"""Stopping a fine-tune that can no longer reach the accuracy constraint.

Optuna's own pruners serve single-objective studies only (``Trial.should_prune`` raises for
multi-objective ones), so the search keeps each trial's learning curve in its user attributes and
decides here. The rule: at step ``s`` with accuracy ``a``, stop when

    a + headroom(s) < min_accuracy

where ``headroom(s)`` is the larger of ``default_headroom`` and the largest gain from step ``s`` to
the final accuracy that an earlier finished trial of the same recipe made (its curve is measured,
not assumed). A measured curve may widen the allowance but never narrow it: trials of one recipe
differ in their values, and a harder one dips deeper (measured here, benchmarks/search.py on the
Fashion-MNIST CNN: magnitude pruning to 90% sparsity (global) + clustering stood at 0.861 validation
accuracy after its second epoch and ended at 0.896, a gain of 3.5 points; the same recipe at 95% stood at
0.831 at that epoch and was stopped by a 3.5-point allowance). The default is wide (15 points) for
the same reason: a sparsity ramp dips hard mid-way and recovers (90% layer-wise: 0.764 at the end
of the ramp). Nothing stops before ``warmup_steps``. The rule errs towards finishing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class AccuracyPruner:
    """min_accuracy: the accuracy (fraction) a trial must reach to meet the constraint.
    default_headroom: the gain (fraction) still allowed while no curve of the recipe is known."""

    min_accuracy: float
    default_headroom: float = 0.15
    warmup_steps: int = 1
    min_history: int = 1

    def headroom(self, step: int, history: Sequence[tuple[dict[int, float], float]]) -> float:
        """history: (curve step -> accuracy, final accuracy) of finished trials of the recipe."""
        gains = [final - curve[step] for curve, final in history if step in curve]
        if len(gains) < self.min_history:
            return self.default_headroom
        return max(self.default_headroom, max(gains))

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
