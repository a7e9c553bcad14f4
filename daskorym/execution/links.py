"""Authenticated TCP links between the slab owners of the direct exchange.

Each owner listens on its worker's interface; every owner opens one connection to each other
owner and sends on it from its step thread; a reader thread per incoming connection hands
each message to a callback.  A message leaves the sender's step thread straight onto the
socket and arrives on the receiver's reader thread: neither worker's event loop handles it
(through Dask's comms each one costs a hop through both loops, about a millisecond of CPU
each on a busy worker, and an acknowledgement back).

Framing and authentication are :mod:`multiprocessing.connection`'s (a length-prefixed
message; an HMAC challenge both ways with a key only the run's client and owners know).
A message is a JSON header describing it, then the raw bytes of each array, received into
writable memory; only what the exchange sends can be described (arrays, regions, numbers,
strings, lists, tuples, dicts with string keys, None): nothing received is unpickled.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
from multiprocessing.connection import (AuthenticationError, Connection, answer_challenge,
                                        deliver_challenge)
from typing import Any, Callable

import numpy as np

from ..physics.region import Region


class LinkLost(ConnectionError):
    """A link to another owner is closed or broken."""


def listen_host(worker_address: str) -> str:
    """The interface to listen on, from a Dask worker's address (``tcp://10.0.0.3:4321``);
    the loopback for transports that are not IP (``inproc://``, a worker in this process)."""
    from distributed.comm import get_address_host, parse_address
    scheme, _ = parse_address(worker_address)
    if scheme not in ("tcp", "tls", "ucx", "ws", "wss"):
        return "127.0.0.1"
    return get_address_host(worker_address)


def encode(obj: Any) -> tuple[bytes, list[memoryview]]:
    """``obj`` as a JSON header and the arrays' raw bytes (see the module docstring)."""
    arrays: list[memoryview] = []

    def walk(x):
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, (np.integer, np.floating)):
            return x.item()
        if isinstance(x, np.ndarray):
            a = np.ascontiguousarray(x)
            arrays.append(memoryview(a.reshape(-1).view(np.uint8)))
            return {"a": len(arrays) - 1, "dtype": a.dtype.str, "shape": list(a.shape)}
        if isinstance(x, Region):
            return {"r": [int(x.y0), int(x.x0), int(x.ny), int(x.nx)]}
        if isinstance(x, tuple):
            return {"t": [walk(v) for v in x]}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict) and all(isinstance(k, str) for k in x):
            return {"d": {k: walk(v) for k, v in x.items()}}
        raise TypeError(f"cannot send a {type(x).__name__} over a slab owner's link")

    header = json.dumps({"obj": walk(obj), "sizes": [m.nbytes for m in arrays]})
    return header.encode(), arrays


def decode(header: bytes, buffers: list) -> Any:
    """The object :func:`encode` described, its arrays on ``buffers``."""
    def walk(x):
        if isinstance(x, list):
            return [walk(v) for v in x]
        if not isinstance(x, dict):
            return x
        if "a" in x:
            dtype = np.dtype(x["dtype"])
            if dtype.hasobject:
                raise ValueError("an array of Python objects on a slab owner's link")
            return np.frombuffer(buffers[x["a"]], dtype).reshape(x["shape"])
        if "r" in x:
            return Region(*x["r"])
        if "t" in x:
            return tuple(walk(v) for v in x["t"])
        return {k: walk(v) for k, v in x["d"].items()}
    return walk(json.loads(header)["obj"])


def _sizes(header: bytes) -> list[int]:
    return [int(n) for n in json.loads(header)["sizes"]]


class Links:
    """The links of owner ``index`` of ``n`` (see the module docstring).

    ``on_message(sender, obj)`` runs on a reader thread for each message received;
    ``on_lost(sender)`` once when an incoming link from ``sender`` ends.
    """

    def __init__(self, index: int, n: int, host: str, authkey: bytes,
                 on_message: Callable[[int, Any], None], on_lost: Callable[[int], None],
                 timeout: float = 60.0):
        self.index, self.n = int(index), int(n)
        self._authkey = bytes(authkey)
        self._on_message, self._on_lost = on_message, on_lost
        self._timeout = float(timeout)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._server = socket.create_server((host, 0), family=family)
        except OSError:  # an address that is not this machine's own (NAT): every interface
            self._server = socket.create_server(("", 0), family=family)
        self.address = (host, self._server.getsockname()[1])
        self._out: dict[int, Connection] = {}
        self._send_lock = threading.Lock()
        self._conns: list[Connection] = []
        self._closed = False
        threading.Thread(target=self._accept, name=f"daskorym-links-{index}",
                         daemon=True).start()

    # ------------------------------------------------------------------ connecting
    def connect(self, addresses: list) -> None:
        """Open the outgoing link to every other owner (``addresses[j]`` from owner j)."""
        for j, addr in enumerate(addresses):
            if j == self.index:
                continue
            try:
                sock = socket.create_connection(tuple(addr), timeout=self._timeout)
            except OSError as err:
                raise LinkLost(f"slab owner {self.index} cannot reach owner {j} at "
                               f"{addr[0]}:{addr[1]} ({err}): the direct exchange needs the "
                               f"workers to reach each other on any port (exchange "
                               f"'scheduler' needs only Dask's)") from err
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(True)
            conn = Connection(sock.detach())
            self._conns.append(conn)
            answer_challenge(conn, self._authkey)
            deliver_challenge(conn, self._authkey)
            conn.send_bytes(struct.pack("<i", self.index))
            self._out[j] = conn

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._server.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._read, args=(sock,), daemon=True,
                             name=f"daskorym-link-{self.index}").start()

    def _read(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(sock.detach())
        self._conns.append(conn)  # (so that close wakes a handshake that never ends)
        try:
            deliver_challenge(conn, self._authkey)
            answer_challenge(conn, self._authkey)
            sender = struct.unpack("<i", conn.recv_bytes(4))[0]
        except (AuthenticationError, EOFError, OSError, struct.error):
            conn.close()  # not one of this run's owners
            return
        if self._closed:
            conn.close()
            return
        try:
            while True:
                header = conn.recv_bytes()
                buffers = [bytearray(n) for n in _sizes(header)]
                for b in buffers:
                    conn.recv_bytes_into(b)
                self._on_message(sender, decode(header, buffers))
        except (EOFError, OSError, ValueError, KeyError, TypeError, IndexError):
            self._on_lost(sender)  # gone, or sent what is not a message: the link ends
        finally:
            conn.close()

    # ------------------------------------------------------------------ messages
    def send(self, j: int, obj: Any) -> None:
        """Send ``obj`` to owner ``j`` (returns once it is on the socket)."""
        header, arrays = encode(obj)
        try:
            with self._send_lock:
                conn = self._out[j]
                conn.send_bytes(header)
                for a in arrays:
                    conn.send_bytes(a)
        except (KeyError, OSError) as err:
            raise LinkLost(f"link {self.index} -> {j}: {err!r}") from err

    def close(self) -> None:
        """Close every link and stop listening (the reader threads end)."""
        self._closed = True
        try:  # a shutdown wakes the thread blocked in accept (a close alone does not)
            self._server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._server.close()
        for conn in list(self._conns):
            try:  # wakes a reader blocked on the socket (a close alone does not); the
                # reader closes its own end
                with socket.socket(fileno=os.dup(conn.fileno())) as s:
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for conn in self._out.values():
            conn.close()
