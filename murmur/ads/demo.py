"""The ads part of ``murmur demo``: an ads world, a pCTR model, interest audiences, campaigns and a short
simulated A/B test of murmur's targeting and ranking against random delivery; what the demo's server
then serves in the ads studio (``/ads/``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from murmur.ads.service import AdsConfig


def run_ads_demo(world: Path, clean: Path, index: Path | None, out: Path, seed: int = 0, seeds: int = 3,
                 page_views: int = 4000, campaigns: int = 8, log: Callable[[str], None] = lambda s: None) -> dict:
    """Everything under ``out``: ``world-ads/`` (logs and click model), ``pctr/``, ``audiences/``, ``ads.db``
    (the campaigns of the simulation). Returns the summary: audiences, campaigns, lift with 95% CIs."""
    from murmur.ads.pctr import save_pctr
    from murmur.ads.simulate import SimConfig, SimSetup, simulate
    from murmur.world.ads import AdsWorldConfig, generate_ads_world

    out.mkdir(parents=True, exist_ok=True)
    generate_ads_world(world, out / "world-ads", AdsWorldConfig(seed=seed, days=4, impressions_per_day=5000))
    setup = SimSetup.build(world, out / "world-ads", clean, out, min_share=0.1, log=log, index=index)
    save_pctr(setup.model, setup.pctr_report, out / "pctr", setup.history.prior)
    db = out / "ads.db"
    if db.exists():
        db.unlink()  # the demo's own campaigns, rewritten on every run
    report = simulate(setup, SimConfig(seeds=seeds, page_views=page_views, campaigns=campaigns), work=out,
                      store_url=f"sqlite:///{db}", log=log)
    s = report.summary()
    sizes = {name: setup.catalog.size(name) for name in sorted(setup.audience_of_topic.values())}
    return {"audiences": len(sizes), "largest_audiences": dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:3]),
            "audience_vectors": setup.audience_vectors.embedder.name,
            "campaigns": seeds * campaigns, "seeds": seeds, "page_views": page_views,
            "ctr": {arm: s[arm]["ctr"][0] for arm in ("murmur", "random")},
            "lift": {m: list(s["lift"][m]) for m in ("clicks", "ctr", "spend")},
            "delivery_ok": s["murmur"]["delivery_ok"][0], "table": report.table()}


def demo_ads_config(out: Path, clean: Path, index: Path | None) -> AdsConfig:
    """The ads service over what :func:`run_ads_demo` wrote (for the demo's server and its studio)."""
    return AdsConfig(posts=str(clean), audiences=str(out / "audiences"), database=f"sqlite:///{out / 'ads.db'}",
                     pctr=str(out / "pctr"), logs=str(out / "world-ads"), index=str(index or ""),
                     audience_embedder="default" if index else "lsa")
