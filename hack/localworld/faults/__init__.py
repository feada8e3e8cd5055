"""The fault suite (issue #18): canaries in the local world with one kind of fault injected each,
and the figures that say whether the rollout or its users noticed. One implementation for the
e2e tests (tests/e2e/test_faults.py asserts on the figures) and `make bench-faults`
(bench/faults.py writes them to bench/results/faults.json).

Each scenario runs in a namespace of its own with an operator process of its own (a SIGKILL of
one operator touches no other scenario), serving pods on the real node, background load through
Traefik from the load generator, and a recorder that samples the ModelDeployment's status, its
HTTPRoute and its Services every 0.25 s. The figures of a scenario:

- `faults`: faults injected (operator kills, component restarts, pod kills, spec flips);
- `steps_repeated`, `steps_skipped`: per canary step (and the promotion), from the transition
  Events of the rollout that ended it: each step posts its Event (`WeightChanged`,
  `PauseStarted`, `AnalysisSuccessful`, `Promoted`) exactly once when it is taken once;
- `weight_regressions`: times a canary's weight went down while its rollout went on (status, or
  the route's weight for the Service that selects it);
- `failed_requests`: the load generator's answers that were not 2xx (outside the fault's own
  window for a fault that takes the gateway itself down: `failed_during_fault` counts those);
- `events_missing`: transition Events the rollout should have posted and did not;
- `seconds` from the spec change to the end, against `baseline_seconds`, the same canary with
  no fault.

Scenarios that do not disturb each other run side by side (`Suite.run`): the ones that take down
a shared part (the API server, etcd, Traefik, Prometheus) run while no other scenario would
notice it.
"""
