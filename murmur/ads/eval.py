"""Audience quality against the demo world's ground truth: precision and recall per topic."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from murmur.ads.audiences import AudienceBuilder, evaluate_interest
from murmur.world.truth import load_truth


def evaluate_audiences(builder: AudienceBuilder, world: Path, min_share: float = 0.2) -> dict:
    """Interest and conversation-topic audiences of every topic, scored against true interests among the
    users who posted (the users an audience could pick)."""
    truth = load_truth(world)
    interests = truth.interest_matrix() > 0
    ids = truth.users["user_id"].to_pylist()
    universe = builder.vectors.user_ids.tolist()
    per: dict[str, list[dict]] = {"interest": [], "topic": []}
    for j, topic in enumerate(truth.topics):
        if topic not in builder.taxonomy:
            continue
        per["interest"].append(evaluate_interest(builder.interest(topic, min_share=min_share), topic, ids,
                                                 interests[:, j], universe))
        per["topic"].append(evaluate_interest(builder.conversation_topic(topic), topic, ids, interests[:, j], universe))
    mean = {k: {m: float(np.mean([r[m] for r in rows])) for m in ("precision", "recall", "f1", "base_rate", "size")}
            for k, rows in per.items() if rows}
    return {"topics": len(per["interest"]), "mean": mean, "per_topic": per}
