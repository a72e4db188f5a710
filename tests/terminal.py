"""Run a command with a pseudo-terminal as its stdout, as a person at a terminal would."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios


def run_in_terminal(cmd: list[str], env: dict[str, str], columns: int = 80) -> str:
    """stdout of ``cmd`` run with a pseudo-terminal as its stdout, as text with ``\\n``.

    The terminal is ``columns`` wide; stderr goes to a pipe, so the log lines stay
    out of what is compared.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
            env=env,
        )
    finally:
        os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.wait(timeout=120) == 0, stderr
    # The terminal's line discipline writes each newline as CR LF.
    return b"".join(chunks).decode().replace("\r\n", "\n")
