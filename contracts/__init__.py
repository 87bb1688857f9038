"""The contracts between the processes of ZStack Lite: what the core sends the agents and
what they answer, and the names both sides derive from the same uuids.

Imported by the core, the agents and their kit alike, so it imports nothing of them:
only the standard library and pydantic (:mod:`contracts.base`: every command and reply is
a typed model).  ``envelope`` is what every agent command shares (the
request and answer envelope, authentication, asynchronous tasks); ``kvm`` is the KVM host
agent's commands; ``virtual_router`` the router agent's; ``names`` the names of what the
project makes on a host.
"""
