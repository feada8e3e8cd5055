"""The demo's knobs, read from the environment (each bad value is refused naming the variable)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

BAD_MODELS = ("v3-bad-errors", "v3-slow", "v3-inaccurate")


class SettingsError(ValueError):
    """A DEMO_* variable is invalid; the message names it."""


@dataclass(frozen=True)
class Settings:
    acts: int = 2  # DEMO_ACTS: 1 = only the good rollout; 2 = also the bad one, rolled back by analysis
    bad: str = "v3-bad-errors"  # DEMO_BAD: the model act 2 rolls out
    step_seconds: float = 20.0  # DEMO_STEP_SECONDS: each pause step's duration
    rate: float = 20.0  # DEMO_RATE: requests per second through the gateway (Traefik)
    replicas: int = 2  # DEMO_REPLICAS
    interval: float = 2.0  # DEMO_INTERVAL: seconds between progress lines
    act_timeout: float = 600.0  # DEMO_ACT_TIMEOUT: give up on an act after this long
    # DEMO_OPERATOR: `cluster` installs it with Helm as a pod (as users run it); `process` runs it
    # on this machine, for quick iteration on the operator's code.
    in_cluster: bool = True


def _number(env: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a number") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise SettingsError(f"{key}={raw} must be between {low:g} and {high:g}")
    return value


def _integer(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    value = _number(env, key, default, low, high)
    if value != int(value):
        raise SettingsError(f"{key}={env[key].strip()} must be a whole number")
    return int(value)


def from_env(env: Mapping[str, str]) -> Settings:
    bad = env.get("DEMO_BAD", "").strip() or Settings.bad
    if bad not in BAD_MODELS:
        raise SettingsError(f"DEMO_BAD={bad!r} must be one of {', '.join(BAD_MODELS)}")
    operator = env.get("DEMO_OPERATOR", "").strip() or "cluster"
    if operator not in ("cluster", "process"):
        raise SettingsError(f"DEMO_OPERATOR={operator!r} must be cluster or process")
    return Settings(
        in_cluster=operator == "cluster",
        acts=_integer(env, "DEMO_ACTS", Settings.acts, 1, 2),
        bad=bad,
        step_seconds=_number(env, "DEMO_STEP_SECONDS", Settings.step_seconds, 1, 3600),
        rate=_number(env, "DEMO_RATE", Settings.rate, 1, 200),
        replicas=_integer(env, "DEMO_REPLICAS", Settings.replicas, 1, 10),
        interval=_number(env, "DEMO_INTERVAL", Settings.interval, 0.2, 60),
        act_timeout=_number(env, "DEMO_ACT_TIMEOUT", Settings.act_timeout, 10, 7200),
    )
