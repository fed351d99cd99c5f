"""The lexical half: a tantivy (Rust, Lucene-like) BM25 index over the analysed terms of each post.

Analysis happens in Python (:mod:`murmur.search.analyze`), so tantivy sees whitespace-separated
terms and does what it is good at: segments, BM25, boolean queries, fast-field filters, commits
and merges. Each document is keyed by the post's integer ``key`` (its row in the index's store).

Fields: ``key`` (u64, fast), ``terms`` (BM25 text, term frequencies, no positions), ``lang``,
``author`` and ``tags`` (raw terms for filters), ``created`` (microseconds since the epoch) and
``likes`` (i64 fast fields for range filters).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import tantivy

from murmur.search.analyze import fold

TOKENIZER = "murmur_ws"


@dataclass(frozen=True)
class Filters:
    """What a result must satisfy (all optional): the query filters of the CLI and the HTTP API."""

    lang: str | None = None
    author: str | None = None
    hashtag: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    min_likes: int | None = None

    def any(self) -> bool:
        return any(v is not None for v in (self.lang, self.author, self.hashtag, self.since_us, self.until_us,
                                           self.min_likes))


def _schema() -> tantivy.Schema:
    b = tantivy.SchemaBuilder()
    b.add_unsigned_field("key", stored=True, indexed=True, fast=True)
    b.add_text_field("terms", stored=False, tokenizer_name=TOKENIZER, index_option="freq")
    b.add_text_field("lang", tokenizer_name="raw", index_option="basic")
    b.add_text_field("author", tokenizer_name="raw", index_option="basic")
    b.add_text_field("tags", tokenizer_name="raw", index_option="basic")
    b.add_integer_field("created", indexed=True, fast=True)
    b.add_integer_field("likes", indexed=True, fast=True)
    return b.build()


class LexicalIndex:
    """A tantivy index in ``path``; ``writable`` takes the (single) writer lock."""

    def __init__(self, path: Path, writable: bool, create: bool = False, threads: int = 1):
        self.schema = _schema()
        path.mkdir(parents=True, exist_ok=True)
        self.index = tantivy.Index(self.schema, path=str(path), reuse=not create)
        self.index.register_tokenizer(TOKENIZER, tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build())
        self.writer = self.index.writer(heap_size=64_000_000 * max(threads, 1), num_threads=threads) \
            if writable else None

    # ------------------------------------------------------------------ writes
    def add(self, key: int, terms: Sequence[str], lang: str, author: str, tags: Iterable[str],
            created_us: int, likes: int) -> None:
        doc = tantivy.Document()
        doc.add_unsigned("key", key)
        doc.add_text("terms", " ".join(terms))
        doc.add_text("lang", lang or "und")
        doc.add_text("author", author or "")
        for tag in tags:
            doc.add_text("tags", fold(tag.lstrip("#")))
        doc.add_integer("created", created_us)
        doc.add_integer("likes", likes)
        self.writer.add_document(doc)

    def delete(self, key: int) -> None:
        self.writer.delete_documents_by_term("key", key)

    def delete_from(self, first_key: int) -> None:
        """Delete every document whose key is ``first_key`` or more (used before a log replay)."""
        q = tantivy.Query.range_query(self.schema, "key", tantivy.FieldType.Unsigned, lower_bound=first_key,
                                      use_inverted_index=True)
        self.writer.delete_documents_by_query(q)

    def commit(self) -> None:
        self.writer.commit()
        self.index.reload()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.wait_merging_threads()
            self.writer = None

    def reload(self) -> None:
        self.index.reload()

    # ------------------------------------------------------------------ reads
    def _term(self, field: str, value: object, option: str = "basic") -> tantivy.Query:
        return tantivy.Query.term_query(self.schema, field, value, index_option=option)

    def _filter_clauses(self, f: Filters) -> list[tuple[tantivy.Occur, tantivy.Query]]:
        must = tantivy.Occur.Must
        out = []
        if f.lang:
            out.append((must, self._term("lang", f.lang)))
        if f.author:
            out.append((must, self._term("author", f.author)))
        if f.hashtag:
            out.append((must, self._term("tags", fold(f.hashtag.lstrip("#")))))
        if f.since_us is not None or f.until_us is not None:
            out.append((must, tantivy.Query.range_query(self.schema, "created", tantivy.FieldType.Integer,
                                                        lower_bound=f.since_us, upper_bound=f.until_us)))
        if f.min_likes is not None:
            out.append((must, tantivy.Query.range_query(self.schema, "likes", tantivy.FieldType.Integer,
                                                        lower_bound=f.min_likes)))
        return [(o, tantivy.Query.const_score_query(q, 0.0)) for o, q in out]

    def search(self, groups: list[set[str]], filters: Filters, limit: int) -> list[tuple[int, float]]:
        """(key, BM25 score) of the best ``limit`` documents that match any query term and every filter."""
        if not groups:
            return []
        alternatives = []
        for group in groups:
            terms = [self._term("terms", t, "freq") for t in sorted(group)]
            alternatives.append(terms[0] if len(terms) == 1 else tantivy.Query.disjunction_max_query(terms))
        text_q = alternatives[0] if len(alternatives) == 1 else tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, q) for q in alternatives])
        clauses = self._filter_clauses(filters)
        query = tantivy.Query.boolean_query([(tantivy.Occur.Must, text_q), *clauses]) if clauses else text_q
        searcher = self.index.searcher()
        result = searcher.search(query, limit=limit, count=False)
        if not result.hits:
            return []
        keys = searcher.fast_field_values("key", [addr for _, addr in result.hits])
        return [(int(key), float(score)) for key, (score, _) in zip(keys, result.hits, strict=True)]

    def num_docs(self) -> int:
        return self.index.searcher().num_docs
