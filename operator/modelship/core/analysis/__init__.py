"""Analysis rules, pure: verdicts, runs and the builtin query templates."""
