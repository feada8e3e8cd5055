"""Sharding, pure: which namespaces this operator owns, by a Kubernetes label selector.

Several operators split one cluster between them: each is given a label selector
(`--shard-selector`) and reconciles only the ModelDeployments in namespaces whose labels match.
The selector is the API server's own syntax, so `kubectl get namespaces -l '<selector>'` lists
what a shard owns:

    modelship.io/shard=a            equality (`==` too), `!=` (also matches a missing label)
    team in (x,y), tier notin (z)   sets (`notin` also matches a missing label)
    gpu, !legacy                    the label exists / does not
    a=1,b=2                         every requirement must hold

`Shard` keeps the namespaces' labels as the watch reports them and says when a namespace joins
or leaves the shard, so a relabelled namespace moves between shards without a restart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Operator = Literal["=", "!=", "in", "notin", "exists", "!", "gt", "lt"]

# The API server's rules for label keys (an optional DNS subdomain prefix and a name) and values.
_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}$")
_VALUE = re.compile(rf"^{_NAME}?$")
_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|<|>|[^\s=!(),<>]+)")


class SelectorError(ValueError):
    """The selector does not parse; the message says where and why."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "exists":
            return value is not None
        if self.op == "!":
            return value is None
        if self.op in ("=", "in"):
            return value in self.values
        if self.op in ("!=", "notin"):
            return value not in self.values
        # gt / lt: the label must be an integer (as the API server compares them)
        try:
            number, (bound,) = int(value or ""), self.values
        except ValueError:
            return False
        return number > int(bound) if self.op == "gt" else number < int(bound)


@dataclass(frozen=True)
class Selector:
    """A parsed label selector; the empty selector matches every namespace."""

    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:  # unreachable: the token pattern takes any character but whitespace
            raise SelectorError(f"unexpected character at {pos}")
        tokens.append(m.group(1))
        pos = m.end()
    return tokens


def _key(token: str) -> str:
    if not _KEY.match(token) or len(token.rpartition("/")[2]) > 63:
        raise SelectorError(f"{token!r} is not a valid label key")
    return token


def _value(token: str) -> str:
    if not _VALUE.match(token):
        raise SelectorError(f"{token!r} is not a valid label value")
    return token


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens, self.i = _tokens(text), 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, what: str) -> str:
        token = self.peek()
        if token is None:
            raise SelectorError(f"ends where {what} was expected")
        self.i += 1
        return token

    def requirement(self) -> Requirement:
        token = self.take("a label key")
        if token == "!":
            return Requirement(_key(self.take("a label key after '!'")), "!")
        key = _key(token)
        op = self.peek()
        if op is None or op == ",":
            return Requirement(key, "exists")
        self.i += 1
        if op in ("=", "=="):
            return Requirement(key, "=", frozenset({self.scalar(key)}))
        if op == "!=":
            return Requirement(key, "!=", frozenset({self.scalar(key)}))
        if op in (">", "<"):
            bound = self.take(f"a number after {key} {op}")
            if not re.fullmatch(r"-?\d+", bound):
                raise SelectorError(f"{key} {op} {bound}: {bound!r} is not an integer")
            return Requirement(key, "gt" if op == ">" else "lt", frozenset({bound}))
        if op in ("in", "notin"):
            return Requirement(key, "in" if op == "in" else "notin", self.values(key, op))
        raise SelectorError(f"after key {key!r}: {op!r} is not an operator (=, ==, !=, in, notin, <, >)")

    def scalar(self, key: str) -> str:
        token = self.peek()
        if token is None or token == ",":  # `key=` selects an empty value
            return ""
        self.i += 1
        return _value(token)

    def values(self, key: str, op: str) -> frozenset[str]:
        if self.take(f"'(' after {key} {op}") != "(":
            raise SelectorError(f"{key} {op}: values must be in parentheses, as in {key} {op} (x,y)")
        values: set[str] = set()
        while True:
            token = self.take(f"a value or ')' in {key} {op} (...)")
            if token == ")" and not values:
                raise SelectorError(f"{key} {op} (): needs at least one value")
            if token in (",", ")"):
                raise SelectorError(f"{key} {op} (...): a value is missing before {token!r}")
            values.add(_value(token))
            sep = self.take(f"',' or ')' in {key} {op} (...)")
            if sep == ")":
                return frozenset(values)
            if sep != ",":
                raise SelectorError(f"{key} {op} (...): expected ',' or ')', got {sep!r}")

    def selector(self) -> tuple[Requirement, ...]:
        requirements = []
        while self.peek() is not None:
            requirements.append(self.requirement())
            sep = self.peek()
            if sep is None:
                break
            if sep != ",":
                raise SelectorError(f"expected ',' between requirements, got {sep!r}")
            self.i += 1
            if self.peek() is None:
                raise SelectorError("ends with ','")
        return tuple(requirements)


def parse(text: str) -> Selector:
    """A label selector in the API server's syntax; SelectorError says what is wrong."""
    return Selector(text.strip(), _Parser(text).selector())


Change = Literal["joined", "left"] | None


@dataclass
class Shard:
    """The namespaces of one shard, as far as the namespace watch has told. A namespace not yet
    seen is not owned: its ModelDeployments wait for the namespace's first watch event."""

    selector: Selector
    _owned: set[str] = field(default_factory=set)

    def owns(self, namespace: str) -> bool:
        return namespace in self._owned

    def saw(self, namespace: str, labels: Mapping[str, str] | None) -> Change:
        """The namespace's labels now (None: deleted); whether it joined or left the shard."""
        was, now = namespace in self._owned, labels is not None and self.selector.matches(labels)
        if now:
            self._owned.add(namespace)
        else:
            self._owned.discard(namespace)
        return None if was == now else ("joined" if now else "left")
