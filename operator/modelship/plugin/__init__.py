"""`kubectl modelship` (also `modelship <command>`): list, watch and steer rollouts by hand.

One concept a module: `args` (the command line, VERB_HELP, exit codes), `connect` (kubeconfig,
context, namespace), `verbs` (the steering patches), `show` and `table` (list, get), `watch` (the
watch stream), `view` (the status view and a CI gate's verdict), `status`, `setimage` and
`completion`, and the web `dashboard` (a package). This module dispatches.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from modelship.plugin import completion
from modelship.plugin.args import VERB_HELP, parser

if TYPE_CHECKING:
    from modelship.plugin.verbs import FIELD_MANAGER, run_verb
    from modelship.plugin.view import done, render

__all__ = ["FIELD_MANAGER", "VERB_HELP", "done", "kubectl_main", "main", "parser", "render", "run_verb"]

# Loaded on first use: a shell completion runs this process at each TAB, and needs only the parser.
_LAZY = {"FIELD_MANAGER": "verbs", "run_verb": "verbs", "done": "view", "render": "view"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"modelship.plugin.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None, prog: str = "kubectl modelship") -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [completion.HIDDEN]:
        return completion.complete_main(argv[1:])
    cli = parser(prog)
    a = cli.parse_args(argv)
    if a.verb == "completion":
        sys.stdout.write(completion.script(a.shell))
        return 0
    from urllib3.exceptions import HTTPError

    from modelship.core import control
    from modelship.kube.storage import KubeError
    from modelship.plugin import dashboard, setimage, show, status, view
    from modelship.plugin.connect import ConnectError, connect
    from modelship.plugin.dashboard.incluster import InCluster
    from modelship.plugin.verbs import run_verb

    model_sha256 = getattr(a, "model_sha256", None)
    mode: InCluster | None = None
    if a.verb == "dashboard":  # checked before connecting: flags that do not fit are a usage error
        try:
            mode = dashboard.mode_of(a)
        except dashboard.BadFlags as err:
            cli.print_usage(sys.stderr)
            print(f"error: {err}", file=sys.stderr)
            return view.USAGE
    try:
        if a.verb == "set":
            # Checked before connecting: a wrong IMAGE is a usage error, whatever the cluster.
            if model_sha256 is None and sys.stdin.isatty():
                model_sha256 = input("--model-sha256 (the sha256 of the model this image serves): ").strip()
            setimage.patch(a.image, model_sha256)
        kube, namespace = connect(a.kubeconfig, a.context, a.namespace)
        if a.verb == "dashboard":
            from modelship.analysis.prometheus import ENV_ADDRESS

            prometheus = a.prometheus_address or os.environ.get(ENV_ADDRESS) or None
            return dashboard.serve(kube, namespace, a.namespace is None, a.port, prometheus, mode, a.listen)
        if a.verb == "list":
            text = show.list_(kube, namespace, a.all_namespaces, a.output)
            print(
                text or show.none_found(namespace, a.all_namespaces), file=sys.stdout if text else sys.stderr
            )
        elif a.verb == "get":
            print(show.get_(kube, namespace, a.name, a.output))
        elif a.verb == "set":
            setimage.set_image(kube, namespace, a.name, a.image, model_sha256, a.dry_run)
        elif a.verb == "status":
            return status.status(kube, namespace, a.name, a.watch, a.timeout)
        else:
            print(
                run_verb(
                    kube, namespace, a.name, a.verb, getattr(a, "full", False), getattr(a, "apply", False)
                )
            )
        return view.OK
    except setimage.BadValue as err:
        cli.print_usage(sys.stderr)
        print(f"error: {err}", file=sys.stderr)
        return view.USAGE
    except (control.NotApplicable, KubeError, ConnectError) as err:
        print(f"error: {err}", file=sys.stderr)
        return view.ERROR
    except HTTPError as err:  # no answer at all: refused, timed out, TLS
        print(f"error: cannot reach the API server: {err}", file=sys.stderr)
        return view.ERROR


def kubectl_main() -> None:
    """Entry point of the `kubectl-modelship` executable (kubectl finds it on PATH)."""
    sys.exit(main())
