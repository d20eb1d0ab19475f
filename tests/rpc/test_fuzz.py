"""A bounded fuzz campaign against a real ``shoal serve`` (issue 15), run by ``make test``.

Every method of every ``shoal.v1`` service receives, through a raw channel (bytes in,
bytes out, so nothing is validated on the client side):

* structured requests: hypothesis strategies built from the request message's
  descriptor (every field, oneof and map; numbers at their type's boundaries; strings
  from a pool of names, specs, option keys and operators, plus free text),
* raw random bytes, and mutants (bit flips, cuts, splices, repeats) of valid requests,
  including filters and metadata nested past every limit and strings that are not UTF-8.

Asserted: the server never dies, never answers INTERNAL or UNKNOWN, never runs past a
call's deadline, and a reference collection ("keep") is unchanged (count and a checksum
of ids, vectors and metadata) after every rejected request that named it. Accepted
writes to "keep" re-take the reference, and so does a stream of several upserts (each
message is atomic, so earlier messages of a rejected stream stay applied). The campaign's figures (requests per method,
statuses seen) are printed by the last test (``pytest -s`` shows them).

The Query service (``Ask``/``Embed``) is fuzzed too, but served only with ``--rag``
(models): here it answers UNIMPLEMENTED, which the campaign checks as such.
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shoal
from shoal.rpc.v1 import query_pb2, service_pb2
from tests.rpc.conftest import ServerProcess, start_server

#: Per-method budget: structured requests, raw random byte strings, mutants of valid requests.
STRUCTURED, RANDOM, MUTANTS = 150, 40, 80
#: A call still running after this many seconds is a hang.
DEADLINE_S = 10.0
KEEP, PLAY, DIM = "keep", "play", 4
BAD_STATUSES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}
#: Methods that may change what is stored, so an OK answer re-takes the reference.
WRITES = {"Create", "Drop", "Upsert", "UpsertStream", "Delete", "Compact",
          "GetOrCreate", "Rename", "Update", "SetMetadata", "DeleteMetadataKeys"}  # (issue 19)

METHODS = [(service, method) for file in (service_pb2, query_pb2)
           for service in file.DESCRIPTOR.services_by_name.values() for method in service.methods]


def _method_id(service: Any, method: Any) -> str:
    return f"{service.name}.{method.name}"


# ---------------------------------------------------------------------------- strategies

WORDS = [KEEP, PLAY, "", "nope", "x" * 3000, "a\x00b", "../x", "/etc", "é", "keep ", "KEEP",
         "flat", "Flat", "HNSW", "HNSW8", "HNSW99999999999999999999", "IVF4,Flat", "IVF4,PQ2", "ivf", "PQ2", "SQ8",
         "SQfp16", "KDTree", "OPQ2,PQ2", "auto", "cosine", "l2", "ip", "dot", "numpy", "numba", "cupy",
         "M", "seed", "nlist", "nprobe", "ef_search", "ef_construction", "backend", "keep_vectors", "m", "codec",
         "opq_niter", "opq_seed", "leaf_size", "trim", "kind", "rescore", "oversample", "max_leaves",
         "name", "dim", "metric", "index", "self", "spec", "lang", "year", "tags", "$and", "$or", "$not", "$gt",
         "snap", "snap-1", "a.b", "..", "."]

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-2 ** 31, 2 ** 31 - 1), FieldDescriptor.TYPE_SINT32: (-2 ** 31, 2 ** 31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-2 ** 31, 2 ** 31 - 1), FieldDescriptor.TYPE_INT64: (-2 ** 63, 2 ** 63 - 1),
    FieldDescriptor.TYPE_SINT64: (-2 ** 63, 2 ** 63 - 1), FieldDescriptor.TYPE_SFIXED64: (-2 ** 63, 2 ** 63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2 ** 32 - 1), FieldDescriptor.TYPE_FIXED32: (0, 2 ** 32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2 ** 64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2 ** 64 - 1),
}


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (0, 1, 2, 3, 4, 5, 8, 10, 16, 100, 16384, 16385, 2 ** 26, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1,
                         2 ** 40, 2 ** 63 - 1, -1, -2 ** 31, -2 ** 63) if low <= v <= high]
    return st.sampled_from(edges) | st.integers(low, high)


def _packed(dim: int, n: int) -> bytes:
    return np.random.default_rng(n).standard_normal((n, dim)).astype("<f4").tobytes()


def _vectors() -> st.SearchStrategy[Any]:
    """Mostly well-formed Vectors (so the engine's checks run), sometimes not."""
    from shoal.rpc.v1 import types_pb2

    well_formed = st.builds(lambda dim, n: types_pb2.Vectors(dim=dim, packed=_packed(dim, n)),
                            st.sampled_from([DIM, DIM, DIM, 1, 3, 8]), st.integers(0, 6))
    special = st.builds(lambda values, dim: types_pb2.Vectors(dim=dim, values=values),
                        st.lists(st.floats(width=32), max_size=12), st.sampled_from([0, 1, DIM, 2 ** 32 - 1]))
    nonfinite = st.just(types_pb2.Vectors(dim=DIM, packed=struct.pack("<4f", math.nan, 1, 2, math.inf)))
    return well_formed | special | nonfinite


def _scalar(field: FieldDescriptor, depth: int = 1) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING and depth == 0 and field.name in ("collection", "name"):
        return st.sampled_from([KEEP, PLAY]) | st.sampled_from(WORDS) | st.text(max_size=12)  # mostly existing
    if t == FieldDescriptor.TYPE_STRING:
        return st.sampled_from(WORDS) | st.text(max_size=12)
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if t == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if t == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values]) | st.integers(-1, 20)
    return _integers(*_INT_RANGES[t])


def message_strategy(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Messages of type ``desc``: each field unset or drawn for its type, sub-messages up to depth 5."""
    if desc.full_name == "shoal.v1.Vectors":
        return _vectors()
    cls = message_factory.GetMessageClass(desc)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        is_message = field.type == FieldDescriptor.TYPE_MESSAGE
        if is_message and depth >= 5:
            continue
        if is_message and field.message_type.GetOptions().map_entry:
            key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            value = (st.deferred(lambda f=value_field: message_strategy(f.message_type, depth + 1))
                     if value_field.type == FieldDescriptor.TYPE_MESSAGE else _scalar(value_field))
            fields[field.name] = st.dictionaries(_scalar(key_field), value, max_size=3)
            continue
        one = (st.deferred(lambda f=field: message_strategy(f.message_type, depth + 1)) if is_message
               else _scalar(field, depth))
        fields[field.name] = st.lists(one, max_size=4) if field.is_repeated else one
    optional = {name: s if depth == 0 and name in ("collection", "name") else st.none() | s
                for name, s in fields.items()}

    def build(values: dict[str, Any]) -> Any:
        out = cls()
        for name, value in values.items():
            if value is None:
                continue
            target = getattr(out, name)
            f = desc.fields_by_name[name]
            if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
                for k, v in value.items():
                    if hasattr(v, "CopyFrom"):
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif f.is_repeated and f.type == FieldDescriptor.TYPE_MESSAGE:
                for v in value:
                    target.add().CopyFrom(v)
            elif f.is_repeated:
                target.extend(value)
            elif f.type == FieldDescriptor.TYPE_MESSAGE:
                target.CopyFrom(value)
            else:
                setattr(out, name, value)
        return out

    return st.fixed_dictionaries(optional).map(build)


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: flip a bit, cut, insert a byte, repeat a slice."""
    out = bytearray(data)
    for kind, pos, value in ops:
        pos = pos % (len(out) + 1)
        if kind == 0 and out:
            out[pos % len(out)] ^= 1 << (value % 8)
        elif kind == 1:
            del out[pos:]
        elif kind == 2:
            out.insert(pos, value % 256)
        else:
            out[pos:pos] = out[pos:pos + 1 + value % 16]
    return bytes(out)


def _nested_bytes(field: int, depth: int, leaf: bytes = b"") -> bytes:
    """``depth`` levels of a length-delimited field ``field`` around ``leaf`` (nesting past any limit)."""
    inner = leaf
    for _ in range(depth):
        length, n = bytearray(), len(inner)
        while True:
            length.append((n & 0x7F) | (0x80 if n >> 7 else 0))
            n >>= 7
            if not n:
                break
        inner = bytes([field << 3 | 2]) + bytes(length) + inner
    return inner


# ------------------------------------------------------------------------ the campaign

class Campaign:
    """Sends requests, tallies statuses, and checks the server and the reference collection."""

    def __init__(self, server: ServerProcess, channel: grpc.Channel) -> None:
        self.server, self.channel = server, channel
        self.statuses: Counter[tuple[str, str]] = Counter()
        self.bad: list[str] = []
        self.reference_checks = 0
        self.reference = self._fingerprint()

    def _fingerprint(self) -> tuple[int, str]:
        with shoal.Client(self.server.target, timeout=DEADLINE_S) as c:
            if KEEP not in c.list_collections():  # an accepted Drop: refilled by the caller
                return 0, ""
            col = c.get_collection(KEEP)
            n = col.count()
            if n == 0:
                return 0, ""
            hits = col.search(np.ones(DIM, np.float32), k=n, include=("vector", "metadata", "distance"))
            rows = sorted((json.dumps(h, default=str), v.astype("<f4").tobytes().hex(), json.dumps(m, sort_keys=True))
                          for h, v, m in zip(hits.ids, hits.vectors, hits.metadata))
        return n, hashlib.sha256(repr(rows).encode()).hexdigest()

    def send(self, service: Any, method: Any, payload: bytes | list[bytes]) -> grpc.StatusCode:
        path = f"/{service.full_name}/{method.name}"
        kind = ("stream" if method.client_streaming else "unary") + "_" + ("stream" if method.server_streaming else "unary")
        call = getattr(self.channel, kind)(path, request_serializer=None, response_deserializer=None)
        request = iter(payload) if method.client_streaming else payload
        try:
            result = call(request, timeout=DEADLINE_S)
            if method.server_streaming:
                list(result)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
            if code in BAD_STATUSES:
                self.bad.append(f"{path}: {code.name} {exc.details()!r} for {str(payload)[:200]}")
        self.statuses[(_method_id(service, method), code.name)] += 1
        if method.name in ("Drop", "Rename") and code == grpc.StatusCode.OK:
            _fill_play(self.server)  # keep the targets in place, or the rest of the campaign meets NOT_FOUND
        raw = b"".join(payload) if isinstance(payload, list) else payload
        if KEEP.encode() in raw:
            # a stream of several upserts is atomic per message: earlier ones stay applied when a later fails
            partial = isinstance(payload, list) and len(payload) > 1
            self._check_reference(method.name, code if not partial else grpc.StatusCode.OK)
        if self.server.proc.poll() is not None:
            pytest.fail(f"server died (exit {self.server.proc.returncode}) after {path} {str(payload)[:200]}")
        return code

    def _check_reference(self, method: str, code: grpc.StatusCode) -> None:
        if code == grpc.StatusCode.OK and method in WRITES:  # an accepted write: the new state is the reference
            self.reference = self._fingerprint()
            if self.reference[0] < 10:
                _fill_reference(self.server)
                self.reference = self._fingerprint()
            return
        self.reference_checks += 1
        now = self._fingerprint()
        assert now == self.reference, f"a rejected {method} ({code.name}) changed collection {KEEP!r}"


#: Families the campaign's requests may create: each is built, trained and searched once before it
#: starts, so no request's deadline is spent compiling (or loading) a family's Numba kernels.
WARM_SPECS = ("Flat", "HNSW8", "KDTree", "IVF4,Flat", "IVF4,SQ8", "IVF4,PQ2", "SQ8", "PQ2", "OPQ2,PQ2")


def _warm_up(server: ServerProcess) -> None:
    x = np.random.default_rng(1).standard_normal((4200, DIM)).astype(np.float32)
    with shoal.Client(server.target, timeout=600) as c:
        for i, spec in enumerate(WARM_SPECS):
            col = c.create_collection(f"warm-{i}", dim=DIM, metric="l2", index=spec)
            col.upsert(list(range(len(x))), x)
            col.search(x[:3], k=5)
            col.search(x[:3], k=5, filter={"lang": "en"})
            c.drop_collection(f"warm-{i}")


def _fill_reference(server: ServerProcess) -> None:
    with shoal.Client(server.target, timeout=DEADLINE_S) as c:
        col = c.get_or_create_collection(KEEP, dim=DIM, metric="l2")
        rng = np.random.default_rng(0)
        ids = [i if i % 2 else f"k{i}" for i in range(50)]
        col.upsert(ids, rng.standard_normal((50, DIM)), [{"i": i, "lang": ["en", "de"][i % 2], "tags": [i]}
                                                          for i in range(50)])


def _fill_play(server: ServerProcess) -> None:
    with shoal.Client(server.target, timeout=DEADLINE_S) as c:
        if PLAY not in c.list_collections():
            c.create_collection(PLAY, dim=DIM, index="HNSW8").upsert(list(range(20)), np.eye(20, DIM))


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campaign]:
    tmp = tmp_path_factory.mktemp("fuzz")
    srv = start_server(tmp, "--data", str(tmp / "data"), "--snapshot-dir", str(tmp / "snapshots"))
    try:
        _warm_up(srv)
        _fill_reference(srv)
        _fill_play(srv)
        with grpc.insecure_channel(srv.target, options=[("grpc.max_send_message_length", -1)]) as channel:
            yield Campaign(srv, channel)
    finally:
        assert srv.stop() == 0, srv.output()[-3000:]


FUZZ = settings(deadline=None, derandomize=True, database=None, max_examples=STRUCTURED,
                suppress_health_check=list(HealthCheck))


def _plausible(desc: Descriptor) -> st.SearchStrategy[Any] | None:
    """Requests right in shape (ids match vectors, dimension 4) with fuzzed values, so they get past
    the shape checks and reach the engine's; None for messages the generic strategy covers well."""
    from shoal.rpc import convert
    from shoal.rpc.v1 import points_pb2, search_pb2, types_pb2

    metadata = message_strategy(types_pb2.Metadata.DESCRIPTOR, 1)
    if desc.full_name == "shoal.v1.UpsertRequest":
        def upsert(name: str, ids: list[Any], meta: list[Any], with_meta: bool) -> Any:
            return points_pb2.UpsertRequest(collection=name, ids=convert.ids_to_proto(ids),
                                            vectors=types_pb2.Vectors(dim=DIM, packed=_packed(DIM, len(ids))),
                                            metadata=(meta * len(ids))[:len(ids)] if with_meta and meta else [])
        ids = st.lists(st.integers(0, 2 ** 63 - 1) | st.sampled_from(WORDS), max_size=4)
        return st.builds(upsert, st.sampled_from([KEEP, PLAY]), ids, st.lists(metadata, max_size=2), st.booleans())
    if desc.full_name == "shoal.v1.SearchRequest":
        batch = st.builds(lambda n, k, flt, params: search_pb2.QueryBatch(
            vectors=types_pb2.Vectors(dim=DIM, packed=_packed(DIM, n)), k=k, params=params,
            **({"filter": flt} if flt is not None else {})),
            st.integers(0, 3), _integers(0, 2 ** 32 - 1), st.none() | message_strategy(types_pb2.Filter.DESCRIPTOR, 1),
            st.dictionaries(st.sampled_from(WORDS), message_strategy(types_pb2.Value.DESCRIPTOR, 2), max_size=2))
        return st.builds(lambda name, batches, meta, vec: search_pb2.SearchRequest(
            collection=name, batches=batches, include_metadata=meta, include_vectors=vec),
            st.sampled_from([KEEP, PLAY]), st.lists(batch, max_size=2), st.booleans(), st.booleans())
    return None


def _structured(desc: Descriptor, method: Any) -> st.SearchStrategy[bytes | list[bytes]]:
    one = message_strategy(desc)
    plausible = _plausible(desc)
    if plausible is not None:
        one = plausible | one
    encoded = one.map(lambda m: m.SerializeToString())
    return st.lists(encoded, max_size=3) if method.client_streaming else encoded


@pytest.mark.parametrize("service, method", METHODS, ids=[_method_id(s, m) for s, m in METHODS])
def test_structured_requests(campaign: Campaign, service: Any, method: Any) -> None:
    @FUZZ
    @given(_structured(method.input_type, method))
    def run(payload: bytes | list[bytes]) -> None:
        campaign.send(service, method, payload)

    run()
    assert not campaign.bad, "\n".join(campaign.bad)


def _seeds(desc: Descriptor) -> list[bytes]:
    """Valid requests naming the reference collection, and bytes past the decoder's limits."""
    cls = message_factory.GetMessageClass(desc)
    seeds = [b""]
    names = [f.name for f in desc.fields if f.type == FieldDescriptor.TYPE_STRING]
    if names:
        seeds.append(cls(**{names[0]: KEEP}).SerializeToString())
    deep_filter = _nested_bytes(4, 120)  # Filter.not x 120
    deep_meta = _nested_bytes(1, 60, _nested_bytes(2, 1))
    for field in desc.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            seeds.append(_nested_bytes(field.number, 1, deep_filter if field.message_type.name == "Filter" else deep_meta))
        if field.type == FieldDescriptor.TYPE_STRING:
            seeds.append(_nested_bytes(field.number, 1, b"\xff\xfe" + KEEP.encode()))
    return seeds


@pytest.mark.parametrize("service, method", METHODS, ids=[_method_id(s, m) for s, m in METHODS])
def test_raw_and_mutated_bytes(campaign: Campaign, service: Any, method: Any) -> None:
    seeds = _seeds(method.input_type)
    for seed in seeds:
        campaign.send(service, method, [seed] if method.client_streaming else seed)

    @settings(FUZZ, max_examples=RANDOM)
    @given(st.binary(max_size=300))
    def random_bytes(data: bytes) -> None:
        campaign.send(service, method, [data, data] if method.client_streaming else data)

    @settings(FUZZ, max_examples=MUTANTS)
    @given(st.sampled_from(seeds) | _structured(method.input_type, method).map(
               lambda p: b"".join(p) if isinstance(p, list) else p),
           st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10 ** 6), st.integers(0, 255)), min_size=1, max_size=4))
    def mutants(seed: bytes, ops: list[tuple[int, int, int]]) -> None:
        data = _mutate(seed, ops)
        campaign.send(service, method, [data] if method.client_streaming else data)

    random_bytes()
    mutants()
    assert not campaign.bad, "\n".join(campaign.bad)


def test_campaign_figures(campaign: Campaign) -> None:
    """Server alive, reference intact, every answer a deliberate status; prints the figures."""
    assert campaign.server.proc.poll() is None
    assert campaign._fingerprint() == campaign.reference
    assert not campaign.bad, "\n".join(campaign.bad)
    per_method: dict[str, Counter[str]] = {}
    for (name, code), n in sorted(campaign.statuses.items()):
        per_method.setdefault(name, Counter())[code] = n
    total = sum(campaign.statuses.values())
    print(f"\nfuzz campaign: {total} requests, 0 server deaths, 0 INTERNAL/UNKNOWN, 0 hangs past {DEADLINE_S:g} s, "
          f"{campaign.reference_checks} checks of {KEEP!r} after rejected requests naming it, all unchanged")
    for name, codes in per_method.items():
        print(f"  {name:28s} {sum(codes.values()):5d}  " + ", ".join(f"{c} {n}" for c, n in codes.most_common()))
    if campaign.statuses:
        assert total >= len(METHODS)
    for (name, code), _ in campaign.statuses.items():
        if name.startswith("Query."):
            assert code == "UNIMPLEMENTED"  # not served without --rag

