"""restarts.search: drawn points (reproducible, in range, Halton by hand), members that equal
their single runs in one compiled program, and the mistakes it refuses."""

from __future__ import annotations

import io
import math
import re

import jax
import numpy as np
import pytest

from jaxnn import front_end, runner
from jaxnn.config import search as search_lib
from jaxnn.config.fields import NumericField
from jaxnn.config.sweep import with_values
from jaxnn.core import ensemble, loop, train
from jaxnn.data import device
from jaxnn.errors import ConfigError
from jaxnn.io import checkpoint
from jaxnn.nn import optimizers
from jaxnn.reporting import metrics_log
from tests.helpers import blobs, small_config, tensorboard_events

SEARCH = "optimizer.learning_rate=loguniform(1e-3, 0.1); model.dropout=uniform(0, 0.8)"


def _points(**overrides) -> list[dict[str, float]]:
    config = small_config(**{"restarts.search": SEARCH, "restarts.num": 6, **overrides})
    return [m.swept for m in ensemble.members(front_end.resolve(config))]


def test_unscrambled_halton_is_the_hand_computed_sequence():
    # Radical inverses of 1..6 in bases 2, 3 and 5 (digits mirrored behind the point).
    base_2 = [1 / 2, 1 / 4, 3 / 4, 1 / 8, 5 / 8, 3 / 8]
    base_3 = [1 / 3, 2 / 3, 1 / 9, 4 / 9, 7 / 9, 2 / 9]
    base_5 = [1 / 5, 2 / 5, 3 / 5, 4 / 5, 1 / 25, 6 / 25]
    expected = np.array([base_2, base_3, base_5]).T
    np.testing.assert_allclose(search_lib.halton(6, 3), expected, rtol=1e-12)
    # Through a search: field j is dimension j, mapped into its range by its distribution.
    points = _points(**{"restarts.search_method": "halton_unscrambled"})
    np.testing.assert_allclose(
        [p["optimizer.learning_rate"] for p in points], 1e-3 * 100.0 ** np.array(base_2)
    )
    np.testing.assert_allclose([p["model.dropout"] for p in points], 0.8 * np.array(base_3))
    # The plain sequence does not depend on the seed.
    assert _points(**{"restarts.search_method": "halton_unscrambled", "seed": 3}) == points


@pytest.mark.parametrize("method", ["random", "halton"])
def test_the_same_seed_draws_the_same_points_and_another_seed_others(method):
    first = _points(**{"restarts.search_method": method})
    assert _points(**{"restarts.search_method": method}) == first
    assert _points(**{"restarts.search_method": method, "seed": 1}) != first
    for point in first:
        assert 1e-3 <= point["optimizer.learning_rate"] <= 0.1
        assert 0.0 <= point["model.dropout"] < 0.8


def test_scrambled_halton_keeps_one_point_in_each_stratum():
    rng = np.random.default_rng(0)
    points = search_lib.halton(27, 3, rng=rng)
    # The first b**k points of a digit-permuted Halton sequence fill each 1/b**k interval once.
    assert sorted(np.floor(points[:16, 0] * 16).astype(int)) == list(range(16))
    assert sorted(np.floor(points[:27, 1] * 27).astype(int)) == list(range(27))
    assert sorted(np.floor(points[:25, 2] * 25).astype(int)) == list(range(25))
    assert not np.allclose(points, search_lib.halton(27, 3, rng=np.random.default_rng(1)))
    assert ((points >= 0) & (points < 1)).all()


@pytest.mark.parametrize("method", ["random", "halton"])
def test_log_uniform_draws_are_uniform_in_log_space(method):
    units = search_lib.unit_points(method, 4000, 1, seed=0)[:, 0]
    values = search_lib.DISTRIBUTIONS["loguniform"].from_unit(units, 1e-4, 1.0)
    assert values.min() >= 1e-4 and values.max() <= 1.0
    # Each decade holds a quarter of the draws (a linear range would put 90% in the last one).
    decades = np.histogram(np.log10(values), bins=[-4, -3, -2, -1, 0])[0] / values.size
    np.testing.assert_allclose(decades, 0.25, atol=0.03)


def test_an_integer_field_draws_every_integer_of_its_range():
    width = NumericField("model.width", "width", lambda v: v >= 1, "must be >= 1", integer=True)
    found = search_lib.resolve(
        "model.width=uniform(2, 5)",
        method="random",
        num=200,
        seed=0,
        numeric_fields={"model.width": width},
    )
    assert sorted({p["model.width"] for p in found.points}) == [2.0, 3.0, 4.0, 5.0]
    with pytest.raises(ConfigError, match="integer bounds"):
        search_lib.resolve(
            "model.width=uniform(2, 5.5)",
            method="random",
            num=4,
            seed=0,
            numeric_fields={"model.width": width},
        )


def test_config_json_records_the_canonical_search():
    spec = front_end.resolve(small_config(**{"restarts.search": SEARCH, "restarts.num": 2}))
    assert spec.config.restarts.search == (
        "optimizer.learning_rate=loguniform(0.001, 0.1); model.dropout=uniform(0.0, 0.8)"
    )
    again = front_end.resolve(spec.config)
    assert [m.swept for m in ensemble.members(again)] == [m.swept for m in ensemble.members(spec)]
    assert spec.varied_fields == {"optimizer.learning_rate", "model.dropout"}


def test_each_structural_variant_trains_the_same_drawn_points():
    config = small_config(
        **{
            "restarts.search": SEARCH,
            "restarts.num": 3,
            "restarts.sweep": "model.activation=[relu, tanh]",
        }
    )
    spec = front_end.resolve(config)
    assert len(spec.variants) == 2
    drawn = [[m.swept for m in ensemble.members(s)] for _, s in spec.variants]
    assert drawn[0] == drawn[1] and len(drawn[0]) == 3


def test_member_i_equals_its_single_run_in_one_compiled_program():
    data = blobs()
    config = small_config(
        **{
            "restarts.search": SEARCH,
            "restarts.num": 3,
            "optimizer.schedule": "reduce_on_plateau",
            "optimizer.plateau_patience": 1,
        }
    )
    root = jax.random.PRNGKey(3)
    spec = front_end.resolve(config)
    result = ensemble.fit_ensemble(config, data, root)
    assert [m.seed_index for m in result.members] == [0, 1, 2]  # point i from random start i
    # A non-zero dropout keeps dropout in the single run's program (hparams then set it).
    single = with_values(config, {"restarts.search": "", "restarts.num": 1, "model.dropout": 0.1})
    for member in result.members:
        alone = loop.fit(
            single, data, train.member_key(root, member.seed_index), hparams=member.hparams(spec)
        )
        stacked = ensemble.member_state(result.state, member.index)
        assert float(stacked.hparams["dropout"]) == np.float32(member.swept["model.dropout"])
        for a, b in zip(
            jax.tree_util.tree_leaves((stacked.params, stacked.opt_state)),
            jax.tree_util.tree_leaves((alone.state.params, alone.state.opt_state)),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    # Another draw (another seed) is the same program: the chunk compiles once.
    trainer = ensemble.make_trainer(spec, data, root)
    other = front_end.resolve(with_values(config, {"seed": 5}))
    states = [
        ensemble.init_members(trainer, root),
        trainer.init_fn(
            ensemble.stacked_hparams(other, ensemble.members(other)),
            ensemble.member_keys(root, trainer.members),
            None,
        ),
    ]
    step = jax.numpy.asarray(0, jax.numpy.int32)
    for state in states:
        trainer.chunk_fn(state, device.device_data(data), step, trainer.order_key)
    assert trainer.chunk_fn._cache_size() == 1


def test_reduce_on_plateau_lowers_the_rate_of_the_member_whose_loss_stalls():
    data = blobs()
    # Full-batch steps: the loss of a member whose rate is tiny does not move at all.
    config = small_config(
        **{
            "restarts.sweep": "optimizer.learning_rate=[1e-9, 0.1]",
            "optimizer.schedule": "reduce_on_plateau",
            "optimizer.plateau_patience": 1,
            "optimizer.plateau_factor": 0.5,
            "training.batch_size": data.num_train,
            "training.steps": 20,
            "training.eval_every": 5,
        }
    )
    result = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(0))
    scale = np.asarray(optimizers.loss_scale(result.state.opt_state))
    # Checks at steps 5, 10, 15, 20: the first sets the best loss, each later one halves.
    np.testing.assert_array_equal(scale, [0.5**3, 1.0])


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"restarts.search": "model.dropout=uniform(0.5, 0.1)"}, "has low > high"),
        (
            {"restarts.search": "optimizer.learning_rate=loguniform(0, 0.1)"},
            "includes 0 or a negative",
        ),
        (
            {"restarts.search": "optimizer.learning_rate=loguniform(-1, 0.1)"},
            "includes 0 or a negative",
        ),
        ({"restarts.search": "model.dropout=normal(0, 0.1)"}, "unknown distribution 'normal'"),
        ({"restarts.search": "model.dropout=uniform(0)"}, "is not of the form"),
        ({"restarts.search": "model.dropout=uniform(0, big)"}, "finite numbers"),
        ({"restarts.search": "model.dropout"}, "is not of the form"),
        ({"restarts.search_method": "sobol"}, "restarts.search_method: unknown 'sobol'"),
        (
            {"restarts.search": "model.activation=uniform(0, 1)"},
            "members carry, not 'model.activation'",
        ),
        ({"restarts.search": "optimizer.b1=uniform(0, 0.9)"}, "members carry, not 'optimizer.b1'"),
        (
            {"restarts.search": SEARCH, "restarts.num": 0},
            "restarts.num must be an integer in [1, 2147483647]",
        ),
        (
            {"restarts.search": "model.dropout=uniform(0.5, 1.5)", "restarts.num": 8},
            "restarts.search: model.dropout must be in [0, 1), got 1.",
        ),
        (
            {"restarts.search": SEARCH, "restarts.sweep": "optimizer.momentum=[0.5, 0.9]"},
            "restarts.sweep also varies optimizer.momentum",
        ),
        ({"optimizer.plateau_patience": 3}, "optimizer.plateau_patience is read only by"),
        (
            {"optimizer.schedule": "reduce_on_plateau", "optimizer.plateau_factor": 1.5},
            "plateau_factor must be in (0, 1)",
        ),
        (
            {"optimizer.schedule": "reduce_on_plateau", "optimizer.plateau_patience": 0},
            "optimizer.plateau_patience must be an integer in [1, 1000000000]",
        ),
    ],
)
def test_bad_searches_are_one_line_config_errors(overrides, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)) as caught:
        front_end.resolve(small_config(**overrides))
    assert "\n" not in str(caught.value)


def test_a_drawn_value_out_of_range_names_the_member_and_its_range():
    config = small_config(
        **{"restarts.search": "model.dropout=uniform(0.5, 1.5)", "restarts.num": 8}
    )
    with pytest.raises(ConfigError) as caught:
        front_end.resolve(config)
    member = int(re.search(r"member (\d+)'s draw from uniform\(0\.5, 1\.5\)", str(caught.value))[1])
    drawn = search_lib.unit_points("random", 8, 1, seed=0)[member, 0] + 0.5
    assert drawn >= 1.0 and math.isclose(
        float(str(caught.value).split("got ")[1].split(" ")[0]), drawn
    )


class Interrupted(Exception):
    """Stands for the process being killed."""


def _run_config(data_dir: str):
    return small_config(
        **{
            "dataset.data_dir": data_dir,
            "dataset.train_per_class": 40,
            "model.hidden": (16,),
            "training.batch_size": 50,
            "training.steps": 40,
            "training.eval_every": 10,
            "checkpoint.every_steps": 20,
            "restarts.num": 3,
            "restarts.search": SEARCH,
            "restarts.search_method": "halton",
            "optimizer.schedule": "reduce_on_plateau",
            "optimizer.plateau_patience": 1,
            "optimizer.plateau_rtol": 0.05,
        }
    )


def _final_state(workdir):
    checkpoints = checkpoint.RunCheckpoints(workdir / "checkpoints", read_only=True)
    step = checkpoints.steps()[-1]
    fields = {name: checkpoints.shapes(step, name) for name in checkpoint.state_fields()}
    tree = checkpoints.restore_fields(step, fields)
    checkpoints.close()
    return tree


@pytest.mark.slow
def test_a_search_with_reduce_on_plateau_resumes_bit_identically_and_reports_each_member(
    tmp_path, data_dir, monkeypatch
):
    config = _run_config(data_dir)
    reference = tmp_path / "reference"
    summary = runner.run(config, reference, progress=False, out=io.StringIO())
    # Each member's drawn values reach summary.json, the ranking, the figure and TensorBoard.
    points = [m.swept for m in ensemble.members(front_end.resolve(config))]
    assert [m["hparams"] for m in summary["members"]] == points
    assert summary["search"]["method"] == "halton"
    assert summary["search"]["ranges"]["optimizer.learning_rate"] == {
        "distribution": "loguniform",
        "low": 1e-3,
        "high": 0.1,
    }
    report = (reference / "report.md").read_text()
    assert f"learning_rate={points[0]['optimizer.learning_rate']:.4g}" in report
    assert (reference / "plots" / "search.png").is_file()
    events = tensorboard_events(reference / "tensorboard")
    assert events["sessions"]["hparams/member_0002"]["model.dropout"] == pytest.approx(
        points[2]["model.dropout"]
    )
    # TensorBoard's rates follow the plateau cuts: some member ends below its drawn rate, so a
    # resume has a cut factor to restore.
    rates = {}
    for run, tag, step, value in events["scalars"]:
        if run == "main" and tag.startswith("learning_rate/member_"):
            rates.setdefault(int(tag.rpartition("_")[2]), []).append((step, value))
    assert sorted(rates) == [0, 1, 2]
    ends = {i: sorted(series)[-1][1] for i, series in rates.items()}
    drawn = [np.float32(p["optimizer.learning_rate"]) for p in points]
    assert all(ends[i] <= drawn[i] * (1 + 1e-6) for i in ends)
    assert any(ends[i] < 0.99 * drawn[i] for i in ends)

    original = metrics_log.Progress.__call__

    def stop_after_30(self, evaluation):
        original(self, evaluation)
        if evaluation.step == 30:  # its metrics are written, its checkpoint (at 20) is not
            raise Interrupted

    interrupted = tmp_path / "interrupted"
    monkeypatch.setattr(metrics_log.Progress, "__call__", stop_after_30)
    with pytest.raises(Interrupted):
        runner.run(config, interrupted, progress=False, out=io.StringIO())
    monkeypatch.undo()
    resumed = runner.run(config, interrupted, progress=False, out=io.StringIO())
    assert (interrupted / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    assert {k: v for k, v in resumed.items() if k != "timing"} == {
        k: v for k, v in summary.items() if k != "timing"
    }
    for a, b in zip(
        jax.tree_util.tree_leaves(_final_state(interrupted)),
        jax.tree_util.tree_leaves(_final_state(reference)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("method", ["random", "halton", "halton_unscrambled"])
def test_more_members_extend_the_same_points(method):
    few = _points(**{"restarts.search_method": method, "restarts.num": 3})
    assert _points(**{"restarts.search_method": method, "restarts.num": 6})[:3] == few
