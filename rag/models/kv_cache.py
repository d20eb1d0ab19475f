"""Paged key/value cache: fixed-size blocks from one preallocated pool.

As in vLLM's PagedAttention, a sequence owns a list of block ids (its page
table) instead of a contiguous region, so requests of any length share the
pool without fragmentation, grow one block at a time and give their blocks
back when they finish. Each block holds ``block_size`` token slots for every
layer; slot ``s`` of block ``b`` is row ``b * block_size + s`` of the pool.

Blocks are reference-counted so sequences can share them (beam search forks a
beam into its continuations, as vLLM shares blocks between beams): a fork
copies the page table, not the keys; the first write into a shared block
copies that block first (copy on write), so no sequence ever changes another's
keys and values.
"""
from __future__ import annotations

import threading
from collections import deque
from types import ModuleType
from typing import Any

import numpy as np

from ...engine.errors import InvalidArgumentError, ResourceExhaustedError


class PagedKVCache:
    """The block pool: keys and values of shape (layers, blocks * block_size, kv_heads, head_dim).

    ``dtype`` float32 by default; float16 halves the pool (llama.cpp's default cache type).
    """

    def __init__(
        self, xp: ModuleType, num_layers: int, num_kv_heads: int, head_dim: int, num_blocks: int, block_size: int = 16, dtype: Any = None
    ) -> None:
        if num_blocks < 1 or block_size < 1:
            raise InvalidArgumentError(f"num_blocks and block_size must be >= 1, got {num_blocks}, {block_size}")
        self.xp = xp
        self.block_size = block_size
        self.num_blocks = num_blocks
        shape = (num_layers, num_blocks * block_size, num_kv_heads, head_dim)
        self.k = xp.zeros(shape, dtype=dtype or xp.float32)
        self.v = xp.zeros(shape, dtype=dtype or xp.float32)
        self._free: deque[int] = deque(range(num_blocks))
        self._refs = [0] * num_blocks
        self._lock = threading.Lock()

    @property
    def free_blocks(self) -> int:
        return len(self._free)

    @property
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size

    def blocks_for(self, n_tokens: int) -> int:
        return -(-n_tokens // self.block_size)

    def allocate(self, n: int) -> list[int]:
        with self._lock:
            if n > len(self._free):
                raise ResourceExhaustedError(f"KV cache has {len(self._free)} free blocks, {n} requested")
            got = [self._free.popleft() for _ in range(n)]
            for b in got:
                self._refs[b] = 1
            return got

    def share(self, blocks: list[int]) -> None:
        """One more owner for each block (a forked page table)."""
        with self._lock:
            for b in blocks:
                self._refs[b] += 1

    def shared(self, block: int) -> bool:
        return self._refs[block] > 1

    def release(self, blocks: list[int]) -> None:
        """Drop one owner of each block; blocks nobody owns return to the pool."""
        with self._lock:
            for b in blocks:
                self._refs[b] -= 1
                if self._refs[b] == 0:
                    self._free.append(b)

    def copy_block(self, src: int, dst: int) -> None:
        """Every layer's keys and values of block ``src`` into block ``dst``."""
        bs = self.block_size
        self.k[:, dst * bs : (dst + 1) * bs] = self.k[:, src * bs : (src + 1) * bs]
        self.v[:, dst * bs : (dst + 1) * bs] = self.v[:, src * bs : (src + 1) * bs]

    @property
    def nbytes(self) -> int:
        return int(self.k.nbytes + self.v.nbytes)


class SequenceCache:
    """One request's page table into a :class:`PagedKVCache` and how many positions it holds."""

    def __init__(self, cache: PagedKVCache) -> None:
        self.cache = cache
        self.blocks: list[int] = []
        self.length = 0

    def reserve(self, n_tokens: int) -> None:
        """Make room for ``length + n_tokens`` positions (raises ResourceExhaustedError if the pool is short).

        Shared blocks those positions fall in are copied first, so the writes stay this sequence's own.
        """
        cache = self.cache
        end_block = cache.blocks_for(self.length + n_tokens)
        need = end_block - len(self.blocks)
        first = self.length // cache.block_size
        cow = [i for i in range(first, min(end_block, len(self.blocks))) if cache.shared(self.blocks[i])]
        fresh = cache.allocate(max(need, 0) + len(cow))  # all or nothing: on shortage nothing changed
        for i, dst in zip(cow, fresh):
            cache.copy_block(self.blocks[i], dst)
            cache.release([self.blocks[i]])
            self.blocks[i] = dst
        self.blocks.extend(fresh[len(cow) :])

    def fork(self) -> "SequenceCache":
        """A sequence with the same positions sharing these blocks (copy on write)."""
        child = SequenceCache(self.cache)
        self.cache.share(self.blocks)
        child.blocks, child.length = list(self.blocks), self.length
        return child

    def slots(self, start: int, stop: int) -> np.ndarray:
        """Pool rows of positions [start, stop)."""
        pos = np.arange(start, stop)
        bs = self.cache.block_size
        return np.asarray(self.blocks, dtype=np.int64)[pos // bs] * bs + pos % bs

    def truncate(self, length: int) -> None:
        """Forget positions from ``length`` on (rejected speculative tokens); their blocks stay
        reserved and the next tokens overwrite their slots."""
        if not 0 <= length <= self.length:
            raise InvalidArgumentError(f"cannot truncate a sequence of {self.length} positions to {length}")
        self.length = length

    def free(self) -> None:
        """Give the blocks back; the sequence is empty afterwards."""
        blocks, self.blocks, self.length = self.blocks, [], 0
        self.cache.release(blocks)
