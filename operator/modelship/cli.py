"""`modelship` command line.

modelship run [--namespace NS]... [--liveness URL] [--resync-seconds N] [--log-format json|text]
              [--metrics-port PORT] [--peering NAME [--priority N | --random-priority]]
              [--prometheus-address URL] [--prometheus-auth-secret SECRET] [--notifications JSON]
              [--shard-selector SELECTOR]
modelship crd [--check] [--output PATH]
modelship version
modelship list|get|status|set image|promote|pause|resume|abort|retry|undo ...   (as `kubectl modelship`)
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import socket
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from modelship import __version__, crd, logs, plugin

if TYPE_CHECKING:
    from modelship.analysis.measure import Defaults
    from modelship.api import NotificationTarget
    from modelship.core.shard import Selector

DEFAULT_LIVENESS = "http://0.0.0.0:8081/healthz"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelship", description="Safe rollouts of ML model-serving images."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator (kopf) against the current kubeconfig or in-cluster")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    run.add_argument(
        "--liveness", default=DEFAULT_LIVENESS, help="liveness endpoint URL (default: %(default)s)"
    )
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=30.0,
        help="reconcile every ModelDeployment at least this often (default: %(default)s)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve the operator's Prometheus metrics (/metrics) and readiness (/readyz) on this port "
        "(default: off; the chart uses 8080)",
    )
    run.add_argument(
        "--peering",
        default="",
        help="HA: meet other replicas in this kopf peering object; the highest priority is active "
        "(default: standalone, one replica)",
    )
    prio = run.add_mutually_exclusive_group()
    prio.add_argument("--priority", type=int, default=0, help="HA: this replica's peering priority")
    prio.add_argument(
        "--random-priority",
        action="store_true",
        help="HA: draw the priority at random, so equal replicas never tie (equal priorities freeze)",
    )
    run.add_argument(
        "--prometheus-address",
        help="Prometheus that analysis queries when a ModelDeployment names none "
        "(default: $MODELSHIP_PROMETHEUS_ADDRESS)",
    )
    run.add_argument(
        "--prometheus-auth-secret",
        help="Secret in the operator's namespace ($POD_NAMESPACE) with Prometheus credentials "
        "(default: $MODELSHIP_PROMETHEUS_AUTH_SECRET)",
    )
    run.add_argument(
        "--notifications",
        help="operator-wide notification targets, a JSON list shaped like spec.notifications, told of "
        "every ModelDeployment's transitions; their Secrets are in the operator's namespace "
        "($POD_NAMESPACE) (default: $MODELSHIP_NOTIFICATIONS; docs/notifications.md)",
    )
    run.add_argument(
        "--shard-selector",
        help="sharding: reconcile only ModelDeployments in namespaces whose labels match this label "
        "selector, e.g. 'modelship.io/shard=a' (needs list/watch on namespaces; docs/scaling.md) "
        "(default: $MODELSHIP_SHARD_SELECTOR, else every namespace)",
    )
    run.add_argument("--log-format", choices=["json", "text"], default="json")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    gen = sub.add_parser("crd", help="write (or --check) crds/ from the API models")
    gen.add_argument("--check", action="store_true")
    gen.add_argument("--output")

    sub.add_parser("version", help="print the version")
    for verb, (help_, _) in plugin.VERB_HELP.items():
        sub.add_parser(verb, help=help_)  # listed here; main() hands these to the plugin's parser
    return parser


def prometheus_settings(args: argparse.Namespace, env: Mapping[str, str]) -> Defaults:
    """(default Prometheus address, auth Secret name, the operator's namespace): flags over env.
    ValueError names the flag when the address is not a URL."""
    from modelship.analysis import prometheus
    from modelship.analysis.measure import Defaults

    env_address, env_secret = prometheus.operator_default(env)
    address = args.prometheus_address or env_address
    if address is not None:
        try:
            prometheus.PrometheusConfig(address=address)
        except ValueError as e:
            raise ValueError(f"--prometheus-address (or ${prometheus.ENV_ADDRESS}): {e}") from e
    return Defaults(address, args.prometheus_auth_secret or env_secret, env.get("POD_NAMESPACE") or None)


ENV_NOTIFICATIONS = "MODELSHIP_NOTIFICATIONS"


def notification_defaults(args: argparse.Namespace, env: Mapping[str, str]) -> list[NotificationTarget]:
    """The operator-wide notification targets: the flag over the env. ValueError names the flag and
    the target's field when the JSON is not a list of spec.notifications targets."""
    from pydantic import TypeAdapter, ValidationError

    from modelship.api import NotificationTarget

    text = args.notifications or env.get(ENV_NOTIFICATIONS) or ""
    if not text.strip():
        return []
    try:
        targets = TypeAdapter(list[NotificationTarget]).validate_json(text)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"--notifications (or ${ENV_NOTIFICATIONS}): [{where}]: {first['msg']}") from None
    if not env.get("POD_NAMESPACE"):
        raise ValueError("--notifications needs $POD_NAMESPACE: the namespace of its targets' Secrets")
    return targets


ENV_SHARD_SELECTOR = "MODELSHIP_SHARD_SELECTOR"


def shard_selector(args: argparse.Namespace, env: Mapping[str, str]) -> Selector | None:
    """This operator's shard: the flag over the env; None (unsharded) when neither is set or the
    selector is blank. ValueError names the flag when the selector does not parse."""
    from modelship.core.shard import SelectorError, parse

    text = args.shard_selector if args.shard_selector is not None else env.get(ENV_SHARD_SELECTOR, "")
    if not text.strip():
        return None
    try:
        return parse(text)
    except SelectorError as e:
        raise ValueError(f"--shard-selector (or ${ENV_SHARD_SELECTOR}) {text!r}: {e}") from None


def run(
    args: argparse.Namespace,
    prometheus: Defaults,
    notifications: list[NotificationTarget] | None = None,
    shard: Selector | None = None,
) -> None:
    # Imported here: `modelship crd` and `version` should not pay for kopf and the client.
    import kopf

    from modelship import handlers, heap, metrics
    from modelship.kube.client import load_api_client
    from modelship.kube.reconciler import API_CONNECTIONS
    from modelship.kube.storage import Storage

    heap.limit_arenas()  # before kopf and the client start their threads
    priority = random.randint(1, 2**31) if args.random_priority else args.priority
    # Our own identity, so the resync loop can find itself among kopf's peers.
    identity = f"{socket.gethostname()}/{os.getpid()}/{random.getrandbits(32):08x}"
    handlers.install(
        Storage(load_api_client(API_CONNECTIONS)),
        args.namespace,
        args.resync_seconds,
        args.peering or None,
        identity,
        priority,
        prometheus,
        notifications or [],
        shard,
    )
    if args.metrics_port:
        metrics.serve(args.metrics_port, ready=handlers.readiness)  # /metrics and /readyz
    kopf.run(
        # Without --peering: no peering objects, one replica (the chart uses Recreate).
        standalone=not args.peering,
        peering_name=args.peering or None,
        priority=priority,
        identity=identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness or None,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in plugin.VERB_HELP:
        return plugin.main(argv, prog="modelship")
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    if args.command == "crd":
        extra = ["--check"] if args.check else []
        return crd.main([*extra, *(["--output", args.output] if args.output else [])])
    try:
        prometheus_defaults = prometheus_settings(args, os.environ)
        notifications = notification_defaults(args, os.environ)
        shard = shard_selector(args, os.environ)
    except ValueError as e:
        print(f"modelship run: {e}", file=sys.stderr)
        return 2
    logs.setup(logging.DEBUG if args.verbose else logging.INFO, args.log_format)
    run(args, prometheus_defaults, notifications, shard)
    return 0


if __name__ == "__main__":
    sys.exit(main())
