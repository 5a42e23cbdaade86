"""Members run in cache-sized groups: a vmapped function over M members as a `lax.map` over groups.

`grouped_vmap` cuts each device's shard into full groups of `group_size` (a `lax.map` of the
vmapped function) and one remainder group (a plain vmap): no member is padded and each member's
computation is unchanged. On D devices member `d * L + j * g + i` (L = M / D) is member `i` of
group `j` on device `d`, so no device reads another's members. `auto_group_size` picks the size
(docs/groups.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

# Working set of one group of members on a CPU device: about one core's L2 cache (measured in
# docs/groups.md).
CPU_GROUP_BYTES = 5 * 2**19


def auto_group_size(backend: str, step_bytes_per_member: int) -> int:
    """Members per group for `backend` (0 = all members in one group, the plain vmap, as on an
    accelerator), from one member's working set in a training step (bytes)."""
    if backend != "cpu":
        return 0
    return max(1, CPU_GROUP_BYTES // max(1, step_bytes_per_member))


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

    `in_axes` is 0 (mapped over the leading axis of size M = `num_members`, a multiple of
    `num_shards`) or None per positional argument; `group_size` 0 (or >= M / num_shards) is the
    plain vmap. The outputs are `jax.vmap(fn, in_axes)`'s: [M, ...] in member order.
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
