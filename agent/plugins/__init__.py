"""The host agent's commands, a plugin per area (entry-point group
``zstack_lite.agent_plugins``; see agentkit.plugins).  Each maps its paths of
contracts.kvm onto the backend: it checks the JSON fields (a missing or invalid one is
answered as a failure naming the field), calls the backend, and answers in ZStack's
camelCase."""
