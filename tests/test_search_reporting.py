"""A search reported truthfully: exploded members marked and left out of selection, timings that
say what they count, plots whose scale no single member sets."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import blobs, small_config

import jaxnn
from jaxnn.reporting import plots, tables

SWEEP = {"optimizer.learning_rate": [0.05, 1000.0]}  # SGD at 1000: a huge but finite loss


def _run(tmp_path, name: str, **overrides):
    config = small_config(**{"optimizer.name": "sgd", **overrides})
    config.compilation_cache.enabled = False
    return jaxnn.run(
        config, tmp_path / name, data=blobs(), progress=False, sweep=SWEEP, out=io.StringIO()
    )


@pytest.fixture(scope="module")
def exploded_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("exploded"), "run")


def test_a_member_whose_loss_exploded_is_marked_and_left_out(exploded_run):
    calm, wild = exploded_run["members"]
    assert not wild["diverged"] and np.isfinite(wild["val_loss"])  # finite: not diverged
    assert wild["exploded"] and not calm["exploded"]
    assert wild["train_loss"] > 100 * wild["start_train_loss"] or wild["val_loss"] > 10
    assert exploded_run["num_exploded"] == 1
    # left out of the restart statistics and the ensemble like a diverged member
    assert exploded_run["restart_stats"]["num_finite"] == 1
    assert exploded_run["best_member"] == 0
    header, rows = tables.ranking_rows(exploded_run)
    assert header[-1] == "exploded" and rows[-1][-1] == "yes" and rows[-1][1] == "1"


def test_explode_factor_zero_marks_no_member(tmp_path):
    summary = _run(tmp_path, "off", **{"restarts.explode_factor": 0.0})
    assert [m["exploded"] for m in summary["members"]] == [False, False]
    assert summary["restart_stats"]["num_finite"] == 2


def test_timing_says_what_it_counts_and_report_md_agrees(exploded_run):
    timing = exploded_run["timing"]
    steps = exploded_run["steps"]
    assert timing["member_steps"] == steps * 2  # every step of this launch, both members
    assert timing["member_steps_per_s"] == pytest.approx(timing["member_steps"] / timing["wall_s"])
    assert timing["device_member_steps_per_s"] == pytest.approx(
        timing["member_steps"] / timing["train_s"]
    )
    assert timing["wall_s"] >= timing["train_s"] > 0
    report = (exploded_run.workdir / "report.md").read_text()
    assert f"{timing['member_steps_per_s']:.0f} member-steps/s of wall time" in report


def _search_summary(losses, exploded):
    members = [
        {
            "index": i,
            "hparams": {"optimizer.learning_rate": lr},
            "val_loss": loss,
            "diverged": False,
            "exploded": bad,
        }
        for i, (lr, loss, bad) in enumerate(
            zip(np.geomspace(1e-3, 0.5, len(losses)), losses, exploded)
        )
    ]
    return {
        "members": members,
        "best_member": 0,
        "search": {
            "method": "random",
            "ranges": {
                "optimizer.learning_rate": {"distribution": "loguniform", "low": 1e-3, "high": 0.5}
            },
        },
    }


def test_the_search_plot_marks_exploded_members_without_letting_them_set_the_scale(
    tmp_path, monkeypatch
):
    figures = []
    monkeypatch.setattr(plots, "save", lambda fig, path, **_: figures.append(fig) or str(path))
    losses = [0.1, 0.2, 0.3, 10544.0]
    plots.search_values(_search_summary(losses, [False, False, False, True]), tmp_path / "s.png")
    ax = figures[0].axes[0]
    assert ax.get_ylim()[1] < 1.0  # the exploded member's 10544 does not set the scale
    crosses = [c for c in ax.collections if "off the scale" in str(c.get_label())]
    assert len(crosses) == 1 and len(crosses[0].get_offsets()) == 1
    assert ax.get_xscale() == "log"


def test_losses_spanning_decades_get_a_log_axis(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "save", lambda fig, path, **_: figures.append(fig) or str(path))
    plots.search_values(_search_summary([0.01, 0.1, 5.0], [False] * 3), tmp_path / "s.png")
    plots.expected_best_of_k([50.0, 2.0, 0.5, 0.1], tmp_path / "k.png")
    assert [figure.axes[0].get_yscale() for figure in figures] == ["log", "log"]
