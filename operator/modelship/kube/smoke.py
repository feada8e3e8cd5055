"""The smoke test's I/O: send `spec.smokeTest.inputs` to every ready pod of a revision.

The pods are the ones the `<name>-canary` (or `-preview`) Service selects; each gets one
`POST /predict` with all inputs, straight to the pod IP (no Service in between, so no user
request can be mixed in). A pod's output for an input is its `probabilities` row when the
model gives one (classifiers), else the prediction itself as a one-number vector
(regressors). The comparison with `expected` is pure: `gates.compare`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from modelship import api
from modelship.core import gates, manifests
from modelship.kube.storage import Storage, pods_path

TIMEOUT = 5.0
Output = tuple[float, ...] | str


def ready_pods(storage: Storage, namespace: str, revision: str) -> list[tuple[str, str]]:
    """(name, IP) of the revision's pods that are Ready."""
    out = []
    for pod in storage.items(pods_path(namespace), labelSelector=f"{manifests.REVISION_LABEL}={revision}"):
        status = pod.get("status", {})
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
        )
        if ready and status.get("podIP") and not pod["metadata"].get("deletionTimestamp"):
            out.append((pod["metadata"]["name"], status["podIP"]))
    return sorted(out)


def outputs_of(answer: Any, n: int) -> tuple[Output, ...]:
    """One output vector per input from a /predict answer, or why there is none."""
    if not isinstance(answer, dict):
        return ("the answer is not a JSON object",) * n
    rows = answer.get("probabilities")
    if isinstance(rows, list) and len(rows) == n and all(isinstance(r, list) for r in rows):
        return tuple(tuple(float(x) for x in r) for r in rows)
    predictions = answer.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != n:
        return (f"expected {n} predictions in the answer",) * n
    out: list[Output] = []
    for p in predictions:
        if isinstance(p, (int, float)) and not isinstance(p, bool):
            out.append((float(p),))
        elif isinstance(p, list) and all(isinstance(x, (int, float)) for x in p):
            out.append(tuple(float(x) for x in p))
        else:
            out.append(f"prediction {p!r} is not numeric and the model gives no probabilities")
    return tuple(out)


def ask(ip: str, port: int, test: api.SmokeTest, revision: str) -> tuple[Output, ...] | None:
    """The pod's outputs, or None when it could not be reached (asked again on the next pass)."""
    n = len(test.inputs)
    host = f"[{ip}]" if ":" in ip else ip
    request = urllib.request.Request(
        f"http://{host}:{port}/predict",
        data=json.dumps({"instances": test.inputs}).encode(),
        headers={"Content-Type": "application/json", "X-Request-ID": f"modelship-smoke-{revision}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
            return outputs_of(json.loads(reply.read()), n)
    except urllib.error.HTTPError as err:
        if err.code in (502, 503, 504):  # not serving yet, or not reachable through a proxy: ask again
            return None
        return (f"HTTP {err.code}: {err.read()[:200].decode('utf-8', 'replace')}",) * n
    except ValueError as err:
        return (f"the answer is not JSON: {err}",) * n
    except OSError:
        return None


def smoke_test(
    storage: Storage, namespace: str, revision: str, port: int, test: api.SmokeTest
) -> gates.SmokeObservation:
    pods = ready_pods(storage, namespace, revision)
    answers = [(name, ask(ip, port, test, revision)) for name, ip in pods]
    return gates.SmokeObservation(revision, tuple((name, out) for name, out in answers if out is not None))
