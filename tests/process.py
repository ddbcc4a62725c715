"""Run ``frontdesk serve`` as a real process (for crash and multi-process tests)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

_LISTENING = re.compile(r"frontdesk listening on (http://\S+)")


class ServeProcess:
    """A gateway process on a free port; its output is kept for failure messages."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.url = ""
        self.lines: list[str] = []
        self._ready = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, config: dict[str, Any], path: Path) -> ServeProcess:
        """``frontdesk serve`` with ``config`` written to ``path``."""
        path.write_text(yaml.safe_dump(config))
        argv = [sys.executable, "-m", "gateway", "--config", str(path), "serve", "--port", "0"]
        return await cls.start_command(argv, path)

    @classmethod
    async def start_command(cls, argv: list[str], path: Path) -> ServeProcess:
        """Any command that prints ``frontdesk listening on URL`` once it serves."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FRONTDESK_", "TWILIO_"))}
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
        )
        server = cls(proc)
        try:
            await asyncio.wait_for(server._ready.wait(), timeout=30)
        except TimeoutError:
            await server.kill()
            raise AssertionError("gateway did not start:\n" + "\n".join(server.lines)) from None
        return server

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            match = _LISTENING.search(line)
            if match:
                self.url = match.group(1)
                self._ready.set()

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        await self._reader

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.terminate()
        code = await asyncio.wait_for(self.proc.wait(), timeout=20)
        await self._reader
        return code
