"""The demo's models, generated (never downloaded): one data set, revisions of a model.

- `v1`: logistic regression, the good model in production;
- `v2`: a k-nearest-neighbours model, a little more accurate on the same data;
- `v3-inaccurate`: logistic regression trained on shuffled labels (serves fine, answers wrong);
- `v3-disagrees`: a decision tree grown to purity, about as accurate as v1 (0.90) but predicting
  another label than v1 on about 10% of the holdout: only a shadow's agreement metric tells;
- `v1-again`: v1's bundle in an image of its own (another digest): predicts exactly as v1;
- `v3-bad-errors`: v2's bundle in an image whose environment makes the server fail 30% of
  predictions (`MODELSERVER_FAULT_ERROR_RATIO`);
- `v3-slow`: v2's bundle in an image that adds 0.5 s to every prediction
  (`MODELSERVER_FAULT_LATENCY`; the baseline p99 is a few milliseconds).

An image that misbehaves is a different image: its manifest differs, so its digest does.

All are trained on the first TRAIN rows of `modelserver.sample_models.dataset` (fixed seed);
the HOLDOUT rows after them, never trained on, are what a load generator sends, with their
true labels as feedback. Each becomes a bundle (model, schema, examples, golden answers, and
the holdout with its labels for `modelserver evaluate`) and a container image on the serving
image (localworld.demoimages).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

TRAIN, HOLDOUT = 3000, 1000


def analysis(interval: str = "5s", accuracy: bool = False, **fields: Any) -> dict[str, Any]:
    """`spec.analysis` that tells these models apart, each bad one by the metric it breaks:
    5xx share above 5% (v3-bad-errors fails 30%), p99 above 0.25 s (v3-slow adds 0.5 s to a
    few ms), and with `accuracy`, online accuracy below 0.6 (v3-inaccurate: 0.04; v1 and v2
    about 0.9). Accuracy needs the labels to reach the replica that answered: through Traefik
    that takes the feedback tokens the operator's pods issue (docs/serving.md), so it is asked
    for, not the default, for pods run without them. `fields` override."""
    metrics = [
        {"name": "error-rate", "template": "error-rate", "max": 0.05},
        {"name": "latency-p99", "template": "latency-p99", "max": 0.25},
    ]
    if accuracy:
        metrics.append({"name": "accuracy", "template": "accuracy", "min": 0.6})
    return {"interval": interval, "metrics": metrics, **fields}


TRAINED = ("v1", "v2", "v3-inaccurate", "v3-disagrees")
# Images that carry another version's bundle with an environment of their own: fault injection, or
# (v1-again) a variable that changes nothing but the digest.
FAULTY: dict[str, tuple[str, dict[str, str]]] = {
    "v3-bad-errors": ("v2", {"MODELSERVER_FAULT_ERROR_RATIO": "0.3"}),
    "v3-slow": ("v2", {"MODELSERVER_FAULT_LATENCY": "0.5"}),
    "v1-again": ("v1", {"MODELSHIP_DEMO_REBUILT": "v1-again"}),
}
VERSIONS = (*TRAINED, *FAULTY)


def data() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.str_]]:
    from modelserver.sample_models import dataset

    x, y = dataset(n=TRAIN + HOLDOUT, seed=0)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.str_)


def holdout() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.str_]]:
    x, y = data()
    return x[TRAIN:], y[TRAIN:]


def train(version: str) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    x, y = data()
    x, y = x[:TRAIN], y[:TRAIN]
    if version == "v1":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    if version == "v2":
        return make_pipeline(StandardScaler(), KNeighborsClassifier(15)).fit(x, y)
    if version == "v3-inaccurate":
        shuffled = np.random.default_rng(1).permutation(y)
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, shuffled)
    if version == "v3-disagrees":
        return DecisionTreeClassifier(random_state=0).fit(x, y)
    raise ValueError(f"unknown trained demo model {version!r}; known: {', '.join(TRAINED)}")


def bundle(version: str, d: Path) -> None:
    import joblib
    from modelserver.sample_models import _write_sidecars

    d.mkdir(parents=True, exist_ok=True)
    model = train(version)
    joblib.dump(model, d / "model.joblib")
    # Golden answers from the training rows: the server checks it loaded this very model.
    x = data()[0][:8]
    proba = model.predict_proba(x)
    labels = model.classes_[proba.argmax(axis=1)].tolist()
    _write_sidecars(d, x, labels, proba, atol=1e-9, classes=tuple(model.classes_))
    # The labelled rows `modelserver evaluate --dataset bundle` scores (the evaluation step).
    hx, hy = holdout()
    (d / "holdout.json").write_text(
        json.dumps({"instances": hx.tolist(), "labels": hy.tolist(), "metric": "accuracy"})
    )
