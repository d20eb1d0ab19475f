"""Factory specs of the quantized families: what builds, and clear errors for what does not."""
from __future__ import annotations

import pytest

from shoal import Database
from shoal.engine.errors import InvalidSpecError
from shoal.index import IVFIndex, PQIndex, SQIndex, make_index


@pytest.mark.parametrize("spec,cls,attrs", [
    ("IVF64,Flat", IVFIndex, {"nlist": 64, "codec": "flat", "keep_vectors": False}),
    ("ivf64", IVFIndex, {"nlist": 64, "codec": "flat"}),
    ("IVF256, SQ8", IVFIndex, {"nlist": 256, "codec": "sq8", "keep_vectors": True}),
    ("ivf16,pq8", IVFIndex, {"nlist": 16, "codec": "pq", "code_size": 8}),
    ("IVF", IVFIndex, {"nlist": None, "codec": "flat"}),
    ("PQ16", PQIndex, {"code_size": 16}),
    ("sq8", SQIndex, {"code_size": 32}),
    ("SQfp16", SQIndex, {"code_size": 64}),
])
def test_specs_build(spec, cls, attrs):
    index = make_index(spec, 32, "cosine")
    assert isinstance(index, cls)
    for name, value in attrs.items():
        assert getattr(index, name) == value


def test_options_pass_through():
    index = make_index("IVF8,PQ4", 16, "l2", nprobe=3, keep_vectors=False, balanced=True)
    assert (index.nprobe, index.keep_vectors, index.balanced) == (3, False, True)


@pytest.mark.parametrize("spec,message", [
    ("IVF0,Flat", "nlist must be >= 1"),
    ("IVF16,PQ7", "divisor"),
    ("IVF16,LSH", "unknown IVF codec"),
    ("IVF16,PQ", "unknown IVF codec"),
    ("PQ0", r"option m must be an integer in \[1, 4096\], got 0"),
    ("PQ5", "divisor"),
    ("SQ4", "unknown index spec"),
])
def test_bad_specs(spec, message):
    with pytest.raises(InvalidSpecError, match=message):
        make_index(spec, 32, "l2")


def test_bad_options_and_collection_validation():
    with pytest.raises(InvalidSpecError):
        make_index("IVF8,Flat", 16, "l2", nprobe=0)
    with pytest.raises(InvalidSpecError):
        make_index("PQ4", 16, "l2", bogus=1)
    with pytest.raises(InvalidSpecError, match="divisor"):
        Database().create_collection("c", dim=30, index="IVF64,PQ8")
