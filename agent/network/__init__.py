"""The host agent's networking: L2 bridges, host NAT for the default public network,
and the virtual-router appliance's network namespace.

``base`` declares what a backend offers (:class:`~agent.network.base.NetworkDriver`);
``host`` does it on the real host (``bridges``, ``host_nat``, ``appliance`` over
pyroute2 and ``nft``); ``simulated`` keeps it in memory for the simulator backend.
``names`` holds the naming rules: everything the project makes starts with ``zsl``.
"""
