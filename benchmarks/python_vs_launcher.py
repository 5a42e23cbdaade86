"""`jaxnn.run` from a plain Python script against the launcher, on the same config.

Each measurement is a fresh process on the same launch config (default: the `make demo` run,
32 random starts of an MLP on MNIST-1D, shortened): once as `python launch.py --config=...`,
once as a script that does only `import jaxnn` and `jaxnn.run(get_config(arg), workdir)`. The
two alternate `--repeats` times; each reads `timing.member_steps_per_s` of its summary.json.
Importing jaxnn splits the host into one CPU device per core as the launcher does, so the
ratio should be near 1 (goal: within 10%). `--no-split` runs the script with
`JAXNN_SPLIT_CPU=0` instead, to show what the split is worth.

    python benchmarks/python_vs_launcher.py [--config experiments/random_restarts.py:demo]
        [--steps 1000] [--repeats 2] [--no-split] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
import jaxnn
import importlib.util

path, arg, workdir, steps = sys.argv[1:]
spec = importlib.util.spec_from_file_location("launch_config", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
config = module.get_config(arg or None)
config.training.steps = int(steps)
jaxnn.run(config, workdir, progress=False)
"""


def _environment(split: bool) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXNN_SPLIT_CPU")}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH")]))
    if not split:
        environ["JAXNN_SPLIT_CPU"] = "0"
    return environ


def _rate(workdir: Path) -> float:
    summary = json.loads((workdir / "summary.json").read_text())
    return float(summary["timing"]["member_steps_per_s"])


def launcher(config: str, steps: int, workdir: Path) -> float:
    """member-steps/s of `python launch.py` on the config."""
    subprocess.run(
        [
            sys.executable,
            str(REPO / "launch.py"),
            f"--config={config}",
            f"--workdir={workdir}",
            f"--config.training.steps={steps}",
            "--noprogress",
        ],
        check=True,
        env=_environment(split=True),
        stdout=subprocess.DEVNULL,
    )
    return _rate(workdir)


def script(config: str, steps: int, workdir: Path, *, split: bool) -> float:
    """member-steps/s of a plain Python script calling `jaxnn.run` on the config."""
    path, _, arg = config.partition(":")
    subprocess.run(
        [sys.executable, "-c", SCRIPT, str(REPO / path), arg, str(workdir), str(steps)],
        check=True,
        env=_environment(split=split),
        stdout=subprocess.DEVNULL,
    )
    return _rate(workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/random_restarts.py:demo")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-split", action="store_true", help="the script with JAXNN_SPLIT_CPU=0")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"launcher": [], "script": []}
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(args.repeats):
            rates["launcher"].append(
                launcher(args.config, args.steps, Path(root) / f"launcher{repeat}")
            )
            rates["script"].append(
                script(
                    args.config, args.steps, Path(root) / f"script{repeat}", split=not args.no_split
                )
            )
            print(
                f"repeat {repeat}: launcher {rates['launcher'][-1]:.0f}, "
                f"script {rates['script'][-1]:.0f} member-steps/s",
                flush=True,
            )
    launch_rate = statistics.median(rates["launcher"])
    script_rate = statistics.median(rates["script"])
    split = "JAXNN_SPLIT_CPU=0" if args.no_split else "split on import"
    print(
        f"{args.config}, {args.steps} steps, {os.cpu_count()} cores: launcher "
        f"{launch_rate:.0f}, jaxnn.run script ({split}) {script_rate:.0f} member-steps/s "
        f"(median of {args.repeats}); script / launcher = {script_rate / launch_rate:.3f}"
    )
    if args.out:
        args.out.write_text(json.dumps({"config": args.config, "steps": args.steps, **rates}))


if __name__ == "__main__":
    main()
