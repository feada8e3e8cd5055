"""The JSONPath subset of web metrics, pure: parse a path, and find what it points at.

The subset (`api.JSONPATH_RE`, checked at admission): `$` for the whole document, or a first key;
then `.key`, `[n]` (a list index from 0) and `['key']` (any key without a `'`) steps; the whole
optionally wrapped in `{}` as Argo Rollouts writes it. No wildcards, filters, slices or recursion:
a metric is one value.
"""

from __future__ import annotations

import re

from modelship import api

Step = str | int  # a key of an object, or an index of a list

_STEP = re.compile(rf"\.(?P<key>{api.JSONPATH_KEY_RE})|\[(?P<index>[0-9]+)\]|\['(?P<quoted>[^']+)'\]")
_FIRST = re.compile(rf"\$|(?P<key>{api.JSONPATH_KEY_RE})")


class Missing:
    """Nothing at the path (a key absent, an index past the end): no data, not an error."""

    def __init__(self, where: str) -> None:
        self.where = where  # the part of the path that found nothing


def parse(path: str) -> tuple[Step, ...]:
    """The steps of `path`; ValueError naming the field when it is outside the subset."""
    if not re.fullmatch(api.JSONPATH_RE, path):
        raise ValueError(
            f"web.jsonPath {path!r} is not in the supported subset: $ or a key, then .key, [n] or "
            "['key'] steps"
        )
    bare = path[1:-1] if path.startswith("{") else path
    first = _FIRST.match(bare)
    assert first is not None  # the full match above says so
    steps: list[Step] = [first.group("key")] if first.group("key") else []
    for step in _STEP.finditer(bare, first.end()):
        index = step.group("index")
        steps.append(int(index) if index is not None else step.group("key") or step.group("quoted"))
    return tuple(steps)


def find(document: object, path: str) -> object:
    """What `path` points at in a parsed JSON `document`, or a `Missing`. A step that does not fit
    what it meets (a key on a list, an index on an object or a number) is missing too: the answer
    does not have the value, which `noData` judges."""
    node = document
    walked = "$"
    for step in parse(path):
        walked += f"[{step}]" if isinstance(step, int) else f".{step}"
        node = _child(node, step)
        if node is _ABSENT:
            return Missing(walked)
    return node


_ABSENT = object()


def _child(node: object, step: Step) -> object:
    if isinstance(step, int):
        return node[step] if isinstance(node, list) and step < len(node) else _ABSENT
    return node[step] if isinstance(node, dict) and step in node else _ABSENT


def number(value: object) -> float | None:
    """A found JSON value as a metric value: a number as is, true 1 and false 0, a string that
    holds a number; null is no value (None). Anything else (an object, a list, other text):
    ValueError, the endpoint answered something that is not a measurement."""
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return _finite(float(value))
    if isinstance(value, str):
        try:
            return _finite(float(value.strip()))
        except ValueError:
            raise ValueError(f"{value[:60]!r}, not a number") from None
    raise ValueError(f"{'an object' if isinstance(value, dict) else 'a list'}, not a number")


def _finite(value: float) -> float | None:
    """NaN is no value (as in Prometheus' answers); infinities are values beyond any limit."""
    return None if value != value else value
