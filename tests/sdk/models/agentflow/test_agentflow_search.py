"""BM25 document search over the shipped corpus and over a user's directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from coral_sdk.models.agentflow import InvalidToolCommand, Toolbox
from coral_sdk.models.agentflow.tools.search import SHIPPED_CORPUS, DocumentSearchTool, load_corpus


def test_shipped_corpus_has_a_few_dozen_titled_documents() -> None:
    documents = load_corpus(SHIPPED_CORPUS)
    assert 30 <= len(documents) <= 60
    assert all(document.title and document.text for document in documents)


@pytest.mark.parametrize(
    ("query", "best_title"),
    [
        ("capital of Belmora", "Belmora"),
        ("What is the population of Zarnovia plus 120?", "Zarnovia"),
        ("who invented the Brightwater lamp", "The Brightwater Lamp"),
        ("thirteen months of twenty-eight days", "The Tide Calendar"),
    ],
)
def test_best_hit_is_the_document_about_the_query(query: str, best_title: str) -> None:
    hits = DocumentSearchTool().search(query)
    assert hits[0]["title"] == best_title
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0


def test_unrelated_or_empty_queries_find_nothing() -> None:
    tool = DocumentSearchTool()
    assert tool.search("xylophone quasar") == []
    assert tool.search("?!") == []


async def test_user_corpus_directory_and_top_k(tmp_path: Path) -> None:
    (tmp_path / "nested").mkdir()
    (tmp_path / "a.txt").write_text("Title: Apples\n\nApples are red or green fruit.")
    (tmp_path / "nested" / "b.md").write_text("Bananas are long yellow fruit.")
    (tmp_path / "ignored.bin").write_bytes(b"\x00fruit")
    tool = DocumentSearchTool(tmp_path)
    assert [document.doc_id for document in tool.documents] == ["a.txt", "nested/b.md"]
    hits = await tool.execute(query="yellow fruit", top_k=1)
    assert [hit["title"] for hit in hits] == ["b"]


async def test_toolbox_validates_arguments_against_the_schema() -> None:
    box = Toolbox.of([DocumentSearchTool()])
    with pytest.raises(InvalidToolCommand, match="missing"):
        await box.execute("document_search", {}, timeout_s=5)
    with pytest.raises(InvalidToolCommand, match="unknown"):
        await box.execute("document_search", {"query": "x", "url": "y"}, timeout_s=5)
    with pytest.raises(InvalidToolCommand, match="must be integer"):
        await box.execute("document_search", {"query": "x", "top_k": "3"}, timeout_s=5)


def test_empty_corpus_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no \.txt or \.md"):
        DocumentSearchTool(tmp_path)
