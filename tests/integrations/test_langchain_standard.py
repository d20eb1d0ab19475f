"""LangChain's own standard vector-store suite (``langchain_tests``), sync and async, embedded and served."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

from shoal.integrations.langchain import ShoalVectorStore  # noqa: E402

from langchain_tests.integration_tests.vectorstores import EMBEDDING_SIZE  # noqa: E402


class TestEmbeddedStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, make_collection) -> Iterator[ShoalVectorStore]:
        yield ShoalVectorStore(self.get_embeddings(), make_collection("embedded", EMBEDDING_SIZE))


class TestServedStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, make_collection) -> Iterator[ShoalVectorStore]:
        yield ShoalVectorStore(self.get_embeddings(), make_collection("served", EMBEDDING_SIZE))
