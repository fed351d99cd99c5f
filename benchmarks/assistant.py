"""Quality of the assistant against a demo world's ground truth: tool-call validity (auto vs forced),
and for answers with citations, citation precision (cited posts on the question's topic), citation
recall (answers citing at least one post on the topic) and answer language = question language,
per language. Writes the ``assistant`` section of docs/benchmarks.md.

    python benchmarks/assistant.py --model RUN_DIR [--users 150] [--topics 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import write_section  # noqa: E402
from murmur.chat.template import render  # noqa: E402
from murmur.chat.tools import forced_call, forced_ids, parse_output  # noqa: E402
from murmur.engine import Engine, SamplingParams  # noqa: E402
from murmur.search.answer import CITE, Answerer, AnswerRequest, question_lang  # noqa: E402
from murmur.search.tool import SEARCH_POSTS  # noqa: E402

QUESTION = {"en": "What are people saying about {}?", "es": "¿Qué dice la gente sobre {}?"}


def build(root: Path, users: int) -> tuple[Path, Path]:
    from murmur.data.clean import clean
    from murmur.data.sources import ingest
    from murmur.search.index import build_index
    from murmur.world.generate import WorldConfig, generate_world

    generate_world(root / "world", WorldConfig(users=users, seed=3), progress=False)
    ingest([str(root / "world")], root / "posts.parquet", progress=False)
    clean(root / "posts.parquet", root / "clean.parquet")
    build_index(root / "clean.parquet", root / "idx", None, progress=False)
    return root / "world", root / "idx"


def tool_validity(engine: Engine, questions: list[str]) -> dict[str, float]:
    tools = {"search_posts": SEARCH_POSTS["function"]["parameters"]}
    tok = engine.tokenizer
    auto = forced = 0
    for i, q in enumerate(questions):
        prompt = render(tok, [{"role": "user", "content": q}], tools=[SEARCH_POSTS])
        params = SamplingParams(max_tokens=32, temperature=0.7, seed=i)
        done = engine.generate(prompt, params)
        parsed = parse_output(lambda ids: tok.decode(ids, skip_special=True), done.token_ids, tools)
        auto += bool(parsed.calls) and parsed.error is None
        fprompt, proc = forced_call(tok, prompt, tools)
        done = engine.generate(fprompt, dataclasses.replace(params, max_tokens=None, logits_processor=proc))
        parsed = parse_output(lambda ids: tok.decode(ids, skip_special=True), forced_ids(done.token_ids), tools)
        forced += bool(parsed.calls) and parsed.error is None
    return {"auto": auto / len(questions), "forced": forced / len(questions)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--users", type=int, default=150)
    ap.add_argument("--topics", type=int, default=8)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--label", default=None, help="How to name the model in the report.")
    args = ap.parse_args()

    import murmur.world.text as wt
    from murmur.search.index import SearchIndex
    from murmur.world.truth import load_truth

    with tempfile.TemporaryDirectory() as tmp:
        world, idx = build(Path(tmp), args.users)
        truth = load_truth(world)
        engine = Engine.from_run_dir(args.model).start()
        t0 = time.perf_counter()
        try:
            qs = [(lang, name, QUESTION[lang].format(wt.TOPICS[name].nouns[lang][0]))
                  for name in wt.TOPIC_NAMES[:args.topics] for lang in ("en", "es")]
            validity = tool_validity(engine, [q for _, _, q in qs])
            rows = {}
            with SearchIndex(idx, writable=False) as ix:
                answerer = Answerer(ix)
                for lang, topic, q in qs:
                    out = answerer.answer(engine, AnswerRequest(q, k=args.k, max_tokens=96, seed=0))
                    ret = answerer.retrieve(AnswerRequest(q, k=args.k))
                    r = rows.setdefault(lang, {"n": 0, "cited": 0, "cited_ok": 0, "recall": 0, "lang": 0,
                                               "retrieved_ok": 0, "retrieved": 0, "qlang": 0})
                    on_topic = [truth.post(c["post_id"]).topic == topic for c in out["citations"]]
                    r["n"] += 1
                    r["cited"] += len(on_topic)
                    r["cited_ok"] += sum(on_topic)
                    r["recall"] += any(on_topic)
                    r["lang"] += out["lang"] == lang
                    r["qlang"] += question_lang(q) == lang
                    r["retrieved"] += len(ret)
                    r["retrieved_ok"] += sum(truth.post(p["post_id"]).topic == topic for p in ret)
                    assert all(1 <= int(n) <= args.k for n in CITE.findall(out["answer"]))
        finally:
            engine.stop()
        seconds = time.perf_counter() - t0
    label = args.label or args.model.name
    lines = ["## Assistant: tool calls and cited answers", "",
             f"Model: {label}. World: {args.users} users (seed 3), {args.topics} topics x (en, es) questions, "
             f"k={args.k}. Machine: {platform.machine()}, {platform.system()}; {seconds:.0f} s. Figures from one run "
             "on a shared machine; small samples.", "",
             "| tool-call validity | auto | forced (tool_choice) |", "|---|---|---|",
             f"| well-formed `search_posts` calls | {validity['auto']:.0%} | {validity['forced']:.0%} |", "",
             "| lang | questions | retrieved on topic | citation precision | citation recall | answer lang = question |",
             "|---|---|---|---|---|---|"]
    for lang, r in rows.items():
        prec = f"{r['cited_ok'] / r['cited']:.0%}" if r["cited"] else "- (no citations)"
        lines.append(f"| {lang} | {r['n']} | {r['retrieved_ok'] / max(r['retrieved'], 1):.0%} | {prec} | "
                     f"{r['recall'] / r['n']:.0%} | {r['lang'] / r['n']:.0%} |")
    body = "\n".join(lines)
    print(body)
    print(json.dumps({"validity": validity, "rows": rows}))
    write_section("assistant", body)


if __name__ == "__main__":
    main()
