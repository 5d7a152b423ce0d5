"""Many websocket viewers in one process at little cost per frame: the hub benchmarks' load generator.

Not a benchmark itself. The viewers are non-blocking sockets on one ``epoll``, without asyncio: a read is one
system call and a few Python operations, so on a 2-core machine the viewers' process leaves the cores to the
servers under test (an asyncio protocol costs several times more per read, which was what kept two workers
from showing their scaling here).

Each read can carry the kernel's receive time (``SO_TIMESTAMPNS``): when the bytes reached the viewer's
socket. That is when a viewer on a device of its own would have them, however long this one process takes
to get round to 5,000 sockets; the time the process read them is kept too, so a benchmark can report both.
On loopback the kernel stamps a segment as the sender's write hands it over, so the receive time is the
server's delivery time.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from loadtests.hubbench import handshake

# Linux's values (asm-generic/socket.h); Python's socket module does not name them.
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)

#: A viewer's handler, called for every read once it has its first frame: (viewer index, the bytes, the
#: kernel's receive time or 0.0 without timestamps, the time this process read them).
OnData = Callable[[int, bytes, float, float], None]


def parse_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The complete server frames at the head of ``buf`` as (opcode, payload), and the bytes left over."""
    frames: list[tuple[int, bytes]] = []
    at = 0
    while len(buf) - at >= 2:
        n = buf[at + 1] & 0x7F
        head = 2 + (2 if n == 126 else 8 if n == 127 else 0)
        if len(buf) - at < head:
            break
        if n == 126:
            n = int.from_bytes(buf[at + 2 : at + 4], "big")
        elif n == 127:
            n = int.from_bytes(buf[at + 2 : at + 10], "big")
        if len(buf) - at < head + n:
            break
        frames.append((buf[at] & 0x0F, buf[at + head : at + head + n]))
        at += head + n
    return frames, buf[at:]


def pong(payload: bytes) -> bytes:
    """The answer to a ping (a client's frames are masked; a zero mask is a mask)."""
    return bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload


class RawViewers:
    """``paths`` websockets to ``host:port``. :meth:`connect` upgrades them all and waits for each one's
    first frame (the hub's snapshot; ``first_frame=False`` for a server that sends none), then every read
    goes to ``on_data`` in :meth:`poll`."""

    def __init__(
        self,
        host: str,
        port: int,
        paths: list[str],
        on_data: OnData,
        *,
        timestamps: bool = True,
        first_frame: bool = True,
    ) -> None:
        self.host, self.port, self.paths = host, port, paths
        self.on_data = on_data
        self.timestamps = timestamps
        self.first_frame = first_frame
        self.epoll = select.epoll()
        self.socks: list[socket.socket] = []
        self.index: dict[int, int] = {}  # fd -> viewer
        self.pending: dict[int, bytes] = {}  # viewer -> what it got before it was ready
        self.upgraded = 0
        self._buf = bytearray(1 << 16)

    def connect(self, timeout: float = 120.0) -> int:
        """Open, upgrade and wait for every viewer's first frame; the number of them upgraded (101)."""
        for i, path in enumerate(self.paths):
            sock = socket.create_connection((self.host, self.port))
            if self.timestamps:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.sendall(handshake(path, self.port))
            sock.setblocking(False)
            self.socks.append(sock)
            self.index[sock.fileno()] = i
            self.pending[i] = b""
            self.epoll.register(sock.fileno(), select.EPOLLIN)
            if i % 64 == 63:
                self.poll(0.0)  # take in the answers so far: the server's buffers stay small
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            self.poll(0.1)
        if self.pending:
            raise TimeoutError(f"{len(self.pending)} viewers got no first frame in {timeout:.0f} s")
        return self.upgraded

    def poll(self, timeout: float) -> None:
        """One round: read what each ready socket has (once each; what is left comes in the next round)."""
        for fd, _ in self.epoll.poll(timeout):
            i = self.index[fd]
            sock = self.socks[i]
            try:
                if self.timestamps:
                    n, ancillary, _, _ = sock.recvmsg_into([self._buf], _ANCILLARY)
                    at = 0.0
                    for level, kind, data in ancillary:
                        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                            sec, nsec = _TIMESPEC.unpack(data[: _TIMESPEC.size])
                            at = sec + nsec / 1e9
                else:
                    n, at = sock.recv_into(self._buf), 0.0
            except BlockingIOError:
                continue
            if n == 0:  # closed by the server
                self.epoll.unregister(fd)
                if i in self.pending:
                    raise RuntimeError(f"viewer {i}: the server closed the connection before the first frame")
                continue
            if self.timestamps and not at and i not in self.pending:
                # (Linux turns receive timestamps on for the whole machine a moment after the first socket
                # asks, so the first answers to the upgrades may come without one: they are not timed.)
                raise RuntimeError("the kernel gave no receive time (SO_TIMESTAMPNS)")
            data = bytes(self._buf[:n])
            if i in self.pending:
                self._admit(i, data, at)
            else:
                self.on_data(i, data, at, time.time())

    def _admit(self, i: int, data: bytes, at: float) -> None:
        buf = self.pending[i] + data
        if not buf.startswith(b"HTTP/1.1 "):
            self.pending[i] = buf
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self.pending[i] = buf
            return
        if not buf.startswith(b"HTTP/1.1 101"):
            status = buf[: buf.find(b"\r\n")].decode()
            raise RuntimeError(f"viewer {i} was refused: {status}")
        body = buf[end + 4 :]
        if not self.first_frame:
            del self.pending[i]
            self.upgraded += 1
            if body:
                self.on_data(i, body, at, time.time())
            return
        frames, _ = parse_frames(body)
        if not frames:
            self.pending[i] = buf
            return
        del self.pending[i]
        self.upgraded += 1
        first_len = _frame_len(body)
        if len(body) > first_len:
            self.on_data(i, body[first_len:], at, time.time())

    def send(self, i: int, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError):  # a pong that does not fit now: the ping timeout decides
            self.socks[i].send(data)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.epoll.close()


def serve(
    viewers: RawViewers,
    conn: Connection,
    commands: dict[str, Callable[..., Any]],
    *,
    read_every: float | None = None,
) -> None:
    """A viewers process's main loop: connect every viewer (``("ready", upgraded)`` to the parent), then
    read and answer the parent's commands over ``conn`` until one is not in ``commands``. A command is a
    name or a tuple (name, *args); what its handler returns goes back. ``read_every``: read each socket once
    per that many seconds instead of as soon as it has data (fewer, larger reads)."""
    conn.send(("ready", viewers.connect()))
    while True:
        if read_every is None:
            viewers.poll(0.02)
        else:
            time.sleep(read_every)
            viewers.poll(0.0)
        if not conn.poll():
            continue
        cmd = conn.recv()
        name, args = (cmd[0], cmd[1:]) if isinstance(cmd, tuple) else (cmd, ())
        if name not in commands:
            viewers.close()
            return
        conn.send(commands[name](*args))


def _frame_len(buf: bytes) -> int:
    n = buf[1] & 0x7F
    if n == 126:
        return 4 + int.from_bytes(buf[2:4], "big")
    if n == 127:
        return 10 + int.from_bytes(buf[2:10], "big")
    return 2 + n
