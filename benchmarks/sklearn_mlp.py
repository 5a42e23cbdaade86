"""jaxnn.sklearn.MLPClassifier(n_restarts=8) against scikit-learn's MLPClassifier, best of 8 seeds.

On scikit-learn's bundled wine, breast-cancer and digits data, one stratified split per data
set (test 25%, then validation 20% of the rest; features standardised on the training part)
serves both:

  scikit-learn   `sklearn.neural_network.MLPClassifier(hidden_layer_sizes, random_state=s)`
                 for s = 0..7, one fit after another on the training part; the seed with the
                 best validation accuracy is kept (ties: the lowest seed)
  jaxnn          `jaxnn.sklearn.MLPClassifier(hidden_layer_sizes, n_restarts=8)` fitted once
                 on the training part with `X_val=, y_val=` the same validation part: 8 random
                 starts in one vmapped program, the best validation accuracy kept

Both use scikit-learn's defaults otherwise (Adam, learning rate 1e-3, alpha 1e-4, batches of
min(200, n), at most 200 epochs, tol 1e-4 with 10 epochs of patience on the training loss).
Printed: the test accuracy of each kept network, and the wall time of each fit: scikit-learn's
8 fits summed; jaxnn's first fit (which compiles) and a second fit of the same shapes with
another random_state (the compiled program reused).

    python benchmarks/sklearn_mlp.py [--hidden 100] [--out FILE] [--smoke]

Goal: jaxnn's test accuracy is at least scikit-learn's on every data set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# A benchmark measures the tree it sits in, installed or not.
sys.path.insert(0, str(REPO))

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.preprocessing import StandardScaler

from jaxnn.sklearn import MLPClassifier as JaxnnMLP

DATASETS = {"wine": load_wine, "breast_cancer": load_breast_cancer, "digits": load_digits}
SEEDS = 8
SPLIT_SEED = 0


def split(name: str) -> dict[str, np.ndarray]:
    """One stratified train / validation / test split, standardised on the training part."""
    x, y = DATASETS[name](return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=SPLIT_SEED
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.2, stratify=y_rest, random_state=SPLIT_SEED
    )
    scaler = StandardScaler().fit(x_train)
    return {
        "x_train": scaler.transform(x_train),
        "y_train": y_train,
        "x_val": scaler.transform(x_val),
        "y_val": y_val,
        "x_test": scaler.transform(x_test),
        "y_test": y_test,
    }


def sklearn_best_of_seeds(data: dict[str, np.ndarray], hidden: tuple[int, ...], **kw: Any):
    """scikit-learn's 8 seeds one after another; the best validation accuracy kept."""
    started = time.perf_counter()
    fits = [
        SklearnMLP(hidden_layer_sizes=hidden, random_state=seed, **kw).fit(
            data["x_train"], data["y_train"]
        )
        for seed in range(SEEDS)
    ]
    wall_s = time.perf_counter() - started
    val = [fit.score(data["x_val"], data["y_val"]) for fit in fits]
    best = int(np.argmax(val))
    return {
        "test_accuracy": float(fits[best].score(data["x_test"], data["y_test"])),
        "val_accuracy": float(val[best]),
        "best_seed": best,
        "fit_s": wall_s,
        "epochs": [fit.n_iter_ for fit in fits],
    }


def jaxnn_restarts(data: dict[str, np.ndarray], hidden: tuple[int, ...], **kw: Any):
    """jaxnn's 8 random starts in one fit (then a second fit of the same shapes)."""
    times = []
    fits = []
    for random_state in (0, 1):
        estimator = JaxnnMLP(
            hidden_layer_sizes=hidden, n_restarts=SEEDS, random_state=random_state, **kw
        )
        started = time.perf_counter()
        estimator.fit(data["x_train"], data["y_train"], X_val=data["x_val"], y_val=data["y_val"])
        times.append(time.perf_counter() - started)
        fits.append(estimator)
    first = fits[0]
    return {
        "test_accuracy": float(first.score(data["x_test"], data["y_test"])),
        "val_accuracy": float(first.best_validation_score_),
        "best_member": first.best_member_,
        "fit_s": times[0],
        "second_fit_s": times[1],
        "second_fit_test_accuracy": float(fits[1].score(data["x_test"], data["y_test"])),
        "epochs": first.results_["n_iter"].tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[100])
    parser.add_argument("--out", default="")
    parser.add_argument("--smoke", action="store_true", help="wine only, 20 epochs")
    args = parser.parse_args()
    hidden = tuple(args.hidden)
    names = ["wine"] if args.smoke else list(DATASETS)
    options = {"max_iter": 20} if args.smoke else {}
    warnings.simplefilter("ignore", ConvergenceWarning)
    records = {}
    header = (
        f"{'data set':14} {'sklearn test':>12} {'jaxnn test':>10} {'sklearn 8 fits s':>16} "
        f"{'jaxnn fit s':>11} {'jaxnn refit s':>13}"
    )
    print(f"MLP hidden={hidden}, best of {SEEDS} on one validation split")
    print(header)
    for name in names:
        data = split(name)
        sk = sklearn_best_of_seeds(data, hidden, **options)
        jx = jaxnn_restarts(data, hidden, **options)
        records[name] = {"sklearn": sk, "jaxnn": jx, "num_train": len(data["x_train"])}
        print(
            f"{name:14} {sk['test_accuracy']:12.4f} {jx['test_accuracy']:10.4f} "
            f"{sk['fit_s']:16.2f} {jx['fit_s']:11.2f} {jx['second_fit_s']:13.2f}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"hidden": hidden, "results": records}, indent=2))


if __name__ == "__main__":
    main()
