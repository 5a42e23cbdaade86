"""Child processes of test_sharding.py and test_multiprocess.py.

Each case needs a JAX that starts with its own number of (virtual CPU) devices, which the
pytest process cannot give it, so the tests run

    XLA_FLAGS=--xla_force_host_platform_device_count=N python -m tests.sharding_cases CASE OUT [ARG]

and read what the case writes to the directory OUT (npz arrays and a json of facts).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np

from jaxnn import front_end
from jaxnn.core import ensemble
from jaxnn.errors import ConfigError
from jaxnn.io import checkpoint
from jaxnn.parallel import hosts, sharding
from tests.helpers import blobs, small_config

KEY = 0


def fit(num_members: int, *, on_eval=None, state=None, start_step=0, **mesh):
    """An ensemble of `num_members` on the helpers' blobs with `mesh.*` overrides."""
    config = small_config(
        **{"restarts.num": num_members}, **{f"mesh.{k}": v for k, v in mesh.items()}
    )
    return ensemble.fit_ensemble(
        config,
        blobs(),
        jax.random.PRNGKey(KEY),
        on_eval=on_eval,
        state=state,
        start_step=start_step,
    )


def arrays(result: ensemble.EnsembleResult) -> dict[str, np.ndarray]:
    """Final params (every leaf) and the history (metric -> [num_evals, K]) of a run."""
    out = {
        f"param{i}": np.asarray(leaf)
        for i, leaf in enumerate(jax.tree_util.tree_leaves(result.state.params))
    }
    for name in result.history[0]:
        out[f"history_{name}"] = np.stack([entry[name] for entry in result.history])
    return out


def spread(array: jax.Array) -> dict[str, list[int]]:
    """device id -> [start, stop) of the member (first) axis that the device holds."""
    index_map = array.sharding.devices_indices_map(array.shape)
    return {
        str(device.id): [index[0].start or 0, index[0].stop or array.shape[0]]
        for device, index in index_map.items()
    }


def case_equal(out: Path) -> None:
    """One device vs 4: K=6 (2 padding members, data replicated) and K=8 (data by batch)."""
    facts: dict[str, object] = {"device_count": jax.device_count()}
    np.savez(out / "single.npz", **arrays(fit(8, num_devices=1)))
    np.savez(out / "padded.npz", **arrays(fit(6)))
    # Groups of one member inside each device's shard of two (jaxnn.core.groups).
    grouped = fit(8, member_group=1)
    facts["grouped_member_group"] = grouped.group_size
    np.savez(out / "grouped.npz", **arrays(grouped))

    spec = front_end.resolve(small_config(**{"restarts.num": 6}))
    trainer = ensemble.make_trainer(spec, blobs(), jax.random.PRNGKey(KEY))
    placed = trainer.placement.place_state(ensemble.init_members(trainer, jax.random.PRNGKey(KEY)))
    facts["padded_spread"] = spread(jax.tree_util.tree_leaves(placed.params)[0])
    facts["padded_stopped"] = np.asarray(placed.stopped).tolist()

    seen = []

    def save_and_look(evaluation) -> None:
        seen.append(spread(jax.tree_util.tree_leaves(evaluation.state.params)[0]))
        saver(evaluation)

    writer = checkpoint.RunCheckpoints(out / "checkpoints", keep=5)
    saver = checkpoint.Saver(writer, every_steps=0, start_step=0)
    batch = fit(8, on_eval=save_and_look, data="batch")
    writer.close()
    np.savez(out / "batch.npz", **arrays(batch))
    facts["batch_spread"] = seen
    facts["batch_result_spread"] = spread(jax.tree_util.tree_leaves(batch.state.params)[0])
    facts["devices_of"] = {
        count: [device.id for device in sharding.placement(small_config(), count).devices]
        for count in (1, 3, 6)
    }
    data_placement = sharding.placement(small_config(**{"mesh.data": "batch"}), 8, blobs())
    facts["data_spread"] = spread(data_placement.place_data(blobs()).train.x)
    try:
        sharding.placement(small_config(**{"mesh.data": "batch"}), 8, blobs(num_train=130))
    except ConfigError as error:
        facts["indivisible"] = str(error)
    (out / "facts.json").write_text(json.dumps(facts))


def case_resume(out: Path) -> None:
    """Continues the 4-device run's step-20 checkpoint (written sharded) on this device count."""
    spec = front_end.resolve(small_config(**{"restarts.num": 8}))
    trainer = ensemble.make_trainer(spec, blobs(), jax.random.PRNGKey(KEY))
    abstract = jax.eval_shape(
        trainer.init_fn,
        ensemble.stacked_hparams(spec, trainer.members),
        ensemble.member_keys(jax.random.PRNGKey(KEY), trainer.members),
        None,
    )
    reader = checkpoint.RunCheckpoints(out / "checkpoints", read_only=True)
    state = reader.restore(20, abstract)
    reader.close()
    np.savez(out / "resumed.npz", **arrays(fit(8, state=state, start_step=20)))
    facts = {"device_count": jax.device_count(), "num_slots": trainer.placement.num_slots}
    (out / "resume_facts.json").write_text(json.dumps(facts))


def case_multiprocess(out: Path, port: str, process_id: str) -> None:
    """One of 2 processes on the loopback address: K=6 over their 4 devices (2 padding)."""
    hosts.initialize_distributed(f"127.0.0.1:{port}", 2, int(process_id), timeout_s=60)
    result = fit(6)
    facts = {
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
    }
    if sharding.is_writer():
        np.savez(out / f"result-{process_id}.npz", **arrays(result))
        (out / f"facts-{process_id}.json").write_text(json.dumps(facts))


if __name__ == "__main__":
    case, directory, *rest = sys.argv[1:]
    globals()[f"case_{case}"](Path(directory), *rest)
