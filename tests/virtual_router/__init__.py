"""Tests of the virtual-router appliance agent (virtual_router/)."""
