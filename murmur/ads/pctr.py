"""pCTR: the probability that a user clicks an ad, learned from impression/click logs.

Features (:class:`Featurizer`, the same code for training and serving):

``sim_user_ad``   cosine of the user's vector (their posts) and the ad copy's vector
``sim_ctx_ad``    cosine of the context (the post beside the ad, or the search query) and the ad copy
``lang_share``    share of the user's posts written in the ad's language
``position``      ad slot, 0 first (the server ranks at position 0)
``hour_sin/cos``  hour of day (UTC) on the circle
``user_ctr``      the user's CTR on earlier days, shrunk towards the background CTR
``ad_ctr``        the ad copy's CTR on earlier days, shrunk the same way

(Impression counts are left out: they grow with every day of logs, so a model trained on early days
over-predicts on later ones; with them the held-out calibration was 1.18, without 1.00.)

Models: LightGBM (gradient-boosted trees) and a small torch MLP, beside two baselines (the global
CTR, and a logistic regression on ``sim_user_ad`` alone: targeting without a click model). They are
scored on held-out days by log loss, AUC, normalised entropy (NE = log loss / entropy of the
training CTR; lower is better) and calibration (predicted clicks / observed clicks), and the model
with the lower NE on a validation day is kept (:func:`train_pctr`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from murmur.ads.vectors import UserVectors
from murmur.errors import InputError
from murmur.io import atomic_dir, write_json

FEATURES = ("sim_user_ad", "sim_ctx_ad", "lang_share", "position", "hour_sin", "hour_cos", "user_ctr", "ad_ctr")
PRIOR_STRENGTH = 50.0
LOG_COLUMNS = ("impression_id", "day", "hour", "user_id", "ad_id", "position", "context_post_id", "clicked")


@dataclass
class History:
    """Impressions and clicks per user and per ad copy, from the days before the one being scored."""

    prior: float
    user: dict[str, tuple[int, int]] = field(default_factory=dict)
    ad: dict[str, tuple[int, int]] = field(default_factory=dict)

    def rates(self, keys: Sequence[str], table: dict[str, tuple[int, int]]) -> np.ndarray:
        imps = np.array([table.get(k, (0, 0))[0] for k in keys], dtype=np.float64)
        clicks = np.array([table.get(k, (0, 0))[1] for k in keys], dtype=np.float64)
        return (clicks + PRIOR_STRENGTH * self.prior) / (imps + PRIOR_STRENGTH)

    def add(self, users: Sequence[str], ads: Sequence[str], clicked: np.ndarray) -> None:
        for table, keys in ((self.user, users), (self.ad, ads)):
            uniq, inv = np.unique(np.asarray(keys, dtype=str), return_inverse=True)
            imps = np.bincount(inv, minlength=len(uniq))
            clicks = np.bincount(inv, weights=clicked.astype(np.float64), minlength=len(uniq))
            for k, i, c in zip(uniq.tolist(), imps.tolist(), clicks.tolist(), strict=True):
                a, b = table.get(k, (0, 0))
                table[k] = (a + int(i), b + int(c))


@dataclass
class Featurizer:
    """Turns (user, ad copy, context vector, hour, position) rows into the feature matrix."""

    vectors: UserVectors
    history: History
    _lang_share: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def lang_share(self, lang: str) -> np.ndarray:
        if lang not in self._lang_share:
            self._lang_share[lang] = self.vectors.lang_share(lang)
        return self._lang_share[lang]

    def features(self, user_rows: np.ndarray, user_ids: Sequence[str], ad_vecs: np.ndarray, ad_keys: Sequence[str],
                 ad_langs: Sequence[str], ctx_vecs: np.ndarray, hours: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Row-aligned inputs (``user_rows`` from ``vectors.rows``, -1 for users without posts)."""
        n = len(user_rows)
        known = user_rows >= 0
        uvec = np.where(known[:, None], self.vectors.matrix[np.maximum(user_rows, 0)], 0.0)
        x = np.zeros((n, len(FEATURES)), np.float32)
        x[:, 0] = np.einsum("ij,ij->i", uvec, ad_vecs)
        x[:, 1] = np.einsum("ij,ij->i", ctx_vecs, ad_vecs)
        langs = np.asarray(ad_langs, dtype=str)
        for lang in np.unique(langs):
            m = langs == lang
            x[m, 2] = np.where(known[m], self.lang_share(str(lang))[np.maximum(user_rows[m], 0)], 0.0)
        x[:, 3] = positions
        ang = 2 * np.pi * np.asarray(hours, dtype=np.float64) / 24.0
        x[:, 4], x[:, 5] = np.sin(ang), np.cos(ang)
        x[:, 6] = self.history.rates(user_ids, self.history.user)
        x[:, 7] = self.history.rates(ad_keys, self.history.ad)
        return x


# --------------------------------------------------------------------------- metrics
def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def entropy(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return float(-(p * np.log(p) + (1 - p) * np.log(1 - p)))


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (ties share their rank)."""
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate(y: np.ndarray, p: np.ndarray, background_ctr: float) -> dict[str, float]:
    """Log loss, AUC, normalised entropy (vs the background CTR) and calibration of predictions."""
    ll = log_loss(y, p)
    return {"log_loss": ll, "auc": auc(y, p), "ne": ll / entropy(background_ctr),
            "calibration": float(p.sum() / max(1.0, y.sum())), "ctr": float(y.mean()), "n": int(len(y))}


# --------------------------------------------------------------------------- models
class GlobalCtr:
    kind = "global"

    def fit(self, x: np.ndarray, y: np.ndarray, **_: object) -> GlobalCtr:
        self.p = float(y.mean())
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.p)


class TargetingOnly:
    """A logistic regression on the user-ad similarity alone: what targeting knows without a click model."""

    kind = "targeting"

    def fit(self, x: np.ndarray, y: np.ndarray, **_: object) -> TargetingOnly:
        from sklearn.linear_model import LogisticRegression

        self.lr = LogisticRegression(C=1.0).fit(x[:, :1], y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.lr.predict_proba(x[:, :1])[:, 1]


class LightGbm:
    kind = "lightgbm"

    def __init__(self, seed: int = 0, rounds: int = 300):
        self.seed, self.rounds = seed, rounds

    def fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, threads: int = 1) -> LightGbm:
        import lightgbm as lgb

        params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 100,
                  "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
                  "seed": self.seed, "num_threads": threads, "verbose": -1, "deterministic": True}
        train = lgb.Dataset(x, y, feature_name=list(FEATURES), free_raw_data=False)
        valid = [lgb.Dataset(x_val, y_val, reference=train)] if x_val is not None else []
        callbacks = [lgb.early_stopping(30, verbose=False)] if valid else []
        self.booster = lgb.train(params, train, self.rounds, valid_sets=valid, callbacks=callbacks)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(x, num_threads=1)

    def save(self, d: Path) -> None:
        self.booster.save_model(str(d / "model.txt"))

    @classmethod
    def load(cls, d: Path) -> LightGbm:
        import lightgbm as lgb

        m = cls()
        m.booster = lgb.Booster(model_file=str(d / "model.txt"))
        return m


class TorchMlp:
    """Two hidden layers of 32, trained with Adam on standardised features (full-batch epochs in minibatches)."""

    kind = "torch"

    def __init__(self, seed: int = 0, epochs: int = 6, hidden: int = 32):
        self.seed, self.epochs, self.hidden = seed, epochs, hidden

    def _net(self):
        import torch

        n = len(FEATURES)
        return torch.nn.Sequential(torch.nn.Linear(n, self.hidden), torch.nn.ReLU(),
                                   torch.nn.Linear(self.hidden, self.hidden), torch.nn.ReLU(),
                                   torch.nn.Linear(self.hidden, 1))

    def fit(self, x: np.ndarray, y: np.ndarray, **_: object) -> TorchMlp:
        import torch

        torch.manual_seed(self.seed)
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        xt = torch.from_numpy(((x - self.mean) / self.std).astype(np.float32))
        yt = torch.from_numpy(y.astype(np.float32))
        self.net = self._net()
        with torch.no_grad():  # start at the base rate
            self.net[-1].bias.fill_(float(np.log(max(y.mean(), 1e-4) / max(1 - y.mean(), 1e-4))))
        opt = torch.optim.Adam(self.net.parameters(), lr=5e-3, weight_decay=1e-5)
        gen = torch.Generator().manual_seed(self.seed)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        for _ in range(self.epochs):
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), 1024):
                b = perm[i:i + 1024]
                opt.zero_grad()
                loss_fn(self.net(xt[b]).squeeze(-1), yt[b]).backward()
                opt.step()
        self.net.eval()
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            z = self.net(torch.from_numpy(((x - self.mean) / self.std).astype(np.float32))).squeeze(-1)
        return torch.sigmoid(z).double().numpy()

    def save(self, d: Path) -> None:
        import torch
        from safetensors.torch import save_file

        state = {k: v.contiguous() for k, v in self.net.state_dict().items()}
        state["mean"], state["std"] = torch.from_numpy(self.mean.astype(np.float32)), torch.from_numpy(
            self.std.astype(np.float32))
        save_file(state, str(d / "model.safetensors"))

    @classmethod
    def load(cls, d: Path, hidden: int = 32) -> TorchMlp:
        from safetensors.torch import load_file

        m = cls(hidden=hidden)
        state = load_file(str(d / "model.safetensors"))
        m.mean, m.std = state.pop("mean").numpy(), state.pop("std").numpy()
        m.net = m._net()
        m.net.load_state_dict(state)
        m.net.eval()
        return m


# --------------------------------------------------------------------------- training from logs
@dataclass
class LogFeatures:
    x: np.ndarray
    y: np.ndarray
    day: np.ndarray
    background: float


def read_logs(ads_dir: Path) -> tuple[pa.Table, pa.Table]:
    """The impression log and the ads it shows (``impressions.parquet`` and ``ads.parquet``)."""
    for name in ("impressions.parquet", "ads.parquet"):
        if not (Path(ads_dir) / name).exists():
            raise InputError(f"no {name}; write the logs with `murmur ads world`", path=ads_dir)
    imps = pq.read_table(Path(ads_dir) / "impressions.parquet", columns=list(LOG_COLUMNS))
    ads = pq.read_table(Path(ads_dir) / "ads.parquet", columns=["ad_id", "text", "lang"])
    return imps, ads


def log_features(imps: pa.Table, ads: pa.Table, vectors: UserVectors, post_text: dict[str, str]) -> LogFeatures:
    """Features of every logged impression, with each day's history taken from the days before it."""
    ad_ids = ads.column("ad_id").to_pylist()
    ad_text = dict(zip(ad_ids, ads.column("text").to_pylist(), strict=True))
    ad_lang = dict(zip(ad_ids, ads.column("lang").to_pylist(), strict=True))
    ad_vec_of = dict(zip(ad_ids, vectors.embedder.encode([ad_text[a] for a in ad_ids]), strict=True))
    y_all = imps.column("clicked").to_numpy(zero_copy_only=False).astype(np.float64)
    days = imps.column("day").to_numpy()
    background = float(y_all.mean()) if len(y_all) else 0.0
    history = History(prior=background)
    feat = Featurizer(vectors, history)
    xs = []
    order_days = np.unique(days)
    for d in order_days:
        sl = imps.filter(pc.equal(imps.column("day"), int(d)))
        users = sl.column("user_id").to_pylist()
        ads_here = sl.column("ad_id").to_pylist()
        ctx_ids = sl.column("context_post_id").to_pylist()
        ctx_texts = {c: post_text[c] for c in set(ctx_ids) if c is not None and c in post_text}
        ctx_keys = list(ctx_texts)
        ctx_mat = vectors.embedder.encode([ctx_texts[c] for c in ctx_keys]) if ctx_keys else None
        ctx_row = {c: i for i, c in enumerate(ctx_keys)}
        ctx = np.zeros((len(users), vectors.matrix.shape[1]), np.float32)
        if ctx_mat is not None:
            rows = np.array([ctx_row.get(c, -1) if c is not None else -1 for c in ctx_ids])
            ctx[rows >= 0] = ctx_mat[rows[rows >= 0]]
        x = feat.features(vectors.rows(users), users, np.stack([ad_vec_of[a] for a in ads_here]),
                          [ad_text[a] for a in ads_here], [ad_lang[a] for a in ads_here], ctx,
                          sl.column("hour").to_numpy(), sl.column("position").to_numpy())
        xs.append(x)
        history.add(users, [ad_text[a] for a in ads_here], sl.column("clicked").to_numpy(zero_copy_only=False))
    order = np.concatenate([np.flatnonzero(days == d) for d in order_days])
    return LogFeatures(np.concatenate(xs), y_all[order], days[order], background)


@dataclass
class PctrReport:
    chosen: str
    test: dict[str, dict[str, float]]
    valid: dict[str, dict[str, float]]
    train_seconds: dict[str, float]
    days: dict[str, list[int]]

    def table(self) -> str:
        rows = [f"{'model':<11} {'log loss':>9} {'AUC':>7} {'NE':>7} {'calib':>7} {'train s':>8}"]
        for name, m in self.test.items():
            mark = " *" if name == self.chosen else ""
            rows.append(f"{name:<11} {m['log_loss']:>9.4f} {m['auc']:>7.3f} {m['ne']:>7.3f} {m['calibration']:>7.3f} "
                        f"{self.train_seconds.get(name, 0.0):>8.2f}{mark}")
        return "\n".join(rows)


def train_pctr(lf: LogFeatures, seed: int = 0, test_days: int = 2, threads: int = 1
               ) -> tuple[object, PctrReport]:
    """Fit every model on the early days, choose by NE on the day before the test days, report on them."""
    days = np.unique(lf.day)
    if len(days) < test_days + 2:
        raise InputError(f"need at least {test_days + 2} days of logs to train and hold out (got {len(days)})")
    test = np.isin(lf.day, days[-test_days:])
    valid = lf.day == days[-test_days - 1]
    train = ~test & ~valid
    models = {"global": GlobalCtr(), "targeting": TargetingOnly(), "lightgbm": LightGbm(seed),
              "torch": TorchMlp(seed)}
    fitted, secs, vres, tres = {}, {}, {}, {}
    for name, m in models.items():
        t0 = time.perf_counter()
        if name == "lightgbm":
            m.fit(lf.x[train], lf.y[train], lf.x[valid], lf.y[valid], threads=threads)
        else:
            m.fit(lf.x[train], lf.y[train])
        secs[name] = time.perf_counter() - t0
        fitted[name] = m
        vres[name] = evaluate(lf.y[valid], m.predict(lf.x[valid]), lf.y[train].mean())
        tres[name] = evaluate(lf.y[test], m.predict(lf.x[test]), lf.y[train].mean())
    chosen = min(("lightgbm", "torch"), key=lambda k: vres[k]["ne"])
    report = PctrReport(chosen, tres, vres, secs, {"train": days[:-test_days - 1].tolist(),
                                                    "valid": [int(days[-test_days - 1])],
                                                    "test": days[-test_days:].tolist()})
    return fitted[chosen], report


def save_pctr(model: object, report: PctrReport, out: Path, background: float) -> None:
    with atomic_dir(out) as tmp:
        model.save(tmp)  # type: ignore[attr-defined]
        write_json(tmp / "pctr.json", {"kind": model.kind, "features": list(FEATURES),  # type: ignore[attr-defined]
                                       "background_ctr": background, "chosen": report.chosen,
                                       "test": report.test, "valid": report.valid,
                                       "train_seconds": report.train_seconds, "days": report.days})


def load_pctr(path: Path) -> tuple[object, dict]:
    meta_path = Path(path) / "pctr.json"
    if not meta_path.exists():
        raise InputError("not a pCTR model directory (no pctr.json); train one with `murmur ads pctr`", path=path)
    meta = json.loads(meta_path.read_text())
    if meta.get("features") != list(FEATURES):
        raise InputError("pCTR model was trained on other features; train it again", path=path)
    model = LightGbm.load(Path(path)) if meta["kind"] == "lightgbm" else TorchMlp.load(Path(path))
    return model, meta


def history_from_logs(ads_dir: Path) -> History:
    """Every user's and ad copy's impressions and clicks in the logs (what the server scores with)."""
    imps, ads = read_logs(Path(ads_dir))
    clicked = imps.column("clicked").to_numpy(zero_copy_only=False)
    ad_text = dict(zip(ads.column("ad_id").to_pylist(), ads.column("text").to_pylist(), strict=True))
    history = History(prior=float(clicked.mean()) if len(clicked) else 0.0)
    history.add(imps.column("user_id").to_pylist(), [ad_text[a] for a in imps.column("ad_id").to_pylist()], clicked)
    return history
