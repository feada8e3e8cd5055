"""Where a pod's process listens: its pod IP, moved onto loopback.

The API server refuses loopback addresses in EndpointSlices and Endpoints ("may not be in
the loopback range"), so pods keep ordinary pod IPs (KWOK hands them out from each fake
node's podCIDR, 10.<net>.<node>.0/24) and everything that dials a pod (the router,
Prometheus) replaces the first octet with 127. Linux answers all of 127.0.0.0/8 on `lo`,
so each pod gets an address of its own without any network setup.
"""

from __future__ import annotations

import ipaddress

# For Prometheus relabelling of `__address__` ("<pod ip>:<port>"): same rule as loopback().
ADDRESS_REGEX = r"\d+\.(\d+\.\d+\.\d+):(\d+)"
ADDRESS_REPLACEMENT = "127.${1}:${2}"


def loopback(pod_ip: str) -> str:
    """10.a.b.c -> 127.a.b.c. IPv4 only: the local cluster is single-stack IPv4."""
    address = ipaddress.IPv4Address(pod_ip)
    return str(ipaddress.IPv4Address((int(address) & 0x00FFFFFF) | (127 << 24)))
