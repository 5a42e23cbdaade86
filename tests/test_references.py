"""jaxnn against references outside it: `fit` against a plain Flax + Optax training loop written
here (same initial weights, same batches, same dropout keys), and the recurrent families against
flax.linen's GRUCell, LSTMCell and SimpleCell run by `flax.linen.RNN` with the same weights."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnn.core import loop, train
from jaxnn.nn.recurrent import Recurrent
from tests.helpers import blobs, small_config

# --- One training step and a short run of fit against a plain Flax + Optax loop -----------------


class Net(nn.Module):
    """A small MLP with dropout, written as the Flax docs write one."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.relu(nn.Dense(12)(x))
        x = nn.Dropout(0.3, deterministic=not train)(x)
        return nn.Dense(3)(x)


def _plain_flax_optax_run(data, key, learning_rate, batch_size, steps, eval_every):
    """The training loop of the Flax examples: init, then per step a batch, value_and_grad of the
    mean cross-entropy, an optax update. Returns the parameters and validation loss at every
    evaluation, and the batch losses.

    jaxnn's documented key and batch contract is followed: the member key's fold_in tags give the
    init key (0), the per-step dropout key (1, then the step) and the batch order (2, then the
    epoch); an epoch visits the training split in `jaxnn.core.train.epoch_order`, in batches of
    `batch_size`, and its last batch holds the N mod B remaining examples.
    """
    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    num_train = len(x_train)
    steps_per_epoch = -(-num_train // batch_size)
    net = Net()
    params = net.init(jax.random.fold_in(key, 0), x_train[:1])["params"]
    tx = optax.adam(learning_rate)
    opt_state = tx.init(params)
    order_key = jax.random.fold_in(key, 2)

    evaluations, batch_losses = [], []
    for step in range(steps):
        epoch, within = divmod(step, steps_per_epoch)
        order = np.asarray(train.epoch_order(order_key, jnp.asarray(epoch), num_train))
        idx = order[within * batch_size : (within + 1) * batch_size]
        dropout_key = jax.random.fold_in(jax.random.fold_in(key, 1), step)
        # Dropout draws its mask for a whole batch of `batch_size` rows: a short last batch is
        # drawn as the first rows of a full one (rows are independent in this network).
        x = jnp.zeros((batch_size, x_train.shape[1])).at[: len(idx)].set(x_train[idx])

        def short_batch_loss(params, x=x, idx=idx, dropout_key=dropout_key):
            logits = net.apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})
            return optax.softmax_cross_entropy_with_integer_labels(
                logits[: len(idx)], y_train[idx]
            ).mean()

        loss, grads = jax.value_and_grad(short_batch_loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        batch_losses.append(float(loss))
        if (step + 1) % eval_every == 0:
            logits = net.apply({"params": params}, jnp.asarray(data.x_val))
            val_loss = optax.softmax_cross_entropy_with_integer_labels(logits, data.y_val).mean()
            evaluations.append((params, float(val_loss)))
    return evaluations, batch_losses


@pytest.mark.parametrize(("steps", "eval_every"), [(1, 1), (21, 7)])
def test_fit_equals_a_plain_flax_optax_loop(steps, eval_every):
    # 108 training examples in batches of 16: step 6 of every epoch is the short last batch of
    # 12 examples, and steps 7-20 are the second and third epochs in new orders.
    data = blobs()
    assert len(data.x_train) == 108
    key = train.member_key(jax.random.PRNGKey(3), 0)
    config = small_config(
        **{
            "training.steps": steps,
            "training.eval_every": eval_every,
            "training.batch_size": 16,
            "optimizer.learning_rate": 0.03,
            "model.head": ("Dense_1",),  # Flax's own name for the last layer
        }
    )
    result = loop.fit(
        config, data, key, model=Net(), optimizer=lambda hp: optax.adam(hp["learning_rate"])
    )
    evaluations, batch_losses = _plain_flax_optax_run(data, key, 0.03, 16, steps, eval_every)

    def close(ours, theirs):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), ours, theirs
        )

    close(result.state.params, evaluations[-1][0])
    assert int(result.state.step) == steps
    np.testing.assert_allclose(
        [h["val_loss"][0] for h in result.history], [v for _, v in evaluations], rtol=1e-4
    )
    np.testing.assert_allclose(
        [h["batch_loss"][0] for h in result.history],
        np.mean(np.reshape(batch_losses, (-1, eval_every)), axis=1),
        rtol=1e-4,
    )
    # The kept weights are those of the evaluation with the lowest validation loss.
    best = int(np.argmin([v for _, v in evaluations]))
    close(result.state.best_params, evaluations[best][0])


# --- Recurrent cells against flax.linen's --------------------------------------------------------


def _flax_cell_params(cell: str, params, size: int):
    """jaxnn's recurrent parameters (input kernel [I, G*S] and bias, recurrent kernel [S, G*S]
    and, for the GRU, bias) as the parameters of the flax.linen cell with the same equations."""
    wx, bx = params["input"]["kernel"], params["input"]["bias"]
    wh = params["recurrent"]["kernel"]

    def gate(w, g):
        return w[..., g * size : (g + 1) * size]

    if cell == "rnn":
        return {"i": {"kernel": wx, "bias": bx}, "h": {"kernel": wh}}
    if cell == "lstm":  # flax: inputs without bias, the hidden projections with bias
        return {
            **{f"i{g}": {"kernel": gate(wx, n)} for n, g in enumerate("ifgo")},
            **{f"h{g}": {"kernel": gate(wh, n), "bias": gate(bx, n)} for n, g in enumerate("ifgo")},
        }
    # The GRU: flax has no recurrent bias on r and z (added to the input bias here); n's
    # recurrent bias stays inside r * (W_hn h + c_n).
    bh = params["recurrent"]["bias"]
    return {
        "ir": {"kernel": gate(wx, 0), "bias": gate(bx, 0) + gate(bh, 0)},
        "iz": {"kernel": gate(wx, 1), "bias": gate(bx, 1) + gate(bh, 1)},
        "in": {"kernel": gate(wx, 2), "bias": gate(bx, 2)},
        "hr": {"kernel": gate(wh, 0)},
        "hz": {"kernel": gate(wh, 1)},
        "hn": {"kernel": gate(wh, 2), "bias": gate(bh, 2)},
    }


FLAX_CELLS = {"gru": nn.GRUCell, "lstm": nn.LSTMCell, "rnn": nn.SimpleCell}


@pytest.mark.parametrize("cell", sorted(FLAX_CELLS))
@pytest.mark.parametrize("readout", ["last", "mean"])
def test_recurrent_families_equal_flax_linen_cells_with_the_same_weights(cell, readout):
    size, chunk = 4, 2
    module = Recurrent(cell=cell, state_size=size, num_outputs=3, chunk=chunk, readout=readout)
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.normal(size=(5, 12, 2)), jnp.float32)  # 12 positions of 2 channels
    # Random weights everywhere (not the initialisation): every gate and bias matters.
    params = jax.tree.map(
        lambda p: jnp.asarray(rng.normal(size=p.shape) * 0.6, jnp.float32),
        module.init(jax.random.key(0), x)["params"],
    )
    ours = module.apply({"params": params}, x)

    # flax.linen: the same sequence as 6 steps of 2 positions x 2 channels, scanned by nn.RNN.
    steps = x.reshape(5, 12 // chunk, chunk * 2)
    flax_cell = FLAX_CELLS[cell](features=size)
    states = nn.RNN(flax_cell).apply(
        {"params": {"cell": _flax_cell_params(cell, params, size)}}, steps
    )  # [B, T, S]
    features = states[:, -1] if readout == "last" else states.mean(axis=1)
    theirs = features @ params["head"]["kernel"] + params["head"]["bias"]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
