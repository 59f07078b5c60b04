"""rsync's remote shell for the HPC runtime's SSH transport (``rsync -e``): instead of opening
an SSH login of its own (a second login, a second MFA prompt), it asks the engine to run the
remote ``rsync --server ...`` on the engine's existing connection.

Run by rsync as ``python -I -S rsync_relay.py SOCKET HOST rsync --server ...``: it connects to
the engine's private Unix socket (:mod:`akoflow.runtimes.hpc.relay`), sends the remote command
as one JSON line, then copies its standard input there; what comes back is framed: a kind byte
(1 stdout, 2 stderr, 3 exit status), a 4-byte big-endian length, the bytes. Standard library
only: it runs without the engine's packages on its path.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading

STDOUT, STDERR, EXIT = 1, 2, 3


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def _send_input(sock: socket.socket) -> None:
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the engine ended the command: the output side says how


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        sys.stderr.write("usage: rsync_relay.py SOCKET HOST COMMAND...\n")
        return 2
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(argv[1])
    except OSError as exc:
        sys.stderr.write(f"akoflow rsync relay: cannot reach the engine: {exc.strerror}\n")
        return 255
    sock.sendall(json.dumps(argv[3:]).encode() + b"\n")
    threading.Thread(target=_send_input, args=(sock,), daemon=True).start()
    status = 255
    while True:
        head = _read_exact(sock, 5)
        if len(head) < 5:
            break
        kind, size = head[0], struct.unpack(">I", head[1:])[0]
        data = _read_exact(sock, size)
        if kind == STDOUT:
            _write_all(1, data)
        elif kind == STDERR:
            _write_all(2, data)
        elif kind == EXIT:
            status = int(data or b"255")
            break
    return status


if __name__ == "__main__":
    os._exit(main(sys.argv))  # not waiting for the input thread, blocked on rsync's pipe
