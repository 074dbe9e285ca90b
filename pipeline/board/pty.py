"""Raw pseudo-terminals: what pyserial opens like a board's /dev/ttyACM0 when the board is emulated
(or when a fault-injecting link sits between the host and a board)."""
from __future__ import annotations

import os
import termios
import tty


def open_raw_pty() -> tuple[int, int, str]:
    """A pty pair ``(master_fd, slave_fd, slave_path)`` whose slave is raw: no echo (else bytes written
    to the master before a reader opens the port come straight back), no line editing, no CR/LF
    translation, 8 bits."""
    master, slave = os.openpty()
    try:
        tty.setraw(slave, termios.TCSANOW)
        attrs = termios.tcgetattr(slave)
        attrs[0] &= ~(termios.IXON | termios.IXOFF | termios.ICRNL | termios.INLCR | termios.IGNCR)
        attrs[1] &= ~termios.OPOST
        attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        return master, slave, os.ttyname(slave)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise


def close_quietly(*fds: int | None) -> None:
    """Close each file descriptor that is not None, ignoring ones already closed."""
    for fd in fds:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def wake(fd: int) -> None:
    """Write one byte to a self-pipe so a select loop waiting on its other end wakes up."""
    try:
        os.write(fd, b"x")
    except OSError:
        pass
