"""Shell completion, from the argparse parser itself: the bash and zsh scripts call back
`kubectl-modelship __complete WORD... PARTIAL`, which walks the parser to the word being typed and
offers its commands, flags, choices, namespaces, contexts or ModelDeployment names. kubectl >= 1.26
calls `kubectl_complete-modelship` the same way for `kubectl modelship <TAB>`, and reads Cobra's
answer format (one candidate a line, then `:<directive>`)."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable

from modelship.plugin import args

PROG = "kubectl-modelship"
HIDDEN = "__complete"  # the callback command; not in the parser, so not in --help
_NO_FILES = 4  # Cobra's ShellCompDirectiveNoFileComp: the shell must not fall back to file names
# A shell waits on TAB: past this, offer nothing rather than hang on a cluster that does not answer.
LOOKUP_SECONDS = 2.0

# What a value completes to, by the option's or positional's dest: a function of the connection
# flags typed so far ({"namespace": ..., "context": ..., "kubeconfig": ...}).
Lookup = Callable[[str, dict[str, str]], list[str]]


def candidates(parser: argparse.ArgumentParser, words: list[str], lookup: Lookup) -> list[str]:
    """What may come at the last of `words` (the word being typed, maybe ""), given those before it."""
    *before, partial = words or [""]
    current, position, flags = parser, 0, {}
    wants: argparse.Action | None = None  # the option whose value comes next
    for word in before:
        if wants is not None:
            flags[wants.dest] = word
            wants = None
        elif word.startswith("-") and word != "-":
            option, _, value = word.partition("=")
            action = current._option_string_actions.get(option)
            if action is not None and action.nargs != 0 and not value:
                wants = action
            elif action is not None and value:
                flags[action.dest] = value
        else:
            positionals = [a for a in current._actions if not a.option_strings]
            if position < len(positionals) and isinstance(positionals[position], argparse._SubParsersAction):
                chosen = positionals[position].choices.get(word)  # type: ignore[union-attr]
                if chosen is None:
                    return []
                current, position = chosen, 0
            else:
                position += 1
    if wants is not None:
        found = list(wants.choices) if wants.choices else lookup(wants.dest, flags)
    elif partial.startswith("-"):
        found = [o for a in current._actions for o in a.option_strings]
    else:
        positionals = [a for a in current._actions if not a.option_strings]
        if position >= len(positionals):
            return []
        nxt = positionals[position]
        if isinstance(nxt, argparse._SubParsersAction):
            found = list(nxt.choices)
        elif nxt.choices:
            found = [str(c) for c in nxt.choices]
        else:
            found = lookup(nxt.dest, flags)
    return [c for c in found if c.startswith(partial)]


def cluster_lookup(dest: str, flags: dict[str, str]) -> list[str]:
    """ModelDeployment names, namespaces and contexts from the cluster and the kubeconfig; nothing
    when they cannot be read within `LOOKUP_SECONDS` (a completion must never print an error, nor
    hang: the lookup runs in a thread the process leaves behind when it exits)."""
    found: list[str] = []
    # Imported before the clock starts: on a busy machine importing the client takes seconds
    # (its cost is the machine's, not a cluster that hangs), and ate the whole budget.
    from kubernetes import config  # noqa: F401

    import modelship.plugin.connect  # noqa: F401

    worker = threading.Thread(target=lambda: found.extend(_lookup(dest, flags)), daemon=True)
    worker.start()
    worker.join(LOOKUP_SECONDS)
    return [] if worker.is_alive() else found


def _lookup(dest: str, flags: dict[str, str]) -> list[str]:
    try:
        if dest == "context":
            from kubernetes import config

            contexts, _ = config.list_kube_config_contexts(flags.get("kubeconfig"))  # type: ignore[no-untyped-call]
            return [c["name"] for c in contexts]
        if dest not in ("name", "namespace"):
            return []
        from modelship.kube.storage import md_path
        from modelship.plugin.connect import connect

        kube, namespace = connect(flags.get("kubeconfig"), flags.get("context"), flags.get("namespace"))
        path = "/api/v1/namespaces" if dest == "namespace" else md_path(namespace)
        return [o["metadata"]["name"] for o in kube.items(path)]
    except Exception:  # any failure means: nothing to offer
        return []


def script(shell: str, prog: str = PROG) -> str:
    """The completion script for `shell` (bash or zsh), registered for `prog`."""
    function = "_" + prog.replace("-", "_")
    if shell == "bash":
        return f"""# bash completion for {prog}: source <(kubectl modelship completion bash)
{function}() {{
    local IFS=$'\\n'
    COMPREPLY=($({prog} {HIDDEN} "${{COMP_WORDS[@]:1:COMP_CWORD}}" 2>/dev/null))
}}
complete -F {function} {prog}
"""
    if shell == "zsh":
        return f"""#compdef {prog}
# zsh completion for {prog}: source <(kubectl modelship completion zsh), or save as _{prog} in $fpath
{function}() {{
    local -a found
    found=(${{(f)"$({prog} {HIDDEN} "${{(@)words[2,CURRENT]}}" 2>/dev/null)"}})
    compadd -- "${{found[@]}}"
}}
if [[ "${{funcstack[1]}}" == "_{prog}" ]]; then
    {function} "$@"
else
    compdef {function} {prog}
fi
"""
    raise ValueError(f"no completion for shell {shell!r}: choose one of {', '.join(args.SHELLS)}")


def complete_main(words: list[str], lookup: Lookup = cluster_lookup) -> int:
    """`kubectl-modelship __complete WORD... PARTIAL`: one candidate a line."""
    for found in candidates(args.parser(), words, lookup):
        print(found)
    return 0


def kubectl_complete() -> None:
    """Entry point of `kubectl_complete-modelship`, which kubectl >= 1.26 runs to complete
    `kubectl modelship ...`: the candidates, then Cobra's directive (no file names)."""
    complete_main(sys.argv[1:])
    print(f":{_NO_FILES}")
    sys.exit(0)
