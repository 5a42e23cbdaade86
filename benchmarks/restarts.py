"""Random restarts side by side: jaxnn's vmapped ensemble against training members one by one.

K members of an MLP 40-100-100-10 (ReLU, He init) are trained on MNIST-1D (3600 training
examples after the validation carve) with SGD and momentum (lr 0.05, momentum 0.9, batch 100) by

  jaxnn fit, one after another    jaxnn.train.fit(config, data, member_key(root, i)), all K
  scikit-learn MLPClassifier      solver='sgd', same architecture, batch and steps (a few members)
  PyTorch eager                   one nn.Sequential + torch.optim.SGD per member (a few members)
  PyTorch torch.func vmap         stack_module_state + functional_call + vmap(grad), all K
  jaxnn ensemble                  jaxnn.ensemble.fit_ensemble, all K in one compiled program,
                                  with independent and with shared batch orders

all in this one process, each timed after compilation / warm-up and reported as seconds per
member for the same number of steps, with the jaxnn ensemble's speedup over it. Then the
ensemble's achieved GFLOP/s against this machine's float32 matmul rate, and its per-member time
for several K. Results also go to a JSON file.

    python benchmarks/restarts.py [--quick | --smoke] [--steps N] [--members K]
        [--skip-torch] [--skip-sklearn] [--data-dir DIR] [--out runs/bench/restarts.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import itertools
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# A benchmark measures the tree it sits in, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxnn.cpu_devices import split_host_into_devices

# As the launcher does: one CPU device per core before JAX starts, so an ensemble's members
# are sharded over every core (set XLA_FLAGS=--xla_force_host_platform_device_count=1 to see
# the single-device program).
split_host_into_devices(os.environ)

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxnn import config as config_lib
from jaxnn import data as data_lib
from jaxnn import ensemble, train

MATMUL_SIZE = 1024
EVAL_EVERY = 3000  # used when it divides the steps; otherwise one evaluation at the end
TORCH_WARMUP_STEPS = 20


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much one benchmark run trains."""

    steps: int  # optimiser steps per member
    members: int  # K of the jaxnn ensemble and of the torch.func vmap
    sequential_members: int  # members trained one after another by jaxnn.train.fit
    baseline_members: int  # members timed for scikit-learn and PyTorch eager
    scaling_steps: int  # steps per member of the K-scaling runs
    scaling_members: tuple[int, ...]  # the K of the K-scaling runs
    matmul_repeats: int


PRESETS = {
    "full": Settings(6000, 32, 32, 4, 1000, (1, 8, 32, 128), 10),
    "quick": Settings(500, 32, 4, 2, 200, (1, 8, 32, 128), 5),
    "smoke": Settings(20, 4, 2, 2, 20, (1, 4), 3),
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
    config_lib.validate(config)
    return config


def stacked_accuracy(state: train.TrainState, data: data_lib.Dataset) -> float:
    """Test accuracy of the final weights of a stacked state, averaged over its members."""
    x_test = jnp.asarray(data.x_test)
    outputs = jax.vmap(lambda p, h: state.apply_fn(p, x_test, h))(state.params, state.hparams)
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
        result = train.fit(config, data, train.member_key(root, index))
        member_s.append(result.train_s)
        compile_s.append(result.compile_s)
        stacked = jax.tree_util.tree_map(lambda leaf: leaf[None], result.state)
        accuracies.append(stacked_accuracy(stacked, data))
    return Timing(
        key="jaxnn_fit_sequential",
        method="jaxnn fit, one after another",
        members=len(member_s),
        steps=settings.steps,
        target_steps=settings.steps,
        train_s=sum(member_s),
        test_accuracy=float(np.mean(accuracies)),
        member_s=member_s,
        compile_s=float(np.mean(compile_s)),
        note="train.fit(config, data, member_key(root, i)); sum of train_s; every fit compiles anew",
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
        f"eval_every={config.training.eval_every}",
    )


def sklearn_restarts(data: data_lib.Dataset, recipe: Recipe, settings: Settings) -> Timing:
    """(b) scikit-learn MLPClassifier restarts: whole epochs, time rescaled to the steps."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    steps_per_epoch = math.ceil(data.num_train / recipe.batch_size)
    epochs = max(1, round(settings.steps / steps_per_epoch))
    member_s, accuracies = [], []
    for index in range(settings.baseline_members):
        classifier = MLPClassifier(
            hidden_layer_sizes=recipe.layer_sizes[1:-1],
            activation="relu",
            solver="sgd",
            alpha=0.0,
            batch_size=recipe.batch_size,
            learning_rate="constant",
            learning_rate_init=recipe.learning_rate,
            momentum=recipe.momentum,
            nesterovs_momentum=False,
            max_iter=epochs,
            shuffle=True,
            tol=0.0,
            n_iter_no_change=epochs + 1,  # never stops early
            random_state=index,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached, as intended
            started = time.perf_counter()
            classifier.fit(data.x_train, data.y_train)
            member_s.append(time.perf_counter() - started)
        accuracies.append(classifier.score(data.x_test, data.y_test))
    return Timing(
        key="sklearn_mlp",
        method="scikit-learn MLPClassifier",
        members=len(member_s),
        steps=epochs * steps_per_epoch,
        target_steps=settings.steps,
        train_s=sum(member_s),
        test_accuracy=float(np.mean(accuracies)),
        member_s=member_s,
        note=f"{epochs} epochs x {steps_per_epoch} steps, time rescaled to {settings.steps} steps; "
        "sklearn's own (Glorot) init",
    )


def torch_mlp(layer_sizes: tuple[int, ...]):
    """An nn.Sequential MLP with ReLU, He-normal kernels and zero biases."""
    from torch import nn

    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(layer_sizes):
        linear = nn.Linear(fan_in, fan_out)
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def torch_arrays(data: data_lib.Dataset):
    """(x_train, y_train, x_test, y_test) as torch tensors (labels int64)."""
    import torch

    arrays = (data.x_train, data.y_train.astype(np.int64), data.x_test, data.y_test)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)


def torch_eager(data: data_lib.Dataset, recipe: Recipe, settings: Settings) -> Timing:
    """(c) PyTorch eager: one nn.Sequential and torch.optim.SGD per member, trained in turn."""
    import torch
    import torch.nn.functional as F

    x, y, x_test, y_test = torch_arrays(data)
    num_train, batch_size = len(x), recipe.batch_size
    steps_per_epoch = math.ceil(num_train / batch_size)

    def train_member(seed: int, steps: int):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = torch_mlp(recipe.layer_sizes)
        optimizer = torch.optim.SGD(
            model.parameters(), lr=recipe.learning_rate, momentum=recipe.momentum
        )
        for step in range(steps):
            within = step % steps_per_epoch
            if within == 0:  # a fresh order every epoch
                order = torch.randperm(num_train, generator=generator)
            idx = order[within * batch_size : (within + 1) * batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return model

    train_member(10_000, TORCH_WARMUP_STEPS)  # warm-up: allocator, kernels, thread pool
    member_s, accuracies = [], []
    for index in range(settings.baseline_members):
        started = time.perf_counter()
        model = train_member(index, settings.steps)
        member_s.append(time.perf_counter() - started)
        with torch.no_grad():
            accuracies.append(float((model(x_test).argmax(-1) == y_test).float().mean()))
    return Timing(
        key="torch_eager",
        method="PyTorch eager, one after another",
        members=len(member_s),
        steps=settings.steps,
        target_steps=settings.steps,
        train_s=sum(member_s),
        test_accuracy=float(np.mean(accuracies)),
        member_s=member_s,
        note=f"torch {torch.__version__}, {torch.get_num_threads()} threads",
    )


def torch_vmap(data: data_lib.Dataset, recipe: Recipe, settings: Settings) -> Timing:
    """(c) torch.func: K stacked members, vmap(grad(functional_call)), momentum SGD by hand."""
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, grad, stack_module_state, vmap

    x, y, x_test, y_test = torch_arrays(data)
    num_train, num_members, batch_size = len(x), settings.members, recipe.batch_size
    steps_per_epoch = math.ceil(num_train / batch_size)
    template = copy.deepcopy(torch_mlp(recipe.layer_sizes)).to("meta")

    def loss_fn(params, buffers, xb, yb):
        return F.cross_entropy(functional_call(template, (params, buffers), (xb,)), yb)

    grad_fn = vmap(grad(loss_fn))

    def train_all(seed: int, steps: int):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        params, buffers = stack_module_state(
            [torch_mlp(recipe.layer_sizes) for _ in range(num_members)]
        )
        params = {name: value.detach() for name, value in params.items()}
        velocity = {name: torch.zeros_like(value) for name, value in params.items()}
        for step in range(steps):
            within = step % steps_per_epoch
            if within == 0:  # a fresh order per member every epoch
                order = torch.argsort(torch.rand(num_members, num_train, generator=generator), 1)
            idx = order[:, within * batch_size : (within + 1) * batch_size]  # [K, B]
            grads = grad_fn(params, buffers, x[idx], y[idx])
            with torch.no_grad():
                for name, value in params.items():
                    velocity[name].mul_(recipe.momentum).add_(grads[name])
                    value.add_(velocity[name], alpha=-recipe.learning_rate)
        return params, buffers

    train_all(10_000, TORCH_WARMUP_STEPS)  # warm-up
    started = time.perf_counter()
    params, buffers = train_all(0, settings.steps)
    train_s = time.perf_counter() - started
    with torch.no_grad():
        outputs = vmap(lambda p, b: functional_call(template, (p, b), (x_test,)))(params, buffers)
        accuracy = float((outputs.argmax(-1) == y_test).float().mean())
    return Timing(
        key="torch_vmap",
        method="PyTorch torch.func vmap",
        members=num_members,
        steps=settings.steps,
        target_steps=settings.steps,
        train_s=train_s,
        test_accuracy=accuracy,
        note=f"torch {torch.__version__}, {torch.get_num_threads()} threads",
    )


# --- the machine --------------------------------------------------------------------------


def best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """The fastest of `repeats` timed calls, after one untimed call (which compiles for jax)."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def matmul_gflops(repeats: int, *, with_torch: bool) -> dict[str, float]:
    """Dense float32 1024x1024 @ 1024x1024 rates in GFLOP/s: jax (jit), numpy, torch."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((MATMUL_SIZE, MATMUL_SIZE), np.float32) for _ in range(2))
    gflop = 2 * MATMUL_SIZE**3 / 1e9
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    matmul = jax.jit(jnp.matmul)
    rates = {
        "jax": gflop / best_seconds(lambda: matmul(ja, jb).block_until_ready(), repeats),
        "numpy": gflop / best_seconds(lambda: a @ b, repeats),
    }
    if with_torch:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        rates["torch"] = gflop / best_seconds(lambda: ta @ tb, repeats)
    return rates


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(with_torch: bool) -> dict[str, Any]:
    """CPU model, cores, load and library versions of this run."""
    import sklearn

    info = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "torch": None,
        "torch_threads": None,
        "load_average_at_start": list(os.getloadavg()),
    }
    if with_torch:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def thread_limit(threads: int, *, with_torch: bool) -> Iterator[None]:
    """Limits BLAS and OpenMP pools (threadpoolctl) and torch's intra-op threads to `threads`."""
    from threadpoolctl import threadpool_limits

    if not with_torch:
        with threadpool_limits(limits=threads):
            yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


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
    reference: Timing,
) -> list[Timing]:
    """The jaxnn ensemble for each K of the scaling sweep (reusing the reference run if it is one)."""
    return [
        reference
        if (members, settings.scaling_steps) == (reference.members, reference.steps)
        else reported(jaxnn_ensemble(base, data, members=members, steps=settings.scaling_steps))
        for members in settings.scaling_members
    ]


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
    print(f"\njaxnn ensemble per-member time against K ({settings.scaling_steps} steps per member)")
    columns = f"{'K':>5} {'train s':>10} {f's/member ({settings.scaling_steps} steps)':>22} {'member-steps/s':>15} {'GFLOP/s':>9}"
    print(columns)
    print("-" * len(columns))
    for timing in scaling:
        gflops = recipe.flops_per_member_step * timing.member_steps_per_s / 1e9
        print(
            f"{timing.members:>5d} {timing.train_s:>10.3f} {timing.per_member_s:>22.4f} "
            f"{timing.member_steps_per_s:>15.0f} {gflops:>9.2f}"
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
    parser.add_argument("--out", default="runs/bench/restarts.json", help="where the JSON goes")
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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = resolve_settings(args)
    started = time.perf_counter()
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

    base = config_lib.default_config()
    if args.data_dir is not None:
        base.dataset.data_dir = args.data_dir
    data = data_lib.load(base.dataset)  # validates config.dataset; make_config the rest
    config_lib.check_against_task(base, data.task, data.num_train)
    recipe = Recipe(
        layer_sizes=(data.num_features, *base.model.hidden, data.num_outputs),
        batch_size=int(base.training.batch_size),
        learning_rate=float(base.optimizer.learning_rate),
        momentum=float(base.optimizer.momentum),
    )
    log(f"{data.num_train} training examples; {recipe}; {settings}")

    timings = run_methods(
        base,
        data,
        recipe,
        settings,
        with_sklearn=not args.skip_sklearn,
        with_torch=with_torch,
        threads=args.threads,
    )
    reference = next(t for t in timings if t.key == "jaxnn_ensemble")
    scaling = run_scaling(base, data, settings, reference)
    # Last: BLAS and OpenMP worker threads keep spinning for a while after a large matmul,
    # which would slow whatever ran right after it.
    rates = matmul_gflops(settings.matmul_repeats, with_torch=with_torch)
    log("matmul: " + ", ".join(f"{name} {rate:.1f} GFLOP/s" for name, rate in rates.items()))
    print_report(timings, reference, recipe, rates, scaling, settings)

    wall_s = time.perf_counter() - started
    machine["load_average_at_end"] = list(os.getloadavg())
    results = {
        "settings": dataclasses.asdict(settings),
        "recipe": dataclasses.asdict(recipe),
        "machine": machine,
        "methods": [timing.to_json(reference) for timing in timings],
        "throughput": throughput(recipe, reference, rates),
        "k_scaling": [
            {
                **timing.to_json(),
                "gflops": recipe.flops_per_member_step * timing.member_steps_per_s / 1e9,
            }
            for timing in scaling
        ],
        "wall_s": wall_s,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwall time {wall_s:.0f} s; results in {out}")


if __name__ == "__main__":
    main()
