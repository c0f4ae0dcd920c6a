"""500 clients at the same time, all served (and the limit twin)."""

import asyncio

import pytest

import tg_tls
from tg_proc import T, listener


async def _many(addr, ctx, n, timeout):
    """n clients connect, exchange one message, wait until all n have tried,
    exchange a second message (so all were open at once), and close."""
    arrived = 0
    all_in = asyncio.Event()
    results = [None] * n

    async def one(i):
        nonlocal arrived
        w = None
        try:
            try:
                r, w = await asyncio.open_connection(addr[0], addr[1], ssl=ctx,
                                                     server_hostname="localhost")
                msg = f"client {i} first\n".encode()
                w.write(msg)
                await w.drain()
                got = await r.readexactly(len(msg))
                if got != msg:
                    raise AssertionError(f"echo mismatch {got!r}")
            finally:
                arrived += 1
                if arrived == n:
                    all_in.set()
            await all_in.wait()
            msg = f"client {i} second\n".encode()
            w.write(msg)
            await w.drain()
            got = await r.readexactly(len(msg))
            if got != msg:
                raise AssertionError(f"echo mismatch {got!r}")
            results[i] = "ok"
        except Exception as e:  # noqa: BLE001 - every failure is a result
            results[i] = f"{type(e).__name__}: {e}"
        finally:
            if w is not None:
                w.close()
                try:
                    await asyncio.wait_for(w.wait_closed(), 5)
                except Exception:  # noqa: BLE001
                    pass

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), timeout)
    return results


@pytest.mark.slow
def test_500_concurrent_connections_all_served(serve, pki):
    # A generous handshake timeout: 500 handshakes at once on a loaded
    # 2-core machine; timeouts are tested elsewhere.
    tg, be = serve(listener(handshake_timeout="60s"), workers=2)
    results = asyncio.run(_many(tg.addr(), tg_tls.client_ctx(pki), 500, T(90)))
    failed = [(i, r) for i, r in enumerate(results) if r != "ok"]
    assert not failed, f"{len(failed)} of 500 failed, e.g. {failed[:5]}"
    assert be.count() == 500
    assert not tg.events("conn_refused")
    assert tg.rejections() == []


@pytest.mark.slow
def test_500_concurrent_with_limit_400(serve, pki):
    """Twin: with max_connections 400 exactly the 100 extra are refused,
    and the 400 are served."""
    tg, be = serve(listener(max_connections=400, handshake_timeout="60s"), workers=1)
    tg.settle_probes()
    results = asyncio.run(_many(tg.addr(), tg_tls.client_ctx(pki), 500, T(90)))
    ok = sum(1 for r in results if r == "ok")
    assert ok == 400, f"{ok} served; failures: {[r for r in results if r != 'ok'][:3]}"
    assert len(tg.events("conn_refused")) == 100
    assert be.count() == 400
