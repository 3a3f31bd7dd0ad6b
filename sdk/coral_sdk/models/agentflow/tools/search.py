"""Local document search: BM25 (rank-bm25) over a directory of text files."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rank_bm25 import BM25Okapi

from coral_sdk.models.agentflow.tools.base import ToolDemo, ToolMetadata

SHIPPED_CORPUS = Path(__file__).resolve().parent.parent / "corpus"
_WORD = re.compile(r"[a-z0-9]+")
_TEXT_SUFFIXES = (".txt", ".md")


class LuceneIdfBM25(BM25Okapi):  # type: ignore[misc]
    """Okapi BM25 with Lucene's IDF, ``log(1 + (N - n + 0.5) / (n + 0.5))``.

    rank-bm25's default IDF is zero or negative for terms in half the documents
    or more, which makes small corpora (a user's handful of notes) unsearchable.
    """

    def _calc_idf(self, nd: dict[str, int]) -> None:
        for word, freq in nd.items():
            self.idf[word] = math.log(1.0 + (self.corpus_size - freq + 0.5) / (freq + 0.5))


def tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric words; the same rule for documents and queries."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Document:
    """One searchable file: its id (relative path), title and full text."""

    doc_id: str
    title: str
    text: str


def load_corpus(directory: Path) -> list[Document]:
    """Read every .txt/.md file under ``directory``; a leading ``Title:`` line names it."""
    documents = []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.suffix not in _TEXT_SUFFIXES:
            continue
        text = path.read_text("utf-8", errors="replace").strip()
        first_line, _, rest = text.partition("\n")
        if first_line.startswith("Title:"):
            title, body = first_line.removeprefix("Title:").strip(), rest.strip()
        else:
            title, body = path.stem, text
        documents.append(Document(str(path.relative_to(directory)), title, body))
    return documents


class DocumentSearchTool:
    """Rank the documents of a local corpus against a query with BM25 (Okapi)."""

    def __init__(self, corpus_dir: Path | None = None, *, default_top_k: int = 3) -> None:
        directory = corpus_dir or SHIPPED_CORPUS
        self.documents = load_corpus(directory)
        if not self.documents:
            raise ValueError(f"no .txt or .md documents under {directory}")
        self.default_top_k = default_top_k
        self._index = LuceneIdfBM25([tokenize(f"{d.title} {d.text}") for d in self.documents])
        self.metadata = ToolMetadata(
            name="document_search",
            description=(
                "Searches a local library of reference documents with BM25 and returns the "
                "best-matching passages (title, score, text). Use it to look up facts."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "query (str) - words to look up"},
                    "top_k": {
                        "type": "integer",
                        "description": "top_k (int) - how many passages to return (default 3)",
                    },
                },
                "required": ["query"],
            },
            output_type="list - [{title, score, text}], best first",
            demo_commands=(
                ToolDemo(
                    command='execution = tool.execute(query="capital of Zarnovia")',
                    description="Find the passage that names Zarnovia's capital.",
                ),
            ),
            limitations="Only knows the documents in its corpus directory.",
        )

    def search(self, query: str, top_k: int | None = None) -> list[dict[str, Any]]:
        """Best-first passages with a positive BM25 score (empty when nothing matches)."""
        terms = tokenize(query)
        if not terms:
            return []
        scores = self._index.get_scores(terms)
        ranked = sorted(range(len(scores)), key=lambda index: -float(scores[index]))
        hits = []
        for index in ranked[: top_k or self.default_top_k]:
            if float(scores[index]) <= 0.0:
                break
            document = self.documents[index]
            hits.append(
                {
                    "doc_id": document.doc_id,
                    "title": document.title,
                    "score": round(float(scores[index]), 4),
                    "text": document.text,
                }
            )
        return hits

    async def execute(self, **arguments: Any) -> list[dict[str, Any]]:
        """Tool entry point: ``query`` and optional ``top_k``."""
        top_k = arguments.get("top_k")
        return self.search(str(arguments["query"]), int(top_k) if top_k else None)
