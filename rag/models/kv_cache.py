"""Paged key/value cache: fixed-size blocks from one preallocated pool.

As in vLLM's PagedAttention, a sequence owns a list of block ids (its page
table) instead of a contiguous region, so requests of any length share the
pool without fragmentation, grow one block at a time and give their blocks
back when they finish. Each block holds ``block_size`` token slots for every
layer; slot ``s`` of block ``b`` is row ``b * block_size + s`` of the pool.
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
            return [self._free.popleft() for _ in range(n)]

    def release(self, blocks: list[int]) -> None:
        with self._lock:
            self._free.extend(blocks)

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
        """Make room for ``length + n_tokens`` positions (raises ResourceExhaustedError if the pool is short)."""
        need = self.cache.blocks_for(self.length + n_tokens) - len(self.blocks)
        if need > 0:
            self.blocks.extend(self.cache.allocate(need))

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
