"""`kubectl modelship` (also `modelship <verb>`): watch and steer rollouts by hand.

Every verb is one merge patch of the ModelDeployment (see `modelship.core.control`),
sent with the resourceVersion it was computed from; the operator does the rest.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from modelship import api
from modelship.core import control
from modelship.kube.storage import KubeError, Storage, md_path

FIELD_MANAGER = "kubectl-modelship"
DONE_PHASES = ("Healthy", "Degraded", "RolledBack")

VERB_HELP = {
    "promote": (
        "move the rollout on: end the current pause or step (--full: skip all remaining steps)",
        "kubectl modelship promote fraud-detector\nkubectl modelship promote fraud-detector --full",
    ),
    "pause": ("hold the rollout where it is (sets spec.paused)", "kubectl modelship pause fraud-detector"),
    "resume": ("continue a paused rollout (clears spec.paused)", "kubectl modelship resume fraud-detector"),
    "abort": (
        "stop the rollout: all traffic back to stable, canary scaled to 0, phase Degraded until retry",
        "kubectl modelship abort fraud-detector",
    ),
    "retry": ("start an aborted rollout again from step 0", "kubectl modelship retry fraud-detector"),
    "undo": (
        "put the stable revision's image, model, env, ... back into the spec (mid-rollout: a rollback)",
        "kubectl modelship undo fraud-detector",
    ),
    "status": (
        "show phase, revisions, weight, step, conditions and recent events",
        "kubectl modelship status fraud-detector\nkubectl modelship status fraud-detector --watch",
    ),
}
_DONE = {
    "promote": "promoted",
    "pause": "paused",
    "resume": "resumed",
    "abort": "aborted",
    "retry": "retried",
    "undo": "undone",
}


def parser(prog: str = "kubectl modelship") -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=prog,
        description="Watch and steer modelship rollouts. Each command patches the ModelDeployment; "
        "the operator acts on it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    for verb, (help_, example) in VERB_HELP.items():
        p = sub.add_parser(
            verb,
            help=help_,
            description=help_[0].upper() + help_[1:] + ".",
            epilog="example:\n  " + example.replace("\n", "\n  "),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("name", metavar="NAME", help="the ModelDeployment")
        p.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's)")
        if verb == "promote":
            p.add_argument("--full", action="store_true", help="skip all remaining steps")
        if verb == "status":
            p.add_argument("-w", "--watch", action="store_true", help="redraw until the rollout is done")
            p.add_argument("--interval", type=float, default=2.0, help="seconds between redraws (default 2)")
    return top


def run_verb(kube: Storage, namespace: str, name: str, verb: str, full: bool = False) -> str:
    """Patch the ModelDeployment for `verb`; retried when it changed under us. Returns what was done."""
    for _ in range(5):
        obj = _get(kube, namespace, name)
        spec = api.ModelDeploymentSpec.model_validate(obj["spec"])
        status = api.read_status(obj.get("status"), spec)
        patch = control.patch_for(verb, spec, status, full)
        version = obj["metadata"]["resourceVersion"]
        if kube.patch_md(namespace, name, patch.target, patch.body, version, FIELD_MANAGER) is None:
            continue  # the operator wrote meanwhile: decide again on the fresh object
        done = "fully promoted" if full else _DONE[verb]
        return f"modeldeployment.{api.GROUP}/{name} {done}"
    raise control.NotApplicable("the ModelDeployment kept changing; try again")


def _get(kube: Storage, namespace: str, name: str) -> dict[str, Any]:
    obj = kube.get(md_path(namespace, name))
    if obj is None:
        raise control.NotApplicable(f'modeldeployment "{name}" not found in namespace "{namespace}"')
    return obj


def render(obj: dict[str, Any], events: list[dict[str, Any]]) -> str:
    """The status view: one screen, most important first."""
    spec = api.ModelDeploymentSpec.model_validate(obj["spec"])
    status = api.read_status(obj.get("status"), spec)
    steps = spec.strategy.steps
    lines = [
        f"Name:       {obj['metadata']['name']}",
        f"Namespace:  {obj['metadata']['namespace']}",
        f"Phase:      {status.phase or 'Unknown'}",
        f"Strategy:   {'canary, ' + str(len(steps)) + ' steps' if steps else 'blueGreen'}"
        f" ({spec.traffic.router} router)",
        f"Stable:     {status.stable_revision or '-'} "
        f"({status.available_replicas or 0}/{spec.replicas} available)",
    ]
    if status.canary is not None:
        step, weight = status.canary.step, status.canary.weight
        actual = status.new_revision_actual_weight
        asked = f" (steps ask for {weight}%)" if actual != weight else ""
        current = api.dump(steps[step]) if step < len(steps) else {"promote": "waiting for all replicas"}
        lines += [
            f"Canary:     {status.canary.revision}",
            f"Weight:     {actual}% canary / {100 - actual}% stable{asked}",
            f"Step:       {min(step + 1, len(steps))}/{len(steps)}  {current}",
        ]
    if status.blue_green is not None:
        lines += [
            f"Preview:    {status.blue_green.revision}",
            f"Switch:     {status.blue_green.phase}",
        ]
    if status.smoke_test is not None:
        verdict = "passed" if status.smoke_test.passed else "FAILED"
        lines.append(f"Smoke test: {verdict}: {status.smoke_test.message}")
    for run in status.analysis or []:
        what = f"step {run.step + 1}" if run.step is not None else run.kind
        lines.append(f"Analysis:   {what} of {run.revision}: {run.phase}")
        for m in run.metrics:
            last = m.measurements[-1] if m.measurements else None
            seen = f"{last.verdict}: {last.message}" if last else "not measured yet"
            lines.append(
                f"  {m.name:<16} {m.successful} ok, {m.failed} failed, {m.inconclusive} inconclusive; {seen}"
            )
    if status.aborted is not None:
        why = f"{status.aborted.reason}: " if status.aborted.reason else ""
        lines.append(
            f"Aborted:    {status.aborted.revision} ({why}`kubectl modelship retry` starts it again)"
        )
    if status.rolled_back is not None:
        lines.append(
            f"Rolled back: {status.rolled_back.revision} (the spec went back to the stable revision)"
        )
    if status.scale_down_revision and status.scale_down_at:
        lines.append(f"Old:        {status.scale_down_revision} (deleted at {_stamp(status.scale_down_at)})")
    lines.append("Conditions:")
    for c in status.conditions or []:
        lines.append(f"  {c.type}={c.status}  {c.reason}: {c.message}")
    lines.append("Events:")
    for e in sorted(events, key=lambda e: e.get("lastTimestamp") or "")[-8:]:
        stamp, kind = e.get("lastTimestamp", ""), e.get("type", "")
        lines.append(f"  {stamp}  {kind}  {e.get('reason', '')}: {e.get('message', '')}")
    return "\n".join(lines)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _events(kube: Storage, namespace: str, obj: dict[str, Any]) -> list[dict[str, Any]]:
    return kube.events_of(namespace, obj["metadata"]["uid"])


def done(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    rollout = status.get("rollout") or {}
    return status.get("phase") in DONE_PHASES and not (rollout.get("canary") or rollout.get("blueGreen"))


def status(
    kube: Storage,
    namespace: str,
    name: str,
    watch: bool,
    interval: float,
    out: Callable[[str], None] = print,
) -> int:
    while True:
        obj = _get(kube, namespace, name)
        view = render(obj, _events(kube, namespace, obj))
        if watch and sys.stdout.isatty():
            out("\033[H\033[2J" + view)  # redraw in place
        else:
            out(view)
        if not watch or done(obj):
            return 0
        out("")
        time.sleep(interval)


def current_namespace() -> str:
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
        namespace = active.get("context", {}).get("namespace")
        return str(namespace) if namespace else "default"
    except (config.ConfigException, FileNotFoundError):
        return "default"


def main(argv: list[str] | None = None, prog: str = "kubectl modelship") -> int:
    args = parser(prog).parse_args(argv)
    from modelship.kube.client import load_api_client

    kube = Storage(load_api_client())
    namespace = args.namespace or current_namespace()
    try:
        if args.verb == "status":
            return status(kube, namespace, args.name, args.watch, args.interval)
        print(run_verb(kube, namespace, args.name, args.verb, getattr(args, "full", False)))
        return 0
    except control.NotApplicable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KubeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def kubectl_main() -> None:
    """Entry point of the `kubectl-modelship` executable (kubectl finds it on PATH)."""
    sys.exit(main())
