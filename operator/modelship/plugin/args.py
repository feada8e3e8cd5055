"""The plugin's command line: its commands (VERB_HELP), kubectl's standard flags, and the parser.

The connection flags (-n, --context, --kubeconfig) are accepted before or after the command,
as kubectl accepts them; `-A` and `-o` belong to the commands that list or print objects.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

# Each command: (one-line help, copyable example). `modelship <command>` hands these to the plugin.
VERB_HELP = {
    "list": (
        "list ModelDeployments with the columns of `kubectl get modeldeployments`",
        "kubectl modelship list\nkubectl modelship list -A -o wide",
    ),
    "get": (
        "print one ModelDeployment as a table row, or whole as JSON or YAML",
        "kubectl modelship get fraud-detector\nkubectl modelship get fraud-detector -o yaml",
    ),
    "status": (
        "show phase, revisions, weight, step, conditions and recent events",
        "kubectl modelship status fraud-detector\nkubectl modelship status fraud-detector --watch\n"
        "kubectl modelship status fraud-detector --timeout 10m  # a CI gate: 0 when Healthy",
    ),
    "set": (
        "set image: start a rollout of a new image (pinned by digest) and the model checksum it serves",
        "kubectl modelship set image fraud-detector "
        "registry.example/fraud@sha256:<64 hex> --model-sha256 <64 hex>",
    ),
    "promote": (
        "move the rollout on: end the current pause or step (--full: skip all remaining steps)",
        "kubectl modelship promote fraud-detector\nkubectl modelship promote fraud-detector --full",
    ),
    "pause": (
        "hold the rollout where it is (sets status.pause, which a GitOps tool leaves alone)",
        "kubectl modelship pause fraud-detector",
    ),
    "resume": (
        "continue a paused rollout (removes status.pause; a spec.paused from Git is changed in Git, "
        "or here with --apply)",
        "kubectl modelship resume fraud-detector",
    ),
    "abort": (
        "stop the rollout: all traffic back to stable, canary scaled to 0, phase Degraded until retry",
        "kubectl modelship abort fraud-detector",
    ),
    "retry": ("start an aborted rollout again from step 0", "kubectl modelship retry fraud-detector"),
    "undo": (
        "go back to the stable revision: mid-rollout an abort (traffic to stable at once); prints the "
        "image, model, env, ... to put in Git so it sticks (--apply: patch the spec here instead)",
        "kubectl modelship undo fraud-detector\nkubectl modelship undo fraud-detector --apply",
    ),
    "dashboard": (
        "serve a web dashboard on 127.0.0.1: every rollout you may see, live, and its steering buttons "
        "(with your kubeconfig's credentials)",
        "kubectl modelship dashboard\nkubectl modelship dashboard --port 3200 -n ml",
    ),
    "completion": (
        "print a bash or zsh completion script (`source <(kubectl modelship completion bash)`)",
        "kubectl modelship completion bash > ~/.local/share/bash-completion/completions/kubectl-modelship",
    ),
}

OUTPUTS = ("wide", "json", "yaml", "name")
DASHBOARD_PORT = 3110
DASHBOARD_LISTEN_PORT = 8080  # --in-cluster's default: the chart's container port
SHELLS = ("bash", "zsh")

EXIT_CODES = """exit codes:
  0  done: the command succeeded; for status --watch/--timeout, the rollout is Healthy
  1  status --watch/--timeout: the rollout ended Degraded or RolledBack (the reason is printed)
  2  usage: a bad flag or argument (the message names it)
  3  status --timeout: the time ran out before the rollout was done
  4  error: not found, refused by the API server, unreachable, or the command does not apply now"""

GITOPS_NOTE = (
    "Under GitOps (Argo CD, Flux) change spec.image and spec.model.sha256 in Git instead: the tool "
    "would revert a patch made here. The command prints that YAML change either way."
)


def timeout(text: str) -> timedelta:
    """`--timeout`'s type: a duration such as 30s, 5m or 1h30m."""
    from modelship import api  # here: completion parses too, and should not wait for pydantic

    try:
        return api.parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a duration such as 30s, 5m or 1h30m, not {text!r}"
        ) from None


def port(text: str) -> int:
    """`--port`'s type: 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, not {text!r}")
    return value


def listen(text: str) -> tuple[str, int]:
    """`--listen`'s type: ADDRESS:PORT (0.0.0.0:8080, 127.0.0.1:0)."""
    address, colon, number = text.rpartition(":")
    try:
        return address, port(number) if colon and address else port("")
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be ADDRESS:PORT, such as 0.0.0.0:8080, not {text!r}"
        ) from None


def _connection(p: argparse.ArgumentParser, top: bool) -> None:
    # On the top parser with defaults; on each command only when given (SUPPRESS), so a flag before
    # the command is not reset by the command's parser.
    default = None if top else argparse.SUPPRESS
    p.add_argument(
        "-n", "--namespace", default=default, help="the namespace (default: the kubeconfig context's)"
    )
    p.add_argument("--context", default=default, help="the kubeconfig context to use (default: its current)")
    p.add_argument(
        "--kubeconfig",
        default=default,
        help="the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)",
    )


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o",
        "--output",
        choices=OUTPUTS,
        help="wide: more columns; json/yaml: the whole object; name: modeldeployment.modelship.io/NAME",
    )


def _command(sub: argparse._SubParsersAction[argparse.ArgumentParser], verb: str) -> argparse.ArgumentParser:
    help_, example = VERB_HELP[verb]
    p = sub.add_parser(
        verb,
        help=help_,
        description=help_[0].upper() + help_[1:] + ".",
        epilog="example:\n  " + example.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if verb != "completion":
        _connection(p, top=False)
    return p


def parser(prog: str = "kubectl modelship") -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=prog,
        description="Watch and steer modelship rollouts. Each command reads or patches the "
        "ModelDeployment; the operator acts on it.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection(top, top=True)
    sub = top.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    for verb in VERB_HELP:
        p = _command(sub, verb)
        if verb == "list":
            p.add_argument("-A", "--all-namespaces", action="store_true", help="list in every namespace")
            _output(p)
        elif verb == "dashboard":
            p.add_argument(
                "--port",
                type=port,
                default=DASHBOARD_PORT,
                help=f"the port on 127.0.0.1 (default {DASHBOARD_PORT}; 0: any free one)",
            )
            p.add_argument(
                "--prometheus-address",
                metavar="URL",
                help="the Prometheus charts query for a ModelDeployment whose spec.analysis names "
                "none, as the operator's flag (default: $MODELSHIP_PROMETHEUS_ADDRESS)",
            )
            p.description = (p.description or "") + (
                " All namespaces you may list, or only -n's when given. Ctrl-C stops it."
                " --in-cluster: installed by the chart (dashboard.enabled), behind an auth proxy."
            )
            incluster = p.add_argument_group(
                "in-cluster mode (the chart's dashboard.* values: see docs/dashboard.md)"
            )
            incluster.add_argument(
                "--in-cluster",
                action="store_true",
                help="serve behind an auth proxy: on --listen, for --public-host, read-only unless --actions",
            )
            incluster.add_argument(
                "--listen",
                type=listen,
                default=("0.0.0.0", DASHBOARD_LISTEN_PORT),
                metavar="ADDRESS:PORT",
                help=f"where to listen (default 0.0.0.0:{DASHBOARD_LISTEN_PORT})",
            )
            incluster.add_argument(
                "--public-host",
                action="append",
                default=[],
                metavar="HOST",
                help="a host people open (dash.example.com; repeat for more): Host and Origin must match",
            )
            incluster.add_argument(
                "--actions",
                action="store_true",
                help="steering on: each action as the proxy's user (SubjectAccessReview, impersonation)",
            )
            incluster.add_argument(
                "--user-header", metavar="NAME", help="the proxy's header naming the user (X-Forwarded-User)"
            )
            incluster.add_argument(
                "--groups-header",
                metavar="NAME",
                help="the proxy's header listing the user's groups, comma-separated (X-Forwarded-Groups)",
            )
            incluster.add_argument(
                "--user-prefix",
                default="",
                metavar="TEXT",
                help="put before the user (as the API server's --oidc-username-prefix)",
            )
            incluster.add_argument(
                "--groups-prefix",
                default="",
                metavar="TEXT",
                help="put before each group (as its --oidc-groups-prefix)",
            )
        elif verb == "completion":
            p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
        elif verb == "set":
            what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
            image = what.add_parser(
                "image",
                help="the new image and its model's checksum",
                description="Set spec.image and spec.model.sha256: the operator rolls the new "
                "revision out with the ModelDeployment's strategy. " + GITOPS_NOTE,
                epilog="example:\n  " + VERB_HELP["set"][1],
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            _connection(image, top=False)
            image.add_argument("name", metavar="NAME", help="the ModelDeployment")
            image.add_argument(
                "image", metavar="IMAGE", help="<repository>@sha256:<64 hex>: tags are refused"
            )
            image.add_argument(
                "--model-sha256",
                metavar="HEX",
                help="the sha256 of the model the image serves (64 hex digits); the server checks it "
                "at start. Asked for when omitted on a terminal.",
            )
            image.add_argument(
                "--dry-run", action="store_true", help="print the YAML change only; patch nothing"
            )
        else:
            p.add_argument("name", metavar="NAME", help="the ModelDeployment")
            if verb == "get":
                _output(p)
            if verb == "promote":
                p.add_argument("--full", action="store_true", help="skip all remaining steps")
            if verb in ("undo", "resume"):
                p.add_argument(
                    "--apply",
                    action="store_true",
                    help="also patch the spec (only where no GitOps tool manages the ModelDeployment: "
                    "one would put the spec in Git back)",
                )
            if verb == "status":
                p.add_argument(
                    "-w",
                    "--watch",
                    action="store_true",
                    help="stream changes and redraw until the rollout is done; exit as --timeout does",
                )
                p.add_argument(
                    "--timeout",
                    type=timeout,
                    metavar="DURATION",
                    help="wait at most this long (30s, 5m, 1h30m) for the rollout to be done: exit 0 "
                    "when Healthy, 1 when Degraded or RolledBack, 3 on timeout (see exit codes)",
                )
                p.epilog = (p.epilog or "") + "\n\n" + EXIT_CODES
    return top
