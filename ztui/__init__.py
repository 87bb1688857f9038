"""ztui: the Textual terminal UI of ZStack Lite.

It talks only to the management node's API (``core.client``): it hosts the
node in-process when the data dir is free, and otherwise attaches to the node
that already runs there through its socket.
"""
