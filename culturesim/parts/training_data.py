"""The data regimes of retraining: which items a model is fitted to, each time it is refitted.

This is the bookkeeping that decides model collapse, kept free of any model so that the same
code feeds the LLM agents' LoRA retraining (`culturesim.study.retraining`) and the exact oracles
of `culturesim validate retraining` (a Gaussian refit, Gerstgrasser et al.'s linear regression),
whose theory is known. An item is anything: a text, a float, a regression row.

Two choices make a regime:

- the mix: `size` items, a `human_share` of them human-written (drawn from the human items), the
  rest machine-written; `None` takes the candidates as they come, whatever their kinds;
- the history: *replace* fits each time on the newest mix only; *accumulate* fits on every mix so
  far (Gerstgrasser et al. 2024: accumulating keeps the error bounded, replacing lets it grow).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import numpy as np

Item = TypeVar("Item")
Regime = Literal["replace", "accumulate"]
REGIMES: tuple[Regime, ...] = ("replace", "accumulate")


def human_quota(size: int, human_share: float) -> int:
    """How many of `size` items are human-written at `human_share` (rounded half to even)."""
    if not 0.0 <= human_share <= 1.0:
        raise ValueError(f"human_share must lie in [0, 1], got {human_share}")
    return int(round(size * human_share))


def draw(pool: Sequence[Item], count: int, rng: np.random.Generator) -> list[Item]:
    """`count` items of `pool`: without replacement while the pool holds enough; where it holds
    fewer, every item once (in a random order) and the rest drawn again with replacement."""
    if count <= 0:
        return []
    if not pool:
        raise ValueError(f"cannot draw {count} items from an empty pool")
    if count <= len(pool):
        return [pool[i] for i in rng.choice(len(pool), size=count, replace=False)]
    everyone = [pool[i] for i in rng.permutation(len(pool))]
    return everyone + [pool[i] for i in rng.integers(0, len(pool), size=count - len(pool))]


def draw_mix(
    human: Sequence[Item],
    machine: Sequence[Item],
    *,
    size: int,
    human_share: float | None,
    rng: np.random.Generator,
) -> tuple[list[Item], float]:
    """One training mix of `size` items and the human share it really holds.

    `human_share` None: `size` items of all candidates alike (the share is what the population
    holds). Otherwise `human_quota` items from `human` and the rest from `machine`; a kind with no
    items at all cannot fill its quota, so the other kind fills it, and the realised share says so.
    Human items come first, then machine items: the trainer shuffles with its own seed."""
    if size < 1:
        raise ValueError(f"a training mix needs at least one item, got size={size}")
    if not human and not machine:
        raise ValueError("a training mix needs candidates, and there are none")
    if human_share is None:
        both = [*human, *machine]
        chosen = draw(range(len(both)), size, rng)
        return [both[i] for i in chosen], sum(1 for i in chosen if i < len(human)) / size
    quota = human_quota(size, human_share)
    if not human:
        quota = 0
    elif not machine:
        quota = size
    mix = draw(human, quota, rng) + draw(machine, size - quota, rng)
    return mix, quota / size


@dataclass(frozen=True)
class TrainingHistory(Generic[Item]):
    """The mixes drawn so far, oldest first; `data` is what the next fit sees under a regime."""

    mixes: tuple[tuple[Item, ...], ...] = ()

    def add(self, mix: Sequence[Item]) -> TrainingHistory[Item]:
        return TrainingHistory((*self.mixes, tuple(mix)))

    def data(self, regime: Regime) -> list[Item]:
        """replace: the newest mix; accumulate: every mix so far, oldest first."""
        if not self.mixes:
            return []
        if regime == "replace":
            return list(self.mixes[-1])
        if regime == "accumulate":
            return [item for mix in self.mixes for item in mix]
        raise ValueError(f"unknown data regime {regime!r}; expected one of {REGIMES}")
