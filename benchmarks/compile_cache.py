"""The persistent compilation cache: what a second launch of the same program saves.

Each measurement is a fresh process, the first with a fresh, empty cache directory, the second
with the cache the first filled:

  random-restarts demo   `launch.py --config=experiments/random_restarts.py:demo` into a new
                         workdir each time: `timing.compile_s` of its summary.json and the
                         launch's wall time
  8 starts on wine       scikit-learn's wine data (178 examples, 13 features, 3 classes) through
                         `jaxnn.data.from_arrays` + `jaxnn.core.ensemble.fit_ensemble`, 8 random
                         starts of an MLP 13-100-3 (Adam, lr 1e-3, batches of 32, 200 epochs):
                         the fit's compile_s, the fit's wall time and the process's wall time

against scikit-learn's 8 MLPClassifier fits of the same recipe one after another, timed in
this run. Prints the ratios and writes every number to a JSON file.

    python benchmarks/compile_cache.py [--skip-demo] [--data-dir DIR] [--out FILE]

Goal: the second launch's compile_s is at most 20% of the first's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# A benchmark measures the tree it sits in, installed or not.
sys.path.insert(0, str(REPO))

WINE_MEMBERS = 8
WINE_HIDDEN = (100,)
WINE_BATCH = 32
WINE_EPOCHS = 200
WINE_LEARNING_RATE = 1e-3


def log(message: str) -> None:
    """A progress line on stderr (stdout carries the results)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def wine_arrays() -> tuple[Any, Any, Any, Any]:
    """Wine's 178 examples, a stratified 75/25 train/test split (fixed seed)."""
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    x, y = load_wine(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)


def wine_child(cache_dir: Path, result_path: Path) -> None:
    """One process's 8-start fit on wine with the cache in `cache_dir`; writes its timings."""
    from jaxnn.parallel.cpu_devices import split_host_into_devices

    split_host_into_devices(os.environ)  # as the launcher does, before JAX starts
    import jax
    import numpy as np

    import jaxnn
    from jaxnn.core import ensemble

    assert jaxnn.enable_compilation_cache(cache_dir) == cache_dir
    x_train, x_test, y_train, y_test = wine_arrays()
    data = jaxnn.from_arrays(x_train, y_train, x_test, y_test, task="classification")
    config = jaxnn.default_config()
    config.model.hidden = WINE_HIDDEN
    config.model.init = "glorot_uniform"  # scikit-learn's initialisation
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = WINE_LEARNING_RATE
    config.training.batch_size = WINE_BATCH
    config.training.epochs = WINE_EPOCHS
    config.training.eval_every = 100
    config.restarts.num = WINE_MEMBERS
    started = time.perf_counter()
    result = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(config.seed))
    jax.block_until_ready(result.state)
    fit_s = time.perf_counter() - started
    metrics, _ = ensemble.evaluate_members(result.state, result.program, data.x_test, data.y_test)
    accuracy = np.asarray(metrics["accuracy"])
    result_path.write_text(
        json.dumps(
            {
                "compile_s": result.compile_s,
                "train_s": result.train_s,
                "fit_s": fit_s,
                "steps": result.steps_done,
                "num_train": data.num_train,
                "mean_test_accuracy": float(accuracy.mean()),
            }
        )
    )


def child_env(**extra: str) -> dict[str, str]:
    """This environment without a JAX cache of its own, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    return env | extra


def timed_process(command: list[str], env: dict[str, str]) -> float:
    """Runs `command` in REPO; its wall time in seconds (raises, with its stderr, if it fails)."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return wall_s


def demo_launches(root: Path, data_dir: str) -> list[dict[str, Any]]:
    """The random-restarts demo launched twice, each into a new workdir, sharing one cache."""
    cache = root / "demo_cache"
    launches = []
    for index in (1, 2):
        workdir = root / f"demo_{index}"
        command = [
            sys.executable,
            "launch.py",
            "--config=experiments/random_restarts.py:demo",
            f"--workdir={workdir}",
            "--noprogress",
        ]
        if data_dir:
            command.append(f"--config.dataset.data_dir={data_dir}")
        log(f"demo launch {index} (cache {'empty' if index == 1 else 'filled'})")
        wall_s = timed_process(command, child_env(JAXNN_COMPILATION_CACHE=str(cache)))
        timing = json.loads((workdir / "summary.json").read_text())["timing"]
        launches.append({"launch": index, "wall_s": wall_s, **timing})
    return launches


def wine_processes(root: Path) -> list[dict[str, Any]]:
    """The 8-start wine fit in two fresh processes sharing one cache."""
    cache = root / "wine_cache"
    runs = []
    for index in (1, 2):
        result = root / f"wine_{index}.json"
        command = [
            sys.executable,
            __file__,
            "--wine-child",
            f"--cache-dir={cache}",
            f"--result={result}",
        ]
        log(f"wine process {index} (cache {'empty' if index == 1 else 'filled'})")
        wall_s = timed_process(command, child_env())
        runs.append({"process": index, "process_wall_s": wall_s, **json.loads(result.read_text())})
    return runs


def sklearn_wine() -> dict[str, Any]:
    """scikit-learn's 8 MLPClassifier fits of the wine recipe, one after another."""
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    x_train, x_test, y_train, y_test = wine_arrays()
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    accuracies = []
    started = time.perf_counter()
    for seed in range(WINE_MEMBERS):
        classifier = MLPClassifier(
            hidden_layer_sizes=WINE_HIDDEN,
            solver="adam",
            alpha=0.0,
            batch_size=WINE_BATCH,
            learning_rate_init=WINE_LEARNING_RATE,
            max_iter=WINE_EPOCHS,
            tol=0.0,
            n_iter_no_change=WINE_EPOCHS + 1,  # never stops early
            random_state=seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached, as intended
            classifier.fit(x_train, y_train)
        accuracies.append(classifier.score(x_test, y_test))
    return {
        "members": WINE_MEMBERS,
        "total_s": time.perf_counter() - started,
        "mean_test_accuracy": float(np.mean(accuracies)),
    }


def report(results: dict[str, Any]) -> None:
    """The figures and their ratios, on stdout."""
    demo = results.get("demo")
    if demo:
        first, second = demo
        print("random-restarts demo (launch.py ...:demo), a fresh process per launch:")
        for run in demo:
            print(
                f"  launch {run['launch']}: compile_s {run['compile_s']:6.2f}  "
                f"train_s {run['train_s']:6.2f}  wall {run['wall_s']:6.1f} s"
            )
        print(
            f"  second / first: compile_s {results['ratios']['demo_compile']:.1%}, "
            f"wall {second['wall_s'] / first['wall_s']:.1%}"
        )
    first, second = results["wine"]
    sklearn = results["sklearn_wine"]
    print(f"wine, {WINE_MEMBERS} random starts (fit_ensemble), a fresh process each:")
    for run in results["wine"]:
        print(
            f"  process {run['process']}: compile_s {run['compile_s']:5.2f}  "
            f"fit {run['fit_s']:5.2f} s  process {run['process_wall_s']:5.1f} s  "
            f"test accuracy {run['mean_test_accuracy']:.3f}"
        )
    print(
        f"  scikit-learn, {sklearn['members']} MLPClassifier fits one after another: "
        f"{sklearn['total_s']:.2f} s, test accuracy {sklearn['mean_test_accuracy']:.3f}"
    )
    ratios = results["ratios"]
    print(f"  second / first: compile_s {ratios['wine_compile']:.1%}, fit {ratios['wine_fit']:.1%}")
    print(
        f"  scikit-learn's time / jaxnn's fit: first {ratios['sklearn_over_wine_fit_first']:.2f}x, "
        f"second {ratios['sklearn_over_wine_fit_second']:.2f}x; over the whole second "
        f"process {ratios['sklearn_over_wine_process_second']:.2f}x"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-demo", action="store_true", help="only the wine measurements")
    parser.add_argument("--data-dir", default="", help="config.dataset.data_dir of the demo")
    parser.add_argument("--out", default="runs/bench/compile_cache.json", help="the JSON file")
    parser.add_argument("--wine-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.wine_child:
        wine_child(args.cache_dir.absolute(), args.result)
        return
    import sklearn

    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()),
            "sklearn": sklearn.__version__,
        }
    }
    with tempfile.TemporaryDirectory(prefix="jaxnn_compile_cache_") as scratch:
        root = Path(scratch)
        if not args.skip_demo:
            results["demo"] = demo_launches(root, args.data_dir)
        results["wine"] = wine_processes(root)
    log("scikit-learn fits")
    results["sklearn_wine"] = sklearn_wine()
    wine_first, wine_second = results["wine"]
    sklearn_s = results["sklearn_wine"]["total_s"]
    results["ratios"] = {
        "wine_compile": wine_second["compile_s"] / wine_first["compile_s"],
        "wine_fit": wine_second["fit_s"] / wine_first["fit_s"],
        "sklearn_over_wine_fit_first": sklearn_s / wine_first["fit_s"],
        "sklearn_over_wine_fit_second": sklearn_s / wine_second["fit_s"],
        "sklearn_over_wine_process_second": sklearn_s / wine_second["process_wall_s"],
    }
    if "demo" in results:
        demo_first, demo_second = results["demo"]
        results["ratios"]["demo_compile"] = demo_second["compile_s"] / demo_first["compile_s"]
    results["wall_s"] = time.perf_counter() - started
    report(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
