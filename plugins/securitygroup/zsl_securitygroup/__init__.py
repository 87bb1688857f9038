"""Security groups for ZStack Lite, as a plugin that touches no core file: groups of VM
NICs with Ingress and Egress rules, enforced by each KVM host in an nftables bridge-family
table of the lab's own (per-NIC chains, anti-spoofing, default policies).

``contract`` is what the core sends the agent, ``core_plugin`` the management node's
side (``models``, ``api``, ``state``), ``agent_plugin`` the host agent's (``render``).
"""
