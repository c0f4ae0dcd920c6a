"""HTTP/2 attacks, each sent for real and bounded in count and time. Each
test shows (a) the attacker's connection is stopped or its streams
refused, (b) another client on another connection, served by the same
(single) worker at the same time, still gets every response in normal
time, (c) the worker's memory (VmRSS) grows by less than a stated bound.

Attacks: rapid reset (CVE-2023-44487), CONTINUATION flood, HPACK bomb,
oversized header lists, SETTINGS and PING floods from a client that does
not read, zero-window stall, more streams than h2_max_streams."""

import os
import socket
import threading
import time

import pytest

import tg_h2
import tg_proc
from tg_h2 import (CONTINUATION, GOAWAY, HEADERS, INITIAL_WINDOW_SIZE, RST_STREAM, Background,
                   RawH2, frame, ping_frame, probe_latencies, req_headers, rst_stream,
                   settings_frame, worker_rss_kib)
from tg_http import Reply, hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T

MIB = 1 << 20
# What one attack may add to the worker's resident memory. Under ASan
# freed blocks stay in its quarantine (256 MiB by default), so an attack
# that only churns allocations still grows RSS: the bound is then that.
RSS_BOUND_KIB = (320 if tg_proc.ASAN else 16) * 1024
# The other client's worst request while an attack runs (normal: a few ms).
VICTIM_MAX_S = T(1.0)


def handler(req):
    if req.target == "/big":
        return Reply(200, body_size=8 * MIB)
    if req.target == "/slow":
        return Reply(200, body=b"slow", delay=1.0)
    return Reply(200, body=b"ok")


def start(hserve, pki, **listener):
    """tollgate with one worker; warmed up so that the RSS baseline holds
    what any traffic allocates."""
    tg, be = hserve(https_listener(**listener), handler=handler)
    probe_latencies(tg.addr(), pki, stop=_Never(), limit=20)
    return tg, be, worker_rss_kib(tg)


class _Never:
    def is_set(self):
        return False


class Victim:
    """Another client, on its own connection, requesting one thing after
    another from before the attack starts until after it ends."""

    def __init__(self, tg, pki, warm=3):
        self.lat = []
        self.bg = Background(lambda stop: probe_latencies(tg.addr(), pki, stop, out=self.lat))
        deadline = time.monotonic() + T(10)
        while len(self.lat) < warm:
            assert time.monotonic() < deadline and self.bg.t.is_alive(), "no victim answers"
            time.sleep(0.01)
        self.t_attack, self.n_before = time.monotonic(), len(self.lat)

    def check(self, min_requests=5):
        """Lets the victim make min_requests more requests after the attack,
        then stops it and checks every latency."""
        during = len(self.lat) - self.n_before
        if time.monotonic() - self.t_attack > 0.5:
            assert during >= 1, "the other client got no answer during the attack"
        target = len(self.lat) + min_requests
        deadline = time.monotonic() + T(15)
        while len(self.lat) < target and self.bg.t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        lat = self.bg.join()
        print(f"other client: {len(lat)} answers, {during} during the attack, "
              f"worst {max(lat) * 1000:.1f} ms")
        assert len(lat) >= min_requests, f"the other client got only {len(lat)} answers"
        assert max(lat) < VICTIM_MAX_S, f"the other client waited {max(lat):.3f}s"
        return lat


def check_rss(tg, base):
    grown = worker_rss_kib(tg) - base
    print(f"worker RSS grew by {grown} KiB (bound {RSS_BOUND_KIB} KiB)")
    assert grown < RSS_BOUND_KIB, f"worker grew by {grown} KiB"
    return grown


def forwarded(be, path):
    return len([r for r in be.reqs() if r.target == path])


def conn_errors(tg, port):
    return [e for e in tg.events("h2_connection_error")
            if e.get("client", "").endswith(f":{port}")]


def send_until_closed(c, make_batch, max_batches, budget):
    """Sends batches until the server closes (or the bounds run out).
    Returns the number of batches that went out."""
    deadline = time.monotonic() + budget
    c.sock.settimeout(T(2))
    n = 0
    while n < max_batches and time.monotonic() < deadline:
        try:
            c.sock.sendall(make_batch(n))
        except (OSError, TimeoutError):
            break
        n += 1
    return n


# ---- rapid reset (CVE-2023-44487) ----

def rapid_reset(c, pairs_per_batch=100, max_batches=50):
    sid = [1]

    def batch(_):
        out = b""
        for _ in range(pairs_per_batch):
            out += c.headers_frame(sid[0], req_headers(path="/rr")) + rst_stream(sid[0])
            sid[0] += 2
        return out
    n = send_until_closed(c, batch, max_batches, T(5))
    return n * pairs_per_batch


def test_rapid_reset_stopped(hserve, pki):
    """HEADERS then RST_STREAM, again and again (up to 5000 pairs): the
    connection is ended with a GOAWAY error well before, few requests
    reach the backend, the other client is served, memory stays flat."""
    tg, be, base = start(hserve, pki)
    victim = Victim(tg, pki)
    with RawH2(tg.addr(), pki) as c:
        sent = rapid_reset(c)
        g = c.wait(lambda f: f.type == GOAWAY, timeout=T(5), what="GOAWAY")
        assert g.error_code != tg_h2.NO_ERROR, g
        assert c.closed(T(5))
        port = c.port
    assert g.last_stream_id < 2 * 1000, f"{g.last_stream_id // 2} streams were processed"
    n = forwarded(be, "/rr")
    assert n < 500, f"{n} of {sent} reset streams reached the backend"
    victim.check()
    check_rss(tg, base)
    assert conn_errors(tg, port), "no h2_connection_error line"


def test_rapid_reset_is_reported_as_a_flood(hserve, pki):
    tg, be, base = start(hserve, pki)
    with RawH2(tg.addr(), pki) as c:
        rapid_reset(c)
        g = c.wait(lambda f: f.type == GOAWAY, timeout=T(5), what="GOAWAY")
        port = c.port
    assert g.error_code == tg_h2.ENHANCE_YOUR_CALM, g
    ev = tg.wait_event("h2_connection_error")
    assert [e["reason"] for e in conn_errors(tg, port)] == ["h2_flood"], ev


def test_resets_below_the_rate_are_fine_twin(hserve, pki):
    """Twin: a client that cancels 50 streams (under the default 100 a
    second) keeps its connection and is served after."""
    tg, be, base = start(hserve, pki)
    with RawH2(tg.addr(), pki) as c:
        c.send(b"".join(c.headers_frame(sid, req_headers(path="/slow")) + rst_stream(sid)
                        for sid in range(1, 101, 2)))
        c.request(101, path="/after")
        assert c.response(101)[0] == 200
        assert not [f for f in c.seen if f.type == GOAWAY]


def test_reset_rate_setting(hserve, pki):
    """h2_max_resets_per_second 10: 30 quick resets end the connection,
    where the default allows them (previous test)."""
    tg, be, base = start(hserve, pki, h2_max_resets_per_second=10)
    with RawH2(tg.addr(), pki) as c:
        c.send(b"".join(c.headers_frame(sid, req_headers(path="/slow")) + rst_stream(sid)
                        for sid in range(1, 61, 2)))
        g = c.wait(lambda f: f.type == GOAWAY, timeout=T(5), what="GOAWAY")
        assert g.error_code != tg_h2.NO_ERROR
        assert c.closed(T(5))


# ---- CONTINUATION flood ----

@pytest.mark.parametrize("filled", [False, True], ids=["empty", "filled"])
def test_continuation_flood(hserve, pki, filled):
    """HEADERS without END_HEADERS, then CONTINUATION frames without end
    (empty ones, or 1 KiB of fields each; up to 20000): the connection is
    closed quickly, nothing is forwarded, memory stays flat."""
    tg, be, base = start(hserve, pki)
    victim = Victim(tg, pki)
    with RawH2(tg.addr(), pki) as c:
        c.send(c.headers_frame(1, req_headers(path="/cont"), end_headers=False))
        enc = c.enc
        piece = [0]

        def batch(_):
            out = b""
            for _ in range(100):
                block = enc.encode([(f"x-c{piece[0]}", "v" * 1000)], huffman=False) \
                    if filled else b""
                out += frame(CONTINUATION, 0, 1, block)
                piece[0] += 1
            return out
        t0 = time.monotonic()
        sent = send_until_closed(c, batch, 200, T(5))
        assert c.closed(T(5))
        took = time.monotonic() - t0
        port = c.port
    assert took < T(5), took
    assert sent < 200, "all 20000 CONTINUATION frames went in"
    assert forwarded(be, "/cont") == 0
    victim.check()
    check_rss(tg, base)
    assert conn_errors(tg, port)


@pytest.mark.parametrize("kind", ["settings", "continuation"])
def test_flood_is_answered_with_goaway_enhance_your_calm(hserve, pki, kind):
    """A flood nghttp2 counts (3000 SETTINGS at once; HEADERS then 200
    CONTINUATION frames) is told why: GOAWAY(ENHANCE_YOUR_CALM) before the
    close, and the log says reason=h2_flood."""
    tg, be, base = start(hserve, pki)
    with RawH2(tg.addr(), pki) as c:
        if kind == "settings":
            c.send(settings_frame() * 3000)
        else:
            c.send(c.headers_frame(1, req_headers(path="/cont"), end_headers=False) +
                   frame(CONTINUATION, 0, 1, b"") * 200)
        got = c.drain_until_eof(T(5))
        port = c.port
    goaway = [f for f in got if f.type == GOAWAY]
    assert goaway and goaway[0].error_code == tg_h2.ENHANCE_YOUR_CALM, goaway
    tg.wait_event("h2_connection_error")
    assert [e["reason"] for e in conn_errors(tg, port)] == ["h2_flood"]


# ---- HPACK bomb ----

def hpack_int(value, prefix_bits, flags):
    """RFC 7541 §5.1: an integer with an N-bit prefix (flags in the high bits)."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes([flags | value])
    out, value = bytearray([flags | top]), value - top
    while value >= 128:
        out.append(0x80 | (value & 0x7f))
        value >>= 7
    out.append(value)
    return bytes(out)


def bomb_request_block(path):
    """:method GET, :scheme https (static), :path and :authority as literals
    without indexing: the dynamic table is left as it is."""
    def lit(index, value):
        return hpack_int(index, 4, 0x00) + hpack_int(len(value), 7, 0) + value
    return b"\x82\x87" + lit(4, path) + lit(1, b"localhost")


def test_hpack_bomb(hserve, pki):
    """A 4000-byte field put in the dynamic table, then referenced with one
    byte each: every block decodes to about 64 MiB of fields (16000
    references). Each such stream gets 431, nothing is forwarded, memory
    stays flat, the connection goes on."""
    tg, be, base = start(hserve, pki)
    victim = Victim(tg, pki)
    name, value = b"x-bomb", b"B" * 4000
    insert = (b"\x40" + hpack_int(len(name), 7, 0) + name + hpack_int(len(value), 7, 0) + value)
    with RawH2(tg.addr(), pki) as c:
        # the newest dynamic entry is index 62 (0xbe: indexed field 62)
        c.send(c.header_frames(1, block=bomb_request_block(b"/bomb") + insert + b"\xbe" * 12000))
        assert c.status_of(1) == 431
        t0 = time.monotonic()
        for i in range(1, 20):
            sid = 1 + 2 * i
            block = bomb_request_block(b"/bomb")
            c.send(frame(HEADERS, tg_h2.END_HEADERS | tg_h2.END_STREAM, sid,
                         block + b"\xbe" * (16384 - len(block))))
            assert c.status_of(sid) == 431, sid
        took = time.monotonic() - t0
        c.send(frame(HEADERS, tg_h2.END_HEADERS | tg_h2.END_STREAM, 41,
                     bomb_request_block(b"/after-bomb")))
        assert c.response(41)[0] == 200
    assert took < T(10), f"19 bombs took {took:.1f}s"
    assert forwarded(be, "/bomb") == 0 and forwarded(be, "/after-bomb") == 1
    victim.check()
    check_rss(tg, base)


# ---- oversized header lists ----

def test_oversized_header_lists_431(hserve, pki):
    """50 streams, each with a 60 KiB header list (HEADERS + CONTINUATION):
    each gets 431, none is forwarded, the connection lives on."""
    tg, be, base = start(hserve, pki)
    victim = Victim(tg, pki)
    with RawH2(tg.addr(), pki) as c:
        for i in range(50):
            sid = 1 + 2 * i
            extra = [(f"x-big-{i}-{k}", "v" * 1000) for k in range(60)]
            c.send(c.header_frames(sid, req_headers(path="/huge", extra=extra)))
            assert c.status_of(sid) == 431, sid
        c.request(101, path="/small", extra=[("x-ok", "v" * 1000)])
        assert c.response(101)[0] == 200
    assert forwarded(be, "/huge") == 0 and forwarded(be, "/small") == 1
    victim.check()
    check_rss(tg, base)
    assert tg.events("http_error", status="431")


# ---- SETTINGS and PING floods from a client that does not read ----

TCP_STATES = {1: "ESTAB", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
              6: "TIME-WAIT", 7: "CLOSE", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN",
              11: "CLOSING"}


def server_side_state(tg, client_port):
    """The TCP state of tollgate's end of the connection from client_port
    ("" when there is none), from /proc/net/tcp."""
    lport = tg.addr()[1]
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, st = fields[1], fields[2], int(fields[3], 16)
            if int(local.split(":")[1], 16) == lport and \
                    int(remote.split(":")[1], 16) == client_port:
                return TCP_STATES.get(st, str(st))
    return ""


def flood(c, blob, budget):
    """Sends blob again and again on c, never reading, up to 64 MiB or
    budget seconds. Returns (bytes sent, how it stopped)."""
    c.sock.settimeout(1.0)
    sent, t0 = 0, time.monotonic()
    while sent < 64 * MIB and time.monotonic() - t0 < budget:
        try:
            c.sock.sendall(blob)
        except (TimeoutError, socket.timeout):
            return sent, "sending stalled"
        except OSError as e:
            return sent, f"connection ended ({e.__class__.__name__})"
        sent += len(blob)
    return sent, "not stopped"


@pytest.mark.parametrize("kind", ["settings", "ping"])
def test_flood_without_reading(hserve, pki, kind):
    """A client sends SETTINGS (or PING) frames without end and never reads
    the ACKs (up to 64 MiB, 5 s). tollgate does not queue answers for a
    client that does not read: it stops reading it while they wait, or
    nghttp2 counts a flood and the connection ends (GOAWAY, h2_flood). The
    worker's memory stays flat and the other client is served."""
    tg, be, base = start(hserve, pki, idle_timeout="1s")
    victim = Victim(tg, pki)
    one = settings_frame() if kind == "settings" else ping_frame(b"floodpng")
    blob = one * (64 * 1024 // len(one))
    with RawH2(tg.addr(), pki) as c:
        t0 = time.monotonic()
        sent, how = flood(c, blob, T(5))
        print(f"{kind} flood: {how} after {sent >> 10} KiB, {time.monotonic() - t0:.1f}s, "
              f"tollgate's end {server_side_state(tg, c.port) or 'gone'}")
        check_rss(tg, base)
        reasons = [e["reason"] for e in conn_errors(tg, c.port)]
        assert reasons in ([], ["h2_flood"]), reasons
        if kind == "settings":
            # 1820 SETTINGS in one read are more ACKs than nghttp2 queues
            assert reasons == ["h2_flood"] and how.startswith("connection ended"), (reasons, how)
    victim.check()
    check_rss(tg, base)


def test_client_that_stops_reading_is_closed_at_idle_timeout(hserve, pki):
    """Six clients each send PINGs until their sending stalls (they never
    read the ACKs), then wait: at idle_timeout (1 s) tollgate ends each of
    these connections (an idle connection with nothing it can send)."""
    tg, be, base = start(hserve, pki, idle_timeout="1s")
    blob = ping_frame(b"floodpng") * (64 * 1024 // 17)
    conns = [RawH2(tg.addr(), pki) for _ in range(6)]
    try:
        results = {}

        def run(i):
            results[i] = flood(conns[i], blob, T(5))
        threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(T(15))
        t_stop = time.monotonic()
        deadline = t_stop + 1.0 + T(2)
        while True:
            states = [server_side_state(tg, c.port) for c in conns]
            if "ESTAB" not in states:
                break
            assert time.monotonic() < deadline, \
                f"still open {time.monotonic() - t_stop:.1f}s after the clients stopped: " \
                f"{states} {results}"
            time.sleep(0.2)
    finally:
        for c in conns:
            c.close()


# ---- zero-window stall ----

def test_zero_window_stall(hserve, pki):
    """A client with SETTINGS_INITIAL_WINDOW_SIZE 0 opens 50 streams to an
    8 MiB response and never opens a window: no DATA goes into the zero
    window, tollgate holds a bounded part of each body (the backends are
    not read further: memory stays flat), and the other client is served."""
    tg, be, base = start(hserve, pki, idle_timeout="2s")
    victim = Victim(tg, pki)
    with RawH2(tg.addr(), pki, settings=[(INITIAL_WINDOW_SIZE, 0)]) as c:
        c.wait(lambda f: f.type == tg_h2.SETTINGS and f.flags & tg_h2.ACK, what="ACK")
        sids = [1 + 2 * i for i in range(50)]
        c.send(b"".join(c.headers_frame(sid, req_headers(path="/big")) for sid in sids))
        deadline = time.monotonic() + T(10)
        while forwarded(be, "/big") < 50:
            assert time.monotonic() < deadline, f"{forwarded(be, '/big')} of 50 forwarded"
            time.sleep(0.05)
        heads = set()
        while len(heads) < 50:
            f = c.wait(lambda f: f.type == HEADERS, timeout=T(5), what="the response heads")
            heads.add(f.sid)
        time.sleep(1.0)
        check_rss(tg, base)
        assert not [f for f in c.seen if f.type == tg_h2.DATA and f.payload], \
            "DATA sent into a zero window"
        victim.check()
    check_rss(tg, base)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_zero_window_stream_idles_out_without_spinning(hserve, pki):
    """One stream, window 0, a backend that writes the head and 1 MiB of
    body at once: while the stream is stalled the worker is idle (under
    0.5 s of CPU in 3 s), and the stream is reset (CANCEL) at idle_timeout
    (1 s), logged idle_timeout."""
    body = 1 << 20
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % body + b"z" * body
    tg, be = hserve(https_listener(idle_timeout="1s"), handler=lambda req: Reply(raw=raw))
    worker = tg.worker_pids()[0]
    with RawH2(tg.addr(), pki, settings=[(INITIAL_WINDOW_SIZE, 0)]) as c:
        c.request(1, path="/stall")
        c.wait(lambda f: f.type == HEADERS and f.sid == 1, what="the response head")
        t0, cpu0 = time.monotonic(), cpu_seconds(worker)
        rst = c.wait(lambda f: f.type == RST_STREAM, timeout=T(3), what="RST_STREAM")
        took = time.monotonic() - t0
        cpu = cpu_seconds(worker) - cpu0
        port = c.port
    assert rst.error_code == tg_h2.CANCEL and took < T(2.5), (rst, took)
    assert cpu < 0.5 * max(took, 1.0), f"the worker used {cpu:.2f}s of CPU in {took:.2f}s"
    rec = tg.wait_access(lambda r: r["client"].endswith(f":{port}"))[0]
    assert rec["outcome"] == "idle_timeout"


# ---- more streams than h2_max_streams ----

def test_excess_streams_refused_before_settings_ack(hserve, pki):
    """h2_max_streams 5; a client that opens 8 streams before it has
    acknowledged the server's SETTINGS: 5 are served, 3 get
    RST_STREAM(REFUSED_STREAM) and never reach the backend."""
    tg, be, base = start(hserve, pki, h2_max_streams=5)
    with RawH2(tg.addr(), pki, handshake=False) as c:
        c.send(tg_h2.PREFACE + settings_frame() +
               b"".join(c.headers_frame(sid, req_headers(path="/slow"))
                        for sid in range(1, 17, 2)))
        got = {sid: c.status_of(sid, timeout=T(5)) for sid in range(1, 17, 2)}
    assert list(got.values()).count(200) == 5, got
    assert [sid for sid, v in got.items() if v == ("rst", tg_h2.REFUSED_STREAM)] == [11, 13, 15]
    assert forwarded(be, "/slow") == 5


def test_streams_up_to_the_limit_twin(hserve, pki):
    """Twin: exactly h2_max_streams (5) at once are all served."""
    tg, be, base = start(hserve, pki, h2_max_streams=5)
    with RawH2(tg.addr(), pki) as c:
        assert c.server_settings[tg_h2.MAX_CONCURRENT_STREAMS] == 5
        c.send(b"".join(c.headers_frame(sid, req_headers(path="/slow"))
                        for sid in range(1, 11, 2)))
        for sid in range(1, 11, 2):
            assert c.response(sid, timeout=T(5))[0] == 200


def test_stream_flood_over_the_limit_stopped(hserve, pki):
    """An attacker opens 1000 streams at once on a listener allowing 5: at
    most 5 reach the backend, the attacker's connection is stopped (its
    streams refused or the connection ended), the other client is served,
    memory stays flat."""
    tg, be, base = start(hserve, pki, h2_max_streams=5)
    victim = Victim(tg, pki)
    with RawH2(tg.addr(), pki) as c:
        out = b"".join(c.headers_frame(sid, req_headers(path="/slow"))
                       for sid in range(1, 2001, 2))
        c.sock.settimeout(T(5))
        try:
            c.sock.sendall(out)
        except (OSError, TimeoutError):
            pass
        try:
            c.drain_until_eof(T(5))
            ended = True
        except AssertionError:
            ended = False
        refused = [f for f in c.seen if f.type == RST_STREAM and
                   f.error_code == tg_h2.REFUSED_STREAM]
        goaway = [f for f in c.seen if f.type == GOAWAY]
    print(f"stream flood: connection ended={ended}, refused={len(refused)}, goaway={goaway}")
    assert ended or len(refused) >= 995, (ended, len(refused), goaway)
    assert forwarded(be, "/slow") <= 5
    victim.check()
    check_rss(tg, base)


def test_excess_streams_after_settings_ack_end_the_connection(hserve, pki):
    """h2_max_streams 5, SETTINGS acknowledged, 8 streams at once: a client
    that breaks a limit it acknowledged loses its connection
    (GOAWAY(PROTOCOL_ERROR), as docs/CONFIG.md says: nghttp2's connection
    error, which RFC 9113 §5.4.1 allows); at most 5 requests reached the
    backend, and another client is served meanwhile. Its twin, the same
    excess before the acknowledgement, is refused stream by stream
    (test_excess_streams_refused_before_settings_ack)."""
    tg, be, base = start(hserve, pki, h2_max_streams=5)
    victim = Victim(tg, pki)
    with RawH2(tg.addr(), pki) as c:
        c.send(b"".join(c.headers_frame(sid, req_headers(path="/slow"))
                        for sid in range(1, 17, 2)))
        c.drain_until_eof(T(10))
        goaway = [f for f in c.seen if f.type == GOAWAY]
    assert goaway and goaway[-1].error_code == tg_h2.PROTOCOL_ERROR, goaway
    assert forwarded(be, "/slow") <= 5
    victim.check()
    check_rss(tg, base)
