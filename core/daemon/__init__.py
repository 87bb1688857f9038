"""The management node as a service: ``zstack-lite serve|start|stop|status|reset``.

``ztui`` and ``zcli`` are clients of this service (:mod:`core.daemon.control`
starts it for them when it does not run); neither ever becomes the node.
"""
