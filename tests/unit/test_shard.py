"""Sharding's pure rule: label selectors in the API server's syntax, and a shard's namespaces."""

from __future__ import annotations

import argparse

import pytest

from modelship.core.shard import SelectorError, Shard, parse

pytestmark = pytest.mark.unit

A = {"modelship.io/shard": "a"}
B = {"modelship.io/shard": "b"}
NONE: dict[str, str] = {}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("modelship.io/shard=a", A, True),
        ("modelship.io/shard=a", B, False),
        ("modelship.io/shard=a", NONE, False),
        ("modelship.io/shard==a", A, True),
        ("modelship.io/shard!=a", B, True),
        ("modelship.io/shard!=a", NONE, True),  # as the API server: a missing label is not 'a'
        ("modelship.io/shard!=a", A, False),
        ("team in (x,y)", {"team": "y"}, True),
        ("team in (x, y)", {"team": "z"}, False),
        ("team in (x,y)", NONE, False),
        ("team notin (x,y)", {"team": "z"}, True),
        ("team notin (x,y)", NONE, True),
        ("team notin (x,y)", {"team": "x"}, False),
        ("gpu", {"gpu": ""}, True),
        ("gpu", NONE, False),
        ("!legacy", NONE, True),
        ("!legacy", {"legacy": "true"}, False),
        ("tier > 2", {"tier": "3"}, True),
        ("tier > 2", {"tier": "2"}, False),
        ("tier < 2", {"tier": "x"}, False),
        ("env=prod,team in (x,y),!legacy", {"env": "prod", "team": "x"}, True),
        ("env=prod,team in (x,y),!legacy", {"env": "prod", "team": "x", "legacy": "1"}, False),
        (" env = prod , gpu ", {"env": "prod", "gpu": "1"}, True),
        ("env=", {"env": ""}, True),
        ("env=", {"env": "prod"}, False),
        ("", {"anything": "at all"}, True),
    ],
)
def test_a_selector_matches_labels_as_the_api_server_does(
    selector: str, labels: dict[str, str], expected: bool
) -> None:
    assert parse(selector).matches(labels) is expected


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("team in x", "values must be in parentheses"),
        ("team in (x", "ends where"),
        ("team in ()", "at least one value"),
        ("team in (x,,y)", "a value is missing"),
        ("team like x", "'like' is not an operator"),
        ("a=b c=d", "expected ','"),
        ("a=b,", "ends with ','"),
        ("-bad=x", "'-bad' is not a valid label key"),
        ("shard=a b", "expected ','"),
        ("shard=-a", "'-a' is not a valid label value"),
        ("tier > x", "'x' is not an integer"),
        ("!", "ends where a label key after '!' was expected"),
        ("a/b/c=d", "not a valid label key"),
    ],
)
def test_bad_syntax_says_what_is_wrong(selector: str, message: str) -> None:
    with pytest.raises(SelectorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(selector)


def test_a_shard_owns_what_the_watch_says_matches_and_reports_moves() -> None:
    shard = Shard(parse("modelship.io/shard=a"))
    assert not shard.owns("ns1")  # not yet seen: not owned
    assert shard.saw("ns1", A) == "joined"
    assert shard.owns("ns1")
    assert shard.saw("ns1", {**A, "other": "x"}) is None  # still in: no move
    assert shard.saw("ns2", B) is None  # never in: no move
    assert not shard.owns("ns2")
    assert shard.saw("ns1", B) == "left"  # relabelled to the other shard
    assert not shard.owns("ns1")
    assert shard.saw("ns2", A) == "joined"
    assert shard.saw("ns2", None) == "left"  # deleted
    assert not shard.owns("ns2")


def test_the_flag_or_env_sets_the_shard_and_bad_syntax_names_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from modelship import cli

    def args(*flags: str) -> argparse.Namespace:
        return cli._parser().parse_args(["run", *flags])

    env = {"MODELSHIP_SHARD_SELECTOR": "modelship.io/shard=b"}
    flagged = cli.shard_selector(args("--shard-selector", "modelship.io/shard=a"), env)
    assert flagged is not None and flagged.matches(A) and not flagged.matches(B)
    from_env = cli.shard_selector(args(), env)
    assert from_env is not None and from_env.matches(B)
    assert cli.shard_selector(args(), {}) is None
    assert cli.shard_selector(args("--shard-selector", " "), env) is None

    assert cli.main(["run", "--shard-selector", "team in x"]) == 2
    err = capsys.readouterr().err
    assert "--shard-selector (or $MODELSHIP_SHARD_SELECTOR) 'team in x'" in err
    assert "values must be in parentheses" in err
