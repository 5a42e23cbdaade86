"""The benchmark's records: what one run trains (Settings, Recipe) and what it measured (Timing)."""

from __future__ import annotations

import dataclasses
import itertools
import sys
from typing import Any


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much one benchmark run trains."""

    steps: int  # optimiser steps per member
    members: int  # K of the jaxnn ensemble and of the torch.func vmap
    sequential_members: int  # members trained one after another by jaxnn.core.loop.fit
    baseline_members: int  # members timed for scikit-learn and PyTorch eager
    scaling_steps: int  # steps per member of the K-scaling runs
    scaling_members: tuple[int, ...]  # the K of the K-scaling runs
    matmul_repeats: int
    scaling_budget_s: float = 300.0  # the longest a baseline's next K may take (predicted)


PRESETS = {
    "full": Settings(6000, 32, 32, 4, 1000, (1, 8, 32, 128, 512, 1024, 4096), 10, 300.0),
    "quick": Settings(500, 32, 4, 2, 200, (1, 8, 32, 128, 512, 1024), 5, 60.0),
    "smoke": Settings(20, 4, 2, 2, 20, (1, 4), 3, 10.0),
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What every method trains, read from the jaxnn config and the data."""

    layer_sizes: tuple[int, ...]  # (inputs, *hidden, outputs)
    batch_size: int
    learning_rate: float
    momentum: float

    @property
    def flops_per_member_step(self) -> float:
        """3 x forward matmul FLOPs: forward 2*B*sum(fan_in*fan_out), backward about 2x forward."""
        return 3 * 2 * self.batch_size * sum(a * b for a, b in itertools.pairwise(self.layer_sizes))

    @property
    def flops_formula(self) -> str:
        products = " + ".join(f"{a}x{b}" for a, b in itertools.pairwise(self.layer_sizes))
        return (
            f"3 x 2 x B x sum(fan_in x fan_out) = 3 x 2 x {self.batch_size} x ({products}) "
            "(forward 2*B*sum, backward about 2x forward; elementwise ops, loss and update not counted)"
        )


@dataclasses.dataclass
class Timing:
    """The measured training time of one method.

    `train_s` is the time of `members` members training `steps` steps each, compilation and
    warm-up excluded; `per_member_s` rescales it to one member and `target_steps` steps.
    """

    key: str
    method: str
    members: int
    steps: int
    target_steps: int
    train_s: float
    test_accuracy: float  # mean over the timed members, final weights: a sanity check
    member_s: list[float] = dataclasses.field(default_factory=list)  # per member, when sequential
    compile_s: float = 0.0
    note: str = ""
    member_group: int | None = None  # jaxnn: members each device ran at once (0: all)
    memory: dict[str, Any] | None = None  # jaxnn: the memory account (jaxnn.core.memory)

    @classmethod
    def one_after_another(
        cls,
        *,
        key: str,
        method: str,
        steps: int,
        target_steps: int,
        member_s: list[float],
        accuracies: list[float],
        note: str,
        compile_s: float = 0.0,
    ) -> Timing:
        """The Timing of members trained one after another: their times summed, accuracies averaged."""
        return cls(
            key=key,
            method=method,
            members=len(member_s),
            steps=steps,
            target_steps=target_steps,
            train_s=sum(member_s),
            test_accuracy=float(sum(accuracies) / len(accuracies)),
            member_s=member_s,
            compile_s=compile_s,
            note=note,
        )

    @property
    def per_member_s(self) -> float:
        return self.train_s / self.members * self.target_steps / self.steps

    @property
    def member_steps_per_s(self) -> float:
        return self.members * self.steps / self.train_s

    def to_json(self, reference: Timing | None = None) -> dict[str, Any]:
        record = {
            **dataclasses.asdict(self),
            "per_member_s": self.per_member_s,
            "member_steps_per_s": self.member_steps_per_s,
        }
        if reference is not None:
            record["speedup_of_jaxnn_ensemble"] = self.per_member_s / reference.per_member_s
        return record


def log(message: str) -> None:
    """A progress line on stderr (stdout carries the results)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
