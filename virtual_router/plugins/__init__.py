"""The router agent's commands, a plugin per network service (entry-point group
``zstack_lite.vr_agent_plugins``; see agentkit.plugins).  Each parses and checks every
field before anything is changed (a bad one is answered as a failure naming the field and
the value), then drives the :class:`virtual_router.router.VirtualRouter`."""
