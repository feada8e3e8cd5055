"""Pure logic: input conversion (with a Hypothesis property), the sklearn fast path, feedback memory."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modelserver.backends import sklearn_fast
from modelserver.backends.sklearn_model import SklearnModel
from modelserver.errors import HTTPError
from modelserver.feedback import FeedbackStore, same_label
from modelserver.schema import InputSchema

pytestmark = pytest.mark.unit

SCHEMA = InputSchema(("a", "b", "c"), max_abs=float(np.finfo(np.float32).max))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=3), inner, max_size=5),
    max_leaves=30,
)
rows = st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=3, max_size=3)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_any_json_is_a_matrix_or_a_4xx(value: Any) -> None:
    for convert in (
        lambda: SCHEMA.rows_to_matrix(value, max_rows=8),
        lambda: SCHEMA.tensor_to_matrix(value, max_rows=8),
        lambda: SCHEMA.rows_to_matrix([value], max_rows=8),
    ):
        try:
            x = convert()
        except HTTPError as e:
            assert 400 <= e.status < 500
            assert e.reason
        else:
            assert x.ndim == 2 and x.shape[1] == 3 and 1 <= x.shape[0] <= 8
            assert np.isfinite(x).all()


@given(st.lists(rows, min_size=1, max_size=8))
def test_positional_named_and_tensor_forms_agree(batch: list[list[float]]) -> None:
    by_pos = SCHEMA.rows_to_matrix(batch, 8)
    by_name = SCHEMA.rows_to_matrix([dict(zip("abc", r, strict=True)) for r in batch], 8)
    flat = SCHEMA.tensor_to_matrix(
        {"name": "x", "shape": [len(batch), 3], "datatype": "FP32", "data": [v for r in batch for v in r]}, 8
    )
    nested = SCHEMA.tensor_to_matrix(
        {"name": "x", "shape": [len(batch), 3], "datatype": "FP64", "data": batch}, 8
    )
    for other in (by_name, flat, nested):
        np.testing.assert_array_equal(by_pos, other)


def test_value_beyond_the_models_dtype_names_the_cell() -> None:
    with pytest.raises(HTTPError) as e:
        SCHEMA.rows_to_matrix([[1, 2, 3], [1, 1e39, 3]], 8)
    assert e.value.status == 422 and e.value.field == "instances[1][1]"


def _fitted(kind: str) -> Any:
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * [1, 10, 100, 0.1, 3]
    y3 = (x[:, 0] + x[:, 1] / 10 > 0).astype(int) + (x[:, 2] > 50)
    y2 = (x[:, 0] > 0).astype(int)
    yr = x @ [1, 2, 3, 4, 5]
    return {
        "multiclass": (make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y3), True),
        "binary": (make_pipeline(MinMaxScaler(), LogisticRegression()).fit(x, y2), True),
        "no-mean": (make_pipeline(StandardScaler(with_mean=False), LogisticRegression()).fit(x, y2), True),
        "linear": (make_pipeline(StandardScaler(), LinearRegression()).fit(x, yr), False),
        "ridge": (Ridge().fit(x, yr), False),
    }[kind]


@pytest.mark.parametrize("kind", ["multiclass", "binary", "no-mean", "linear", "ridge"])
def test_fast_path_equals_sklearn(kind: str) -> None:
    est, proba = _fitted(kind)
    fast = sklearn_fast.compile_fast(est, proba)
    assert fast is not None
    x = np.random.default_rng(1).normal(size=(50, 5)) * 20
    want = est.predict_proba(x) if proba else est.predict(x)
    np.testing.assert_allclose(fast(x), np.asarray(want).reshape(fast(x).shape), rtol=1e-12, atol=1e-14)


def test_unsupported_estimators_are_not_compiled() -> None:
    from sklearn.ensemble import RandomForestClassifier

    x = np.random.default_rng(0).normal(size=(40, 3))
    est = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, x[:, 0] > 0)
    assert sklearn_fast.compile_fast(est, True) is None


def test_a_fast_path_that_disagrees_is_not_used(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import joblib

    est, _ = _fitted("multiclass")
    joblib.dump(est, tmp_path / "m.joblib")
    model = SklearnModel(tmp_path / "m.joblib")
    monkeypatch.setattr(
        "modelserver.backends.sklearn_model.compile_fast", lambda e, p: lambda x: np.full((len(x), 3), 1 / 3)
    )
    probes = np.random.default_rng(2).normal(size=(20, 5))
    assert model.enable_fast_path(probes).startswith("mismatch")
    np.testing.assert_allclose(model.predict(probes).probabilities, est.predict_proba(probes))


def test_feedback_store_forgets_oldest_and_takes_once() -> None:
    store = FeedbackStore(capacity=2)
    store.remember("a", [1])
    store.remember("b", [2])
    store.remember("c", [3])
    assert store.take("a") is None
    assert store.take("b") == [2]
    assert store.take("b") is None
    assert len(store) == 1


def test_feedback_store_of_zero_capacity_remembers_nothing() -> None:
    store = FeedbackStore(capacity=0)
    store.remember("a", [1])
    assert store.take("a") is None


@pytest.mark.parametrize(
    ("predicted", "actual", "same"),
    [
        (1, 1.0, True),
        ("cat", "cat", True),
        ("cat", "Cat", False),
        (1, "1", False),
        (True, 1, False),
        (0, 1, False),
    ],
)
def test_label_comparison(predicted: Any, actual: Any, same: bool) -> None:
    assert same_label(predicted, actual) is same
