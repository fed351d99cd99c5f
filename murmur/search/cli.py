"""``murmur search ...``: build, query and evaluate a search index (thin over the library)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

search_app = typer.Typer(help="Search over posts: build a hybrid (BM25 + dense) index, query it, evaluate it.",
                         no_args_is_help=True)


@search_app.command("index")
def index_cmd(
    src: Annotated[Path, typer.Argument(help="Clean posts Parquet (`murmur data clean`).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Index directory (replaced atomically).")],
    embedder: Annotated[Path | None, typer.Option("--embedder", help="Embedder directory (default: the packaged "
                                                                     "all-MiniLM-L6-v2).")] = None,
    lexical_only: Annotated[bool, typer.Option("--lexical-only", help="No embeddings: BM25 only.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing index in --out.")] = False,
    lang_graph_min_posts: Annotated[int | None, typer.Option(
        "--lang-graph-min-posts", min=0, help="A language with at least this many posts gets an HNSW graph of its "
                                              "own, for filters on it (default 50,000; 0: none).")] = None,
) -> None:
    """Index every post of a clean Parquet file: BM25 terms, embeddings, an HNSW graph."""
    from murmur.search.dense import GraphConfig
    from murmur.search.embed import load_embedder
    from murmur.search.index import build_index

    emb = None if lexical_only else load_embedder(embedder)
    graphs = GraphConfig() if lang_graph_min_posts is None else GraphConfig(lang_min_posts=lang_graph_min_posts)
    typer.echo(build_index(src, out, emb, overwrite=overwrite, graphs=graphs).describe())


@search_app.command("query")
def query_cmd(
    index_dir: Annotated[Path, typer.Argument(help="Index directory (`murmur search index`).")],
    q: Annotated[str, typer.Argument(help="The query.")],
    mode: Annotated[str, typer.Option(help="lexical | dense | hybrid")] = "hybrid",
    k: Annotated[int, typer.Option("--k", help="Results.")] = 10,
    lang: Annotated[str | None, typer.Option(help="Only posts in this language (en, es, ...).")] = None,
    author: Annotated[str | None, typer.Option(help="Only posts by this author id.")] = None,
    since: Annotated[str | None, typer.Option(help="Only posts at or after this ISO date/time.")] = None,
    until: Annotated[str | None, typer.Option(help="Only posts at or before this ISO date/time.")] = None,
    hashtag: Annotated[str | None, typer.Option(help="Only posts with this hashtag.")] = None,
    min_likes: Annotated[int | None, typer.Option("--min-likes", help="Only posts with at least this many likes.")
                         ] = None,
    sort: Annotated[str, typer.Option(help="relevance | recent")] = "relevance",
    as_json: Annotated[bool, typer.Option("--json", help="Print the HTTP API's JSON object.")] = False,
    embedder: Annotated[Path | None, typer.Option("--embedder", help="Embedder directory (default: the index's).")
                        ] = None,
) -> None:
    """Query an index (read-only, so it works beside a running server)."""
    from murmur.search.embed import load_embedder
    from murmur.search.index import SearchIndex
    from murmur.search.retrieve import make_request, result_list

    req = make_request(q, mode=mode, k=k, lang=lang, author=author, hashtag=hashtag, since=since, until=until,
                       min_likes=min_likes, sort=sort)
    with SearchIndex(index_dir, embedder=load_embedder(embedder) if embedder else None, writable=False) as index:
        results = index.search(req)
    if as_json:
        typer.echo(json.dumps(result_list(results), ensure_ascii=False))
        return
    for i, r in enumerate(results, 1):
        text = r["text"].replace("\n", " ")
        typer.echo(f"{i:2d}. {r['score']:.4f}  {r['created_at'][:16]}  {r['lang']}  {text[:120]}")


@search_app.command("eval")
def eval_cmd(
    index_dir: Annotated[Path, typer.Argument(help="Index directory over a demo world's clean posts.")],
    truth: Annotated[Path, typer.Option("--truth", help="The world directory (its truth/ and world.json).")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="JSON report (default: INDEX_DIR/eval.json).")
                   ] = None,
) -> None:
    """nDCG@10, recall@100 and MRR per mode and language, on queries drawn from the world's topics."""
    from murmur.search.eval import evaluate, format_report, write_report
    from murmur.search.index import SearchIndex

    with SearchIndex(index_dir, writable=False) as index:
        report = evaluate(index, truth)
    typer.echo(format_report(report))
    target = out or index_dir / "eval.json"
    write_report(report, target)
    typer.echo(f"report: {target}")
