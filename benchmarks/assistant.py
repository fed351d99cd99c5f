"""Quality of the assistant against a demo world's ground truth: tool-call validity (auto vs forced),
and for answers with citations, citation precision (cited posts on the question's topic), citation
recall (answers citing at least one post on the topic) and answer language = question language,
per language. Writes the ``assistant`` section of docs/benchmarks.md.

Drafts (``--parts drafts``): for each topic and language, a post drafted on the topic's first noun
phrase; the rules each candidate keeps before filtering and each returned variant after it (checked
again here, independently), and topic match against the world's truth: a draft's topic is the most
common true topic of the posts a lexical search finds for it (for the whole draft, and for the draft
without the request's own words, so that copying the topic phrase is not enough). Replies to posts
of the index are matched against the parent's topic. Writes the ``drafts`` section.

Voice (``--parts drafts,voice``): posts drafted in an author's voice, scored against the author's own
unseen posts (author identification by character n-gram profile, similarity margin, the author's
interests in the world's truth, language), beside the same requests without a voice and the author's
own next post. Written under the drafts section.

Several models (``--model A --label a --model B --label b``) and drafter prompts (``--prompts
chat,post``) are measured in one run, one table row each, on the same world and requests.

    python benchmarks/assistant.py --model RUN_DIR [--label NAME] [--model RUN_DIR2 --label NAME2]
        [--users 150] [--topics 8] [--parts answers,drafts] [--prompts chat,post] [--world DIR --index DIR]
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
from murmur.chat.template import TOOL_CALL_ID, render, tools_text  # noqa: E402
from murmur.chat.tools import call_room, forced_call, forced_ids, parse_output  # noqa: E402
from murmur.data.normalize import scrub_pii, tweet_length  # noqa: E402
from murmur.engine import Engine, SamplingParams  # noqa: E402
from murmur.search.answer import CITE, Answerer, AnswerRequest, question_lang  # noqa: E402
from murmur.search.drafts import DraftConfig, Drafter, check_request, max_jaccard, text_lang  # noqa: E402
from murmur.search.tool import SEARCH_POSTS  # noqa: E402

QUESTION = {"en": "What are people saying about {}?", "es": "¿Qué dice la gente sobre {}?"}
NO_SEARCH = {"en": ["Who are you?", "Write a post about {}."], "es": ["¿Quién eres?", "Escribe una publicación sobre {}."]}


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


def tool_validity(engine: Engine, questions: list[str], others: list[str] = ()) -> dict[str, float]:
    """Shares of well-formed ``search_posts`` calls, on its own and forced; ``prompt`` is the longest
    prompt's tokens (the tool list is most of it), against the model's ``context``, and ``schema`` what
    the same prompt would take with the tool list as its whole JSON schema (the peer rendering). A call
    cut short by the end of the context counts as malformed; a forced call runs under the budget the
    server gives it (the room the prompt leaves). ``unneeded``: the share of ``others`` (requests no
    search answers: who the model is, a post to write) for which the model calls the tool anyway."""
    tools = {"search_posts": SEARCH_POSTS["function"]["parameters"]}
    tok = engine.tokenizer
    auto = forced = longest = 0
    schema = len(tok.encode("Tools: " + json.dumps([SEARCH_POSTS], ensure_ascii=False))) - \
        len(tok.encode(tools_text([SEARCH_POSTS])))
    for i, q in enumerate(questions):
        prompt = render(tok, [{"role": "user", "content": q}], tools=[SEARCH_POSTS])
        longest = max(longest, len(prompt))
        room = engine.max_len - len(prompt)
        if room < call_room(tools):
            continue
        params = SamplingParams(max_tokens=min(64, room), temperature=0.7, seed=i)
        done = engine.generate(prompt, params)
        parsed = parse_output(lambda ids: tok.decode(ids, skip_special=True), done.token_ids, tools)
        auto += bool(parsed.calls) and parsed.error is None
        fprompt, proc = forced_call(tok, prompt, tools, room - 1)
        done = engine.generate(fprompt, dataclasses.replace(params, max_tokens=room - 1, logits_processor=proc))
        parsed = parse_output(lambda ids: tok.decode(ids, skip_special=True), forced_ids(done.token_ids), tools)
        forced += bool(parsed.calls) and parsed.error is None
    unneeded = 0
    for i, q in enumerate(others):
        prompt = render(tok, [{"role": "user", "content": q}], tools=[SEARCH_POSTS])
        done = engine.generate(prompt, SamplingParams(max_tokens=min(64, engine.max_len - len(prompt)),
                                                      temperature=0.7, seed=i))
        unneeded += TOOL_CALL_ID in done.token_ids
    return {"auto": auto / len(questions), "forced": forced / len(questions), "prompt": longest,
            "schema": longest + schema, "context": engine.max_len,
            "unneeded": unneeded / len(others) if others else None, "others": len(others)}


def nearest_topic(drafter: Drafter, truth, text: str, k: int = 10) -> str | None:
    """The most common true topic of the index posts a lexical search finds for ``text``."""
    from collections import Counter

    hits = drafter.search(text, k) if text.strip() else []
    topics = [t for t in truth.topics_of([h["post_id"] for h in hits]) if t]
    return Counter(topics).most_common(1)[0][0] if topics else None


def without(text: str, words: str) -> str:
    """``text`` without the request's ``words`` (case-insensitive)."""
    import re

    return re.sub(re.escape(words), " ", text, flags=re.IGNORECASE)


def draft_quality(engine: Engine, ix, truth, topics: list[str], n: int = 4, replies: int = 4,
                  prompt: str = "chat") -> dict:
    """Per language: candidates, rule rates before filtering, returned variants and their re-checked
    rules, topic match of drafts (whole, without the request's words) and of replies."""
    import murmur.world.text as wt

    drafter = Drafter(ix, DraftConfig(prompt=prompt))
    rows: dict[str, dict] = {}

    def row(lang: str) -> dict:
        return rows.setdefault(lang, {"requests": 0, "candidates": 0, "cand_ok": 0, "dropped": {}, "returned": 0,
                                      "ret_ok": 0, "topic_ok": 0, "cont_ok": 0, "cand_topic_ok": 0, "replies": 0,
                                      "reply_returned": 0, "reply_topic_ok": 0, "short": 0})

    def recheck(text: str, lang: str) -> bool:
        near = [p["text"] for p in drafter.search(text, 10)]
        return (tweet_length(text) <= 280 and text_lang(text) == lang and scrub_pii(text)[0] == text
                and max_jaccard(text, near) < 0.8)

    for i, name in enumerate(topics):
        for lang in ("en", "es"):
            phrase = wt.TOPICS[name].nouns[lang][0]
            req, ctx = drafter.resolve(check_request({"topic": phrase, "lang": lang, "n": n, "seed": i}))
            cands = drafter.candidates(engine, req, ctx)
            out = drafter.select(req, ctx, cands)
            r = row(lang)
            r["requests"] += 1
            r["candidates"] += len(cands)
            bad = sum(v for k, v in out["filtered"].items() if k != "duplicate")
            r["cand_ok"] += len(cands) - bad
            for k, v in out["filtered"].items():
                r["dropped"][k] = r["dropped"].get(k, 0) + v
            r["cand_topic_ok"] += sum(nearest_topic(drafter, truth, t) == name for t, _ in cands)
            r["returned"] += len(out["data"])
            r["short"] += len(out["data"]) < n
            for d in out["data"]:
                r["ret_ok"] += recheck(d["text"], lang)
                r["topic_ok"] += nearest_topic(drafter, truth, d["text"]) == name
                r["cont_ok"] += nearest_topic(drafter, truth, without(d["text"], phrase)) == name
    for lang in ("en", "es"):   # replies to on-topic posts of the index
        parents = []
        for name in topics:   # the best on-topic hit for each topic's first noun phrase
            hits = drafter.search(wt.TOPICS[name].nouns[lang][0], 20, lang)
            parents += [(p, name) for p, t in zip(hits, truth.topics_of([p["post_id"] for p in hits]), strict=True)
                        if t == name][:1]
        for j, (p, topic) in enumerate(parents[:replies]):
            out = drafter.draft(engine, check_request({"kind": "reply", "reply_to": p["post_id"], "n": 2, "seed": j}))
            r = row(lang)
            r["replies"] += 1
            r["reply_returned"] += len(out["data"])
            r["reply_topic_ok"] += sum(nearest_topic(drafter, truth, d["text"]) == topic for d in out["data"])
    return rows


VOICE_OPENING = {"en": "Today", "es": "Hoy"}
UNSEEN = 4   # an author's posts after the prompt's, kept out of the profile: the ceiling   # a neutral opening: the voice, not the topic, has to carry it


def voice_authors(drafter: Drafter, truth, count: int, min_posts: int = 12) -> list[tuple[str, str]]:
    """(author, main language) of the ``count`` human accounts with the most indexed posts (at least
    ``min_posts``), half English and half Spanish where the world has them."""
    from collections import Counter

    users = truth.users.select(["user_id", "kind", "posts"]).to_pylist()
    users.sort(key=lambda u: (-u["posts"], u["user_id"]))
    by_lang: dict[str, list[tuple[str, str]]] = {"en": [], "es": []}
    for u in users:
        if u["kind"] != "human":
            continue
        posts = drafter.recent_posts(u["user_id"], 200)
        if len(posts) >= min_posts:
            lang = Counter(p["lang"] for p in posts).most_common(1)[0][0]
            by_lang.setdefault(lang, []).append((u["user_id"], lang))
    es = by_lang["es"][:count // 2]
    return by_lang["en"][:count - len(es)] + es


def voice_quality(engine: Engine, ix, truth, authors: list[tuple[str, str]], n: int = 4, prompt: str = "post"
                  ) -> dict[str, dict]:
    """Voice adherence: for each author, ``n`` drafts in their voice (opening "Today"/"Hoy", their
    language) and ``n`` without a voice (the same request), scored against the author's own posts that
    were not shown in the prompt: author identification (top-1 among the authors by cosine to each
    author's character 2-4-gram TF-IDF centroid, the classic authorship-attribution profile), the
    similarity margin (own centroid minus the mean of the others'), whether the draft's nearest topic
    is one of the author's interests in the world's truth, and its language. The author's own next
    ``UNSEEN`` posts (not shown, not in the profile) are the ceiling, scored the same way."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    drafter = Drafter(ix, DraftConfig(prompt=prompt))
    shown = drafter.cfg.context_posts
    posts = {a: drafter.recent_posts(a, 200) for a, _ in authors}
    held = {a: [p["text"] for p in posts[a][shown:shown + UNSEEN]] for a, _ in authors}   # newest not shown
    profiles = {a: [p["text"] for p in posts[a][shown + UNSEEN:]] for a, _ in authors}
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    vec.fit([t for texts in profiles.values() for t in texts])
    cents = np.vstack([np.asarray(vec.transform(profiles[a]).mean(axis=0)) for a, _ in authors])
    cents /= np.linalg.norm(cents, axis=1, keepdims=True) + 1e-12
    rows: dict[str, dict] = {}

    def score(kind: str, i: int, author: str, lang: str, text: str) -> None:
        r = rows.setdefault(kind, {"texts": 0, "identified": 0, "margin": 0.0, "interest": 0, "lang": 0})
        sims = cents @ np.asarray(vec.transform([text]).todense()).ravel()
        r["texts"] += 1
        r["identified"] += int(np.argmax(sims)) == i
        r["margin"] += float(sims[i] - np.delete(sims, i).mean())
        r["interest"] += nearest_topic(drafter, truth, text) in truth.interests(author)
        r["lang"] += text_lang(text) == lang

    for i, (author, lang) in enumerate(authors):
        for text in held[author]:
            score("the author's own unseen posts", i, author, lang, text)
        for kind, voice in (("voice drafts", author), ("drafts without a voice", None)):
            body = {"topic": VOICE_OPENING[lang], "lang": lang, "n": n, "seed": i, **({"voice": voice} if voice else {})}
            for d in drafter.draft(engine, check_request(body))["data"]:
                score(kind, i, author, lang, d["text"])
    return rows


def voice_section(runs: dict[str, dict], authors: list[tuple[str, str]], n: int, seconds: float) -> str:
    langs = ", ".join(f"{sum(lg == x for _, lg in authors)} {x}" for x in ("en", "es"))
    lines = ["### Drafts in an author's voice", "",
             f"{len(authors)} authors ({langs}: the human accounts with the most indexed posts); for each, a post "
             f"drafted in their voice (`voice`, n={n}, opening \"Today\" / \"Hoy\", their language) and the same request "
             "without a voice. Each returned draft is scored against the author's own posts the prompt did not show: "
             "identified as the author (top-1 among the authors by cosine to each author's character 2-4-gram TF-IDF "
             f"profile; chance {1 / len(authors):.0%}), the similarity margin (own profile minus the mean of the others'), "
             "its nearest topic one of the author's interests in the world's truth, and the author's language. The "
             f"author's own next {UNSEEN} posts (not shown, not in the profile) are the ceiling. {seconds:.0f} s.", "",
             "| model / prompt | texts | identified as the author | similarity margin | on one of the author's interests "
             "| in the author's language |", "|---|---|---|---|---|---|"]
    ceiling = None
    for run, rows in runs.items():
        for kind, r in rows.items():
            row = (f"{r['texts']} | {r['identified'] / max(r['texts'], 1):.0%} | {r['margin'] / max(r['texts'], 1):+.3f} "
                   f"| {r['interest'] / max(r['texts'], 1):.0%} | {r['lang'] / max(r['texts'], 1):.0%} |")
            if kind.startswith("the author's"):
                ceiling = f"| {kind} | {row}"
            else:
                lines.append(f"| {run}: {kind} | {row}")
    return "\n".join(lines + ([ceiling] if ceiling else []))


def drafts_section(runs: dict[str, dict], n: int, topics: int, seconds: float, users: str,
                   notes: list[str] = ()) -> str:
    """The drafts section: one row per (model / prompt, language) of ``runs``."""
    import murmur.world.text as wt

    def pct(a: int, b: int) -> str:
        return f"{a / b:.0%}" if b else "-"

    lines = ["## Drafts: rules and topic match", "",
             f"World: {users}, {topics} topics x (en, es), one post request each (n={n}, "
             f"{n * 3} candidates), plus replies to indexed posts. Machine: {platform.machine()}, {platform.system()}; "
             f"{seconds:.0f} s. One run on a shared machine; small samples. Topic match by chance: "
             f"{1 / len(wt.TOPIC_NAMES):.0%} ({len(wt.TOPIC_NAMES)} topics).", *notes, "",
             "| model / prompt | lang | requests | candidates keeping every rule (before filtering) | dropped (too long / "
             "wrong lang / PII / near-dup / empty) | returned of asked | returned keeping every rule (re-checked) | "
             "topic match: candidates | topic match: returned | topic match: returned without the request's words | "
             "replies: returned | replies on the parent's topic |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run, rows in runs.items():
        for lang, r in rows.items():
            lines.append(f"| {run} | " + _draft_row(lang, r, n, pct))
    return "\n".join(lines)


def _draft_row(lang: str, r: dict, n: int, pct) -> str:
    d = r["dropped"]
    return (f"{lang} | {r['requests']} | {pct(r['cand_ok'], r['candidates'])} of {r['candidates']} | "
            f"{d.get('too_long', 0)} / {d.get('wrong_lang', 0)} / {d.get('pii', 0)} / {d.get('near_duplicate', 0)}"
            f" / {d.get('empty', 0)} | {r['returned']} of {r['requests'] * n} | {pct(r['ret_ok'], r['returned'])} | "
            f"{pct(r['cand_topic_ok'], r['candidates'])} | {pct(r['topic_ok'], r['returned'])} | "
            f"{pct(r['cont_ok'], r['returned'])} | {r['reply_returned']} of {r['replies'] * 2} | "
            f"{pct(r['reply_topic_ok'], r['reply_returned'])} |")


def answer_quality(engine: Engine, ix, truth, topics: list[str], k: int) -> tuple[dict, dict]:
    """(tool-call validity, per-language rows of citation precision / recall and answer language)."""
    import murmur.world.text as wt

    qs = [(lang, name, QUESTION[lang].format(wt.TOPICS[name].nouns[lang][0])) for name in topics for lang in ("en", "es")]
    others = [t.format(wt.TOPICS[name].nouns[lang][0]) for name in topics for lang in ("en", "es")
              for t in NO_SEARCH[lang]]
    validity = tool_validity(engine, [q for _, _, q in qs], others)
    rows: dict[str, dict] = {}
    answerer = Answerer(ix)
    for lang, topic, q in qs:
        out = answerer.answer(engine, AnswerRequest(q, k=k, max_tokens=96, seed=0))
        ret = answerer.retrieve(AnswerRequest(q, k=k))
        r = rows.setdefault(lang, {"n": 0, "cited": 0, "cited_ok": 0, "recall": 0, "lang": 0, "retrieved_ok": 0,
                                   "retrieved": 0, "qlang": 0, "relevant": 0})
        on_topic = [truth.post(c["post_id"]).topic == topic for c in out["citations"]]
        r["n"] += 1
        r["cited"] += len(on_topic)
        r["cited_ok"] += sum(on_topic)
        r["recall"] += any(on_topic)
        r["lang"] += out["lang"] == lang
        r["qlang"] += question_lang(q) == lang
        r["retrieved"] += len(ret)
        r["retrieved_ok"] += sum(truth.post(p["post_id"]).topic == topic for p in ret)
        r["relevant"] += any(truth.post(p["post_id"]).topic == topic for p in ret)
        assert all(1 <= int(n) <= k for n in CITE.findall(out["answer"]))
    return validity, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, action="append", help="A model run directory (repeatable).")
    ap.add_argument("--label", action="append", default=None, help="How to name each --model in the report.")
    ap.add_argument("--users", type=int, default=150)
    ap.add_argument("--topics", type=int, default=8)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--n", type=int, default=4, help="Draft variants asked per request.")
    ap.add_argument("--parts", default="answers,drafts,voice",
                    help="What to measure: answers, drafts, voice (drafts in an author's voice; with drafts).")
    ap.add_argument("--voices", type=int, default=12, help="Authors whose voice is drafted (half en, half es).")
    ap.add_argument("--prompts", default="post", help="Drafter prompts to measure: post, chat or both.")
    ap.add_argument("--world", type=Path, default=None, help="An existing world (with --index) instead of a new one.")
    ap.add_argument("--index", type=Path, default=None, help="The search index of --world.")
    ap.add_argument("--note", action="append", default=[], help="A sentence about the models for the report.")
    ap.add_argument("--no-write", action="store_true", help="Print only; leave docs/benchmarks.md alone.")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    labels = args.label or [m.name for m in args.model]
    if len(labels) != len(args.model):
        ap.error("give one --label per --model (or none)")

    import murmur.world.text as wt
    from murmur.search.index import SearchIndex
    from murmur.world.truth import load_truth

    topics = list(wt.TOPIC_NAMES[:args.topics])
    drafts: dict[str, dict] = {}
    voices: dict[str, dict] = {}
    authors: list[tuple[str, str]] = []
    answers: dict[str, tuple[dict, dict]] = {}
    seconds = {"drafts": 0.0, "answers": 0.0, "voice": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        world, idx = (args.world, args.index) if args.world else build(Path(tmp), args.users)
        truth = load_truth(world)
        users = f"{truth.config.get('users', '?')} users (seed {truth.config.get('seed', '?')})"
        with SearchIndex(idx, writable=False) as ix:
            for model, label in zip(args.model, labels, strict=True):
                engine = Engine.from_run_dir(model).start()
                try:
                    if "drafts" in parts:
                        for prompt in args.prompts.split(","):
                            t0 = time.perf_counter()
                            drafts[f"{label} / {prompt}"] = draft_quality(engine, ix, truth, topics, args.n,
                                                                          prompt=prompt)
                            print(json.dumps({f"{label} / {prompt}": drafts[f"{label} / {prompt}"]}), flush=True)
                            seconds["drafts"] += time.perf_counter() - t0
                    if "voice" in parts:
                        authors = voice_authors(Drafter(ix), truth, args.voices)
                        for prompt in args.prompts.split(","):
                            t0 = time.perf_counter()
                            voices[f"{label} / {prompt}"] = voice_quality(engine, ix, truth, authors, args.n, prompt)
                            print(json.dumps({f"{label} / {prompt}": voices[f"{label} / {prompt}"]}), flush=True)
                            seconds["voice"] += time.perf_counter() - t0
                    if "answers" in parts:
                        t0 = time.perf_counter()
                        answers[label] = answer_quality(engine, ix, truth, topics, args.k)
                        print(json.dumps({label: answers[label]}), flush=True)
                        seconds["answers"] += time.perf_counter() - t0
                finally:
                    engine.stop()
    print(json.dumps({"drafts": drafts, "answers": answers}))
    notes = [" ".join(args.note)] if args.note else []
    if drafts:
        body = drafts_section(drafts, args.n, args.topics, seconds["drafts"], users, notes)
        if voices:
            body += "\n\n" + voice_section(voices, authors, args.n, seconds["voice"])
        print(body)
        if not args.no_write:
            write_section("drafts", body)
    if not answers:
        return
    lines = ["## Assistant: tool calls and cited answers", "",
             f"World: {users}, {args.topics} topics x (en, es) questions \"What are people saying about "
             f"<the topic's first noun phrase>?\", k={args.k}. Citation precision: cited posts whose true topic is "
             "the question's; citation recall: answers citing at least one post on the topic (the ceiling is the "
             "share of questions whose retrieved posts hold one: the last column); answer language: the cleaner's "
             f"identifier on the answer. Machine: {platform.machine()}, {platform.system()}; {seconds['answers']:.0f} "
             "s. Figures from one run on a shared machine; small samples.", *notes, "",
             "| model | well-formed `search_posts` calls: auto | forced (tool_choice) | calls where no search is asked "
             "for | prompt with the tool list (tokens; one signature a line) / context | the same prompt with the tool "
             "list as its JSON schema |", "|---|---|---|---|---|---|"]
    for label, (validity, _) in answers.items():
        lines.append(f"| {label} | {validity['auto']:.0%} | {validity['forced']:.0%} | {validity['unneeded']:.0%} of "
                     f"{validity['others']} | {validity['prompt']} / {validity['context']} | {validity['schema']} |")
    lines += ["", "| model | lang | questions | retrieved on topic | citation precision | citation recall | "
              "answer lang = question | questions with an on-topic post retrieved |", "|---|---|---|---|---|---|---|---|"]
    for label, (_, rows) in answers.items():
        for lang, r in rows.items():
            prec = f"{r['cited_ok'] / r['cited']:.0%} of {r['cited']}" if r["cited"] else "- (no citations)"
            lines.append(f"| {label} | {lang} | {r['n']} | {r['retrieved_ok'] / max(r['retrieved'], 1):.0%} | {prec} | "
                         f"{r['recall'] / r['n']:.0%} | {r['lang'] / r['n']:.0%} | {r['relevant'] / r['n']:.0%} |")
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("assistant", body)


if __name__ == "__main__":
    main()
