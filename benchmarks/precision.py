"""bfloat16 against float32 computation (`model.dtype`): speed per step and test accuracy.

Two K-member ensembles on MNIST-1D, each trained with model.dtype=float32 and =bfloat16 in this
one process (parameters and optimiser state are float32 in both; jaxnn.nn.precision):

  mlp     the benchmark MLP of benchmarks/restarts.py: the default config, 40-100-100-10, ReLU,
          He init, SGD with momentum (lr 0.05, momentum 0.9), batch 100
  cnn1d   the CNN of benchmarks/conv.py: 4 conv layers of 32 channels, kernel 5, 'same'
          padding, ReLU, a linear head on the flattened positions; the same optimiser and batch

Each (model, dtype) run is one `fit_ensemble` of `--steps` steps in one chunk; the runs are
interleaved (float32, bfloat16, float32, ...) `--repeats` times, the first repeat only compiles
and warms up, and the fastest of the others counts (the machine may be shared). Reported: ms
per step, the bfloat16 / float32 time ratio, and the test accuracy of the final weights
averaged over members. Also what this CPU does with bfloat16: its bf16 instruction flags
(lscpu) and whether XLA's compiled program multiplies bfloat16 matrices as they are or
converts them to float32 first (the optimised HLO of one bfloat16 dot).

    python benchmarks/precision.py [--smoke] [--steps N] [--members K] [--repeats R]
        [--models mlp,cnn1d] [--data-dir DIR] [--out runs/bench/precision.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

# A benchmark measures the tree it sits in, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jaxnn.parallel.cpu_devices import split_host_into_devices

# As the launcher does: one CPU device per core before JAX starts.
split_host_into_devices(os.environ)

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxnn import data as data_lib
from jaxnn import front_end
from jaxnn.config import default_config
from jaxnn.core import ensemble

DTYPES = ("float32", "bfloat16")
SMOKE_TRAIN_PER_CLASS = 20  # --smoke: a small training split keeps the evaluations short
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "avx_ne_convert", "avx512_fp16")


def model_config(
    model: str, dtype: str, *, members: int, steps: int, data_dir: str | None, smoke: bool
) -> ml_collections.ConfigDict:
    """The benchmark's config of `model` computing in `dtype` (validated)."""
    config = default_config()
    if data_dir is not None:
        config.dataset.data_dir = data_dir
    if smoke:
        config.dataset.train_per_class = SMOKE_TRAIN_PER_CLASS
    if model == "cnn1d":
        config.model.name = "cnn1d"
        config.model.channels = (8, 8) if smoke else (32,) * 4
        config.model.kernel_sizes = (5,)
        config.model.hidden = ()
    elif smoke:
        config.model.hidden = (16, 16)
    config.model.dtype = dtype
    config.training.steps = steps
    config.training.eval_every = steps
    config.restarts.num = members
    config.tensorboard.enabled = False
    front_end.resolve(config)
    return config


def test_accuracy(result: ensemble.EnsembleResult, data: data_lib.Dataset) -> float:
    """Test accuracy of the members' final weights (computed in the run's dtype), averaged."""
    state, x_test = result.state, jnp.asarray(data.x_test)
    outputs, _ = jax.vmap(lambda p, s, h: state.apply_fn(p, s, x_test, h))(
        state.params, state.model_state, state.hparams
    )
    return float(jnp.mean(jnp.argmax(outputs, -1) == jnp.asarray(data.y_test)))


def cpu_bf16_support() -> dict:
    """The CPU's model and its bfloat16 instruction flags (Linux lscpu), and what XLA compiles
    one bfloat16 matmul to on the default backend."""
    flags: list[str] = []
    model = platform.processor()
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = re.search(r"Model name:\s*(.+)", text).group(1).strip()
        found = re.search(r"Flags:\s*(.+)", text)
        flags = [f for f in BF16_FLAGS if found and f in found.group(1).split()]
    except (OSError, AttributeError, subprocess.SubprocessError):
        pass
    a = jnp.ones((64, 64), jnp.bfloat16)
    hlo = jax.jit(lambda a, b: a @ b).lower(a, a).compile().as_text()
    products = [line for line in hlo.splitlines() if re.search(r"\bdot\(", line)]
    upcast = bool(products) and all(
        re.match(r"\s*(ROOT\s+)?%\S+ = f32\[", line) for line in products
    )
    return {
        "cpu_model": model,
        "bf16_flags": flags,
        "backend": jax.default_backend(),
        "xla_dot_in_float32": upcast,
        "xla_dot_hlo": [line.strip()[:160] for line in products],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="steps of each timed run")
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="runs per (model, dtype)")
    parser.add_argument("--models", default="mlp,cnn1d")
    parser.add_argument("--smoke", action="store_true", help="small models, 2 members, 5 steps")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/bench/precision.json")
    args = parser.parse_args(argv)
    members, steps, repeats = args.members, args.steps, args.repeats
    if args.smoke:
        members, steps, repeats = 2, 5, 2
    models = args.models.split(",")

    dataset = default_config().dataset
    if args.data_dir is not None:
        dataset.data_dir = args.data_dir
    if args.smoke:
        dataset.train_per_class = SMOKE_TRAIN_PER_CLASS
    data = data_lib.load(dataset)
    support = cpu_bf16_support()
    print(f"{support['cpu_model']}; bf16 flags: {', '.join(support['bf16_flags']) or 'none'}; "
          f"XLA {support['backend']} multiplies bfloat16 matrices "
          f"{'in float32 (converts first)' if support['xla_dot_in_float32'] else 'as bfloat16'}")  # fmt: skip
    print(f"{members} members, {steps} steps per run, batch 100, {data.num_train} training "
          f"examples; {jax.device_count()} {jax.default_backend()} device(s)")  # fmt: skip

    runs: dict[tuple[str, str], list[dict]] = {}
    for repeat in range(repeats):
        for model in models:
            for dtype in DTYPES:
                config = model_config(
                    model, dtype, members=members, steps=steps, data_dir=args.data_dir,
                    smoke=args.smoke,
                )  # fmt: skip
                result = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(0))
                run = {
                    "repeat": repeat,
                    "s_per_step": result.train_s / steps,
                    "compile_s": result.compile_s,
                    "test_accuracy": test_accuracy(result, data),
                }
                runs.setdefault((model, dtype), []).append(run)
                print(f"  {model:<6} {dtype:<9} repeat {repeat}: "
                      f"{run['s_per_step'] * 1e3:8.2f} ms/step, "
                      f"test accuracy {run['test_accuracy']:.4f}")  # fmt: skip

    rows = []
    for model in models:
        timed = {}
        for dtype in DTYPES:
            counted = runs[(model, dtype)][1:] or runs[(model, dtype)]  # the first one warms up
            timed[dtype] = {
                "model": model,
                "dtype": dtype,
                "ms_per_step": 1e3 * min(r["s_per_step"] for r in counted),
                "test_accuracy": counted[-1]["test_accuracy"],
                "runs": runs[(model, dtype)],
            }
        ratio = timed["bfloat16"]["ms_per_step"] / timed["float32"]["ms_per_step"]
        timed["bfloat16"]["time_over_float32"] = ratio
        rows += [timed["float32"], timed["bfloat16"]]
        print(f"{model}: float32 {timed['float32']['ms_per_step']:.2f} ms/step "
              f"(accuracy {timed['float32']['test_accuracy']:.4f}), bfloat16 "
              f"{timed['bfloat16']['ms_per_step']:.2f} ms/step "
              f"(accuracy {timed['bfloat16']['test_accuracy']:.4f}): "
              f"bfloat16 takes {ratio:.2f}x the time of float32")  # fmt: skip

    settings = {
        "members": members,
        "steps": steps,
        "repeats": repeats,
        "batch": 100,
        "num_train": data.num_train,
        "devices": jax.device_count(),
        "smoke": args.smoke,
    }
    report = {
        "settings": settings,
        "machine": support,
        "jax": jax.__version__,
        "rows": rows,
        "accuracy_bfloat16_minus_float32": {
            model: float(np.diff([r["test_accuracy"] for r in rows if r["model"] == model])[0])
            for model in models
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
