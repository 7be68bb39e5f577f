"""Ingest documents for retrieval-augmented generation, then search them.

Two collections: ``documents`` (one row per source text) and ``chunks`` (a
few sentences each, with a foreign key to their document, deleted with it).
Embeddings come from a small deterministic bag-of-words embedder defined
below, so the example runs anywhere, offline, in a few seconds; swap in a real
model (sentence-transformers, an API...) by replacing ``embed()`` and ``DIM``.

Run it with ``python examples/rag_ingest.py``: it uses ``$VECDB_DSN`` or
starts the embedded PostgreSQL (data kept in the user's data directory).
Running it again is harmless: collections are opened and records upserted.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import time

import numpy as np
import numpy.typing as npt

import vecdb

DIM = 256

DOCUMENTS = {
    "espresso": (
        "How to pull espresso",
        "Espresso is brewed by forcing hot water through finely ground coffee under about "
        "nine bars of pressure. A typical shot uses eighteen grams of ground coffee and "
        "yields about thirty six grams of liquid in twenty five to thirty seconds. If the "
        "shot runs too fast and tastes sour, grind the coffee finer. If it runs too slow "
        "and tastes bitter, grind coarser. Fresh beans roasted within the last few weeks "
        "give the best crema. Preheat the portafilter and the cup so the coffee does not "
        "cool too quickly.",
    ),
    "sourdough": (
        "Baking sourdough bread",
        "Sourdough bread rises with a starter of wild yeast and lactic acid bacteria instead "
        "of commercial yeast. Feed the starter with equal weights of flour and water a few "
        "hours before mixing the dough. Mix flour, water and starter, rest the dough, then "
        "add salt. Stretch and fold the dough every half hour during bulk fermentation. "
        "Shape the loaf, proof it overnight in the refrigerator, and bake it in a very hot "
        "covered pot so the steam gives a crisp crust.",
    ),
    "bicycle": (
        "Fixing a flat bicycle tyre",
        "To fix a flat bicycle tyre, remove the wheel and use tyre levers to lift one bead "
        "of the tyre off the rim. Pull out the inner tube and find the puncture by pumping "
        "it up and listening for escaping air. Check the inside of the tyre for glass or "
        "thorns that caused the flat. Patch the tube or fit a new one, seat the tyre bead, "
        "and inflate to the pressure printed on the tyre sidewall.",
    ),
    "postgres": (
        "Indexes in PostgreSQL",
        "PostgreSQL uses B-tree indexes by default; they serve equality and range queries "
        "on sortable columns. GIN indexes serve containment queries on arrays and jsonb "
        "documents. The pgvector extension adds HNSW indexes for approximate nearest "
        "neighbour search over embeddings. Run ANALYZE after a bulk load so the query "
        "planner has fresh statistics, and build large indexes concurrently so writes are "
        "not blocked.",
    ),
    "tomatoes": (
        "Growing tomatoes",
        "Tomatoes need at least six hours of direct sun and warm soil. Plant seedlings "
        "deeply, burying part of the stem, because tomatoes grow roots along the buried "
        "stem. Water deeply and regularly at the base of the plant to prevent cracked "
        "fruit and blossom end rot. Stake or cage the plants early and pinch out side "
        "shoots on cordon varieties so energy goes into the fruit.",
    ),
}

_STOP = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "give", "gives", "in",
        "into", "is", "it", "its", "of", "off", "on", "one", "or", "so", "than", "that", "the",
        "then", "them", "they", "this", "to", "too", "up", "use", "uses", "with", "within", "you",
        "your", "how", "what", "which", "when", "does", "do", "i", "my", "should",
    }
)  # fmt: skip


def _tokens(text: str) -> list[str]:
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP]
    # A crude stemmer: enough to match "roots" with "root", "grinding" with "grind".
    stems = [re.sub(r"(ing|ed|es|s)$", "", w) if len(w) > 4 else w for w in words]
    return stems + [f"{a}_{b}" for a, b in itertools.pairwise(stems)]


def embed(text: str) -> npt.NDArray[np.float32]:
    """A deterministic hashing bag-of-words embedding (signed feature hashing, log tf)."""
    vector = np.zeros(DIM, dtype=np.float32)
    for token in _tokens(text):
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % DIM
        sign = 1.0 if digest[4] & 1 else -1.0
        vector[index] += sign * (0.5 if "_" in token else 1.0)  # bigrams count half
    vector = np.sign(vector) * np.log1p(np.abs(vector))
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def chunk_text(text: str, sentences_per_chunk: int = 2) -> list[str]:
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    return [
        " ".join(sentences[i : i + sentences_per_chunk])
        for i in range(0, len(sentences), sentences_per_chunk)
    ]


class Document(vecdb.Record):
    id: str
    title: str
    words: int
    embedding: vecdb.Vector


class Chunk(vecdb.Record):
    id: int
    doc_id: str
    position: int
    text: str
    embedding: vecdb.Vector


async def main() -> None:
    started = time.perf_counter()
    async with vecdb.connect() as db:
        documents = await db.collection("rag_documents", Document, dim=DIM, metric="cosine")
        chunks = await db.collection(
            "rag_chunks",
            Chunk,
            dim=DIM,
            metric="cosine",
            filterable=("doc_id",),
            foreign_keys={"doc_id": vecdb.ForeignKey("rag_documents", on_delete="cascade")},
        )

        await documents.upsert(
            Document(id=key, title=title, words=len(body.split()), embedding=embed(body))
            for key, (title, body) in DOCUMENTS.items()
        )
        rows = []
        for n, (key, (_title, body)) in enumerate(DOCUMENTS.items()):
            for position, text in enumerate(chunk_text(body)):
                rows.append(
                    Chunk(
                        id=n * 1000 + position,
                        doc_id=key,
                        position=position,
                        text=text,
                        embedding=embed(text),
                    )
                )
        written = await chunks.upsert(rows)
        print(f"{await documents.count()} documents, {written} chunks written")

        questions = [
            "my espresso shot tastes sour, what should I change?",
            "what kind of index serves queries on jsonb and arrays?",
            "where do I find the right pressure to inflate a tyre?",
            "why bury the stem when planting tomato seedlings?",
        ]
        for question in questions:
            hits = await chunks.search(embed(question), k=2)
            print(f"\nQ: {question}")
            for hit in hits:
                print(f"  {hit.distance:.3f}  [{hit.record.doc_id}] {hit.record.text[:90]}...")

        # The same question, restricted to one document by a filter.
        hits = await chunks.search(
            embed("how long should it rest or proof?"), k=2, where={"doc_id": "sourdough"}
        )
        print("\nQ: how long should it rest or proof?  (only in 'sourdough')")
        for hit in hits:
            print(f"  {hit.distance:.3f}  {hit.record.text[:90]}...")

        # Deleting a document deletes its chunks: the foreign key cascades.
        before = await chunks.count(where={"doc_id": "tomatoes"})
        await documents.delete(["tomatoes"])
        after = await chunks.count(where={"doc_id": "tomatoes"})
        print(f"\ndeleted document 'tomatoes': its chunks went from {before} to {after}")

    print(f"done in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    asyncio.run(main())
