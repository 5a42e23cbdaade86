"""`Predictor`: trained members' stacked best-validation weights and model state (never
changed), the training's `Preprocessing` and the selected member. It takes RAW inputs
[N, *feature_shape] and answers in the user's units (decoded labels, targets in target units).
`member` is "best", "ensemble" (the average prediction of the members summary.json's ensemble
averages) or a member index. Inputs go in batches of `batch_size` rows, the last one padded, so
a large x neither exhausts device memory nor compiles more than two programs per member choice.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxnn.data.preprocessing import Preprocessing
from jaxnn.errors import ConfigError, DataError
from jaxnn.nn.family import apply_model
from jaxnn.nn.losses import PerExampleLoss, Predict
from jaxnn.nn.metrics import Metric, r2

BATCH_ROWS = 8192


@dataclasses.dataclass(frozen=True, eq=False)
class MemberGroup:
    """Members that share one architecture (a structural variant; a plain run is one group).

    Attributes:
      model: hparams -> the member's `flax.linen.Module`.
      params, model_state: weights and non-params collections ({} for a model without them),
        every leaf [num_members, ...]; hparams: name -> float32 [num_members].
      loss: (outputs [B, O], targets) -> [B]; predict: outputs [B, O] -> what the ensemble
        averages; metrics: (name, Metric) pairs, the task's built-in ones then the user's.
    """

    model: Callable[[Mapping[str, Any]], nn.Module]
    params: Any
    hparams: Mapping[str, np.ndarray]
    loss: PerExampleLoss
    predict: Predict
    metrics: tuple[tuple[str, Metric], ...]
    model_state: Any = dataclasses.field(default_factory=dict)

    @property
    def num_members(self) -> int:
        return len(jax.tree_util.tree_leaves(self.params)[0])

    @functools.cached_property
    def _apply(self) -> Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, jax.Array]]:
        def one(p: Any, s: Any, h: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
            out = apply_model(self.model(h), p, x, model_state=s)
            return out, self.predict(out)

        return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None)))

    def outputs(
        self, local: Sequence[int], batches: Iterator[np.ndarray], num: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(outputs, predictions) of members `local` on the batches: each [m, num, O]."""
        index = np.asarray(local)
        params, model_state = jax.tree_util.tree_map(
            lambda leaf: jnp.asarray(np.asarray(leaf)[index]), (self.params, self.model_state)
        )
        hparams = {k: jnp.asarray(np.asarray(v)[index]) for k, v in self.hparams.items()}
        parts = [
            jax.device_get(self._apply(params, model_state, hparams, jnp.asarray(b)))
            for b in batches
        ]
        outputs, predictions = (np.concatenate(p, axis=1)[:, :num] for p in zip(*parts))
        return outputs, predictions


class Predictor:
    """Trained members that predict on raw inputs (see the module docstring).

    Attributes:
      classes_: the decoded labels (None for regression); best_member: None when every member
        diverged; diverged, in_ensemble: bool [num_members] (in_ensemble: what "ensemble"
        averages); params, model_state: stacked, a list per structural variant if several.
    """

    def __init__(
        self,
        groups: Sequence[MemberGroup],
        *,
        preprocessing: Preprocessing,
        diverged: Sequence[bool] | np.ndarray,
        best_member: int | None,
        config: ml_collections.ConfigDict,
        batch_size: int = BATCH_ROWS,
        left_out_of_ensemble: Sequence[bool] | np.ndarray | None = None,
    ) -> None:
        """`left_out_of_ensemble` (bool [num_members]): members the ensemble leaves out besides
        the diverged ones (`jaxnn.reporting.summary.in_ensemble`)."""
        self.groups = tuple(groups)
        self.preprocessing = preprocessing
        self.diverged = np.asarray(diverged, bool)
        self.in_ensemble = ~self.diverged
        if left_out_of_ensemble is not None:
            self.in_ensemble &= ~np.asarray(left_out_of_ensemble, bool)
        self.best_member = None if best_member is None else int(best_member)
        self.config = config
        self.batch_size = int(batch_size)
        self._owner = [
            (g, i) for g, group in enumerate(self.groups) for i in range(group.num_members)
        ]
        if len(self._owner) != len(self.diverged):
            raise ValueError(f"{len(self.diverged)} diverged flags for {len(self._owner)} members")

    @property
    def task(self) -> str:
        return self.preprocessing.task

    @property
    def classes_(self) -> np.ndarray | None:
        return self.preprocessing.classes

    @property
    def num_members(self) -> int:
        return len(self._owner)

    @property
    def n_features_in_(self) -> int:
        return self.preprocessing.num_features

    @property
    def params(self) -> Any:
        if len(self.groups) == 1:
            return self.groups[0].params
        return [group.params for group in self.groups]

    @property
    def model_state(self) -> Any:
        if len(self.groups) == 1:
            return self.groups[0].model_state
        return [group.model_state for group in self.groups]

    @property
    def module(self) -> nn.Module:
        """The selected member's Module (member 0's when no member is selected)."""
        group, local = self._owner[self.best_member or 0]
        hparams = {k: float(np.asarray(v)[local]) for k, v in self.groups[group].hparams.items()}
        return self.groups[group].model(hparams)

    def __repr__(self) -> str:
        return (
            f"Predictor({self.task}, {self.num_members} member(s), best_member="
            f"{self.best_member}, {self.n_features_in_} features)"
        )

    def predict_proba(self, x: Any, *, member: Any = "best") -> np.ndarray:
        """Class probabilities [N, num_classes] of raw inputs x [N, *feature_shape] (what the
        members' `predict` gives: softmax for cross_entropy, sigmoid for binary_cross_entropy).

        Raises:
          ConfigError: a regression model, or a `member` that is not one of the choices.
          DataError: x of the wrong shape, or NaN / infinite values.
        """
        if self.task != "classification":
            raise ConfigError(
                "predict_proba needs a classification model; this one is a regression model "
                "(use predict)"
            )
        return self._predictions(x, member)[1]

    def predict(self, x: Any, *, member: Any = "best") -> np.ndarray:
        """Decoded labels [N] (classification) or predictions in target units [N] (one target)
        or [N, num_outputs] of raw inputs x [N, *feature_shape].

        Raises:
          ConfigError: a `member` that is not one of the choices.
          DataError: x of the wrong shape, or NaN / infinite values.
        """
        _, predictions = self._predictions(x, member)
        if self.task == "classification":
            return self.preprocessing.decode_labels(np.argmax(predictions, axis=-1))
        values = self.preprocessing.in_target_units(predictions)
        return values[:, 0] if values.shape[1] == 1 else values

    def score(self, x: Any, y: Any, *, member: Any = "best") -> float:
        """Accuracy (classification) or R^2 in target units (regression), as scikit-learn's.

        Raises:
          DataError: a label the model does not know, or x / y of the wrong shape.
        """
        targets = self._targets(x, y)
        _, predictions = self._predictions(x, member)
        if self.task == "classification":
            return float(np.mean(np.argmax(predictions, axis=-1) == targets))
        units = self.preprocessing.in_target_units(predictions)
        truth = np.asarray(y, np.float64).reshape(len(targets), -1)
        return float(r2(jnp.asarray(units), jnp.asarray(truth)))

    def evaluate(self, x: Any, y: Any, *, member: Any = "best") -> dict[str, float]:
        """Every metric of the run on (x, y): loss, accuracy (or r2 and rmse), the user's.

        A member's loss and metrics are those of training, computed on its outputs. For the
        ensemble they are computed on the averaged prediction, read as outputs: the log of the
        mean probabilities (classification) or the mean prediction (regression).
        """
        targets = self._targets(x, y)
        outputs, predictions = self._predictions(x, member, averaged=False)
        group = self.groups[self._owner[self._members(member)[0]][0]]
        if outputs.shape[0] == 1:
            outputs = outputs[0]
        elif self.task == "classification":
            outputs = np.log(np.maximum(predictions.mean(axis=0), np.finfo(np.float32).tiny))
        else:
            outputs = predictions.mean(axis=0)
        read, wanted = jnp.asarray(outputs), jnp.asarray(targets)
        metrics = {name: float(metric.fn(read, wanted)) for name, metric in group.metrics}
        return {"loss": float(jnp.mean(group.loss(read, wanted))), **metrics}

    def _members(self, member: Any) -> list[int]:
        """The global indices that answer for `member`."""
        if isinstance(member, str) and member == "best":
            if self.best_member is None:
                raise ConfigError(
                    "no member is selected (every member diverged); there is nothing to "
                    "predict with"
                )
            return [self.best_member]
        if isinstance(member, str) and member == "ensemble":
            included = [int(i) for i in np.flatnonzero(self.in_ensemble)]
            if not included:
                raise ConfigError(
                    "every member diverged, exploded or was pruned: the ensemble has no member"
                )
            return included
        if isinstance(member, numbers.Integral) and not isinstance(member, bool):
            if not 0 <= int(member) < self.num_members:
                raise ConfigError(
                    f"member={member} is out of range: this model has {self.num_members} "
                    f"member(s), 0..{self.num_members - 1}"
                )
            return [int(member)]
        raise ConfigError(f'member must be "best", "ensemble" or a member index, got {member!r}')

    def _batches(self, x: np.ndarray) -> Iterator[np.ndarray]:
        """x as the model sees it, in batches of `batch_size` rows (the last one padded)."""
        rows = min(self.batch_size, len(x))
        for start in range(0, len(x), rows):
            batch = self.preprocessing.features(x[start : start + rows])
            if len(batch) < rows:
                pad = np.zeros((rows - len(batch), *batch.shape[1:]), batch.dtype)
                batch = np.concatenate([batch, pad])
            yield batch

    def _predictions(
        self, x: Any, member: Any, *, averaged: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(outputs [m, N, O], predictions [N, O] averaged, or [m, N, O] when not averaged)."""
        members = self._members(member)
        x = self.preprocessing.check_features(x)  # the shape and dtype, before any work
        if len(x) == 0:
            raise DataError("x has no rows; give at least one example")
        by_group: dict[int, list[int]] = {}
        for index in members:
            group, local = self._owner[index]
            by_group.setdefault(group, []).append(local)
        parts = [
            self.groups[g].outputs(local, self._batches(x), len(x)) for g, local in by_group.items()
        ]
        outputs_all, predictions_all = (np.concatenate(p).astype(np.float64) for p in zip(*parts))
        finite = np.isfinite(predictions_all).reshape(-1, *predictions_all.shape[-2:])
        bad_rows = np.flatnonzero(~finite.all(axis=(0, 2)))
        if len(bad_rows):
            raise DataError(
                f"the predictions for {len(bad_rows)} row(s) of x are NaN or infinite (row "
                f"{bad_rows[0]} first): the model overflows on them; give inputs on the scale "
                "of the training data"
            )
        return outputs_all, predictions_all.mean(axis=0) if averaged else predictions_all

    def _targets(self, x: Any, y: Any) -> np.ndarray:
        """y in training's terms (class indices, or standardised targets)."""
        x = self.preprocessing.check_features(x)
        y = np.asarray(y)
        if y.ndim == 0:
            raise DataError(
                f"y must hold one label or target per row of x, got the single value {y.item()!r}"
            )
        if len(y) != len(x):
            raise DataError(f"x has {len(x)} rows but y has {len(y)}; they must match")
        if self.task == "classification":
            return self.preprocessing.encode_labels(y)
        return self.preprocessing.targets(y)


def member_group(
    program: Any, params: Any, hparams: Mapping[str, Any], *, model_state: Any = None
) -> MemberGroup:
    """The members of one `jaxnn.core.program.Program` with their stacked weights and state."""
    return MemberGroup(
        model=program.model,
        params=jax.tree_util.tree_map(np.asarray, jax.device_get(params)),
        hparams={k: np.asarray(v, np.float32) for k, v in jax.device_get(dict(hparams)).items()},
        loss=program.loss,
        predict=program.predict,
        metrics=tuple(program.metrics),
        model_state=jax.tree_util.tree_map(np.asarray, jax.device_get(dict(model_state or {}))),
    )


class Predicts:
    """`predict`, `predict_proba`, `score` and `evaluate` of a training result, delegated to
    its `predictor()` (built once and kept, so its compiled programs are reused)."""

    def _make_predictor(self) -> Predictor:
        raise NotImplementedError

    def predictor(self) -> Predictor:
        """The result's members as a `Predictor` (built on first use, then kept)."""
        cached = self.__dict__.get("_predictor")
        if cached is None:
            cached = self.__dict__["_predictor"] = self._make_predictor()
        return cached

    def predict(self, x: Any, *, member: Any = "best") -> np.ndarray:
        """`Predictor.predict` of this result."""
        return self.predictor().predict(x, member=member)

    def predict_proba(self, x: Any, *, member: Any = "best") -> np.ndarray:
        """`Predictor.predict_proba` of this result."""
        return self.predictor().predict_proba(x, member=member)

    def score(self, x: Any, y: Any, *, member: Any = "best") -> float:
        """`Predictor.score` of this result."""
        return self.predictor().score(x, y, member=member)

    def evaluate(self, x: Any, y: Any, *, member: Any = "best") -> dict[str, float]:
        """`Predictor.evaluate` of this result."""
        return self.predictor().evaluate(x, y, member=member)
