"""Analysis: judging a canary by Prometheus metrics."""
