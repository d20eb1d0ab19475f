"""The HTTP/JSON API: the same servicers as gRPC, so the same answers and the same errors.

Parity: one sequence of operations through HTTP and through an embedded Database gives
identical results (the gRPC side of that contract is tests/rpc/test_service.py). Errors:
every ShoalError class comes back with its gRPC code, its class name and its HTTP status,
and a refused call changes nothing. Auth, size limits, streaming, OpenAPI, the CLI.
"""
from __future__ import annotations

import base64
import http.client
import json
import signal
import ssl
from pathlib import Path

import grpc
import numpy as np
import pytest

import shoal
from shoal.engine import errors
from shoal.rpc import convert
from shoal.rpc.http.gateway import HTTP_STATUS, Gateway
from shoal.rpc.server import GuardInterceptor, ServerState
from shoal.rpc.v1 import search_pb2, service_pb2_grpc
from tests.rpc.conftest import self_signed_cert, start_server
from tests.rpc.http_support import JsonClient, servers
from tests.rpc.test_service import DIM, data

#: Written out here, not imported: what a client of the HTTP API is promised for each gRPC code.
EXPECTED_STATUS = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
                   "FAILED_PRECONDITION": 409, "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "INTERNAL": 500,
                   "DATA_LOSS": 500, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}
ERROR_CLASSES = sorted((cls for cls in vars(errors).values()
                        if isinstance(cls, type) and issubclass(cls, errors.ShoalError)), key=lambda c: c.__name__)


@pytest.fixture(scope="module")
def pair():
    with servers() as s:
        yield s


@pytest.fixture
def api(pair) -> JsonClient:
    return JsonClient(pair.base)


def _as_json(meta: list[dict]) -> list[dict]:
    return json.loads(json.dumps(meta))


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_parity_with_embedded(api: JsonClient, metric: str) -> None:
    name = f"http-parity-{metric}"
    embedded = shoal.Database().create_collection(name, dim=DIM, metric=metric)
    assert api.ok("POST", "/v1/collections", {"name": name, "dim": DIM, "metric": metric})["count"] == 0
    ids, x, meta = data(60, seed=1)
    q = np.random.default_rng(2).standard_normal((3, DIM)).astype(np.float32)
    c = f"/v1/collections/{name}"

    embedded.upsert(ids, x, meta)
    assert api.ok("PUT", f"{c}/points", {"ids": ids, "vectors": x.tolist(), "metadata": meta}) == {"upserted": 60}
    flt = {"$or": [{"year": {"$gte": 2020}}, {"lang": {"$in": ["de"]}}]}
    for fl in (None, flt):
        want = embedded.search(q, k=7, filter=fl)
        batch = {"vectors": q.tolist(), "k": 7, **({"filter": fl} if fl else {})}
        got = api.ok("POST", f"{c}/search", {"batches": [batch], "include_metadata": True})["results"]
        assert [r["ids"] for r in got] == [w.ids for w in want]
        np.testing.assert_array_equal(np.array([r["scores"] for r in got], np.float32), [w.scores for w in want])
        np.testing.assert_array_equal(np.array([r["distances"] for r in got], np.float32),
                                      [w.distances for w in want])
        assert [r["metadata"] for r in got] == [_as_json(w.metadata) for w in want]
    missing = api("POST", f"{c}/points/get", {"ids": ["doc-3", "missing"]})
    assert missing.status == 404 and missing.error["class"] == "IdNotFoundError"
    got = api.ok("POST", f"{c}/points/get", {"ids": ["doc-3", 7]})
    want = embedded.get(["doc-3", 7])
    assert got["ids"] == want.ids and got["metadata"] == _as_json(want.metadata)
    np.testing.assert_array_equal(np.array(got["vectors"], np.float32), want.vectors)
    assert api.ok("POST", f"{c}/points/count", {"filter": {"lang": "en"}})["count"] == embedded.count({"lang": "en"})
    deleted = api.ok("POST", f"{c}/points/delete", {"ids": [1, "doc-6"], "by_ids": True})["deleted"]
    assert deleted == embedded.delete(ids=[1, "doc-6"])
    assert api.ok("GET", f"{c}/points/count")["count"] == embedded.count() == 58
    assert api.ok("GET", f"/v1/collections/{name}")["count"] == 58
    assert name in api.ok("GET", "/v1/collections")["names"]
    assert api.ok("DELETE", f"/v1/collections/{name}") == {}


def test_ints_stay_ints_and_big_ints_survive(api: JsonClient) -> None:
    api.ok("POST", "/v1/collections", {"name": "types", "dim": 2})
    meta = {"big": 2 ** 60 + 1, "f": 1.0, "i": 1, "none": None, "nested": {"l": [1, "a", True]}}
    api.ok("PUT", "/v1/collections/types/points", {"ids": [2 ** 62, "s"], "vectors": [[1, 0], [0, 1]],
                                                   "metadata": [meta, {}]})
    got = api.ok("POST", "/v1/collections/types/points/get", {"ids": [2 ** 62]})
    assert got["ids"] == [2 ** 62] and got["metadata"] == [meta]
    assert type(got["metadata"][0]["f"]) is float and type(got["metadata"][0]["i"]) is int


def test_vectors_as_base64_arrays_one_vector_or_the_message_form(api: JsonClient) -> None:
    api.ok("POST", "/v1/collections", {"name": "b64", "dim": 3, "metric": "l2"})
    x = np.array([[1, 2, 3], [4, 5, 6]], "<f4")
    rows = [base64.b64encode(r.tobytes()).decode() for r in x]
    packed = {"dim": 3, "packed": base64.b64encode(x.tobytes()).decode()}
    for i, vectors in enumerate((rows, packed, x.tolist())):
        api.ok("PUT", "/v1/collections/b64/points", {"ids": [10 * i, 10 * i + 1], "vectors": vectors})
    got = api.ok("POST", "/v1/collections/b64/points/get", {"ids": [0, 1, 10, 11, 20, 21]})
    np.testing.assert_array_equal(np.array(got["vectors"], np.float32), np.vstack([x, x, x]))
    for query in (rows[1], x[1].tolist(), [x[1].tolist()]):  # one vector, as base64 or array; a batch of one
        hits = api.ok("POST", "/v1/collections/b64/search", {"vector": query, "k": 3})["results"]
        assert len(hits) == 1 and hits[0]["distances"][0] == 0.0 and hits[0]["ids"][0] % 10 == 1


def test_zero_hits_with_vectors(api: JsonClient, pair) -> None:
    """Found by test_fuzz once SearchRequest grew a field: zero hits with include_vectors was INTERNAL."""
    api.ok("POST", "/v1/collections", {"name": "none", "dim": 2})
    api.ok("PUT", "/v1/collections/none/points", {"ids": [1], "vectors": [[1, 0]], "metadata": [{"a": 1}]})
    hits = api.ok("POST", "/v1/collections/none/search", {"vector": [1, 0], "k": 2, "filter": {"a": 2},
                                                          "include_vectors": True})["results"][0]
    assert hits["ids"] == [] and hits["vectors"] == []
    with shoal.Client(pair.target) as client:
        result = client.get_collection("none").search([1, 0], k=2, filter={"a": 2}, include=("vector",))
    assert result.ids == [] and result.vectors.shape == (0, 2)


def test_every_method_is_served_at_its_grpc_path(api: JsonClient) -> None:
    api.ok("POST", "/shoal.v1.Collections/Create", {"name": "generic", "dim": 2})
    api.ok("POST", "/shoal.v1.Points/Upsert", {"collection": "generic", "ids": [1], "vectors": [[1, 0]]})
    assert api.ok("POST", "/shoal.v1.Points/Count", {"collection": "generic"}) == {"count": 1}
    camel = api.ok("POST", "/shoal.v1.Search/Search", {"collection": "generic", "includeMetadata": True,
                                                       "batches": [{"vectors": [[1, 0]], "k": "1"}]})
    assert camel["results"][0]["ids"] == [1]  # lowerCamelCase names and int64-as-string, as in proto3 JSON


def test_upsert_batches_in_one_body_are_decoded_before_any_is_applied(api: JsonClient) -> None:
    api.ok("POST", "/v1/collections", {"name": "stream", "dim": 2})
    good = [{"ids": [i], "vectors": [[i, 1]]} for i in range(3)]
    bad = api("POST", "/v1/collections/stream/points/batches", [*good, {"ids": [9], "vectors": "not base64!"}])
    assert bad.status == 400 and bad.error["class"] == "InvalidVectorError" and "body[3].vectors" in bad.error["message"]
    assert api.ok("GET", "/v1/collections/stream/points/count")["count"] == 0
    assert api.ok("POST", "/v1/collections/stream/points/batches", {"batches": good}) == {"upserted": 3}
    mixed = api("POST", "/shoal.v1.Points/UpsertStream", [{"collection": "stream", "ids": [7], "vectors": [[1, 2]]},
                                                          {"collection": "stream", "ids": [8], "vectors": [[1, 2, 3]]}])
    assert mixed.status == 400 and "stream message 1" in mixed.error["message"]  # the same words as over gRPC


def test_search_returns_the_plan_when_asked(api: JsonClient, pair) -> None:
    api.ok("POST", "/v1/collections", {"name": "plan", "dim": 2})
    api.ok("PUT", "/v1/collections/plan/points", {"ids": [1, 2], "vectors": [[1, 0], [0, 1]]})
    hits = api.ok("POST", "/v1/collections/plan/search", {"vector": [1, 0], "k": 1, "explain": True})["results"][0]
    assert hits["plan"] == pair.db.get_collection("plan").explain([1, 0], k=1)
    assert api.ok("POST", "/v1/collections/plan/search", {"vector": [1, 0], "k": 1})["results"][0]["plan"] == []
    with grpc.insecure_channel(pair.target) as channel:  # and over gRPC: the field is in the proto
        reply = service_pb2_grpc.SearchStub(channel).Search(search_pb2.SearchRequest(
            collection="plan", explain=True, batches=[search_pb2.QueryBatch(
                vectors=convert.vectors_to_proto([[1, 0]]), k=1)]))
    assert [convert.metadata_from_proto(p) for p in reply.results[0].plan] == hits["plan"]
    with shoal.Client(pair.target) as client:
        remote = client.get_collection("plan")
        assert remote.search([1, 0], k=1, explain=True).plan == hits["plan"]
        assert remote.search([1, 0], k=1).plan is None


@pytest.mark.parametrize("body, words", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[" * 100_000, "nests too deeply"),
    (json.dumps({"ids": [1], "vectors": [[1, 2]], "colour": 1}).encode(), "unknown field 'colour'"),
    (json.dumps({"ids": [True], "vectors": [[1, 2]]}).encode(), "ids[0]"),
    (json.dumps({"ids": [2 ** 64], "vectors": [[1, 2]]}).encode(), "64 bits"),
    (json.dumps({"ids": [1], "vectors": [[1, 2], [3]]}).encode(), "different lengths"),
    (json.dumps({"ids": [1], "vectors": [["a", "b"]]}).encode(), "array of numbers"),
    (json.dumps({"ids": "1", "vectors": [[1, 2]]}).encode(), "JSON array"),
    (json.dumps({"ids": [1], "vectors": [[1, 2]], "metadata": [[1]]}).encode(), "JSON object"),
    (json.dumps({"ids": [1], "vectors": [[1, 2]], "metadata": [{"a": 1}] * 2}).encode(), "metadata"),
])
def test_bad_bodies_are_400_naming_the_problem_and_change_nothing(api: JsonClient, body: bytes, words: str) -> None:
    api("POST", "/v1/collections", {"name": "strict", "dim": 2})
    reply = api.raw("POST", "/v1/collections/strict/points", body)
    assert reply.status == 400, reply.body
    assert reply.error["code"] == "INVALID_ARGUMENT" and words in reply.error["message"]
    assert "Traceback" not in json.dumps(reply.body)
    assert api.ok("GET", "/v1/collections/strict/points/count")["count"] == 0


def test_url_and_body_must_agree(api: JsonClient) -> None:
    reply = api("POST", "/v1/collections/a/points/count", {"collection": "b"})
    assert reply.status == 400 and "URL" in reply.error["message"]
    bad_k = api("POST", "/v1/collections/a/search", {"vector": [1, 2], "k": -1})
    assert bad_k.status == 400 and "out of range" in bad_k.error["message"]


def test_every_grpc_code_has_an_http_status() -> None:
    assert {cls.grpc_code for cls in ERROR_CLASSES} <= set(HTTP_STATUS)
    for code, status in EXPECTED_STATUS.items():
        assert HTTP_STATUS[code] == status, code


class _Raising:
    """A collection whose every call raises one error class (what the servicer sees, then maps)."""

    def __init__(self, cls: type[errors.ShoalError]) -> None:
        self.cls = cls

    def count(self, *args, **kwargs):
        raise self.cls(f"{self.cls.__name__} raised on purpose")


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_class_maps_to_its_status(pair, api: JsonClient, monkeypatch: pytest.MonkeyPatch,
                                              cls: type[errors.ShoalError]) -> None:
    monkeypatch.setattr(pair.db, "get_collection", lambda name: _Raising(cls))
    reply = api("GET", "/v1/collections/any/points/count")
    code = cls.grpc_code
    assert reply.status == (507 if cls is errors.DiskFullError else EXPECTED_STATUS[code]), (cls, reply.body)
    assert reply.error == {"code": code, "class": cls.__name__, "message": f"{cls.__name__} raised on purpose",
                           "http_status": reply.status}
    assert reply.headers["shoal-error"] == cls.__name__


def test_a_bug_is_500_without_a_stack_trace(pair, api: JsonClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(pair.db, "get_collection", broken)
    reply = api("GET", "/v1/collections/any/points/count")
    assert reply.status == 500 and reply.error["code"] == "INTERNAL"
    assert "secret" not in json.dumps(reply.body) and "Traceback" not in json.dumps(reply.body)
    assert "see server log" in reply.error["message"]


def test_real_errors_end_to_end(api: JsonClient) -> None:
    assert api("GET", "/v1/collections/nobody").status == 404
    api("POST", "/v1/collections", {"name": "twice", "dim": 2})
    assert api("POST", "/v1/collections", {"name": "twice", "dim": 2}).error["class"] == "CollectionExistsError"
    snap = api("POST", "/v1/admin/snapshot", {"path": "s1"})
    assert snap.status == 409 and snap.error["code"] == "FAILED_PRECONDITION"  # in memory, no snapshot dir
    assert api("GET", "/no/such/route").status == 404
    assert api("DELETE", "/v1/collections").status == 405


def test_auth_same_key_check_as_grpc() -> None:
    with servers(api_key="sesame") as s:
        anonymous, wrong = JsonClient(s.base), JsonClient(s.base, api_key="nope")
        for client in (anonymous, wrong):
            reply = client("GET", "/v1/collections")
            assert reply.status == 401 and reply.error["class"] == "AuthenticationError"
            assert reply.headers["www-authenticate"] == "Bearer"
        assert "missing API key" in anonymous("GET", "/v1/collections").error["message"]
        assert JsonClient(s.base, api_key="sesame").ok("GET", "/v1/collections") == {"names": []}
        assert anonymous("GET", "/v1/collections", headers={"x-api-key": "sesame"}).status == 200
        assert anonymous("GET", "/v1/collections", headers={"authorization": "bearer sesame"}).status == 200
        for open_path in ("/healthz", "/openapi.json", "/console/"):  # so the console can load and ask for the key
            assert anonymous("GET", open_path).status == 200, open_path
        assert anonymous.ok("GET", "/openapi.json")["security"]


def test_size_limit_refuses_before_applying() -> None:
    with servers(max_body_bytes=4096) as s:
        api = JsonClient(s.base)
        api.ok("POST", "/v1/collections", {"name": "big", "dim": 64})
        body = json.dumps({"ids": list(range(20)), "vectors": np.ones((20, 64)).tolist()}).encode()
        reply = api.raw("PUT", "/v1/collections/big/points", body)
        assert reply.status == 413 and reply.error["code"] == "RESOURCE_EXHAUSTED" and "4096" in reply.error["message"]
        connection = http.client.HTTPConnection("127.0.0.1", s.http.port, timeout=30)  # chunked: no Content-Length
        connection.request("PUT", "/v1/collections/big/points", body=iter([body[:3000], body[3000:]]),
                           encode_chunked=True, headers={"content-type": "application/json"})
        assert connection.getresponse().status == 413
        connection.close()
        assert api.ok("GET", "/v1/collections/big/points/count")["count"] == 0
        small = json.dumps({"ids": [1], "vectors": np.ones((1, 64)).tolist()}).encode()
        assert api.raw("PUT", "/v1/collections/big/points", small).status == 200


def test_health_and_shutdown_refusal(pair, api: JsonClient) -> None:
    assert api.ok("GET", "/healthz") == {"status": "SERVING"}
    pair.grpc.state.draining.set()
    try:
        assert api("GET", "/healthz").status == 503
        reply = api("GET", "/v1/collections")
        assert reply.status == 503 and reply.error["class"] == "UnavailableError"
    finally:
        pair.grpc.state.draining.clear()


def test_openapi_lists_every_method_and_every_ref_resolves(pair, api: JsonClient) -> None:
    doc = api.ok("GET", "/openapi.json")
    assert doc["openapi"].startswith("3.")
    served = Gateway(pair.grpc.servicers, pair.grpc.guard).methods
    assert len(served) >= 14 and set(served) <= set(doc["paths"])
    assert {"/v1/collections", "/v1/collections/{collection}/search", "/v1/admin/stats"} <= set(doc["paths"])
    refs = {r.split("/")[-1] for r in _refs(doc)}
    assert refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])
    search = doc["components"]["schemas"]["shoal.v1.SearchRequest"]["properties"]
    assert {"collection", "batches", "include_metadata", "explain"} <= set(search)


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    return [r for v in node for r in _refs(v)] if isinstance(node, list) else []


def test_methods_come_from_the_descriptors_not_a_list() -> None:
    """Any servicer's implemented methods are served (here gRPC health); generated stubs (UNIMPLEMENTED) are not."""
    from grpc_health.v1 import health

    guard = GuardInterceptor(ServerState(shoal.Database()), None)
    gateway = Gateway({"grpc.health.v1.Health": health.HealthServicer(),
                       "shoal.v1.Points": service_pb2_grpc.PointsServicer()}, guard)
    assert "/grpc.health.v1.Health/Check" in gateway.methods
    assert not [p for p in gateway.methods if p.startswith("/shoal.v1.Points/")]
    method = gateway.methods["/grpc.health.v1.Health/Check"]
    assert gateway.call(method, b"{}", [], "test") == {"status": "SERVING"}


def test_console_files_are_served(api: JsonClient) -> None:
    page = api("GET", "/console/")
    assert page.status == 200 and b"console.js" in page.body
    script = api("GET", "/console/console.js")
    assert script.status == 200 and "javascript" in script.headers["content-type"]
    assert api("GET", "/console").status == 200  # redirected to /console/


def test_serve_http_port_with_tls_and_auth_then_sigterm(tmp_path: Path) -> None:
    """The CLI path: ``shoal serve --http-port 0`` with TLS and an API key file, in a real process."""
    cert, key = self_signed_cert(tmp_path)
    (tmp_path / "key.txt").write_text("  s3cret\n")
    srv = start_server(tmp_path, "--http-port", "0", "--tls-cert", str(cert), "--tls-key", str(key),
                       "--api-key-file", str(tmp_path / "key.txt"))
    try:
        line = srv.proc.stdout.readline()
        assert line.startswith("http listening on 127.0.0.1:"), line
        api = JsonClient(f"https://127.0.0.1:{int(line.rsplit(':', 1)[1])}", api_key="s3cret",
                         context=ssl.create_default_context(cafile=str(cert)))
        api.ok("POST", "/v1/collections", {"name": "cli", "dim": 2})
        api.ok("PUT", "/v1/collections/cli/points", {"ids": [1, 2], "vectors": [[1, 0], [0, 1]]})
        with shoal.Client(srv.target, api_key="s3cret", tls=True, root_certificates=cert.read_bytes()) as client:
            assert client.get_collection("cli").search([1.0, 0.0], k=1).ids == [1]  # one database behind both
        assert JsonClient(api.base, context=api.context)("GET", "/v1/collections").status == 401
    finally:
        assert srv.stop(signal.SIGTERM) == 0, srv.output()


class _FakeQuery:
    """A Query servicer without handle_errors (as Ask is): the gateway still maps what escapes it."""

    def Ask(self, request, context):
        from shoal.rpc.status import abort_with
        from shoal.rpc.v1 import query_pb2

        if request.question == "early":
            abort_with(context, errors.UnavailableError("model not loaded"))
        yield query_pb2.AskEvent(token="Hel")
        yield query_pb2.AskEvent(token="lo")
        if request.question == "late":
            abort_with(context, errors.UnavailableError("model went away"))
        yield query_pb2.AskEvent(answer=query_pb2.AskAnswer(text="Hello", finish_reason="stop"))

    def Embed(self, request, context):
        if request.texts[0] == "bug":
            raise RuntimeError("secret internals")
        raise errors.ResourceExhaustedError("rate limit: slow down")


def test_streamed_answers_are_ndjson_and_unmapped_errors_are_mapped() -> None:
    from shoal.rpc.http.app import HttpApp, HttpServer
    from shoal.rpc.v1 import query_pb2_grpc

    servicer = type("Query", (_FakeQuery, query_pb2_grpc.QueryServicer), {})()
    state = ServerState(shoal.Database())
    gateway = Gateway({"shoal.v1.Query": servicer}, GuardInterceptor(state, None))
    server = HttpServer(HttpApp(gateway, max_body_bytes=1 << 16, draining=state.draining, auth=False), "127.0.0.1", 0)
    try:
        api = JsonClient(f"http://127.0.0.1:{server.port}")
        ok = api("POST", "/v1/ask", {"question": "hi"})
        assert ok.status == 200 and ok.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in ok.body.splitlines()]
        assert lines[:2] == [{"token": "Hel"}, {"token": "lo"}] and lines[2]["answer"]["text"] == "Hello"
        late = [json.loads(line) for line in api("POST", "/v1/ask", {"question": "late"}).body.splitlines()]
        assert late[-1]["error"]["class"] == "UnavailableError" and len(late) == 3
        early = api("POST", "/shoal.v1.Query/Ask", {"question": "early"})
        assert early.status == 503 and early.error["message"] == "model not loaded"
        limited = api("POST", "/v1/embed", {"texts": ["a"]})
        assert limited.status == 429 and limited.error["class"] == "ResourceExhaustedError"
        bug = api("POST", "/v1/embed", {"texts": ["bug"]})
        assert bug.status == 500 and "secret" not in json.dumps(bug.body)
    finally:
        server.stop()
