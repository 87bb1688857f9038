"""What both agents stand on (ZStack's ``zstacklib``): the aiohttp command server with
token authentication and asynchronous tasks, the callback sender, daemon set-up, error
replies, bounded JSON parsing, the console pump and the test-only fault hook.

It knows no command of either agent: it imports only ``contracts`` and libraries, never
``core``, ``agent`` or ``virtual_router``.
"""
