"""The simulator's serial console: a line editor that looks like a tiny shell, nothing more.

What a viewer gets is the simulator's behaviour, not a guest's: typed bytes are echoed
back (Enter as CR LF, backspace erases the last character); on Enter the line is appended
to the VM's console log (so the log tail a later viewer sees shows it) and the prompt
``/ # `` follows.  No command is run.  While the VM is Paused input waits, as a paused
guest's serial input would, and is handled when it runs again.
"""

from __future__ import annotations

import logging

from agent.console import ConsoleStream

log = logging.getLogger(__name__)

PROMPT = b"/ # "
_ENTER = (0x0D, 0x0A)
_BACKSPACE = (0x08, 0x7F)


class SimulatedConsole(ConsoleStream):
    def __init__(self, vm_uuid: str, log_path: str, running: bool = True) -> None:
        super().__init__(vm_uuid, log_path)
        self._running = running
        self._pending = bytearray()
        self._line = bytearray()
        self._last_enter = 0

    def set_running(self, running: bool) -> None:
        """The VM runs (handle waiting input) or is paused (input waits)."""
        self._running = running
        if running:
            self._drain()

    async def _send(self, data: bytes) -> None:
        self._pending += data
        if self._running:
            self._drain()

    async def _release(self) -> None:
        return None

    def _drain(self) -> None:
        out = bytearray()
        for byte in bytes(self._pending):
            if byte in _ENTER:
                if byte == 0x0A and self._last_enter == 0x0D:  # CR LF is one Enter
                    self._last_enter = 0
                    continue
                self._last_enter = byte
                out += b"\r\n" + PROMPT
                self._log_line(bytes(self._line))
                self._line.clear()
                continue
            self._last_enter = 0
            if byte in _BACKSPACE:
                if self._line:
                    del self._line[-1]
                    out += b"\b \b"
                continue
            self._line.append(byte)
            out.append(byte)
        self._pending.clear()
        self.feed(bytes(out))

    def _log_line(self, line: bytes) -> None:
        if not self.log_path:
            return
        try:
            with open(self.log_path, "ab") as f:
                f.write(line + b"\n")
        except OSError as exc:
            log.warning("cannot append to the console log %s: %s", self.log_path, exc)
