"""ShoalVectorStore for LlamaIndex, embedded and served, against LlamaIndex's own SimpleVectorStore as the model."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.schema import Document, NodeRelationship, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.core.vector_stores import SimpleVectorStore  # noqa: E402
from llama_index.core.vector_stores.types import (FilterCondition, FilterOperator, MetadataFilter,  # noqa: E402
                                                  MetadataFilters, VectorStoreQuery, VectorStoreQueryMode)

import shoal  # noqa: E402
from shoal.integrations.llama_index import ShoalEmbedding, ShoalVectorStore, to_shoal_filter  # noqa: E402

DIM = 8
TOPICS = ["fish", "birds", "trees", "rivers"]


def corpus() -> list[TextNode]:
    """18 nodes of 6 source documents; metadata of every kind the filters touch, some fields missing."""
    rng = np.random.default_rng(7)
    nodes = []
    for i in range(18):
        metadata: dict = {"topic": TOPICS[i % 4], "score": round(float(rng.random()), 3),
                          "tags": [["a", "b"], ["b"], ["c", "a"], ["d"]][i % 4]}
        if i % 5:
            metadata["year"] = 2015 + i % 7
        if i % 3 == 0:
            metadata["note"] = [None, "", "kept"][(i // 3) % 3]
        nodes.append(TextNode(id_=f"node-{i:02d}", text=f"text of node {i} about {TOPICS[i % 4]}",
                              embedding=rng.standard_normal(DIM).tolist(), metadata=metadata,
                              relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc-{i % 6}")}))
    return nodes


@pytest.fixture(params=["embedded", "served"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def store(backend, make_collection) -> ShoalVectorStore:
    return ShoalVectorStore(collection=make_collection(backend, DIM))


@pytest.fixture
def filled(store) -> ShoalVectorStore:
    assert store.add(corpus()) == [n.node_id for n in corpus()]
    return store


@pytest.fixture(scope="module")
def reference() -> SimpleVectorStore:
    ref = SimpleVectorStore()
    ref.add(corpus())
    return ref


def _query(**kw) -> VectorStoreQuery:
    return VectorStoreQuery(query_embedding=np.random.default_rng(1).standard_normal(DIM).tolist(),
                            similarity_top_k=kw.pop("similarity_top_k", 18), **kw)


def _f(key, value, op) -> MetadataFilter:
    return MetadataFilter(key=key, value=value, operator=op)


FILTERS = {
    "eq": MetadataFilters(filters=[_f("topic", "fish", FilterOperator.EQ)]),
    "ne-missing-counts": MetadataFilters(filters=[_f("year", 2016, FilterOperator.NE)]),
    "gt": MetadataFilters(filters=[_f("year", 2018, FilterOperator.GT)]),
    "gte": MetadataFilters(filters=[_f("year", 2018, FilterOperator.GTE)]),
    "lt-float": MetadataFilters(filters=[_f("score", 0.5, FilterOperator.LT)]),
    "lte": MetadataFilters(filters=[_f("year", 2017, FilterOperator.LTE)]),
    "in": MetadataFilters(filters=[_f("topic", ["fish", "trees"], FilterOperator.IN)]),
    "nin": MetadataFilters(filters=[_f("year", [2016, 2017], FilterOperator.NIN)]),
    "any": MetadataFilters(filters=[_f("tags", ["a", "d"], FilterOperator.ANY)]),
    "all": MetadataFilters(filters=[_f("tags", ["a", "b"], FilterOperator.ALL)]),
    "contains": MetadataFilters(filters=[_f("tags", "b", FilterOperator.CONTAINS)]),
    "is-empty": MetadataFilters(filters=[_f("note", None, FilterOperator.IS_EMPTY)]),
    "and": MetadataFilters(filters=[_f("topic", "birds", FilterOperator.NE), _f("year", 2018, FilterOperator.GTE)]),
    "or": MetadataFilters(filters=[_f("topic", "birds", FilterOperator.EQ), _f("score", 0.8, FilterOperator.GT)],
                          condition=FilterCondition.OR),
    "not": MetadataFilters(filters=[_f("topic", "birds", FilterOperator.EQ), _f("year", 2020, FilterOperator.GTE)],
                           condition=FilterCondition.NOT),
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_filters_match_simple_vector_store(filled, reference, name):
    query = _query(filters=FILTERS[name])
    got, want = filled.query(query), reference.query(query)
    assert got.ids == want.ids
    assert got.ids, "every case should select something"
    np.testing.assert_allclose(got.similarities, want.similarities, atol=1e-5)
    texts = {n.node_id: n.text for n in corpus()}
    assert [n.text for n in got.nodes] == [texts[i] for i in want.ids]


def test_nested_filters(filled):
    nested = MetadataFilters(condition=FilterCondition.OR, filters=[
        _f("topic", "rivers", FilterOperator.EQ),
        MetadataFilters(filters=[_f("topic", "fish", FilterOperator.EQ), _f("year", 2016, FilterOperator.GT)]),
    ])
    want = {n.node_id for n in corpus() if n.metadata["topic"] == "rivers"
            or (n.metadata["topic"] == "fish" and n.metadata.get("year", 0) > 2016)}
    assert set(filled.query(_query(filters=nested)).ids) == want


@pytest.mark.parametrize("op", [FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE])
def test_substring_operators_raise_a_filter_error(filled, op):
    with pytest.raises(shoal.FilterError, match="substring"):
        filled.query(_query(filters=MetadataFilters(filters=[_f("topic", "fi", op)])))


def test_operand_shape_errors():
    with pytest.raises(shoal.FilterError, match="list of values"):
        to_shoal_filter(MetadataFilters(filters=[_f("topic", "fish", FilterOperator.IN)]))
    with pytest.raises(shoal.FilterError, match="one value"):
        to_shoal_filter(MetadataFilters(filters=[_f("topic", ["fish"], FilterOperator.EQ)]))
    assert to_shoal_filter(None) is None and to_shoal_filter(MetadataFilters(filters=[])) is None


def test_query_top_k_and_node_ids_match_reference(filled, reference):
    for kw in ({"similarity_top_k": 3}, {"node_ids": ["node-03", "node-07", "node-11", "missing"]},
               {"node_ids": ["node-03", "node-07", "node-11"], "filters": FILTERS["gt"]}):
        query = _query(**kw)
        got, want = filled.query(query), reference.query(query)
        assert got.ids == want.ids, kw
        np.testing.assert_allclose(got.similarities, want.similarities, atol=1e-5)


def test_doc_ids_restrict_to_source_documents(filled, reference):
    """SimpleVectorStore ignores doc_ids, so the model is its unrestricted ranking with other documents dropped."""
    source = {n.node_id: n.ref_doc_id for n in corpus()}
    want = [i for i in reference.query(_query()).ids if source[i] in ("doc-1", "doc-4")][:4]
    assert filled.query(_query(similarity_top_k=4, doc_ids=["doc-1", "doc-4"])).ids == want
    eq = filled.query(_query(doc_ids=["doc-1", "doc-4"], filters=FILTERS["gte"])).ids
    assert eq == [i for i in reference.query(_query(filters=FILTERS["gte"])).ids if source[i] in ("doc-1", "doc-4")]


def test_mmr_matches_reference_and_diversifies(filled, reference):
    query = _query(similarity_top_k=4, mode=VectorStoreQueryMode.MMR)
    got, want = filled.query(query, mmr_prefetch_k=18, mmr_threshold=0.3), reference.query(query, mmr_threshold=0.3)
    assert got.ids == want.ids
    np.testing.assert_allclose(got.similarities, want.similarities, atol=1e-5)
    query.mmr_threshold = 0.3  # the query's own field works as well
    assert filled.query(query, mmr_prefetch_k=18).ids == want.ids
    plain = filled.query(_query(similarity_top_k=4)).ids
    assert got.ids != plain and got.ids[0] == plain[0]
    assert len(filled.query(query).ids) == 4  # default prefetch: 4 x top_k candidates
    pure = filled.query(_query(similarity_top_k=4, mode=VectorStoreQueryMode.MMR, mmr_threshold=1.0))
    assert pure.ids == plain


def test_unsupported_mode_and_missing_embedding(filled):
    with pytest.raises(shoal.InvalidArgumentError, match="mode"):
        filled.query(_query(mode=VectorStoreQueryMode.SPARSE))
    with pytest.raises(shoal.InvalidArgumentError, match="query_embedding"):
        filled.query(VectorStoreQuery(query_str="fish"))
    with pytest.raises(shoal.InvalidArgumentError, match="unknown keyword"):
        filled.query(_query(), mmr_prefetch=3)


def test_get_nodes(filled):
    everything = filled.get_nodes()
    assert sorted(n.node_id for n in everything) == sorted(n.node_id for n in corpus())
    by_id = {n.node_id: n for n in corpus()}
    for node in everything:
        assert node.text == by_id[node.node_id].text and node.metadata == by_id[node.node_id].metadata
        assert node.ref_doc_id == by_id[node.node_id].ref_doc_id
        np.testing.assert_allclose(np.linalg.norm(node.embedding), 1.0, rtol=1e-5)  # stored normalised (cosine)
    assert [n.node_id for n in filled.get_nodes(["node-05", "nope", "node-01"])] == ["node-05", "node-01"]
    fish = {n.node_id for n in corpus() if n.metadata["topic"] == "fish"}
    assert {n.node_id for n in filled.get_nodes(filters=FILTERS["eq"])} == fish
    assert [n.node_id for n in filled.get_nodes(["node-00", "node-01", "node-04"], FILTERS["eq"])] == ["node-00", "node-04"]


def test_delete_by_ref_doc_nodes_filters_and_clear(filled):
    filled.delete("doc-2")
    remaining = {n.node_id for n in filled.get_nodes()}
    assert remaining == {n.node_id for n in corpus() if n.ref_doc_id != "doc-2"}
    filled.delete("no-such-doc")
    filled.delete_nodes(["node-00", "node-02", "missing"])  # node-02 went with doc-2
    assert {n.node_id for n in filled.get_nodes()} == remaining - {"node-00"}
    filled.delete_nodes(filters=FILTERS["eq"])
    assert not filled.get_nodes(filters=FILTERS["eq"])
    filled.delete_nodes(["node-01", "node-03"], filters=MetadataFilters(filters=[_f("topic", "birds", FilterOperator.EQ)]))
    assert [n.node_id for n in filled.get_nodes(["node-01", "node-03"])] == ["node-03"]
    filled.clear()
    assert filled.get_nodes() == [] and filled.client.count() == 0


def test_add_replaces_and_empty_add(store):
    nodes = corpus()[:3]
    store.add(nodes)
    store.add([TextNode(id_="node-01", text="rewritten", embedding=nodes[1].embedding, metadata={"topic": "new"})])
    assert store.client.count() == 3
    (node,) = store.get_nodes(["node-01"])
    assert node.text == "rewritten" and node.metadata == {"topic": "new"}
    assert store.add([]) == []
    with pytest.raises(shoal.InvalidArgumentError, match="unknown keyword"):
        store.add(nodes, batch=2)
    with pytest.raises(shoal.InvalidArgumentError, match="unknown keyword"):
        store.delete("doc-0", hard=True)


def test_rejects_what_is_not_a_collection():
    with pytest.raises(shoal.InvalidArgumentError, match="shoal.Collection"):
        ShoalVectorStore(collection=object())


async def test_async_methods(filled):
    query = _query(similarity_top_k=2)
    assert (await filled.aquery(query)).ids == filled.query(query).ids
    assert len(await filled.aget_nodes(filters=FILTERS["eq"])) == 5
    await filled.adelete("doc-0")
    await filled.adelete_nodes(["node-01"])
    assert await filled.async_add([TextNode(id_="x", text="x", embedding=[1.0] * DIM)]) == ["x"]
    assert filled.client.count() == 18 - 3 - 1 + 1
    await filled.aclear()
    assert filled.client.count() == 0


def test_vector_store_index_end_to_end(backend, make_collection):
    """The usual LlamaIndex flow: documents -> nodes embedded by a Shoal embedder -> retrieval -> delete."""
    embed = ShoalEmbedding("bloom", m=512)
    store = ShoalVectorStore(collection=make_collection(backend, embed.dim))
    docs = [Document(text="Salmon swim upstream to spawn in rivers.", id_="fish", metadata={"kind": "animal"}),
            Document(text="Oak trees drop acorns in the autumn.", id_="oak", metadata={"kind": "plant"}),
            Document(text="Herons hunt fish in shallow rivers.", id_="heron", metadata={"kind": "animal"})]
    index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
                                            embed_model=embed)
    hits = index.as_retriever(similarity_top_k=1).retrieve("salmon swim upstream")
    assert hits[0].node.ref_doc_id == "fish" and "Salmon" in hits[0].node.get_content()
    animal = MetadataFilters(filters=[_f("kind", "plant", FilterOperator.EQ)])
    assert index.as_retriever(similarity_top_k=3, filters=animal).retrieve("rivers")[0].node.ref_doc_id == "oak"
    index.delete_ref_doc("fish")
    assert {h.node.ref_doc_id for h in index.as_retriever(similarity_top_k=3).retrieve("salmon")} == {"oak", "heron"}


def test_embedding_adapter_batches_and_matches_the_embedder():
    embed = ShoalEmbedding("bloom", m=256, embed_batch_size=2)
    texts = ["one fish", "two fish", "red fish", "blue fish", "a tree"]
    vectors = embed.get_text_embedding_batch(texts)
    from shoal.rag import load_embedder

    np.testing.assert_allclose(vectors, load_embedder("bloom", m=256).encode(texts), atol=1e-7)
    assert embed.get_query_embedding("one fish") == vectors[0] and embed.dim == 256
