"""Member schedules measured: successive halving against a full search, and PBT against a random
search, every figure from one run (docs/search.md).

MNIST-1D, an MLP 40-100-100-10 (ReLU, He init, SGD with momentum 0.9, cosine schedule, batch
100), a search over the learning rate (log-uniform), dropout (uniform) and weight decay
(log-uniform):

  1. 81 scrambled-Halton points, every member trained to the full budget in one program,
     against successive halving with eta=3 to the same maximum (the same points, the same
     program, members leaving the batch at the rungs): the selected member's test accuracy
     (selected by validation loss), the member-steps trained, the wall time (compilation
     included: halving compiles one program per batch size). Twice, as `jaxnn.run` would: with
     JAX's persistent compilation cache empty ("cold", a fresh directory), then with the
     programs of the first pass in it ("warm", any later launch of the same shapes);
  2. the halving run's rungs: members, seconds and member-steps/s of each;
  3. PBT with 16 members against a 16-member random search of the same space at the same
     member-steps: the selected member's test accuracy, and a plot of PBT's learning rates;
  4. with --optuna (needs the `bench` extra: optuna and torch): the halving search run trial
     by trial by Optuna's SuccessiveHalvingPruner over the same MLP in PyTorch
     (`optuna_search.py`): the wall time until Optuna's best trial reaches the test accuracy
     jaxnn's halving selected, against jaxnn's wall time with an empty compilation cache
     (compiling included). --optuna-only runs this comparison alone.

Timings share the machine with whatever else runs on it: compare the ratios of one run.

    python benchmarks/search.py [--quick] [--data-dir DIR] [--out runs/bench/search.json]
        [--cold-only] [--skip-pbt] [--optuna | --optuna-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# A benchmark measures the tree it sits in, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxnn.parallel.cpu_devices import split_host_into_devices

# As the launcher does: one CPU device per core before JAX starts.
split_host_into_devices(os.environ)

import jax
import numpy as np

import jaxnn
from jaxnn import data as data_lib
from jaxnn.core import compile_cache, ensemble

SEARCH = (
    "optimizer.learning_rate=loguniform(1e-3, 0.5); model.dropout=uniform(0, 0.5); "
    "optimizer.weight_decay=loguniform(1e-6, 1e-2)"
)


@dataclasses.dataclass(frozen=True)
class Size:
    members: int  # the halving comparison's search points
    steps: int  # the maximum budget
    eval_every: int
    first_rung: int
    pbt_members: int
    pbt_interval: int


FULL = Size(
    members=81, steps=2700, eval_every=100, first_rung=300, pbt_members=16, pbt_interval=300
)
QUICK = Size(members=27, steps=270, eval_every=10, first_rung=30, pbt_members=8, pbt_interval=30)


def base_config(size: Size, data_dir: str | None) -> Any:
    config = jaxnn.default_config()
    config.dataset.name = "mnist1d"
    if data_dir:
        config.dataset.data_dir = data_dir
    config.model.hidden = (100, 100)
    config.model.activation = "relu"
    config.model.init = "he_normal"
    config.optimizer.name = "momentum"
    config.optimizer.momentum = 0.9
    config.optimizer.schedule = "cosine"
    config.training.batch_size = 100
    config.training.steps = size.steps
    config.training.eval_every = size.eval_every
    config.restarts.search = SEARCH
    return config


def train(config: Any, data: data_lib.Dataset) -> dict[str, Any]:
    """One fit_ensemble: wall time, member-steps, the selected member's test accuracy."""
    started = time.perf_counter()
    result = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(config.seed))
    jax.block_until_ready(result.state)
    wall = time.perf_counter() - started
    best = result.best_member()
    test, _ = ensemble.evaluate_members(result.state, result.program, data.x_test, data.y_test)
    steps = np.asarray(jax.device_get(result.state.step))
    return {
        "result": result,
        "wall_s": wall,
        "compile_s": result.compile_s,
        "train_s": result.train_s,
        "member_steps": int(steps.sum()),
        "selected": best,
        "selected_hparams": {
            k: float(np.asarray(v)[best]) for k, v in result.state.hparams.items()
        },
        "test_accuracy": float(test["accuracy"][best]),
    }


def compare(full: Any, halving: Any, data: data_lib.Dataset, name: str) -> dict[str, Any]:
    """The full search against successive halving: accuracy, member-steps, wall, rungs."""
    runs = {"full": train(full, data), "halving": train(halving, data)}
    for label, run in runs.items():
        print(
            f"[{name}] {label:8s} members {full.restarts.num}  test accuracy "
            f"{run['test_accuracy']:.4f}  member-steps {run['member_steps']}  wall "
            f"{run['wall_s']:.1f} s (compile {run['compile_s']:.1f} s, train {run['train_s']:.1f} s)",
            flush=True,
        )
    ratio = {
        "accuracy_difference": runs["halving"]["test_accuracy"] - runs["full"]["test_accuracy"],
        "member_steps": runs["halving"]["member_steps"] / runs["full"]["member_steps"],
        "wall": runs["halving"]["wall_s"] / runs["full"]["wall_s"],
        "train": runs["halving"]["train_s"] / runs["full"]["train_s"],
    }
    print(
        f"[{name}] halving / full: accuracy {ratio['accuracy_difference']:+.4f}, member-steps "
        f"{ratio['member_steps']:.1%}, wall {ratio['wall']:.1%}, train {ratio['train']:.1%}"
    )
    rungs = runs["halving"]["result"].schedule["rungs"]
    print(f"[{name}] rung  members  seconds  ms/step  member-steps/s")
    for rung in rungs:
        rung["member_steps_per_s"] = rung["member_steps"] / max(rung["seconds"], 1e-9)
        rung["ms_per_step"] = 1e3 * rung["seconds"] * rung["members"] / rung["member_steps"]
        print(
            f"[{name}] {rung['rung']:4d}  {rung['members']:7d}  {rung['seconds']:7.1f}  "
            f"{rung['ms_per_step']:7.1f}  {rung['member_steps_per_s']:14.0f}"
        )
    figures = {
        label: {k: v for k, v in run.items() if k != "result"} for label, run in runs.items()
    }
    figures["ratio"] = ratio
    figures["rungs"] = rungs
    figures["sizes_compiled"] = runs["halving"]["result"].schedule["sizes_compiled"]
    return figures


def optuna_comparison(halving: Any, data: data_lib.Dataset, size: Size) -> dict[str, Any]:
    """jaxnn's halving search from an empty compilation cache against the same search run by
    Optuna trial by trial (`optuna_search.run`): wall times to the same test accuracy."""
    import optuna_search

    cache = Path(tempfile.mkdtemp(prefix="jaxnn_search_bench_cache_"))
    compile_cache.enable(cache)
    mine = train(halving, data)
    shutil.rmtree(cache, ignore_errors=True)
    theirs = optuna_search.run(data, size, mine["test_accuracy"])
    print(
        f"[optuna] jaxnn halving: test accuracy {mine['test_accuracy']:.4f}, "
        f"{mine['member_steps']} member-steps, wall {mine['wall_s']:.1f} s (compile "
        f"{mine['compile_s']:.1f} s)\n[optuna] Optuna {theirs['optuna']} + torch "
        f"{theirs['torch']} ({theirs['torch_threads']} threads): {theirs['trials']} trials, "
        f"{theirs['pruned']} pruned, {theirs['member_steps']} steps, wall "
        f"{theirs['wall_s']:.1f} s, best trial's test accuracy {theirs['test_accuracy']}",
        flush=True,
    )
    to_target = theirs["seconds_to_target"]
    if to_target is None:
        print(
            f"[optuna] Optuna never reached {mine['test_accuracy']:.4f}: jaxnn at least "
            f"{theirs['wall_s'] / mine['wall_s']:.1f}x faster (Optuna's whole study)"
        )
    else:
        print(
            f"[optuna] Optuna reached {mine['test_accuracy']:.4f} after {to_target:.1f} s: "
            f"jaxnn {to_target / mine['wall_s']:.1f}x faster"
        )
    return {
        "jaxnn": {k: v for k, v in mine.items() if k != "result"},
        "optuna": theirs,
        "speedup_to_target": None if to_target is None else to_target / mine["wall_s"],
        "speedup_lower_bound": theirs["wall_s"] / mine["wall_s"],
    }


def write(out: Path, figures: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out}")


def plot_learning_rates(result: ensemble.EnsembleResult, path: Path, steps: int) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = {m.index: m.swept["optimizer.learning_rate"] for m in result.members}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    best = result.best_member()
    for member, value in start.items():
        xs, ys = [0], [value]
        for row in result.schedule["events"]:
            if row["member"] == member:
                xs.append(row["step"])
                ys.append(row["learning_rate"])
        xs.append(steps)
        ys.append(ys[-1])
        ax.step(
            xs,
            ys,
            where="post",
            color="tab:red" if member == best else "tab:blue",
            lw=2 if member == best else 1,
            alpha=1.0 if member == best else 0.5,
        )
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("base learning rate (before the cosine schedule)")
    ax.set_title("PBT: each member's learning rate (selected in red)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory")
    parser.add_argument("--out", default="runs/bench/search.json")
    parser.add_argument("--cold-only", action="store_true", help="no warm-cache pass")
    parser.add_argument("--skip-pbt", action="store_true", help="only the halving figures")
    parser.add_argument("--optuna", action="store_true", help="also Optuna + PyTorch (4.)")
    parser.add_argument("--optuna-only", action="store_true", help="only Optuna + PyTorch (4.)")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    out = Path(args.out)
    config = base_config(size, args.data_dir)
    data = data_lib.load(config.dataset)
    figures: dict[str, Any] = {"size": dataclasses.asdict(size), "search": SEARCH}

    # 1. the full search against successive halving, the same points
    full = config.copy_and_resolve_references()
    full.restarts.num = size.members
    full.restarts.search_method = "halton"
    halving = full.copy_and_resolve_references()
    halving.restarts.schedule = "successive_halving"
    halving.restarts.eta = 3
    halving.restarts.first_rung_steps = size.first_rung
    if args.optuna_only:
        figures["optuna"] = optuna_comparison(halving, data, size)
        write(out, figures)
        return
    cache = Path(tempfile.mkdtemp(prefix="jaxnn_search_bench_cache_"))
    compile_cache.enable(cache)
    figures["halving"] = {}
    for name in ["cold"] + ([] if args.cold_only else ["warm"]):
        figures["halving"][name] = compare(full, halving, data, name)
    shutil.rmtree(cache, ignore_errors=True)
    if args.optuna:
        figures["optuna"] = optuna_comparison(halving, data, size)
    if args.skip_pbt:
        write(out, figures)
        return

    # 3. PBT against a random search of the same space at the same member-steps
    random_search = config.copy_and_resolve_references()
    random_search.restarts.num = size.pbt_members
    random_search.restarts.search_method = "random"
    pbt = random_search.copy_and_resolve_references()
    pbt.restarts.schedule = "pbt"
    pbt.restarts.pbt_interval = size.pbt_interval
    population = {"random": train(random_search, data), "pbt": train(pbt, data)}
    for name, run in population.items():
        print(
            f"{name:8s} members {size.pbt_members}  test accuracy {run['test_accuracy']:.4f}  "
            f"member-steps {run['member_steps']}  wall {run['wall_s']:.1f} s",
            flush=True,
        )
    plot = plot_learning_rates(
        population["pbt"]["result"], out.parent / "pbt_learning_rates.png", size.steps
    )
    figures["pbt"] = {
        name: {k: v for k, v in run.items() if k != "result"} for name, run in population.items()
    }
    figures["pbt"]["copies"] = len(population["pbt"]["result"].schedule["events"])
    figures["pbt"]["plot"] = plot
    write(out, figures)


if __name__ == "__main__":
    main()
