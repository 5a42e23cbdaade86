"""The restarts benchmark runs end to end in its tiny mode and writes every number it reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run_benchmark(
    *args: str, script: str = "benchmarks/restarts.py"
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        # The same persistent cache as the in-process tests: repeated compiles become reads.
        "JAX_COMPILATION_CACHE_DIR": str(REPO / ".data" / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    result = subprocess.run(
        [sys.executable, script, "--smoke", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow  # a benchmark process: the scripts are tools, their parts are tested in-process
def test_restarts_benchmark_smoke_writes_positive_timings(tmp_path, data_dir):
    out = tmp_path / "restarts.json"
    result = _run_benchmark("--skip-torch", f"--data-dir={data_dir}", f"--out={out}")
    report = json.loads(out.read_text())

    assert {"settings", "recipe", "machine", "methods", "throughput", "k_scaling", "wall_s"} <= set(
        report
    )
    for key in ("cpu_model", "cpu_count", "jax", "sklearn", "torch"):
        assert key in report["machine"], key
    assert report["recipe"]["layer_sizes"] == [40, 100, 100, 10]

    methods = {m["key"]: m for m in report["methods"]}
    assert set(methods) == {
        "jaxnn_fit_sequential",
        "sklearn_mlp",
        "jaxnn_ensemble",
        "jaxnn_ensemble_shared",
    }
    assert methods["jaxnn_ensemble"]["members"] == 4
    assert methods["jaxnn_fit_sequential"]["members"] == 2
    assert methods["sklearn_mlp"]["members"] == 2
    for method in methods.values():
        assert method["train_s"] > 0, method
        assert method["per_member_s"] > 0, method
        assert method["speedup_of_jaxnn_ensemble"] > 0, method
        # MNIST-1D's 10 classes: chance is 0.1; 20 steps of the recipe reach about 0.26-0.31.
        assert method["test_accuracy"] > 0.18, method
    assert methods["jaxnn_ensemble"]["speedup_of_jaxnn_ensemble"] == 1
    # The same recipe (layers, SGD with momentum, batch, rate, steps) in jaxnn and in
    # scikit-learn learns about as well: the timings compare like with like.
    assert (
        abs(
            methods["jaxnn_fit_sequential"]["test_accuracy"]
            - methods["sklearn_mlp"]["test_accuracy"]
        )
        < 0.12
    )

    throughput = report["throughput"]
    assert throughput["flops_per_member_step"] == 3 * 2 * 100 * (40 * 100 + 100 * 100 + 100 * 10)
    assert throughput["ensemble_gflops"] > 0
    assert throughput["matmul_gflops"]["jax"] > 0 and throughput["matmul_gflops"]["numpy"] > 0
    assert [row["members"] for row in report["k_scaling"]] == [1, 4]
    assert all(row["per_member_s"] > 0 and row["gflops"] > 0 for row in report["k_scaling"])

    # The scaling curve: jaxnn at every K, scikit-learn at those within the budget, the memory
    # account per member, the ratios against K=32 only when K=32 was run, and the log-log plot.
    curve = report["scaling_curve"]
    assert [p["members"] for p in curve["jaxnn"]] == [1, 4]
    assert 1 <= len(curve["scikit-learn restarts"]) <= 2
    for point in curve["jaxnn"]:
        memory = point["memory"]
        assert memory["per_member"]["state"] > 0 and memory["per_member"]["step_activations"] > 0
        assert memory["host_bytes"] >= memory["members"] * memory["per_member"]["state"]
        assert point["per_member_s_per_1000_steps"] > 0
    assert report["scaling_ratios"] == {}
    assert Path(report["scaling_plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The table reaches the user on stdout.
    assert "jaxnn ensemble (vmap, independent batches)" in result.stdout
    assert "GFLOP/s" in result.stdout


@pytest.mark.slow  # another benchmark process
def test_gpu_mode_smoke_runs_on_the_default_device_and_reports_each_k(tmp_path, data_dir):
    out = tmp_path / "restarts_gpu.json"
    result = _run_benchmark("--gpu", f"--data-dir={data_dir}", f"--out={out}")
    device = json.loads(out.read_text())["device"]
    assert device["platform"] == "cpu" and device["matmul_flops_per_s"] > 0
    runs = device["runs"]
    assert [run["members"] for run in runs] == [1, 4]
    for run in runs:
        assert run["train_s"] > 0 and run["member_steps_per_s"] > 0 and run["flops_per_s"] > 0
        assert run["program_bytes"] > 0  # XLA's memory account of the chunk program
        assert run["test_accuracy"] > 0.15  # above chance (0.1): the timed runs learn
    # Four members' state and activations need more memory than one member's.
    assert runs[1]["program_bytes"] > runs[0]["program_bytes"]
    assert device["per_member_cost_drop"] == pytest.approx(
        runs[0]["per_member_s"] / runs[1]["per_member_s"]
    )
    assert "per-member cost falls" in result.stdout


@pytest.mark.slow  # another benchmark process
def test_scaling_only_runs_the_curve_without_the_main_table(tmp_path, data_dir):
    out = tmp_path / "scaling.json"
    result = _run_benchmark(
        "--scaling-only", "--skip-torch", "--skip-sklearn", f"--data-dir={data_dir}", f"--out={out}"
    )
    report = json.loads(out.read_text())
    assert report["methods"] == [] and report["throughput"] is None
    assert list(report["scaling_curve"]) == ["jaxnn"]
    assert [row["members"] for row in report["k_scaling"]] == [1, 4]
    assert all(row["per_member_s"] > 0 for row in report["k_scaling"])
    assert "per-member time against K" in result.stdout
    assert "jaxnn ensemble (vmap, independent batches)" not in result.stdout


@pytest.mark.slow  # another benchmark process
def test_precision_benchmark_smoke_times_both_dtypes(tmp_path, data_dir):
    out = tmp_path / "precision.json"
    script = "benchmarks/precision.py"
    result = _run_benchmark("--models=mlp", f"--data-dir={data_dir}", f"--out={out}", script=script)
    report = json.loads(out.read_text())
    assert [(row["model"], row["dtype"]) for row in report["rows"]] == [
        ("mlp", "float32"),
        ("mlp", "bfloat16"),
    ]
    for row in report["rows"]:
        assert row["ms_per_step"] > 0 and 0 <= row["test_accuracy"] <= 1
    bfloat16 = report["rows"][1]
    assert bfloat16["time_over_float32"] == pytest.approx(
        bfloat16["ms_per_step"] / report["rows"][0]["ms_per_step"]
    )
    assert isinstance(report["machine"]["xla_dot_in_float32"], bool)
    assert "bfloat16 takes" in result.stdout


@pytest.mark.slow  # a benchmark process
def test_conv2d_benchmark_smoke_times_both_image_families(tmp_path, data_dir):
    out = tmp_path / "conv2d.json"
    script = "benchmarks/conv2d.py"
    _run_benchmark("--skip-torch", f"--data-dir={data_dir}", f"--out={out}", script=script)
    report = json.loads(out.read_text())
    assert set(report["models"]) == {"cnn2d", "resnet"}
    methods = [row["method"] for row in report["models"]["cnn2d"]["rows"]]
    assert methods == ["jaxnn (im2col)", "jaxnn (lax)"]
    for model in report["models"].values():
        assert all(row["s_per_member"] > 0 and row["gflops"] > 0 for row in model["rows"])
    assert report["models"]["cnn2d"]["ratios"][0]["lax_over_im2col"] > 0


@pytest.mark.parametrize("name", ["cnn2d", "resnet"])
def test_conv2d_benchmark_torch_network_computes_the_jaxnn_members_function(name, monkeypatch):
    """benchmarks/conv2d.py times torch.func against jaxnn on the same network: a jaxnn member's
    weights copied into the torch network give the same outputs, so the two sides have the same
    layers, parameter shapes, padding (lax's 'same', uneven at stride 2), pooling and norms."""
    torch = pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import jax
    import numpy as np
    import torch_image_nets
    from conv2d import NETWORKS, member_module

    from jaxnn.nn.family import init_model

    network = NETWORKS[name]
    # 10x10 pixels: odd sizes after a stride-2 convolution or a 2x2 pooling (10 -> 5 -> 2 or 3).
    x = np.random.default_rng(0).normal(size=(4, 10, 10, 1)).astype(np.float32)
    module = member_module(name, network, 10)
    variables = init_model(module, jax.random.PRNGKey(0), x)
    # Noise on every parameter: resnet's zero-initialised block norms would hide the convolution
    # before them.
    leaves, treedef = jax.tree_util.tree_flatten(variables["params"])
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    noisy = [leaf + 0.3 * jax.random.normal(key, leaf.shape) for leaf, key in zip(leaves, keys)]
    params = jax.tree_util.tree_unflatten(treedef, noisy)
    expected = np.asarray(module.apply({**variables, "params": params}, x))

    model = torch_image_nets.build(name, network, x.shape[1:], 10)
    model.load_state_dict(torch_image_nets.state_from_flax(params, model), strict=True)
    with torch.no_grad():
        outputs = model(torch_image_nets.as_torch_images(x)).numpy()

    assert sum(p.numel() for p in model.parameters()) == sum(leaf.size for leaf in leaves)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)
