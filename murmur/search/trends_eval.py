"""How well trends find a demo world's stories: precision and recall against its ground truth.

The detector runs as a server would, at every window boundary over the index's time span (after a
first day of history), on the index's posts. At each time:

- a detected trend is **correct** when at least half of its window posts belong to one story of the
  world's truth that is running in that window, and no stronger trend at that time already matched
  that story (a story split into two trends counts its second part as a miss: grouping matters);
- every other detected trend is a **false** one (everyday chatter that looked like a burst, a part of
  a story already found, or the tail of a story after its end).

Precision is correct / detected over all times; recall is the share of stories detected at some time
while they run; ``hours_to_detect`` is how long after its start each was first found. Figures are
given per language too (a trend's language is that of most of its posts).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

from murmur.search.trends import Trends
from murmur.world.truth import load_truth

DAY_US = 86_400 * 1_000_000


def _us(t: dt.datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def evaluate_trends(trends: Trends, world: str | Path, window_s: int = 3600, k: int = 10,
                    warmup_s: int = 86_400) -> dict[str, Any]:
    """Precision, recall and time to detection of ``trends`` against the world's stories."""
    truth = load_truth(world)
    store = trends.index.store
    bursts = truth.bursts
    created = store.created.view[store.alive.view]
    if len(created) == 0:
        return {"times": 0, "detected": 0, "correct": 0, "precision": None, "recall": None, "stories": 0}
    first, last = int(created.min()), int(created.max())
    step = window_s * 1_000_000
    t = -(-(first + warmup_s * 1_000_000) // step) * step + step  # window ends on the clock's boundaries
    found: dict[str, int] = {}
    counts = {"all": Counter(), "en": Counter(), "es": Counter()}
    times = 0
    examples: list[dict[str, Any]] = []
    while t <= last + step:
        times += 1
        report = trends.detect(window_s, t, None, k)
        matched: set[str] = set()
        for trend in report.trends:
            ids = [store.get(key)["post_id"] for key in trend.keys]
            stories = Counter(s for s in truth.stories_of(ids) if s is not None)
            story, n = stories.most_common(1)[0] if stories else (None, 0)
            burst = next((b for b in bursts if b.story_id == story), None)
            running = burst is not None and _us(burst.start) < t and _us(burst.end) > t - step
            ok = n * 2 >= len(ids) and running and story not in matched
            if ok:
                matched.add(story)
                found.setdefault(story, t)
            for key in ("all", trend.lang):
                if key in counts:
                    counts[key]["detected"] += 1
                    counts[key]["correct"] += ok
            if not ok and len(examples) < 10:
                examples.append({"at": dt.datetime.fromtimestamp(t / 1e6, dt.UTC).isoformat(), "label": trend.label,
                                 "terms": [s.shown for s in trend.terms[:5]], "story": story,
                                 "share": round(n / max(len(ids), 1), 2)})
        t += step

    def prec(c: Counter) -> float | None:
        return c["correct"] / c["detected"] if c["detected"] else None

    def rec(lang: str | None) -> float | None:
        bs = [b for b in bursts if lang is None or b.lang == lang]
        return sum(b.story_id in found for b in bs) / len(bs) if bs else None

    return {
        "window_s": window_s, "times": times, "stories": len(bursts),
        "detected": counts["all"]["detected"], "correct": counts["all"]["correct"],
        "precision": prec(counts["all"]), "recall": rec(None),
        "per_lang": {lang: {"detected": counts[lang]["detected"], "precision": prec(counts[lang]),
                            "stories": sum(b.lang == lang for b in bursts), "recall": rec(lang)}
                     for lang in ("en", "es")},
        "hours_to_detect": {b.story_id: round((found[b.story_id] - _us(b.start)) / 3.6e9, 2)
                            for b in bursts if b.story_id in found},
        "missed": [b.story_id for b in bursts if b.story_id not in found],
        "false_examples": examples,
    }


def format_report(r: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.0f}%"

    lines = [f"trends over {r['times']} windows of {r['window_s'] // 60} min: {r['detected']} detected, "
             f"{r['correct']} correct: precision {pct(r['precision'])}, recall {pct(r['recall'])} of "
             f"{r['stories']} stories"]
    for lang, v in r.get("per_lang", {}).items():
        lines.append(f"  {lang}: precision {pct(v['precision'])} ({v['detected']} detected), recall "
                     f"{pct(v['recall'])} of {v['stories']}")
    if r.get("hours_to_detect"):
        lines.append("  hours to detect: " + ", ".join(f"{k} {v}" for k, v in r["hours_to_detect"].items()))
    if r.get("missed"):
        lines.append("  missed: " + ", ".join(r["missed"]))
    return "\n".join(lines)
