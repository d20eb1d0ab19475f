"""ShoalVectorStore for LangChain beyond the standard suite: filters, scores, MMR, construction, retrievers."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402

import shoal  # noqa: E402
from shoal.integrations.langchain import ShoalEmbeddings, ShoalVectorStore  # noqa: E402


class TableEmbeddings(Embeddings):
    """Fixed 3-d vectors per text, so neighbours and MMR picks are known by construction."""

    TABLE = {"salmon": [1.0, 0.0, 0.0], "trout": [0.99, 0.14, 0.0], "carp": [0.98, 0.0, 0.2],
             "oak": [0.0, 1.0, 0.0], "elm": [0.1, 0.99, 0.0], "river": [0.6, 0.0, 0.8]}

    def embed_documents(self, texts):
        return [self.TABLE[t] for t in texts]

    def embed_query(self, text):
        return self.TABLE[text]


TEXTS = ["salmon", "trout", "carp", "oak", "elm"]
METAS = [{"kind": "fish", "len": 80}, {"kind": "fish", "len": 40}, {"kind": "fish", "len": 60},
         {"kind": "tree", "len": 2000}, {"kind": "tree", "len": 3000}]


@pytest.fixture(params=["embedded", "served"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def store(backend, make_collection) -> ShoalVectorStore:
    s = ShoalVectorStore(TableEmbeddings(), make_collection(backend, 3))
    s.add_texts(TEXTS, METAS, ids=TEXTS)
    return s


def test_filter_uses_shoal_filter_language(store):
    assert [d.id for d in store.similarity_search("salmon", k=5, filter={"kind": "tree"})] == ["elm", "oak"]
    hits = store.similarity_search("salmon", k=5, filter={"$and": [{"kind": "fish"}, {"len": {"$gte": 60}}]})
    assert [d.id for d in hits] == ["salmon", "carp"]
    with pytest.raises(shoal.FilterError):
        store.similarity_search("salmon", filter={"len": {"$between": [1, 2]}})


def test_scores_are_shoal_distances_and_relevance_is_clipped_cosine(store):
    (doc, distance), *_ = store.similarity_search_with_score("trout", k=2)
    assert doc == Document(id="trout", page_content="trout", metadata={"kind": "fish", "len": 40})
    assert distance == pytest.approx(0.0, abs=1e-6)
    scored = store.similarity_search_with_relevance_scores("salmon", k=5)
    cos = {t: float(np.dot(TableEmbeddings.TABLE["salmon"], v) / np.linalg.norm(v))
           for t, v in TableEmbeddings.TABLE.items()}
    for d, relevance in scored:
        assert relevance == pytest.approx(min(1.0, max(0.0, cos[d.id])), abs=1e-5)
    by_vector = store.similarity_search_by_vector([0.0, 1.0, 0.0], k=1)
    assert by_vector[0].id == "oak"
    assert [d.id for d, _ in store.similarity_search_with_score_by_vector([0.0, 1.0, 0.0], k=2)] == ["oak", "elm"]


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_relevance_scores_for_other_metrics(make_collection, metric):
    s = ShoalVectorStore(TableEmbeddings(), make_collection("embedded", 3, metric=metric))
    s.add_texts(["salmon", "oak"], ids=["salmon", "oak"])
    scores = dict((d.id, r) for d, r in s.similarity_search_with_relevance_scores("salmon", k=2))
    assert scores["salmon"] == pytest.approx(1.0, abs=1e-6) and scores["oak"] == pytest.approx(0.0, abs=1e-6)


def test_mmr_trades_relevance_for_diversity(store):
    assert [d.id for d in store.similarity_search("salmon", k=2)] == ["salmon", "trout"]
    assert [d.id for d in store.max_marginal_relevance_search("salmon", k=2, fetch_k=5, lambda_mult=0.3)] == ["salmon", "oak"]
    assert [d.id for d in store.max_marginal_relevance_search_by_vector([1.0, 0, 0], k=2, lambda_mult=1.0)] == ["salmon", "trout"]
    assert [d.id for d in store.max_marginal_relevance_search("salmon", k=3, filter={"kind": "fish"})][0] == "salmon"
    with pytest.raises(shoal.InvalidArgumentError, match="lambda_mult"):
        store.max_marginal_relevance_search("salmon", lambda_mult=2.0)


async def test_async_search_paths(store):
    assert [d.id for d in await store.asimilarity_search("oak", k=1)] == ["oak"]
    assert [d.id for d, _ in await store.asimilarity_search_with_score("oak", k=2)] == ["oak", "elm"]
    assert [d.id for d in await store.asimilarity_search_by_vector([1.0, 0, 0], k=1)] == ["salmon"]
    mmr = await store.amax_marginal_relevance_search("salmon", k=2, fetch_k=5, lambda_mult=0.3)
    assert [d.id for d in mmr] == ["salmon", "oak"]
    assert [d.id for d in await store.amax_marginal_relevance_search_by_vector([1.0, 0, 0], k=1)] == ["salmon"]
    assert await store.aadd_texts(["river"], [{"kind": "water"}]) and store.collection.count() == 6
    await store.adelete(filter={"kind": "water"})
    assert store.collection.count() == 5


def test_retrievers(store):
    assert [d.id for d in store.as_retriever(search_kwargs={"k": 2}).invoke("elm")] == ["elm", "oak"]
    mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 5, "lambda_mult": 0.3})
    assert [d.id for d in mmr.invoke("salmon")] == ["salmon", "oak"]
    threshold = store.as_retriever(search_type="similarity_score_threshold",
                                   search_kwargs={"k": 5, "score_threshold": 0.9})
    assert {d.id for d in threshold.invoke("salmon")} == {"salmon", "trout", "carp"}
    filtered = store.as_retriever(search_kwargs={"k": 5, "filter": {"len": {"$lt": 50}}})
    assert [d.id for d in filtered.invoke("oak")] == ["trout"]


def test_delete_by_ids_filter_and_everything(store):
    assert store.delete(["oak", "no-such-id"]) is True
    assert [d.id for d in store.get_by_ids(TEXTS)] == ["salmon", "trout", "carp", "elm"]
    store.delete(filter={"kind": "fish", "len": {"$lt": 70}})
    assert [d.id for d in store.get_by_ids(TEXTS + ["salmon"])] == ["salmon", "elm"]
    store.delete(["salmon", "elm"], filter={"kind": "tree"})
    assert [d.id for d in store.get_by_ids(TEXTS)] == ["salmon"]
    store.delete()
    assert store.collection.count() == 0


def test_text_lives_in_the_payload_and_text_key_is_guarded(store):
    got = store.collection.get(["carp"])
    assert got.metadata == [{"kind": "fish", "len": 60, "page_content": "carp"}]
    with pytest.raises(shoal.InvalidArgumentError, match="text_key"):
        store.add_texts(["oak"], [{"page_content": "clash"}])
    other = ShoalVectorStore(TableEmbeddings(), store.collection, text_key="body")
    other.add_texts(["river"], [{"page_content": "allowed here"}], ids=["r"])
    assert other.get_by_ids(["r"]) == [Document(id="r", page_content="river", metadata={"page_content": "allowed here"})]


def test_generated_ids_are_unique_strings(store):
    ids = store.add_documents([Document(page_content="river"), Document(page_content="river", id="mine")])
    assert ids[1] == "mine" and isinstance(ids[0], str) and len(ids[0]) == 36
    assert store.add_texts([]) == []


def test_argument_errors(store):
    with pytest.raises(shoal.InvalidArgumentError, match="unknown keyword"):
        store.similarity_search("oak", k=1, ef=10)
    with pytest.raises(shoal.InvalidArgumentError, match="lengths must match"):
        store.add_texts(["oak", "elm"], ids=["x"])
    with pytest.raises(shoal.InvalidArgumentError, match="shoal.Collection"):
        ShoalVectorStore(TableEmbeddings(), collection={})
    with pytest.raises(shoal.DimensionMismatchError):
        ShoalVectorStore(ShoalEmbeddings("bloom", m=64), store.collection).add_texts(["x"])


def test_from_texts_and_from_documents(backend, request):
    database = shoal.Database() if backend == "embedded" else request.getfixturevalue("shoal_client")
    name = f"from-texts-{backend}-{id(database):x}"
    try:
        s = ShoalVectorStore.from_texts(TEXTS[:3], TableEmbeddings(), metadatas=METAS[:3], ids=TEXTS[:3],
                                        database=database, collection_name=name)
        assert s.collection.dim == 3 and s.collection.count() == 3
        again = ShoalVectorStore.from_documents([Document(page_content="oak", id="oak", metadata={"kind": "tree"})],
                                                TableEmbeddings(), database=database, collection_name=name)
        assert again.collection.count() == 4  # the existing collection was reused
        assert [d.id for d in again.similarity_search("elm", k=1)] == ["oak"]
        with pytest.raises(shoal.CollectionConfigMismatchError, match="dim=3, not 64"):  # (issue 19)
            ShoalVectorStore.from_texts(["x"], ShoalEmbeddings("bloom", m=64), database=database, collection_name=name)
    finally:
        database.drop_collection(name)
    default = ShoalVectorStore.from_texts(["salmon"], TableEmbeddings())
    assert isinstance(default.collection, shoal.Collection) and default.collection.name == "langchain"
    with pytest.raises(shoal.InvalidArgumentError, match="at least one text"):
        ShoalVectorStore.from_texts([], TableEmbeddings())


async def test_afrom_texts(make_collection):
    s = await ShoalVectorStore.afrom_texts(["oak", "elm"], TableEmbeddings(), ids=["a", "b"])
    assert [d.id for d in await s.asimilarity_search("oak", k=1)] == ["a"]


def test_shoal_embeddings_adapter():
    emb = ShoalEmbeddings("bloom", m=128, batch_size=2)
    vectors = emb.embed_documents(["one fish", "two fish", "red fish"])
    assert len(vectors) == 3 and len(vectors[0]) == emb.dim == 128
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert emb.embed_query("two fish") == vectors[1] and emb.embed_documents([]) == []
    from shoal.rag import BloomEmbedder

    assert ShoalEmbeddings(BloomEmbedder(m=64)).dim == 64
    with pytest.raises(shoal.InvalidArgumentError, match="constructor"):
        ShoalEmbeddings(BloomEmbedder(m=64), m=32)
    with pytest.raises(shoal.NotFoundError, match="unknown embedder"):
        ShoalEmbeddings("no-such-model")
