"""`make demo`: the local world, the operator and a rollout of the demo models, narrated.

Act 1 rolls the demo model `v1` to `v2` through canary steps under load; act 2 (DEMO_ACTS=2)
rolls `v2` to a bad model (DEMO_BAD) that analysis should roll back. See docs/local-world.md.
"""
