"""Open vSwitch for ZStack Lite, as a plugin that touches no core file: the vSwitch type
``OpenvSwitch`` for L2NoVlanNetwork and L2VlanNetwork, bridges and ports made through
OVSDB on each KVM host, VM NICs and router veths as (VLAN access) ports.

``contract`` is what the core sends the agent, ``core_plugin`` the management node's
side, ``agent_plugin`` the host agent's.
"""
