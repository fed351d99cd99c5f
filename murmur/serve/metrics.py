"""Prometheus text exposition (format 0.0.4) for the server, written by hand: a handful of series.

HTTP counters are kept here (the API's middleware counts each response); engine counters and the
time-to-first-token histogram come from ``Engine.stats``.
"""

from __future__ import annotations

import threading
from collections import Counter

from murmur.engine.engine import TTFT_BUCKETS, Engine


class HttpCounters:
    """Responses by route and status code (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, int]] = Counter()

    def add(self, route: str, status: int) -> None:
        with self._lock:
            self.counts[(route, status)] += 1

    def snapshot(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self.counts)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(x: float) -> str:
    return repr(float(x)) if isinstance(x, float) else str(x)


def render_metrics(engine: Engine | None, http: HttpCounters, model: str, tool_calls: dict[str, int] | None = None
                   ) -> str:
    """The /metrics body."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{lab}}} {_fmt(value)}" if lab else f"{name} {_fmt(value)}")

    http_samples = [({"route": route, "status": str(status)}, n)
                    for (route, status), n in sorted(http.snapshot().items())]
    metric("murmur_http_requests_total", "counter", "HTTP responses by route and status code.", http_samples)
    metric("murmur_tool_calls_total", "counter", "Chat turns with tools by outcome: auto (a well-formed call), "
           "none (no call), malformed (a bad call, retried under constraint), forced (a constrained call), "
           "failed (max_tokens ran out inside a call).",
           [({"outcome": k}, n) for k, n in sorted((tool_calls or {}).items())])
    metric("murmur_model_loaded", "gauge", "1 once the model is loaded and serving.",
           [({"model": model}, 1 if engine is not None else 0)])
    if engine is None:
        return "\n".join(lines) + "\n"
    s = engine.stats
    metric("murmur_requests_total", "counter", "Generation requests finished, by finish reason.",
           [({"finish_reason": r}, n) for r, n in sorted(s.requests_finished.items())])
    metric("murmur_prompt_tokens_total", "counter", "Prompt tokens read (prefill).", [({}, s.prompt_tokens)])
    metric("murmur_generation_tokens_total", "counter", "Tokens generated.", [({}, s.generated_tokens)])
    metric("murmur_engine_steps_total", "counter", "Engine scheduling steps.", [({}, s.steps)])
    metric("murmur_queue_depth", "gauge", "Requests waiting for a free batch row.", [({}, engine.queue_depth)])
    metric("murmur_running_requests", "gauge", "Requests holding a batch row (reading or generating).",
           [({}, engine.running)])
    metric("murmur_max_batch", "gauge", "Batch rows (requests generated at once).", [({}, engine.max_batch)])
    name = "murmur_time_to_first_token_seconds"
    lines.append(f"# HELP {name} Seconds from submission to the first generated token.")
    lines.append(f"# TYPE {name} histogram")
    for bound, count in zip(TTFT_BUCKETS, list(s.ttft_buckets), strict=True):
        lines.append(f'{name}_bucket{{le="{_fmt(bound)}"}} {count}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {s.ttft_count}')
    lines.append(f"{name}_sum {_fmt(s.ttft_sum)}")
    lines.append(f"{name}_count {s.ttft_count}")
    return "\n".join(lines) + "\n"
