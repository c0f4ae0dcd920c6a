"""Hostile and slow clients do not disturb the others."""

import os
import socket
import ssl
import struct
import time

import pytest

import tg_tls
from tg_proc import T, listener

REASONS = {"no_client_cert", "cert_expired", "cert_not_yet_valid", "cert_revoked", "unknown_ca",
           "self_signed", "bad_signature", "wrong_purpose", "chain_too_long", "crl_expired",
           "crl_missing", "serial_too_long", "name_too_long", "protocol_version",
           "no_shared_cipher", "unknown_sni",
           "handshake_timeout", "ocsp_unavailable", "tls_error"}

GARBAGE = {
    "http": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "random": os.urandom(4096),
    "zeros": b"\x00" * 512,
    "huge_record": b"\x16\x03\x01\xff\xff" + b"\x01" * 64,
    # A complete SSLv2-format ClientHello: length 28, type 1, version 3.1,
    # one cipher spec, no session id, a 16-byte challenge.
    "sslv2_hello": bytes.fromhex("801c" "01" "0301" "0003" "0000" "0010" "000039") + b"\x11" * 16,
}


def wait_closed(sock, timeout):
    """Reads until the server closes; returns (bytes read, seconds waited).
    Raises AssertionError if it stays open past the timeout."""
    sock.settimeout(timeout)
    t0 = time.monotonic()
    data = bytearray()
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                break
            data += b
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError(f"server kept the connection open for more than {timeout}s")
    return bytes(data), time.monotonic() - t0


@pytest.mark.parametrize("kind", list(GARBAGE))
@pytest.mark.parametrize("mode", ["one-way", "mutual"])
def test_garbage_instead_of_client_hello(serve, pki, kind, mode):
    tg, be = serve(listener(mode=mode))
    cert = pki.client("alice") if mode == "mutual" else None
    with socket.create_connection(tg.addr(), timeout=T(5)) as s:
        port = s.getsockname()[1]
        try:
            s.sendall(GARBAGE[kind])
        except (BrokenPipeError, ConnectionResetError):
            pass
        # A good client is served while the garbage connection is handled.
        got, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki, cert=cert), b"fine\n")
        assert got == b"fine\n"
        data, waited = wait_closed(s, T(10))
        assert b"fine" not in data
    e = tg.wait_rejection(port)
    assert e["reason"] in REASONS, e["_line"]
    assert be.count() == 1, "only the good client may reach the backend"
    assert tg.alive()


def half_client_hello(pki):
    """A real ClientHello record, produced in memory and never sent."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = tg_tls.client_ctx(pki).wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    assert hello[0] == 0x16 and len(hello) > 100
    return hello


@pytest.mark.parametrize("what", ["half_hello", "silent", "record_header_only"])
def test_stalled_handshake_times_out_without_disturbing_others(serve, pki, what):
    tg, be = serve(listener(handshake_timeout="1s"))
    hello = half_client_hello(pki)
    part = {"half_hello": hello[:len(hello) // 2], "silent": b"",
            "record_header_only": hello[:5]}[what]
    with socket.create_connection(tg.addr(), timeout=T(5)) as s:
        port = s.getsockname()[1]
        t0 = time.monotonic()
        if part:
            s.sendall(part)
        # Meanwhile a well-behaved client is served at once.
        t1 = time.monotonic()
        got, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki), b"meanwhile\n")
        assert got == b"meanwhile\n"
        assert time.monotonic() - t1 < 0.9, "the good client waited for the stalled one"
        data, _ = wait_closed(s, T(8))
        waited = time.monotonic() - t0
    assert 0.8 <= waited <= T(4), f"closed after {waited:.2f}s with handshake_timeout 1s"
    e = tg.wait_rejection(port)
    assert e["reason"] == "handshake_timeout", e["_line"]
    assert be.count() == 1


def test_slow_but_complete_handshake_is_served(serve, pki):
    """Twin: a client that pauses mid-ClientHello but finishes within the
    handshake timeout is served."""
    tg, be = serve(listener(handshake_timeout="3s"))
    c = tg_tls.MemTLS(tg.addr(), tg_tls.client_ctx(pki))
    try:
        hello = c.client_hello()
        c.sock.sendall(hello[:len(hello) // 2])
        time.sleep(0.5)  # the pause being tested, well under the 3 s timeout
        c.sock.sendall(hello[len(hello) // 2:])
        c.handshake()
        c.send(b"slow\n")
        assert c.recv() == b"slow\n"
    finally:
        c.close()
    assert be.count() == 1


def test_many_stalled_clients_do_not_block_a_good_one(serve, pki):
    tg, be = serve(listener(handshake_timeout="5s"))
    hello = half_client_hello(pki)
    stalled = []
    try:
        for _ in range(100):
            s = socket.create_connection(tg.addr(), timeout=T(5))
            s.sendall(hello[:40])
            stalled.append(s)
        t0 = time.monotonic()
        for i in range(5):
            got, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki), b"ok\n")
            assert got == b"ok\n"
        assert time.monotonic() - t0 < T(3)
    finally:
        for s in stalled:
            s.close()


def test_client_resets_mid_relay(serve, pki):
    """An abortive close (RST) from a client ends that relay cleanly."""
    tg, be = serve(listener())
    s = tg_tls.connect(tg.addr(), tg_tls.client_ctx(pki))
    port = s.getsockname()[1]
    s.sendall(b"x\n")
    assert tg_tls.recv_exact(s, 2) == b"x\n"
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    rec = tg.access_for(port)
    assert rec["bytes_in"] == 2
    assert rec["outcome"] == "client_reset", rec
    c = be.wait_conns(1, T(5))[0]
    assert c.done.wait(T(5)), "the backend side was not closed after the client reset"
    got, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki), b"next\n")
    assert got == b"next\n"


def test_client_close_mid_relay_is_not_a_reset(serve, pki):
    """The twin: a client that closes normally (FIN, nothing left unread)
    ends the relay as "ok", the target's side closed after it."""
    tg, be = serve(listener())
    s = tg_tls.connect(tg.addr(), tg_tls.client_ctx(pki))
    port = s.getsockname()[1]
    s.sendall(b"x\n")
    assert tg_tls.recv_exact(s, 2) == b"x\n"
    s.close()
    rec = tg.access_for(port)
    assert rec["outcome"] == "ok", rec
    assert rec["bytes_in"] == 2
    c = be.wait_conns(1, T(5))[0]
    assert c.done.wait(T(5))


def test_connect_and_close_is_not_a_refused_handshake(serve):
    """A port check (connect, close, nothing sent) is noted at info level and
    is not counted as a refusal; a few bytes of garbage are (the twin)."""
    tg, be = serve(listener())
    with socket.create_connection(tg.addr(), timeout=T(5)) as s:
        quiet = s.getsockname()[1]
    with socket.create_connection(tg.addr(), timeout=T(5)) as s:
        noisy = s.getsockname()[1]
        s.sendall(b"\x00" * 8)  # a record header no TLS version writes
        wait_closed(s, T(5))
    ev = tg.wait_event("client_closed_before_hello",
                       client=f"127.0.0.1:{quiet}")[0]
    assert ev["_level"] == "info"
    assert tg.wait_event("tls_handshake_failed", client=f"127.0.0.1:{noisy}")[0]["reason"] in REASONS
    assert not [e for e in tg.events("tls_handshake_failed")
                if e["client"] == f"127.0.0.1:{quiet}"]
