"""Shell completion from the plugin's argparse parser: the candidates at each position, the bash and
zsh scripts, and the bash script completing in a real bash (tests/integration/test_plugin.py
completes ModelDeployment names through kubectl)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelship.plugin import args, completion

pytestmark = pytest.mark.unit

SEEN: list[tuple[str, dict[str, str]]] = []


def lookup(dest: str, flags: dict[str, str]) -> list[str]:
    """The cluster, as completion asks it: names, namespaces and contexts (recording the question)."""
    SEEN.append((dest, flags))
    return {"name": ["fraud-detector", "fraud-2", "iris"], "namespace": ["ml", "default"]}.get(dest, [])


def complete(*words: str) -> list[str]:
    return completion.candidates(args.parser(), list(words), lookup)


def test_the_first_word_completes_to_the_commands() -> None:
    assert complete("") == list(args.VERB_HELP)
    assert complete("s") == ["status", "set"]


def test_a_name_completes_to_modeldeployments_asked_with_the_flags_typed_so_far() -> None:
    SEEN.clear()
    assert complete("-n", "ml", "status", "--context", "prod", "fr") == ["fraud-detector", "fraud-2"]
    assert SEEN == [("name", {"namespace": "ml", "context": "prod"})]
    assert complete("set", "image", "") == ["fraud-detector", "fraud-2", "iris"]
    assert complete("status", "iris", "") == []  # no second NAME


def test_flags_and_their_values_complete() -> None:
    assert complete("status", "iris", "--w") == ["--watch"]
    assert {"-A", "--all-namespaces", "-o", "--output", "--namespace"} <= set(complete("list", "-"))
    assert complete("list", "-o", "") == list(args.OUTPUTS)
    assert complete("get", "x", "--output=y") == []  # a value given with = is complete
    assert complete("get", "-n", "") == ["ml", "default"]
    assert complete("completion", "") == ["bash", "zsh"]
    assert complete("status", "--timeout", "") == []  # a duration: nothing to offer


def test_an_unknown_command_completes_to_nothing() -> None:
    assert complete("frobnicate", "") == []


@pytest.mark.parametrize("shell", args.SHELLS)
def test_each_script_calls_back_the_parser_and_registers_for_the_plugin(shell: str) -> None:
    text = completion.script(shell)
    assert "kubectl-modelship __complete" in text
    if shell == "bash":
        assert "complete -F _kubectl_modelship kubectl-modelship" in text
    else:
        assert text.startswith("#compdef kubectl-modelship\n") and "compdef _kubectl_modelship" in text


def test_an_unknown_shell_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="bash, zsh"):
        completion.script("fish")


def bash_complete(line: str) -> list[str]:
    """What the generated bash script offers for `line` (the cursor at its end), in a real bash."""
    words = line.split(" ")
    program = f"""
source <(kubectl-modelship completion bash)
COMP_WORDS=({" ".join(f"'{w}'" for w in words)})
COMP_CWORD={len(words) - 1}
_kubectl_modelship
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": "/nonexistent",  # names cannot be looked up here: completion offers none, quietly
    }
    done = subprocess.run(["bash", "-c", program], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [line for line in done.stdout.split("\n") if line]


def test_the_bash_script_completes_commands_and_flags_in_bash() -> None:
    assert bash_complete("kubectl-modelship st") == ["status"]
    assert bash_complete("kubectl-modelship status fraud --ti") == ["--timeout"]
    assert bash_complete("kubectl-modelship status ") == []  # no cluster: no names, and no error


def test_kubectl_complete_answers_in_cobras_format(capsys: pytest.CaptureFixture[str]) -> None:
    """kubectl >= 1.26 runs `kubectl_complete-modelship WORD... PARTIAL` and reads candidates, then
    `:<directive>` (4: no file names)."""
    done = subprocess.run(
        [Path(sys.executable).parent / "kubectl_complete-modelship", "list", "--o"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    assert done.stdout == "--output\n:4\n"


def test_a_cluster_that_never_answers_completes_to_nothing_instead_of_hanging(tmp_path: Path) -> None:
    """TAB with a kubeconfig whose API server accepts connections and says nothing (a dead VPN, a
    black-holed load balancer): after `LOOKUP_SECONDS` the shell gets no names, not a hung prompt."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepted by the kernel, never read or answered
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "silent",
                        "cluster": {
                            "server": f"https://127.0.0.1:{silent.getsockname()[1]}",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "silent", "context": {"cluster": "silent", "user": "u"}}],
                "current-context": "silent",
            }
        )
    )
    complete = Path(sys.executable).parent / "kubectl_complete-modelship"
    try:
        # Without the bound this waits on the socket for the client's own timeout (minutes).
        done = subprocess.run(
            [complete, "status", "--kubeconfig", str(kubeconfig), ""],
            capture_output=True,
            text=True,
            timeout=completion.LOOKUP_SECONDS + 20,
        )
    finally:
        silent.close()
    assert done.returncode == 0
    assert done.stdout == ":4\n"
