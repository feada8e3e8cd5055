"""``modelserver evaluate``: score a model on a labelled dataset and print one JSON line.

The model is a running server (``--url``, its ``POST /predict``: the candidate's pods behind their
Service) or a bundle loaded in this process (``--bundle``, checked as the server checks it). The
dataset is a file (on a volume), a URI (``https://``, ``s3://``, ``gs://``, downloaded and verified
as ``modelserver fetch`` does, so ``--dataset-sha256`` is required), or ``bundle``: the
``holdout.json`` the model bundle carries beside its model file.

A dataset is one JSON object::

    {"instances": [[1.0, 2.0, 3.0, 4.0], ...], "labels": ["low", ...], "metric": "accuracy"}

``instances`` as ``POST /predict`` takes them (rows in feature order or objects by feature name),
one label per row; ``metric`` (optional; ``--metric`` wins) is ``accuracy`` (share of predictions
equal to the label), ``mae`` or ``rmse`` (for regressors).

The result, printed on stdout and written to ``--result-file`` (modelship's evaluation Job passes
``/dev/termination-log``: Kubernetes keeps it in the Pod's status, so the operator reads it without
permission to read logs)::

    {"metric": "accuracy", "value": 0.93, "examples": 1000, "requests": 16, "stable_value": 0.95}

``requests``: the ``POST /predict`` calls sent to ``--url`` (``--batch`` rows each); ``stable_value``
only with ``--compare-url``: the same dataset scored on the stable revision.
Exit codes: 0 scored (judging the value is the caller's business), 2 bad arguments or dataset,
6 the model could not be scored (the server failed or refused a request).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cli import EXIT_CONFIG

EXIT_SCORING = 6
HOLDOUT = "holdout.json"  # the bundle's own labelled rows, beside its model file
BUNDLE = "bundle"  # --dataset value: the bundle's holdout
METRICS = ("accuracy", "mae", "rmse")
ERROR_LIMIT = 1024  # characters of an error in the result: the line stays within what Kubernetes keeps

Predict = Callable[[list[Any]], list[Any]]  # rows -> one prediction per row


class EvaluationError(Exception):
    """The model could not be scored; the message says where it failed."""


class DatasetError(ValueError):
    """The dataset is not what it should be; the message names the place."""


@dataclass(frozen=True)
class Dataset:
    instances: list[Any]
    labels: list[Any]
    metric: str | None  # the one the dataset names, if any


def parse_dataset(doc: Any, source: str) -> Dataset:
    """A dataset from its JSON document; `source` names it in errors."""
    if not isinstance(doc, dict):
        raise DatasetError(f"{source} must be a JSON object with 'instances' and 'labels'")
    unknown = sorted(set(doc) - {"instances", "labels", "metric", "summary"})
    if unknown:
        raise DatasetError(f"{source}: {unknown[0]!r} is not a known field (instances, labels, metric)")
    rows, labels = doc.get("instances"), doc.get("labels")
    if not isinstance(rows, list) or not rows:
        raise DatasetError(f"{source}.instances must be a non-empty array of rows")
    if not isinstance(labels, list) or len(labels) != len(rows):
        raise DatasetError(f"{source}.labels must be an array with one label per row ({len(rows)})")
    metric = doc.get("metric")
    if metric is not None and metric not in METRICS:
        raise DatasetError(f"{source}.metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return Dataset(rows, labels, metric)


def read_dataset(
    source: str, sha256: str | None, bundle: Path | None, env: Mapping[str, str], timeout: float
) -> Dataset:
    """The dataset named by `--dataset`: `bundle`, a URI, or a file path."""
    if source == BUNDLE:
        if bundle is None:
            raise DatasetError(
                "--dataset bundle needs the bundle: --bundle, or MODEL_PATH in the environment"
            )
        return _read_file(bundle.parent / HOLDOUT)
    from . import fetch

    if source.split("://", 1)[0] in fetch.SCHEMES and "://" in source:
        if not sha256:
            raise DatasetError(
                f"--dataset-sha256 is required for a dataset from a URI ({source.split('?')[0]})"
            )
        with tempfile.TemporaryDirectory() as tmp:
            dest = Path(tmp) / "dataset.json"
            try:
                fetch.fetch(source, sha256, dest, env, timeout=timeout)
            except fetch.FetchError as err:
                raise DatasetError(f"--dataset: {err}") from None
            return _read_file(dest, name=source.split("?")[0])
    return _read_file(Path(source))


def _read_file(path: Path, name: str | None = None) -> Dataset:
    shown = name or str(path)
    try:
        doc = json.loads(path.read_bytes())
    except OSError as err:
        raise DatasetError(f"cannot read dataset {shown}: {err.strerror}") from None
    except ValueError as err:
        raise DatasetError(f"dataset {shown} is not valid JSON: {err}") from None
    return parse_dataset(doc, shown)


def score(metric: str, predictions: Sequence[Any], labels: Sequence[Any]) -> float:
    """`metric` of `predictions` against `labels` (same length, at least one)."""
    if metric == "accuracy":
        return sum(1 for p, y in zip(predictions, labels, strict=True) if _same(p, y)) / len(labels)
    try:
        errors = [float(p) - float(y) for p, y in zip(predictions, labels, strict=True)]
    except (TypeError, ValueError):
        raise DatasetError(f"metric {metric} needs numeric predictions and labels") from None
    if metric == "mae":
        return sum(abs(e) for e in errors) / len(errors)
    return math.sqrt(sum(e * e for e in errors) / len(errors))


def _same(prediction: Any, label: Any) -> bool:
    # A label file written by hand may say 1 where the model answers "1" (or 1.0).
    return prediction == label or str(prediction) == str(label)


def evaluate(predict: Predict, data: Dataset, metric: str, batch: int) -> float:
    """Send the rows in batches of `batch`, score every answer."""
    predictions: list[Any] = []
    for start in range(0, len(data.instances), batch):
        rows = data.instances[start : start + batch]
        got = predict(rows)
        if len(got) != len(rows):
            raise EvaluationError(f"{len(got)} predictions for {len(rows)} rows (rows {start}..)")
        predictions += got
    return score(metric, predictions, data.labels)


def http_predictor(url: str, timeout: float) -> Predict:
    """`POST {url}/predict` of a running model server."""
    endpoint = url.rstrip("/") + "/predict"

    def predict(rows: list[Any]) -> list[Any]:
        body = json.dumps({"instances": rows}).encode()
        request = urllib.request.Request(
            endpoint, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode("utf-8", "replace")
            raise EvaluationError(f"POST {endpoint} answered {err.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = err.reason if isinstance(err, urllib.error.URLError) else err
            raise EvaluationError(f"POST {endpoint} failed: {reason}") from None
        except ValueError:
            raise EvaluationError(f"POST {endpoint} did not answer JSON") from None
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if not isinstance(predictions, list):
            raise EvaluationError(f"POST {endpoint} answered no 'predictions' array")
        return predictions

    return predict


def bundle_predictor(model_path: Path, env: Mapping[str, str]) -> Predict:
    """The bundle loaded here, verified and self-tested as the server does at start."""
    from . import config
    from .errors import HTTPError, StartupError
    from .service import Service

    try:
        settings = config.from_env({**env, "MODEL_PATH": str(model_path)})
        service = Service.start(settings)
    except (config.ConfigError, StartupError) as err:
        raise DatasetError(f"--bundle {model_path}: {err}") from None

    def predict(rows: list[Any]) -> list[Any]:
        try:
            x = service.schema.rows_to_matrix(rows, max_rows=len(rows))
        except HTTPError as err:
            raise EvaluationError(f"the bundle refused the rows: {err.reason}") from None
        return list(service.predict(x).labels)

    return predict


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="modelserver evaluate", description=__doc__.split("\n")[0])
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--url", help="base URL of a running model server (its POST /predict)")
    model.add_argument(
        "--bundle", type=Path, help="a model file to load here (its bundle directory beside it)"
    )
    p.add_argument("--compare-url", help="base URL of the stable revision, scored on the same dataset")
    p.add_argument(
        "--dataset",
        default=BUNDLE,
        help="a JSON file, a https/s3/gs URI, or 'bundle' (the bundle's holdout.json; the default)",
    )
    p.add_argument("--dataset-sha256", help="the dataset's sha256 (required for a URI)")
    p.add_argument("--metric", choices=METRICS, help="default: the dataset's 'metric', else accuracy")
    p.add_argument("--batch", type=int, default=64, help="rows per request (default 64)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    p.add_argument("--result-file", type=Path, help="also write the result line here (/dev/termination-log)")
    args = p.parse_args(argv)
    if args.batch < 1:
        p.error("--batch must be at least 1")
    return args


def main(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    args = _parse(argv)
    env = dict(os.environ) if env is None else env
    model_path = args.bundle or (Path(env["MODEL_PATH"]) if env.get("MODEL_PATH") else None)
    result: dict[str, Any]
    code = 0
    try:
        data = read_dataset(args.dataset, args.dataset_sha256, model_path, env, args.timeout)
        metric = args.metric or data.metric or "accuracy"
        predict = http_predictor(args.url, args.timeout) if args.url else bundle_predictor(args.bundle, env)
        result = {"metric": metric, "value": evaluate(predict, data, metric, args.batch)}
        # `requests`: what the model was sent, so a caller can tell these from its other traffic.
        result["examples"] = len(data.labels)
        result["requests"] = math.ceil(len(data.labels) / args.batch) if args.url else 0
        if args.compare_url:
            stable = http_predictor(args.compare_url, args.timeout)
            result["stable_value"] = evaluate(stable, data, metric, args.batch)
    except DatasetError as err:
        result, code = {"error": f"dataset: {err}"[:ERROR_LIMIT]}, EXIT_CONFIG
    except EvaluationError as err:
        result, code = {"error": str(err)[:ERROR_LIMIT]}, EXIT_SCORING
    report(result, "evaluate", args.result_file)
    return code


def report(result: Mapping[str, Any], tool: str, result_file: Path | None) -> None:
    """A Job tool's result, by the result contract: one JSON line on stdout (and in `result_file`,
    the termination message, when given), and its error on stderr for a person reading the log."""
    line = json.dumps(result, separators=(",", ":"))
    print(line)
    if "error" in result:
        print(f"modelserver {tool}: {result['error']}", file=sys.stderr)
    if result_file is not None:
        result_file.write_text(line + "\n")
