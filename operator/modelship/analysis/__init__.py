"""Analysis: judging a revision by Prometheus metrics (verdict rules, runs, queries, the provider)."""
