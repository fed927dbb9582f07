"""The quality model: a method's score relative to full fine-tuning, from task and architecture features.

A bootstrap ensemble of ridge regressions (scikit-learn) over a design with one block per method and one
per family, each block holding an intercept and the standardised task features. The family blocks let a
method with few runs borrow from its relatives; ridge keeps ~100 columns sane on a few hundred rows.
Bootstrap resamples whole tasks (seeds of one task are not independent), so the ensemble spread says how
much the answer depends on which tasks happened to be benchmarked.

Fitting imports scikit-learn (~4 s on the benchmark CPU); predicting needs only the fitted numbers,
which `to_dict` writes as plain JSON, so a `recommend` call never imports it when the cache is fresh.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from peftbench.vocabulary import ARCHITECTURES
from peftbench.vocabulary import TASK_KINDS as KINDS

NUMERIC = ("log_total_params", "log_train_examples", "log_input_tokens", "log_target_tokens", "log_trainable_fraction")
Z_80 = 1.2816  # two-sided 80% normal interval


def task_features(kind: str, architecture: str, total_params: float, train_examples: float,
                  mean_input_tokens: float, mean_target_tokens: float, trainable_params: float) -> dict[str, float]:
    """The numbers the model sees. Logs because effects of size and length are multiplicative."""
    feats = {f"kind={k}": float(kind == k) for k in KINDS}
    feats.update({f"arch={a}": float(architecture == a) for a in ARCHITECTURES})
    feats.update(log_total_params=math.log10(max(total_params, 1.0)),
                 log_train_examples=math.log10(max(train_examples, 1.0)),
                 log_input_tokens=math.log10(max(mean_input_tokens, 1.0)),
                 log_target_tokens=math.log10(1.0 + max(mean_target_tokens, 0.0)),
                 log_trainable_fraction=math.log10(max(trainable_params, 1.0) / max(total_params, 1.0)))
    return feats


class RelativeQualityModel:
    """scikit-learn-style regressor: `fit(X, y, groups)`, `predict(X)`, `predict_interval(X)`.

    X is a sequence of dicts holding "method", "family" and the `task_features` keys.
    """

    def __init__(self, alpha: float = 3.0, n_members: int = 40, random_state: int = 0) -> None:
        self.alpha = alpha
        self.n_members = n_members
        self.random_state = random_state

    # scikit-learn's estimator protocol (clone, grid search) without importing it at class definition.
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"alpha": self.alpha, "n_members": self.n_members, "random_state": self.random_state}

    def set_params(self, **params: Any) -> RelativeQualityModel:
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def _design(self, X: Sequence[dict[str, Any]]) -> np.ndarray:
        cols = self.columns_
        rows = np.zeros((len(X), len(cols)))
        index = {c: i for i, c in enumerate(cols)}
        for r, x in enumerate(X):
            z = [1.0] + [x[f] for f in self.onehots_] + [
                (min(max(x[f], self.min_[f]), self.max_[f]) - self.mean_[f]) / self.std_[f] for f in NUMERIC]
            for block in (f"method={x['method']}", f"family={x['family']}"):
                if f"{block}|1" not in index:
                    continue  # unseen method or family: the other block (or nothing) speaks for it
                for name, value in zip(self.block_features_, z, strict=True):
                    rows[r, index[f"{block}|{name}"]] = value
        return rows

    def fit(self, X: Sequence[dict[str, Any]], y: Sequence[float], groups: Sequence[str]) -> RelativeQualityModel:
        from sklearn.linear_model import Ridge  # slow import, only when (re)fitting

        self.onehots_ = [f"kind={k}" for k in KINDS] + [f"arch={a}" for a in ARCHITECTURES]
        self.block_features_ = ["1", *self.onehots_, *NUMERIC]
        values = {f: np.array([x[f] for x in X], dtype=float) for f in NUMERIC}
        # Features are clipped to the range seen in training: a linear slope fitted on 22M-135M models
        # must not be extrapolated to 8B. The published evidence speaks for sizes beyond the range.
        self.mean_ = {f: float(v.mean()) for f, v in values.items()}
        self.std_ = {f: float(v.std()) or 1.0 for f, v in values.items()}
        self.min_ = {f: float(v.min()) for f, v in values.items()}
        self.max_ = {f: float(v.max()) for f, v in values.items()}
        blocks = sorted({f"method={x['method']}" for x in X}) + sorted({f"family={x['family']}" for x in X})
        self.columns_ = [f"{b}|{n}" for b in blocks for n in self.block_features_]
        design, target, groups_arr = self._design(X), np.asarray(y, dtype=float), np.asarray(groups)
        unique = np.unique(groups_arr)
        rng = np.random.default_rng(self.random_state)
        self.coefs_, self.intercepts_ = [], []
        for member in range(self.n_members):
            # Member 0 sees every task; the others a bootstrap resample of whole tasks.
            chosen = unique if member == 0 else rng.choice(unique, size=len(unique), replace=True)
            idx = np.concatenate([np.flatnonzero(groups_arr == g) for g in chosen])
            ridge = Ridge(alpha=self.alpha).fit(design[idx], target[idx])
            self.coefs_.append(ridge.coef_.tolist())
            self.intercepts_.append(float(ridge.intercept_))
        residuals = target - self._members(design).mean(axis=0)
        methods = np.array([x["method"] for x in X])
        self.residual_sd_ = {m: float(np.sqrt(np.mean(residuals[methods == m] ** 2))) for m in np.unique(methods)}
        self.residual_sd_["*"] = float(np.sqrt(np.mean(residuals ** 2)))
        self.n_rows_, self.n_tasks_ = len(target), len(unique)
        self.methods_ = sorted(set(methods.tolist()))
        return self

    def _members(self, design: np.ndarray) -> np.ndarray:
        return np.asarray(self.coefs_) @ design.T + np.asarray(self.intercepts_)[:, None]

    def predict(self, X: Sequence[dict[str, Any]]) -> np.ndarray:
        return self._members(self._design(X))[0]

    def predict_interval(self, X: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation): ensemble spread plus the method's residual scatter across seeds."""
        members = self._members(self._design(X))
        resid = np.array([self.residual_sd_.get(x["method"], self.residual_sd_["*"]) for x in X])
        return members[0], np.sqrt(members.var(axis=0) + resid ** 2)

    def out_of_range(self, x: dict[str, Any]) -> dict[str, float]:
        """Numeric features outside the training range, with how far out (same units as the feature)."""
        return {f: round(x[f] - min(max(x[f], self.min_[f]), self.max_[f]), 3) for f in NUMERIC
                if not self.min_[f] <= x[f] <= self.max_[f]}

    _STATE = ("onehots_", "block_features_", "mean_", "std_", "min_", "max_", "columns_", "coefs_", "intercepts_",
              "residual_sd_", "n_rows_", "n_tasks_", "methods_")

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.get_params(), **{k: getattr(self, k) for k in self._STATE}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RelativeQualityModel:
        model = cls(**data["params"])
        for key in cls._STATE:
            setattr(model, key, data[key])
        return model
