"""Authenticated TCP links between the slab owners of the direct exchange.

Each owner listens on its worker's interface; every owner opens one connection to each other
owner and sends on it from its step thread; a reader thread per incoming connection hands
each message to a callback.  A message leaves the sender's step thread straight onto the
socket and arrives on the receiver's reader thread: neither worker's event loop handles it
(through Dask's comms each one costs a hop through both loops, about a millisecond of CPU
each on a busy worker, and an acknowledgement back).

Every link starts with an HMAC-SHA256 challenge both ways on a key only the run's client
and owners know; on a cluster whose workers talk TLS the links are TLS too, with the
workers' own certificates (both sides verified, as Dask's comms do).  A message is a JSON
header describing it, then the raw bytes of each array (each a length-prefixed frame),
received into writable memory; only what the exchange sends can be described (arrays,
regions, numbers, strings, lists, tuples, dicts with string keys, None): nothing received
is unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import ssl
import struct
import threading
from typing import Any, Callable

import numpy as np

from ..physics.region import Region


class LinkLost(ConnectionError):
    """A link to another owner is closed or broken."""


class _Refused(ConnectionError):
    """The other end of a new link did not prove it holds the run's key."""


_LEN = struct.Struct("<Q")


def _send_frame(sock, data) -> None:
    n = memoryview(data).nbytes
    if n < 1 << 16:  # one write (with TCP_NODELAY each write may leave as its own packet)
        sock.sendall(_LEN.pack(n) + bytes(data))
    else:
        sock.sendall(_LEN.pack(n))
        sock.sendall(data)


def _recv_into(sock, buf) -> None:
    view, got = memoryview(buf), 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError("link closed")
        got += n


def _recv_frame(sock, limit: int | None = None) -> bytearray:
    head = bytearray(_LEN.size)
    _recv_into(sock, head)
    (n,) = _LEN.unpack(head)
    if limit is not None and n > limit:
        raise _Refused(f"a frame of {n} bytes where at most {limit} were expected")
    buf = bytearray(n)
    _recv_into(sock, buf)
    return buf


def _challenge(sock, key: bytes, first: bool) -> None:
    """Each end proves to the other that it holds ``key`` (HMAC of the other's nonce)."""
    def ask():
        nonce = os.urandom(32)
        _send_frame(sock, nonce)
        got = bytes(_recv_frame(sock, 64))
        if not hmac.compare_digest(got, hmac.new(key, nonce, hashlib.sha256).digest()):
            raise _Refused("wrong key")

    def answer():
        nonce = bytes(_recv_frame(sock, 64))
        _send_frame(sock, hmac.new(key, nonce, hashlib.sha256).digest())

    for step in ((ask, answer) if first else (answer, ask)):
        step()


def _wake(sock) -> None:
    """Shut a socket down under any thread blocked on it (a close alone does not wake it)."""
    try:
        with socket.socket(fileno=os.dup(sock.fileno())) as s:
            s.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


def tls_contexts(security) -> tuple[ssl.SSLContext, ssl.SSLContext] | None:
    """``(listening, connecting)`` TLS contexts of a Dask worker's ``security``, or None when
    the worker does not use TLS."""
    if security is None:
        return None
    listen = security.get_listen_args("worker").get("ssl_context")
    connect = security.get_connection_args("worker").get("ssl_context")
    return (listen, connect) if listen is not None and connect is not None else None


def listen_host(worker_address: str) -> str:
    """The interface to listen on, from a Dask worker's address (``tcp://10.0.0.3:4321``);
    the loopback for transports that are not IP (``inproc://``, a worker in this process)."""
    from distributed.comm import get_address_host, parse_address
    scheme, _ = parse_address(worker_address)
    if scheme not in ("tcp", "tls", "ucx", "ws", "wss"):
        return "127.0.0.1"
    return get_address_host(worker_address)


def worker_endpoint(worker) -> tuple[str, tuple | None]:
    """``(host, tls)`` for a Dask worker's links: the interface to listen on
    (:func:`listen_host`) and, when its comms are TLS, its :func:`tls_contexts`."""
    encrypted = worker.address.split("://")[0] in ("tls", "wss")
    tls = tls_contexts(getattr(worker, "security", None)) if encrypted else None
    return listen_host(worker.address), tls


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
    return _build(json.loads(header)["obj"], buffers)


def _build(desc: Any, buffers: list) -> Any:
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
    return walk(desc)


class Links:
    """The links of owner ``index`` (see the module docstring).

    ``on_message(sender, obj)`` runs on a reader thread for each message received;
    ``on_lost(sender)`` once when an incoming link from ``sender`` ends.  ``tls``: the
    ``(listening, connecting)`` contexts of :func:`tls_contexts`, or None for plain TCP.
    """

    def __init__(self, index: int, host: str, authkey: bytes,
                 on_message: Callable[[int, Any], None], on_lost: Callable[[int], None],
                 timeout: float = 60.0, tls: tuple | None = None):
        if not authkey:
            raise ValueError("slab owners' links need a key (an empty one proves nothing)")
        self.index = int(index)
        self._authkey = bytes(authkey)
        self._on_message, self._on_lost = on_message, on_lost
        self._timeout = float(timeout)
        self._tls = tls
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._server = socket.create_server((host, 0), family=family)
        except OSError:  # an address that is not this machine's own (NAT): every interface
            self._server = socket.create_server(("", 0), family=family)
        self.address = (host, self._server.getsockname()[1])
        self._out: dict[int, socket.socket] = {}
        self._send_lock = threading.Lock()
        self._socks: list[socket.socket] = []
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
            self._socks.append(sock)
            try:
                if self._tls is not None:
                    sock = self._tls[1].wrap_socket(sock)
                    self._socks.append(sock)
                _challenge(sock, self._authkey, first=False)
                sock.sendall(struct.pack("<i", self.index))
            except (OSError, EOFError, _Refused) as err:
                raise LinkLost(f"slab owner {self.index}: link to owner {j} at "
                               f"{addr[0]}:{addr[1]} refused ({err})") from err
            sock.settimeout(None)
            self._out[j] = sock

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
        self._socks.append(sock)  # (so that close wakes a handshake that never ends)
        try:
            sock.settimeout(self._timeout)
            if self._tls is not None:
                sock = self._tls[0].wrap_socket(sock, server_side=True)
                self._socks.append(sock)
            _challenge(sock, self._authkey, first=True)
            head = bytearray(4)
            _recv_into(sock, head)
            (sender,) = struct.unpack("<i", head)
            sock.settimeout(None)
        except (OSError, EOFError, _Refused, ValueError):
            sock.close()  # not one of this run's owners
            return
        if self._closed:
            sock.close()
            return
        try:
            while True:
                meta = json.loads(_recv_frame(sock))
                buffers = [_recv_frame(sock, limit=int(n)) for n in meta["sizes"]]
                if [len(b) for b in buffers] != meta["sizes"]:
                    raise ValueError("array frames of other sizes than the header's")
                self._on_message(sender, _build(meta["obj"], buffers))
        except (EOFError, OSError, ValueError, KeyError, TypeError, IndexError):
            self._on_lost(sender)  # gone, or sent what is not a message: the link ends
        finally:
            sock.close()

    # ------------------------------------------------------------------ messages
    def send(self, j: int, obj: Any) -> None:
        """Send ``obj`` to owner ``j`` (returns once it is on the socket)."""
        header, arrays = encode(obj)
        try:
            with self._send_lock:
                sock = self._out[j]
                _send_frame(sock, header)
                for a in arrays:
                    _send_frame(sock, a)
        except (KeyError, OSError) as err:
            raise LinkLost(f"link {self.index} -> {j}: {err!r}") from err

    def close(self) -> None:
        """Close every link and stop listening (the reader threads end)."""
        self._closed = True
        _wake(self._server)  # the thread blocked in accept
        self._server.close()
        for sock in list(self._socks):
            _wake(sock)  # a reader closes its own end
        for sock in self._out.values():
            sock.close()
