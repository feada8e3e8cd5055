"""modelship's functional core: every rule, as pure functions of spec, status, observations and now.

Nothing here does I/O, reads the clock or draws random numbers; `modelship.kube`, `modelship.analysis`
(the Prometheus side) and the handlers are the shell around it. `make lint` checks the line with an
import contract (`.importlinter`).
"""
