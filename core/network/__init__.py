"""Networking: L2 networks (bridges), L3 networks with IPAM, network services."""
