"""Members run in cache-sized groups: a vmapped function over M members as a `lax.map` over groups.

At a few thousand members the stacked state and one step's activations of every member no
longer fit in a CPU's caches, and a vmapped step streams all of them through memory at every
step. `grouped_vmap` keeps one compiled program but runs the members `group_size` at a time:
the members of a device's shard are cut into `n` full groups of `group_size` (a `lax.map`, a
scan over groups, of the vmapped function) and one remainder group of fewer members (a plain
vmap), so no member is padded. Each member's computation is the same either way; what changes
is only how many members one vmapped operation holds.

On a mesh the member axis is sharded in D contiguous blocks; the groups are cut inside each
block (member `d * L + j * g + i` is member `i` of group `j` on device `d`, with `L = M / D`),
so a group spans every device and no device ever reads another's members.

`auto_group_size` chooses the group size from the backend and the members' working set
(`jaxnn.core.memory.MemberBytes`): on CPU, as many members as fit in `CPU_GROUP_BYTES`; on an
accelerator, every member at once (a GPU wants the widest vmap it can get).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

# Working set of one group of members on a CPU device (one core): about one core's L2 cache.
# Measured on a 2-core AMD EPYC (2 MiB L2 per core, 32 MiB L3 shared, the machine loaded by
# other jobs) with the benchmark MLP (586 KB per member): K=1024 took 1745 ms per member per
# 1000 steps in one group per device, 1222 in groups of 48, 1156 in groups of 14 and 696 in
# groups of 4 (docs/groups.md).
CPU_GROUP_BYTES = 5 * 2**19
# The group size of a backend: bytes of one member's working set -> members per group (0: all).
GROUP_RULES: dict[str, Callable[[int], int]] = {
    "cpu": lambda member_bytes: max(1, CPU_GROUP_BYTES // max(1, member_bytes)),
}


def auto_group_size(backend: str, step_bytes_per_member: int) -> int:
    """Members per group for `backend` (0 = all members in one group, the plain vmap).

    Args:
      backend: `jax.default_backend()` of the run ('cpu', 'gpu', 'tpu').
      step_bytes_per_member: one member's working set in a training step (bytes).
    """
    rule = GROUP_RULES.get(backend)
    return 0 if rule is None else rule(step_bytes_per_member)


def group_layout(num_members: int, group_size: int, num_shards: int = 1) -> tuple[int, int, int]:
    """(full groups per shard, members per group, members of the remainder group per shard).

    `group_size` 0, or one at least the shard's member count, is one group: (0, 0, M / D).
    """
    local = num_members // num_shards
    if group_size <= 0 or group_size >= local:
        return 0, 0, local
    full, rest = divmod(local, group_size)
    return full, group_size, rest


def grouped_vmap(
    fn: Callable[..., Any],
    in_axes: Sequence[int | None],
    *,
    num_members: int,
    group_size: int,
    num_shards: int = 1,
) -> Callable[..., Any]:
    """`jax.vmap(fn, in_axes)` over `num_members` members, run `group_size` members at a time.

    Args:
      fn: the single-member function; its outputs are pytrees of arrays.
      in_axes: per positional argument, 0 (mapped: leading axis of size num_members) or None.
      num_members: M, the leading axis of every mapped argument (a multiple of num_shards).
      group_size: members per group; 0 (or >= M / num_shards) is the plain vmap.
      num_shards: D, the number of contiguous blocks the member axis is sharded in.

    Returns:
      A function of the same arguments whose outputs have the leading member axis [M, ...], in
      member order, as `jax.vmap(fn, in_axes)` gives them.
    """
    vmapped = jax.vmap(fn, in_axes=tuple(in_axes))
    full, size, rest = group_layout(num_members, group_size, num_shards)
    if full == 0:
        return vmapped
    layout = _Layout(num_members, num_shards, full, size, rest)
    mapped = [i for i, axis in enumerate(in_axes) if axis == 0]

    def split(args: tuple[Any, ...], part: Callable[[jax.Array], jax.Array]) -> list[Any]:
        return [
            jax.tree_util.tree_map(part, arg) if axis == 0 else arg
            for arg, axis in zip(args, in_axes, strict=True)
        ]

    def apply(*args: Any) -> Any:
        head_args = split(args, layout.heads)

        def one_group(group_args: tuple[Any, ...]) -> Any:
            call = list(head_args)
            for i, value in zip(mapped, group_args, strict=True):
                call[i] = value
            return vmapped(*call)

        head_out = jax.lax.map(one_group, tuple(head_args[i] for i in mapped))
        if rest == 0:
            return jax.tree_util.tree_map(lambda h: layout.merge(h, None), head_out)
        tail_out = vmapped(*split(args, layout.tails))
        return jax.tree_util.tree_map(layout.merge, head_out, tail_out)

    return apply


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where each member of [M, ...] goes: `full` groups of `size` and `rest` remainder members
    in each of `shards` contiguous blocks of `M / shards` members (`group_layout`)."""

    num_members: int
    shards: int
    full: int
    size: int
    rest: int

    @property
    def local(self) -> int:
        return self.num_members // self.shards

    @property
    def cut(self) -> int:
        return self.full * self.size

    def heads(self, leaf: jax.Array) -> jax.Array:
        """[M, ...] -> [full, D * size, ...]: group j holds member j*size+i of every shard."""
        blocks = leaf.reshape(self.shards, self.local, *leaf.shape[1:])[:, : self.cut]
        grouped = blocks.reshape(self.shards, self.full, self.size, *leaf.shape[1:])
        return jnp.moveaxis(grouped, 1, 0).reshape(
            self.full, self.shards * self.size, *leaf.shape[1:]
        )

    def tails(self, leaf: jax.Array) -> jax.Array:
        """[M, ...] -> [D * rest, ...]: the remainder members of every shard."""
        blocks = leaf.reshape(self.shards, self.local, *leaf.shape[1:])[:, self.cut :]
        return blocks.reshape(self.shards * self.rest, *leaf.shape[1:])

    def merge(self, head: jax.Array, tail: jax.Array | None) -> jax.Array:
        """The inverse of heads and tails: back to [M, ...] in member order."""
        inner = head.shape[2:]
        blocks = jnp.moveaxis(head.reshape(self.full, self.shards, self.size, *inner), 0, 1)
        blocks = blocks.reshape(self.shards, self.cut, *inner)
        if tail is not None:
            blocks = jnp.concatenate([blocks, tail.reshape(self.shards, self.rest, *inner)], axis=1)
        return blocks.reshape(self.num_members, *inner)
