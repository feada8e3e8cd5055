"""The local world: what a node and a gateway would provide to the fake nodes of hack/devcluster.

A pod runner (the kubelet's part: real `modelserver` processes for pods of known images),
Prometheus discovering those pods, and a weighted router (a Gateway data plane's part).
See docs/local-world.md.
"""
