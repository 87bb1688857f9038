"""What network plugins may call in the L3 service: addresses (IPAM) and a VM's NICs.

The functions live where the L3 service uses them; this module is the published name
(``tests/test_layout.py`` lets plugins import ``*.spi``, not the service's modules)."""

from __future__ import annotations

from core.network.l3.ipam import IP_EXHAUSTED, IP_TAKEN, allocate_ip, release_ip
from core.network.l3.nics import VM_NIC, nics_of

__all__ = ["IP_EXHAUSTED", "IP_TAKEN", "VM_NIC", "allocate_ip", "nics_of", "release_ip"]
