"""Random restarts side by side: jaxnn's vmapped ensemble against training members one by one.

K members of an MLP 40-100-100-10 (ReLU, He init) are trained on MNIST-1D (3600 training
examples after the validation carve) with SGD and momentum (lr 0.05, momentum 0.9, batch 100) by

  jaxnn fit, one after another    jaxnn.core.loop.fit(config, data, member_key(root, i)), all K
  scikit-learn MLPClassifier      solver='sgd', same architecture, batch and steps (a few members)
  PyTorch eager                   one nn.Sequential + torch.optim.SGD per member (a few members)
  PyTorch torch.func vmap         stack_module_state + functional_call + vmap(grad), all K
  jaxnn ensemble                  jaxnn.core.ensemble.fit_ensemble, all K in one compiled program,
                                  with independent and with shared batch orders

all in this one process, each timed after compilation / warm-up and reported as seconds per
member for the same number of steps, with the jaxnn ensemble's speedup over it. Then the
ensemble's achieved GFLOP/s against this machine's float32 matmul rate, and its per-member time
for several K. Results also go to a JSON file. The baselines live in bench_baselines.py, the
machine measurements in bench_machine.py, the records in bench_records.py.

    python benchmarks/restarts.py [--quick | --smoke] [--steps N] [--members K]
        [--skip-torch] [--skip-sklearn] [--data-dir DIR] [--out runs/bench/restarts.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# A benchmark measures the tree it sits in, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxnn.parallel.cpu_devices import split_host_into_devices

# As the launcher does: one CPU device per core before JAX starts, so an ensemble's members
# are sharded over every core (set XLA_FLAGS=--xla_force_host_platform_device_count=1 to see
# the single-device program).
split_host_into_devices(os.environ)

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from bench_baselines import sklearn_restarts, torch_eager, torch_vmap
from bench_device import (
    DEVICE_MEMBERS,
    DEVICE_STEPS,
    SMOKE_MEMBERS,
    device_report,
    run_device_scaling,
)
from bench_machine import MATMUL_SIZE, machine_info, matmul_gflops, thread_limit, torch_available
from bench_records import PRESETS, Recipe, Settings, Timing, log
from bench_scaling import (
    baseline_settings,
    cost_ratios,
    curve_json,
    plot_curve,
    print_curve,
    reachable,
)

from jaxnn import data as data_lib
from jaxnn import front_end
from jaxnn.config import default_config
from jaxnn.core import ensemble, loop, train
from jaxnn.core.program import make_program

EVAL_EVERY = 3000  # used when it divides the steps; otherwise one evaluation at the end


def eval_every(steps: int) -> int:
    """A chunk length that divides `steps`, so no chunk runs masked no-op steps past the end."""
    return EVAL_EVERY if steps % EVAL_EVERY == 0 else steps


def make_config(
    base: ml_collections.ConfigDict,
    *,
    steps: int,
    members: int = 1,
    batch_order: str = "independent",
) -> ml_collections.ConfigDict:
    """A validated copy of `base` that trains `members` members for `steps` steps."""
    config = base.copy_and_resolve_references()
    config.training.steps = steps
    config.training.eval_every = eval_every(steps)
    config.training.batch_order = batch_order
    config.restarts.num = members
    front_end.resolve(config)
    return config


def stacked_accuracy(state: train.TrainState, data: data_lib.Dataset) -> float:
    """Test accuracy of the final weights of a stacked state, averaged over its members."""
    x_test = jnp.asarray(data.x_test)
    outputs, _ = jax.vmap(lambda p, s, h: state.apply_fn(p, s, x_test, h))(
        state.params, state.model_state, state.hparams
    )
    return float(jnp.mean(jnp.argmax(outputs, -1) == jnp.asarray(data.y_test)))


# --- the methods --------------------------------------------------------------------------


def jaxnn_sequential(
    base: ml_collections.ConfigDict, data: data_lib.Dataset, settings: Settings
) -> Timing:
    """(a) jaxnn's single-model path, one member after another; each fit's train_s excludes compile."""
    config = make_config(base, steps=settings.steps)
    root = jax.random.PRNGKey(config.seed)
    member_s, compile_s, accuracies = [], [], []
    for index in range(settings.sequential_members):
        result = loop.fit(config, data, train.member_key(root, index))
        member_s.append(result.train_s)
        compile_s.append(result.compile_s)
        stacked = jax.tree_util.tree_map(lambda leaf: leaf[None], result.state)
        accuracies.append(stacked_accuracy(stacked, data))
    return Timing.one_after_another(
        key="jaxnn_fit_sequential",
        method="jaxnn fit, one after another",
        steps=settings.steps,
        target_steps=settings.steps,
        member_s=member_s,
        accuracies=accuracies,
        compile_s=float(np.mean(compile_s)),
        note="loop.fit(config, data, member_key(root, i)); sum of train_s; every fit compiles anew",
    )


def jaxnn_ensemble(
    base: ml_collections.ConfigDict,
    data: data_lib.Dataset,
    *,
    members: int,
    steps: int,
    batch_order: str = "independent",
) -> Timing:
    """(d) jaxnn's vmapped ensemble: all members in one compiled program; train_s / K per member."""
    config = make_config(base, steps=steps, members=members, batch_order=batch_order)
    # The first run after compiling also pays one-time costs (first touch of every buffer,
    # thread start-up; up to 20% here), as PyTorch's warm-up steps do for it: time the second.
    ensemble.fit_ensemble(config, data, jax.random.PRNGKey(config.seed))
    result = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(config.seed))
    return Timing(
        key="jaxnn_ensemble" + ("_shared" if batch_order == "shared" else ""),
        method=f"jaxnn ensemble (vmap, {batch_order} batches)",
        members=members,
        steps=steps,
        target_steps=steps,
        train_s=result.train_s,
        test_accuracy=stacked_accuracy(result.state, data),
        compile_s=result.compile_s,
        note=f"fit_ensemble, restarts.num={members}, training.batch_order={batch_order}, "
        f"eval_every={config.training.eval_every}; the second of two runs",
        member_group=result.group_size,
        memory={**result.memory.to_json(), "xla_program_bytes": result.program_bytes},
    )


# --- the run ------------------------------------------------------------------------------


def run_methods(
    base: ml_collections.ConfigDict,
    data: data_lib.Dataset,
    recipe: Recipe,
    settings: Settings,
    *,
    with_sklearn: bool,
    with_torch: bool,
    threads: int,
) -> list[Timing]:
    """Every method of the comparison, in table order; the jaxnn ensembles run first.

    scikit-learn and PyTorch train with `threads` BLAS / OpenMP / torch threads.
    """

    def limited(run: Callable[[], Timing]) -> Callable[[], Timing]:
        def run_limited() -> Timing:
            with thread_limit(threads, with_torch=with_torch):
                return run()

        return run_limited

    def ensemble_run(batch_order: str) -> Timing:
        return jaxnn_ensemble(
            base, data, members=settings.members, steps=settings.steps, batch_order=batch_order
        )

    # Torch last: its OpenMP threads keep spinning for a while after each call.
    runs: list[tuple[str, Callable[[], Timing]]] = [
        ("ensemble", lambda: ensemble_run("independent")),
        ("shared", lambda: ensemble_run("shared")),
        ("sequential", lambda: jaxnn_sequential(base, data, settings)),
    ]
    if with_sklearn:
        runs.append(("sklearn", limited(lambda: sklearn_restarts(data, recipe, settings))))
    if with_torch:
        runs.append(("eager", limited(lambda: torch_eager(data, recipe, settings))))
        runs.append(("vmap", limited(lambda: torch_vmap(data, recipe, settings))))
    timings = {name: reported(run()) for name, run in runs}
    order = ("sequential", "sklearn", "eager", "vmap", "ensemble", "shared")
    return [timings[name] for name in order if name in timings]


def run_scaling(
    base: ml_collections.ConfigDict,
    data: data_lib.Dataset,
    settings: Settings,
    reference: Timing | None,
) -> list[Timing]:
    """The jaxnn ensemble for each K of the scaling sweep (reusing the reference run if it is one)."""
    return [
        reference
        if reference and (members, settings.scaling_steps) == (reference.members, reference.steps)
        else reported(jaxnn_ensemble(base, data, members=members, steps=settings.scaling_steps))
        for members in settings.scaling_members
    ]


def run_baseline_scaling(
    data: data_lib.Dataset,
    recipe: Recipe,
    settings: Settings,
    *,
    with_sklearn: bool,
    with_torch: bool,
    threads: int,
) -> dict[str, list[Timing]]:
    """torch.func's vmap and scikit-learn's restarts at the K's they reach within the budget."""
    curves: dict[str, list[Timing]] = {}
    runs: list[tuple[str, Any]] = []
    if with_torch:
        runs.append(("torch.func vmap", torch_vmap))
    if with_sklearn:
        runs.append(("scikit-learn restarts", sklearn_restarts))
    for name, method in runs:
        log(f"scaling curve: {name}, budget {settings.scaling_budget_s:.0f} s per K")

        def point(members: int, method: Any = method) -> Timing:
            with thread_limit(threads, with_torch=with_torch):
                return method(data, recipe, baseline_settings(settings, members))

        curves[name] = reachable(point, settings.scaling_members, settings.scaling_budget_s)
    return curves


def reported(timing: Timing) -> Timing:
    log(
        f"{timing.method}: {timing.per_member_s:.4f} s/member for {timing.target_steps} steps "
        f"({timing.members} members timed; compile {timing.compile_s:.1f} s)"
    )
    return timing


def throughput(recipe: Recipe, reference: Timing, rates: dict[str, float]) -> dict[str, Any]:
    """The ensemble's achieved GFLOP/s against the machine's matmul rates."""
    gflops = recipe.flops_per_member_step * reference.member_steps_per_s / 1e9
    return {
        "formula": recipe.flops_formula,
        "flops_per_member_step": recipe.flops_per_member_step,
        "ensemble_members": reference.members,
        "ensemble_gflops": gflops,
        "matmul_size": MATMUL_SIZE,
        "matmul_gflops": rates,
        "fraction_of_jax_matmul": gflops / rates["jax"],
    }


def print_report(
    timings: list[Timing],
    reference: Timing,
    recipe: Recipe,
    rates: dict[str, Any],
    scaling: list[Timing],
    settings: Settings,
) -> None:
    steps = settings.steps
    sizes = "-".join(map(str, recipe.layer_sizes))
    print(
        f"\nRandom restarts: MLP {sizes} on MNIST-1D, batch {recipe.batch_size}, {steps} "
        f"SGD-momentum steps per member; compile and warm-up excluded"
    )
    columns = f"{'method':<42} {'members timed':>13} {f's/member ({steps} steps)':>22} {'ensemble speedup':>17} {'test acc':>9}"
    print(columns)
    print("-" * len(columns))
    for timing in timings:
        speedup = timing.per_member_s / reference.per_member_s
        print(
            f"{timing.method:<42} {timing.members:>13d} {timing.per_member_s:>22.4f} "
            f"{speedup:>16.1f}x {timing.test_accuracy:>9.3f}"
        )
    summary = throughput(recipe, reference, rates)
    others = ", ".join(f"{name} {rate:.1f}" for name, rate in rates.items() if name != "jax")
    print(
        f"\nFLOPs per member-step = {summary['formula']} = {summary['flops_per_member_step']:.3g}"
    )
    print(
        f"jaxnn ensemble (K={reference.members}): {summary['ensemble_gflops']:.2f} GFLOP/s = "
        f"{100 * summary['fraction_of_jax_matmul']:.1f}% of this machine's jax float32 "
        f"{MATMUL_SIZE}x{MATMUL_SIZE} matmul rate of {rates['jax']:.1f} GFLOP/s "
        f"(for reference, {others} GFLOP/s)"
    )
    print_scaling(scaling, recipe, settings)


def print_scaling(scaling: list[Timing], recipe: Recipe, settings: Settings) -> None:
    """The jaxnn ensemble's per-member cost, rate and memory for each K of the sweep."""
    print(f"\njaxnn ensemble per-member time against K ({settings.scaling_steps} steps per member)")
    columns = (
        f"{'K':>5} {'train s':>10} {f's/member ({settings.scaling_steps} steps)':>22} "
        f"{'member-steps/s':>15} {'GFLOP/s':>9} {'group':>6} {'KiB/member':>11} "
        f"{'estimate MiB':>13} {'XLA MiB':>8}"
    )
    print(columns)
    print("-" * len(columns))
    for timing in scaling:
        gflops = recipe.flops_per_member_step * timing.member_steps_per_s / 1e9
        memory = timing.memory or {}
        member = memory.get("per_member", {})
        xla = memory.get("xla_program_bytes")
        print(
            f"{timing.members:>5d} {timing.train_s:>10.3f} {timing.per_member_s:>22.4f} "
            f"{timing.member_steps_per_s:>15.0f} {gflops:>9.2f} {timing.member_group or 0:>6d} "
            f"{(member.get('state', 0) + member.get('step_activations', 0)) / 2**10:>11.1f} "
            f"{memory.get('host_bytes', 0) / 2**20:>13.1f} "
            f"{'-' if xla is None else f'{xla / 2**20:.1f}':>8}"
        )
    print(
        "KiB/member: one member's state (parameters, optimiser, best weights) and one step's "
        "activations; estimate: jaxnn.core.memory's account of the run; XLA: the compiled chunk"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Random restarts: jaxnn's vmapped ensemble against one-by-one training."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help="reduced run for development (500 steps)"
    )
    mode.add_argument("--smoke", action="store_true", help="tiny run for tests (20 steps, K=4)")
    parser.add_argument("--steps", type=int, help="SGD steps per member (default 6000)")
    parser.add_argument("--members", type=int, help="K of the vmapped ensembles (default 32)")
    parser.add_argument("--skip-torch", action="store_true", help="leave out the PyTorch baselines")
    parser.add_argument("--skip-sklearn", action="store_true", help="leave out scikit-learn")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads of scikit-learn (BLAS) and PyTorch while they train (default: all cores)",
    )
    parser.add_argument(
        "--data-dir", help="config.dataset.data_dir (default: the config's default)"
    )
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="the GPU mode: only the jaxnn ensemble, K = 1, 32, 256, 1024, 4096, 6000 steps, on "
        "JAX's default device (see bench_device.py); --members K runs that K alone",
    )
    parser.add_argument(
        "--out",
        help="where the JSON goes (default runs/bench/restarts.json, "
        "runs/bench/restarts_gpu.json with --gpu)",
    )
    parser.add_argument(
        "--scaling-only",
        action="store_true",
        help="only the scaling curve (jaxnn, and the baselines not skipped), no main table",
    )
    args = parser.parse_args(argv)
    for name in ("steps", "members", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be >= 1, got {value}")
    return args


def resolve_settings(args: argparse.Namespace) -> Settings:
    preset = PRESETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    members = args.members or preset.members
    return dataclasses.replace(
        preset,
        steps=args.steps or preset.steps,
        members=members,
        sequential_members=min(preset.sequential_members, members),
    )


def load_recipe(
    args: argparse.Namespace,
) -> tuple[ml_collections.ConfigDict, data_lib.Dataset, Recipe]:
    """The default config (with --data-dir), its data, and the recipe every method trains."""
    base = default_config()
    if args.data_dir is not None:
        base.dataset.data_dir = args.data_dir
    data = data_lib.load(base.dataset)  # validates config.dataset; make_config the rest
    # Before any method trains: the base config fits this data set (the loss, the selection
    # metric, the batch size and the model's shapes; every jaxnn fit checks it again).
    make_program(front_end.resolve(make_config(base, steps=1)), data)
    recipe = Recipe(
        layer_sizes=(data.num_features, *base.model.hidden, data.num_outputs),
        batch_size=int(base.training.batch_size),
        learning_rate=float(base.optimizer.learning_rate),
        momentum=float(base.optimizer.momentum),
    )
    return base, data, recipe


def write_results(results: dict[str, Any], out: str, started: float) -> None:
    results["wall_s"] = time.perf_counter() - started
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwall time {results['wall_s']:.0f} s; results in {path}")


def device_main(args: argparse.Namespace, started: float) -> None:
    """The GPU mode: the ensemble alone for each K on JAX's default device."""
    base, data, recipe = load_recipe(args)
    members = SMOKE_MEMBERS if args.smoke else (args.members,) if args.members else DEVICE_MEMBERS
    steps = args.steps or (PRESETS["smoke"].steps if args.smoke else DEVICE_STEPS)
    log(f"{jax.local_devices()[0].device_kind}: K = {members}, {steps} steps per member")

    runs = run_device_scaling(
        functools.partial(make_config, base),
        functools.partial(stacked_accuracy, data=data),
        data,
        members=members,
        steps=steps,
    )
    report = device_report(recipe, runs, PRESETS["smoke" if args.smoke else "full"].matmul_repeats)
    results = {"recipe": dataclasses.asdict(recipe), "jax": jax.__version__, "device": report}
    write_results(results, args.out or "runs/bench/restarts_gpu.json", started)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.gpu:
        device_main(args, started)
        return
    settings = resolve_settings(args)
    with_torch = not args.skip_torch and torch_available()
    if not args.skip_torch and not with_torch:
        log("torch is not importable: PyTorch baselines skipped (pip install torch==2.13.0)")
    if with_torch:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    machine = machine_info(with_torch)
    machine["baseline_threads"] = args.threads
    log(
        f"{machine['cpu_model']}, {machine['cpu_count']} cores, load {machine['load_average_at_start']}"
    )

    base, data, recipe = load_recipe(args)
    log(f"{data.num_train} training examples; {recipe}; {settings}")

    baselines = {
        "with_sklearn": not args.skip_sklearn,
        "with_torch": with_torch,
        "threads": args.threads,
    }
    if args.scaling_only:
        timings, reference = [], None
    else:
        timings = run_methods(base, data, recipe, settings, **baselines)
        reference = next(t for t in timings if t.key == "jaxnn_ensemble")
    scaling = run_scaling(base, data, settings, reference)
    curves = {"jaxnn": scaling}
    curves |= run_baseline_scaling(data, recipe, settings, **baselines)
    # Last: BLAS and OpenMP worker threads keep spinning for a while after a large matmul,
    # which would slow whatever ran right after it.
    rates = matmul_gflops(settings.matmul_repeats, with_torch=with_torch)
    log("matmul: " + ", ".join(f"{name} {rate:.1f} GFLOP/s" for name, rate in rates.items()))
    if reference is None:
        print_scaling(scaling, recipe, settings)
    else:
        print_report(timings, reference, recipe, rates, scaling, settings)
    print_curve(curves, settings.scaling_steps)
    out = Path(args.out or "runs/bench/restarts.json")
    plot_path = out.with_suffix(".png")
    plot_curve(
        curves,
        plot_path,
        f"MLP {'-'.join(map(str, recipe.layer_sizes))} on MNIST-1D, {settings.scaling_steps} "
        f"steps; {machine['cpu_count']} cores, load {machine['load_average_at_start'][0]:.1f}",
    )

    machine["load_average_at_end"] = list(os.getloadavg())
    results = {
        "settings": dataclasses.asdict(settings),
        "recipe": dataclasses.asdict(recipe),
        "machine": machine,
        "methods": [timing.to_json(reference) for timing in timings],
        "throughput": throughput(recipe, reference, rates) if reference else None,
        "matmul_gflops": rates,
        "k_scaling": [
            {
                **timing.to_json(),
                "gflops": recipe.flops_per_member_step * timing.member_steps_per_s / 1e9,
            }
            for timing in scaling
        ],
        "scaling_curve": curve_json(curves),
        "scaling_ratios": cost_ratios(scaling),
        "scaling_plot": str(plot_path),
    }
    write_results(results, str(out), started)


if __name__ == "__main__":
    main()
