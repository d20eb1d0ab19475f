"""Device-memory bookkeeping (budget, resident copies, eviction, OOM mapping) with numpy standing in for cupy."""
from __future__ import annotations

import gc

import numpy as np
import pytest

from shoal.engine import device
from shoal.engine.device import DeviceMemory, parse_budget
from shoal.engine.errors import InvalidArgumentError, ResourceExhaustedError


@pytest.mark.parametrize("text,expected", [("1024", 1024), (4096, 4096), ("512M", 512 << 20), ("2GiB", 2 << 30),
                                           ("1.5g", int(1.5 * (1 << 30))), ("60%", 600), ("8 KB", 8192)])
def test_parse_budget(text, expected):
    assert parse_budget(text, total=1000) == expected


@pytest.mark.parametrize("text", ["lots", "-5", "0", "12X", "50%%"])
def test_parse_budget_rejects(text):
    with pytest.raises(InvalidArgumentError, match="budget"):
        parse_budget(text, total=1000)


def test_percentage_needs_device_size():
    with pytest.raises(InvalidArgumentError, match="percentage"):
        parse_budget("50%")


def test_resident_copy_is_reused_and_extended_by_tail():
    mem = DeviceMemory(np, 1 << 20)
    buf = np.arange(400, dtype=np.float32).reshape(100, 4)
    with mem.guard():
        a = mem.resident(buf[:50])
    assert mem.uploaded_bytes == buf[:50].nbytes
    with mem.guard():
        b = mem.resident(buf[:50])
    assert mem.uploaded_bytes == buf[:50].nbytes and np.shares_memory(a, b)
    buf[50:60] = -1  # appended rows
    with mem.guard():
        c = mem.resident(buf[:60])
    assert mem.uploaded_bytes == buf[:60].nbytes  # only the 10 new rows went up
    np.testing.assert_array_equal(c, buf[:60])
    assert mem.resident_bytes == buf[:60].nbytes


def test_version_change_reuploads():
    mem = DeviceMemory(np, 1 << 20)
    buf = np.zeros((10, 4), np.float32)
    with mem.guard():
        mem.resident(buf, version=b"a")
    buf[3] = 7  # written in place: the caller's version changes
    with mem.guard():
        dev = mem.resident(buf, version=b"b")
    np.testing.assert_array_equal(dev, buf)
    assert mem.resident_bytes == buf.nbytes


def test_copies_are_dropped_with_their_host_array():
    mem = DeviceMemory(np, 1 << 20)
    buf = np.ones((100, 8), np.float32)
    with mem.guard():
        mem.resident(buf[:80])
    assert mem.report()["resident_arrays"] == 1
    del buf
    gc.collect()
    assert mem.report() | {"uploaded_bytes": 0} == {"budget": 1 << 20, "resident_bytes": 0,
                                                     "peak_resident_bytes": 80 * 8 * 4, "resident_arrays": 0,
                                                     "uploaded_bytes": 0}


def test_lru_eviction_and_too_large():
    arrays = [np.full((256,), i, np.float32) for i in range(4)]  # 1 KiB each
    mem = DeviceMemory(np, 3 * 1024)
    for a in arrays[:3]:
        with mem.guard():
            mem.resident(a)
    with mem.guard():
        mem.resident(arrays[0])  # touch: arrays[1] is now least recently used
        mem.resident(arrays[3])
    assert mem.resident_bytes == 3 * 1024
    with mem.guard():
        before = mem.uploaded_bytes
        mem.resident(arrays[1])  # was evicted: uploaded again
        assert mem.uploaded_bytes == before + 1024
    assert mem.resident(np.zeros(1024, np.float32)) is None  # 4 KiB > budget: caller streams


def test_arrays_of_the_current_call_are_not_evicted():
    mem = DeviceMemory(np, 2 * 1024)
    a, b, c = (np.zeros(256, np.float32) for _ in range(3))
    with mem.guard():
        assert mem.resident(a) is not None and mem.resident(b) is not None
        assert mem.resident(c) is None  # a and b are in use by this call
    with mem.guard():
        assert mem.resident(c) is not None  # next call may evict them


def test_scratch_items_and_errors():
    mem = DeviceMemory(np, 10_000)
    held = np.zeros(1000, np.float32)
    with mem.guard():
        mem.resident(held)  # 4000 bytes resident, in use
        assert mem.scratch_items(100, min_items=1) == 60
        assert mem.scratch_items(100, min_items=1, max_items=7) == 7
        with pytest.raises(ResourceExhaustedError, match="SHOAL_GPU_MEMORY_BUDGET"):
            mem.scratch_items(100, min_items=61)


def test_guard_maps_device_oom(monkeypatch):
    mem = DeviceMemory(np, 1 << 20)

    class OutOfMemoryError(MemoryError):  # what cupy.cuda.memory raises
        pass

    with pytest.raises(ResourceExhaustedError, match="ran out of memory"):
        with mem.guard():
            raise OutOfMemoryError("out of memory to allocate 8589934592 bytes")
    with pytest.raises(ResourceExhaustedError):
        with mem.guard():
            raise RuntimeError("cudaErrorMemoryAllocation: out of memory")
    with pytest.raises(KeyError):  # other errors pass through unchanged
        with mem.guard():
            raise KeyError("x")


def test_memory_report_without_gpu(monkeypatch):
    monkeypatch.setattr(device, "_memory", None)
    assert device.memory_report() == {}


def test_growth_past_the_budget_falls_back_to_streaming():
    mem = DeviceMemory(np, 1000)
    buf = np.zeros(500, np.float32)
    with mem.guard():
        assert mem.resident(buf[:200]) is not None  # 800 bytes
    with mem.guard():
        assert mem.resident(buf[:240], reserve=100) is None  # 960 + 100 reserve > 1000: caller streams instead
    assert mem.resident_bytes == 0


def test_large_uploads_go_through_a_pinned_staging_buffer(monkeypatch):
    """The cupy path of _copy_in (``.set`` chunk by chunk from pinned memory), with numpy fakes."""
    import types

    class Dev(np.ndarray):
        def set(self, host):
            assert host.flags.c_contiguous
            self[...] = host
            staged.append(host.nbytes)

    staged: list[int] = []
    pinned: list[int] = []

    def alloc_pinned_memory(nbytes):
        pinned.append(nbytes)
        return bytearray(nbytes)

    xp = types.SimpleNamespace(empty=lambda shape, dtype: np.empty(shape, dtype).view(Dev),
                               cuda=types.SimpleNamespace(alloc_pinned_memory=alloc_pinned_memory))
    monkeypatch.setattr(device, "PINNED_MIN_BYTES", 1000)
    monkeypatch.setattr(device, "PINNED_CHUNK_BYTES", 4096)
    mem = DeviceMemory(xp, 1 << 20)
    host = np.random.default_rng(0).normal(size=(100, 30)).astype(np.float32)  # 12000 bytes
    dev = mem.upload(host[:, ::2])  # strided: made contiguous first
    np.testing.assert_array_equal(np.asarray(dev), host[:, ::2])
    assert pinned == [4096] and staged == [4096, 1904]
    small = mem.upload(np.arange(10, dtype=np.float32))  # below PINNED_MIN_BYTES: direct
    assert staged[-1] == 40 and pinned == [4096] and np.asarray(small)[3] == 3
