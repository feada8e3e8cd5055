"""Online accuracy: remember what was predicted per request id, score true labels sent later."""

from __future__ import annotations

import http.client
from collections import OrderedDict
from typing import Any

FORWARD_TIMEOUT_S = 2.0


class FeedbackStore:
    """A bounded memory of recent predictions; the oldest are forgotten first.

    Feedback is scored by the replica that served the prediction (it is per-process memory), which
    is also what attributes the outcome to the right revision; a feedback token lets any other
    replica forward it there (feedbacktoken).
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, list[Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def remember(self, request_id: str, labels: list[Any]) -> None:
        if self._capacity == 0:
            return
        items = self._items
        items[request_id] = labels
        if len(items) > self._capacity:
            items.popitem(last=False)

    def take(self, request_id: str) -> list[Any] | None:
        """The predictions for ``request_id``, forgotten once taken so a label counts only once."""
        return self._items.pop(request_id, None)


def same_label(predicted: Any, actual: Any) -> bool:
    """1 == 1.0 for numeric classes; otherwise compare exactly ("cat" != "Cat", 1 != "1")."""
    numeric = (int, float)
    if isinstance(predicted, bool) or isinstance(actual, bool):
        return predicted is actual
    if isinstance(predicted, numeric) and isinstance(actual, numeric):
        return float(predicted) == float(actual)
    return bool(predicted == actual)


def forward(address: str, body: bytes, marker: bytes) -> tuple[int, bytes]:
    """POST `body` to /feedback on the replica at `address` (host:port), marked as forwarded;
    its status and body. Blocking: the server runs it in a thread."""
    conn = http.client.HTTPConnection(address, timeout=FORWARD_TIMEOUT_S)
    try:
        headers = {"content-type": "application/json", marker.decode(): "1"}
        conn.request("POST", "/feedback", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
