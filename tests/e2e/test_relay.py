"""The tcp_ssl relay: bulk data, half-close, timeouts, limits, target choice."""

import asyncio
import hashlib
import ssl
import struct
import time

import pytest

import tg_tls
from tg_proc import T, free_port, group, listener, wait_for

MiB = 1 << 20
CHUNK = 256 * 1024
_BLOCK = hashlib.sha256(b"tollgate").digest() * (CHUNK // 32)


def chunk(i):
    """Chunk i of the bulk stream; every chunk differs, so a reordered or
    repeated chunk changes the hash."""
    return struct.pack(">Q", i) + _BLOCK[8:]


async def _bulk(addr, ctx, total, timeout):
    r, w = await asyncio.wait_for(
        asyncio.open_connection(addr[0], addr[1], ssl=ctx, server_hostname="localhost",
                                limit=4 * MiB), T(10))
    sent, got = hashlib.sha256(), hashlib.sha256()

    async def writer():
        for i in range(total // CHUNK):
            data = chunk(i)
            sent.update(data)
            w.write(data)
            await w.drain()

    async def reader():
        n = 0
        while n < total:
            b = await r.read(4 * MiB)
            if not b:
                break
            got.update(b)
            n += len(b)
        return n

    try:
        _, n = await asyncio.wait_for(asyncio.gather(writer(), reader()), timeout)
    finally:
        w.close()
        try:
            await asyncio.wait_for(w.wait_closed(), 5)
        except (asyncio.TimeoutError, OSError, ssl.SSLError):
            pass
    return n, sent.hexdigest(), got.hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["builtin", "backend"])
@pytest.mark.parametrize("mode", ["one-way", "mutual"])
def test_64mib_each_way(tollgate, backend, pki, target, mode):
    total = 64 * MiB
    be = backend(keep=0) if target == "backend" else None
    address = "builtin:echo" if be is None else be.address
    tg = tollgate({"target_groups": {"g": group(address)},
                   "listeners": [listener(mode=mode, idle_timeout="30s")]})
    cert = pki.client("alice") if mode == "mutual" else None
    ctx = tg_tls.client_ctx(pki, cert=cert)
    t0 = time.monotonic()
    n, sent, got = asyncio.run(_bulk(tg.addr(), ctx, total, T(90)))
    assert n == total, f"echoed {n} of {total} bytes"
    assert got == sent, "SHA-256 of the echoed stream differs from what was sent"
    if be is not None:
        c = be.wait_conns(1, T(5))[0]
        be.wait_payload(c, total, T(10))
        assert c.nbytes == total and c.digest() == sent
    rec = tg.wait_access(lambda r: r["bytes_in"] > 0)[0]
    assert rec["bytes_in"] == total and rec["bytes_out"] == total, rec
    assert time.monotonic() - t0 < T(120)


def test_small_transfer_twin_sizes_add_up(serve, pki):
    """Twin of the bulk test at small size: byte counters are exact."""
    tg, be = serve(listener())
    got, info = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki), b"x" * 1000)
    assert got == b"x" * 1000
    rec = tg.access_for(info["local"][1])
    assert (rec["bytes_in"], rec["bytes_out"]) == (1000, 1000)


def test_client_half_close_reaches_backend_which_can_still_answer(serve, pki):
    tg, be = serve(listener(), backend_kw={"mode": "sink", "on_eof": b"answer after EOF\n"})
    c = tg_tls.MemTLS(tg.addr(), tg_tls.client_ctx(pki))
    try:
        c.handshake()
        c.send(b"request\n")
        conn = be.wait_conns(1, T(5))[0]
        be.wait_payload(conn, 8, T(5))
        assert not conn.eof.is_set(), "backend saw EOF before the client closed"
        c.shutdown_write()  # close_notify
        assert conn.eof.wait(T(5)), "close_notify did not become EOF at the backend"
        data = c.read_all()
        assert data == b"answer after EOF\n"
        assert c.closed_by_peer == "close_notify", c.closed_by_peer
        assert bytes(conn.data) == b"request\n"
    finally:
        c.close()


def test_backend_close_sends_close_notify(serve, pki):
    tg, be = serve(listener(), backend_kw={"mode": "sink", "greeting": b"bye now\n",
                                           "close_after_greeting": True})
    c = tg_tls.MemTLS(tg.addr(), tg_tls.client_ctx(pki))
    try:
        c.handshake()
        assert c.read_all() == b"bye now\n"
        assert c.closed_by_peer == "close_notify", \
            f"client saw {c.closed_by_peer}, expected a TLS close_notify, not a bare EOF"
    finally:
        c.close()


def test_idle_timeout_closes_idle_relay(serve, pki):
    tg, be = serve(listener(idle_timeout="1s"))
    with tg_tls.connect(tg.addr(), tg_tls.client_ctx(pki)) as s:
        port = s.getsockname()[1]
        s.sendall(b"one\n")
        assert tg_tls.recv_exact(s, 4) == b"one\n"
        t0 = time.monotonic()
        s.settimeout(T(10))
        try:
            b = s.recv(10)
        except (ssl.SSLError, ConnectionResetError):
            b = b""
        waited = time.monotonic() - t0
    assert b == b"", f"got {b!r} instead of a close"
    assert 0.5 <= waited <= T(5), f"closed after {waited:.2f}s with idle_timeout 1s"
    rec = tg.access_for(port)
    assert rec["outcome"] == "idle_timeout", rec


def test_active_relay_outlives_idle_timeout(serve, pki):
    """Twin: traffic every 0.3 s keeps a 1 s idle timeout away."""
    tg, be = serve(listener(idle_timeout="1s"))
    with tg_tls.connect(tg.addr(), tg_tls.client_ctx(pki)) as s:
        deadline = time.monotonic() + 2.5
        i = 0
        while time.monotonic() < deadline:
            msg = f"tick {i}\n".encode()
            s.sendall(msg)
            assert tg_tls.recv_exact(s, len(msg)) == msg
            i += 1
            # pacing the client, not waiting for tollgate
            time.sleep(0.3)
    assert i >= 6


def test_max_connections_refuses_the_extra_one(serve, pki):
    tg, be = serve(listener(max_connections=2))
    tg.settle_probes()
    ctx = tg_tls.client_ctx(pki)
    held = [tg_tls.connect(tg.addr(), ctx) for _ in range(2)]
    try:
        for i, s in enumerate(held):
            s.sendall(b"held\n")
            assert tg_tls.recv_exact(s, 5) == b"held\n"
        ok, detail, port = tg_tls.attempt(tg.addr(), ctx)
        assert not ok, "a third connection was served with max_connections 2"
        e = tg.wait_event("conn_refused")[0]
        assert e["reason"] == "max_connections" and e["client"] == f"127.0.0.1:{port}"
        # The two held connections keep working.
        for s in held:
            s.sendall(b"still\n")
            assert tg_tls.recv_exact(s, 6) == b"still\n"
        # Twin: once one closes, a new client is served again.
        gone = held.pop()
        gone_port = gone.getsockname()[1]
        gone.close()
        tg.access_for(gone_port)  # logged when tollgate has freed it
        got, _ = tg_tls.roundtrip(tg.addr(), ctx, b"again\n")
        assert got == b"again\n"
    finally:
        for s in held:
            s.close()


def test_failed_connect_moves_on_to_next_target(tollgate, backend, pki):
    be = backend()
    dead = f"127.0.0.1:{free_port()}"
    tg = tollgate({"target_groups": {"g": group(dead, be.address)},
                   "listeners": [listener()]})
    ctx = tg_tls.client_ctx(pki)
    for i in range(4):
        msg = f"try {i}\n".encode()
        got, _ = tg_tls.roundtrip(tg.addr(), ctx, msg)
        assert got == msg
    assert be.count() == 4
    assert tg.events("connect_failed"), "the dead target was never tried"


def test_all_targets_down_closes_client(tollgate, pki):
    """Twin: nothing to connect to; the client is closed, nothing echoed."""
    tg = tollgate({"target_groups": {"g": group(f"127.0.0.1:{free_port()}")},
                   "listeners": [listener(connect_timeout="1s")]})
    ok, detail, port = tg_tls.attempt(tg.addr(), tg_tls.client_ctx(pki))
    assert not ok, detail
    rec = tg.access_for(port)
    assert rec["outcome"] == "no_target", rec


@pytest.mark.parametrize("weights,expect", [((3, 1), (6, 2)), ((1, 1), (4, 4))])
def test_weighted_round_robin(tollgate, backend, pki, weights, expect):
    a, b = backend(), backend()
    tg = tollgate({"target_groups": {"g": group((a.address, weights[0]),
                                                (b.address, weights[1]))},
                   "listeners": [listener()]})
    ctx = tg_tls.client_ctx(pki)
    for i in range(8):
        got, _ = tg_tls.roundtrip(tg.addr(), ctx, b"w\n")
        assert got == b"w\n"
    assert (a.count(), b.count()) == expect


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_backend_that_stops_reading_does_not_grow_memory(serve, pki):
    """Backpressure: a backend that reads nothing stalls the client once the
    socket buffers and tollgate's fixed buffers are full; tollgate's memory
    stays flat; once the backend reads again, every byte arrives intact."""
    import threading
    hold = threading.Event()
    tg, be = serve(listener(idle_timeout="60s"),
                   backend_kw={"mode": "sink", "hold": hold, "keep": 0})
    worker = wait_for(lambda: tg.worker_pids(), T(5), what="a worker")[0]
    s = tg_tls.connect(tg.addr(), tg_tls.client_ctx(pki))
    total = 64 * MiB
    sent = [0]
    sha = hashlib.sha256()
    errors = []

    def writer():
        try:
            s.settimeout(T(60))
            for i in range(total // CHUNK):
                data = chunk(i)
                s.sendall(data)
                sha.update(data)
                sent[0] += len(data)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    try:
        rss0 = rss_kib(worker)
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        # Wait until the writer has been stuck for 0.5 s.
        last, since = -1, time.monotonic()
        deadline = time.monotonic() + T(20)
        while True:
            now = time.monotonic()
            if sent[0] != last:
                last, since = sent[0], now
            elif now - since >= 0.5:
                break
            assert now < deadline, "the writer never stalled"
            time.sleep(0.05)
        assert sent[0] < total, "64 MiB went into a backend that reads nothing"
        grown = rss_kib(worker) - rss0
        limit = (48 if tg_tls.T(1) > 1 else 16) * 1024
        assert grown < limit, f"worker RSS grew by {grown} KiB while the backend was stalled"
        hold.set()
        t.join(T(60))
        assert not errors, errors
        assert sent[0] == total
        # Before closing: an abortive close (unread tickets make it a RST)
        # may rightly drop what is still in flight.
        c = be.wait_conns(1, T(5))[0]
        be.wait_payload(c, total, T(30))
        assert c.nbytes == total and c.digest() == sha.hexdigest()
    finally:
        hold.set()
        s.close()


def test_max_connections_counts_across_workers(serve, pki):
    """max_connections is per listener, not per worker."""
    tg, be = serve(listener(max_connections=2), workers=2)
    wait_for(lambda: len(tg.worker_pids()) == 2, T(5), what="2 workers")
    tg.settle_probes()
    ctx = tg_tls.client_ctx(pki)
    held = []
    try:
        for i in range(2):
            s = tg_tls.connect(tg.addr(), ctx)
            held.append(s)
            s.sendall(b"h\n")
            assert tg_tls.recv_exact(s, 2) == b"h\n"
        for i in range(4):
            ok, detail, port = tg_tls.attempt(tg.addr(), ctx)
            assert not ok, f"connection {i + 3} was served with max_connections 2"
        assert len(tg.wait_event("conn_refused", count=4)) == 4
    finally:
        for s in held:
            s.close()
