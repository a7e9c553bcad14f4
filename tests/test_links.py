"""The slab owners' own TCP links (direct exchange): messages, authentication, lost links."""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest

from daskorym.execution import tasks
from daskorym.execution.actors import PeerLost, SlabActor
from daskorym.execution.links import LinkLost, Links, decode, encode, listen_host
from daskorym.physics.region import Region

KEY = b"k" * 32


class _Owner:
    """A :class:`Links` whose received messages and lost links land in queues."""

    def __init__(self, index, key=KEY):
        self.got, self.lost = queue.Queue(), queue.Queue()
        self.links = Links(index, "127.0.0.1", key,
                           lambda s, m: self.got.put((s, m)), self.lost.put, timeout=10)


def _pair():
    a, b = _Owner(0), _Owner(1)
    addresses = [a.links.address, b.links.address]
    a.links.connect(addresses)
    b.links.connect(addresses)
    return a, b


def test_messages_arrive_whole_and_writable():
    a, b = _pair()
    try:
        big = np.random.default_rng(0).standard_normal((64, 64, 32, 2)).astype(np.float32)
        a.links.send(1, ("rot", (3, 1), big))
        a.links.send(1, ("grad", (4,), {"entries": [(None, 0, 0, big[:2].copy())]}))
        b.links.send(0, ("grad", (4,), None))
        (s1, (kind, tag, got)), (s2, m2) = b.got.get(timeout=10), b.got.get(timeout=10)
        assert (s1, kind, tag) == (1 - 1, "rot", (3, 1))
        np.testing.assert_array_equal(got, big)
        got += 1  # received into writable memory (the gradient rows are added to in place)
        assert s2 == 0 and m2[0] == "grad"
        np.testing.assert_array_equal(m2[2]["entries"][0][3], big[:2])
        assert a.got.get(timeout=10) == (1, ("grad", (4,), None))
    finally:
        a.links.close()
        b.links.close()


def test_encoding_round_trip_and_refusal():
    share = {"entries": [(Region(3, -2, 4, 5), 0, 1, np.arange(6.0).reshape(2, 3)),
                         (Region(0, 0, 0, 0), 0, 0, np.zeros((0, 4), np.complex64))]}
    message = ("grad", (np.int64(7), 2), share)
    header, arrays = encode(message)
    got = decode(header, [bytearray(a) for a in arrays])
    assert got[0] == "grad" and got[1] == (7, 2)
    (r0, a, b, x0), (r1, _, _, x1) = got[2]["entries"]
    assert (r0, a, b, r1) == (Region(3, -2, 4, 5), 0, 1, Region(0, 0, 0, 0))
    np.testing.assert_array_equal(x0, np.arange(6.0).reshape(2, 3))
    assert x1.shape == (0, 4) and x1.dtype == np.complex64
    assert decode(*encode(None)) is None
    for bad in (object(), {1: "not a string key"}, np.array([object()])):
        with pytest.raises((TypeError, ValueError)):
            header, arrays = encode(bad)
            decode(header, [bytearray(a) for a in arrays])


def test_both_owners_send_large_messages_at_once():
    """Each owner sends more than a socket buffer holds while the other does the same: the
    reader threads drain the sockets, so neither send blocks for ever."""
    a, b = _pair()
    big = np.ones((16, 1024, 1024), np.float32)  # 64 MB each way
    try:
        done = []
        ts = [threading.Thread(target=lambda o, j: (o.links.send(j, ("x", (0,), big)),
                                                   done.append(j)), args=(o, j))
              for o, j in ((a, 1), (b, 0))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert sorted(done) == [0, 1]
        for o in (a, b):
            _, (_, _, got) = o.got.get(timeout=30)
            assert got.shape == big.shape and float(got[-1, -1, -1]) == 1.0
    finally:
        a.links.close()
        b.links.close()


def test_a_wrong_key_is_refused():
    a = _Owner(0)
    intruder = _Owner(1, key=b"x" * 32)
    try:
        with pytest.raises(LinkLost, match="refused"):
            intruder.links.connect([a.links.address, intruder.links.address])
        time.sleep(0.2)
        assert a.got.empty() and a.lost.empty()  # nothing delivered, no owner counted lost
    finally:
        a.links.close()
        intruder.links.close()


def test_a_closed_peer_is_noticed_and_sending_to_it_fails():
    a, b = _pair()
    try:
        b.links.close()
        assert a.lost.get(timeout=10) == 1  # a's reader of b's link ended
        with pytest.raises(LinkLost, match="link 0 -> 1"):
            for _ in range(50):  # the first writes may still land in the socket buffer
                a.links.send(1, ("rot", (0,), np.zeros(1 << 16)))
                time.sleep(0.02)
    finally:
        a.links.close()


def test_close_ends_the_reader_threads():
    before = {t.ident for t in threading.enumerate()}
    a, b = _pair()
    a.links.close()
    b.links.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [t for t in threading.enumerate()
                if t.ident not in before and t.name.startswith("daskorym-link")]
        if not left:
            break
        time.sleep(0.05)
    assert not left


def test_an_unreachable_owner_is_named():
    a = _Owner(0)
    spare = __import__("socket").create_server(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()  # a port nobody listens on
    try:
        with pytest.raises(LinkLost, match="cannot reach owner 1 at 127.0.0.1.*any port"):
            a.links.connect([a.links.address, ("127.0.0.1", port)])
    finally:
        a.links.close()


def test_an_empty_key_is_refused():
    with pytest.raises(ValueError, match="need a key"):
        Links(0, "127.0.0.1", b"", lambda s, m: None, lambda s: None)


def test_listen_host():
    assert listen_host("tcp://10.1.2.3:4567") == "10.1.2.3"
    assert listen_host("inproc://10.1.2.3/123/4") == "127.0.0.1"


def test_a_step_gives_up_at_once_when_a_peer_link_breaks():
    """A message that came before the link broke is still taken; waiting for one that did
    not come fails at once, not after the actor's timeout."""
    record = tasks.SlabRecord(np.zeros((2, 2, 2, 2), np.float32), {},
                              np.zeros((2, 2, 2, 2), np.float32))
    actor = SlabActor(0, [(0, 2), (2, 4)], record, None, 1.0, timeout=60.0)
    actor._receive(1, ("rot", (0, 0), "slab"))
    actor._link_lost(1)
    assert actor._take("rot", (0, 0), 1) == "slab"
    t0 = time.monotonic()
    with pytest.raises(PeerLost, match="its link broke"):
        actor._take("grad", (0,), 1)
    assert time.monotonic() - t0 < 5
