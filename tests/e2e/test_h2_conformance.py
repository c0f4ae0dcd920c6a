"""HTTP/2 at the frame level (RFC 9113, RFC 7541), in the order of h2spec's
sections: each case writes its frames byte by byte over TLS with ALPN h2
and checks the server's answer (a connection error is a GOAWAY with the
code and the end of the connection; a stream error is a RST_STREAM with the
code while the connection lives on). Where it makes sense the refused case
has an accepted twin that differs only in the point under test. After every
connection error a fresh client on a new connection is still served.

RFC 9113 §5.4.1 lets an endpoint treat a stream error as a connection
error; where tollgate (nghttp2) does so, the test says which it is.

One tollgate serves the whole module (its listeners: "main" to a recording
backend, "bh" to a backend whose accept queue is full, so that a stream's
request body is not taken and its flow-control window stays where it is)."""

import struct
import time

import hpack
import pytest

import tg_h2
import tg_proc
from tg_h2 import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS,
                   INITIAL_WINDOW_SIZE, PADDED, PING, PREFACE, PRIORITY, PRIORITY_FLAG,
                   PUSH_PROMISE, RST_STREAM, SETTINGS, WINDOW_UPDATE, RawH2, data_frame, frame,
                   goaway_frame, ping_frame, req_headers, rst_stream, settings_frame, window_update)
from tg_http import HttpBackend, Reply, https_listener, json_reply
from tg_proc import T


def handler(req):
    if req.target == "/slow":
        return Reply(200, body=b"slow", delay=1.0)
    if req.target == "/big":
        return Reply(200, body_size=100000)
    return json_reply(req)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, pki):
    be = HttpBackend(handler)
    hole = tg_h2.Blackhole()
    tg = tg_proc.Tollgate(tmp_path_factory.mktemp("h2conf"), pki)
    tg.start({"target_groups": {"g": tg_proc.group(be.address), "bh": tg_proc.group(hole.address)},
              "listeners": [https_listener(idle_timeout="20s", header_timeout="2s"),
                            https_listener(name="bh", default="bh", connect_timeout="10s")]})
    yield tg, be
    tg.stop()
    be.close()
    hole.close()
    report = tg.sanitizer_report()
    assert report is None, report


@pytest.fixture(autouse=True)
def _logs_on_failure(request, srv):
    request.node._tollgates = [srv[0]]


def raw(srv, pki, **kw):
    return RawH2(srv[0].addr(kw.pop("listener", "main")), pki, **kw)


def assert_serves(srv, pki):
    """A new client on a new connection still gets its answer."""
    with raw(srv, pki) as c:
        c.request(1, path="/fresh")
        st, _, _ = c.response(1)
        assert st == 200


def conn_error(srv, pki, data, code, **kw):
    """Sends data after the handshake; expects GOAWAY(code) then the close.
    Returns the GOAWAY; checks another client is still served."""
    with raw(srv, pki, **kw) as c:
        c.send(data(c) if callable(data) else data)
        g = c.expect_goaway(code)
    assert_serves(srv, pki)
    return g


def stream_error(srv, pki, data, sid, code, **kw):
    """Sends data; expects RST_STREAM(code) on sid, and the connection
    still serves a new stream after it."""
    with raw(srv, pki, **kw) as c:
        c.send(data(c) if callable(data) else data)
        c.expect_rst(sid, code)
        c.request(sid + 2, path="/after")
        st, _, _ = c.response(sid + 2)
        assert st == 200


def accepted(srv, pki, data, sid=1, **kw):
    """Sends data; expects a 200 on sid. Returns the backend's view of the
    request (the JSON it answered with)."""
    import json
    with raw(srv, pki, **kw) as c:
        c.send(data(c) if callable(data) else data)
        st, _, body = c.response(sid)
        assert st == 200, (st, body)
        return json.loads(body) if body.startswith(b"{") else body


def hdrs(c, sid, headers, end_stream=True, end_headers=True):
    return c.headers_frame(sid, headers, end_stream=end_stream, end_headers=end_headers)


# ---- 3.4 the connection preface ----

def test_3_4_invalid_preface_closes(srv, pki):
    """A client whose first bytes are not the preface: nothing is served
    and the connection ends (RFC 9113 §3.4 allows closing without GOAWAY)."""
    with raw(srv, pki, handshake=False) as c:
        c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings_frame() +
               c.headers_frame(1, req_headers(path="/never")))
        got = c.drain_until_eof()
    assert not [f for f in got if f.type in (HEADERS, DATA)], got
    assert all(r.target != "/never" for r in srv[1].reqs())
    assert_serves(srv, pki)


def test_3_4_valid_preface_twin(srv, pki):
    """Twin: the right preface and a SETTINGS get the server's SETTINGS and
    the ACK of ours, and a request is answered."""
    with raw(srv, pki, handshake=False) as c:
        c.send(PREFACE + settings_frame())
        s = c.wait(lambda f: f.type == SETTINGS and not f.flags & ACK, what="server SETTINGS")
        c.wait(lambda f: f.type == SETTINGS and f.flags & ACK, what="SETTINGS ACK")
        c.send(settings_frame(ack=True))
        c.request(1)
        assert c.response(1)[0] == 200
    assert s.settings[tg_h2.ENABLE_PUSH] == 0


def test_3_4_preface_not_followed_by_settings(srv, pki):
    """The preface must be followed by SETTINGS: a PING instead is a
    connection error PROTOCOL_ERROR."""
    with raw(srv, pki, handshake=False) as c:
        c.send(PREFACE + ping_frame())
        c.expect_goaway(tg_h2.PROTOCOL_ERROR)
    assert_serves(srv, pki)


def test_3_4_http1_bytes_after_h2_alpn(srv, pki):
    """A client that negotiated h2 but speaks HTTP/1.1: no request reaches
    the backend, the connection ends."""
    with raw(srv, pki, handshake=False) as c:
        c.send(b"GET /h1-on-h2 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        c.drain_until_eof()
    assert all(r.target != "/h1-on-h2" for r in srv[1].reqs())
    assert_serves(srv, pki)


# ---- 4.1 / 5.5 frame format, extensions ----

def test_4_1_unknown_frame_type_ignored(srv, pki):
    """Frames of an unknown type are ignored (§4.1, §5.5): a PING after one
    is answered."""
    with raw(srv, pki) as c:
        c.send(frame(0x20, 0xff, 0, b"whatever") + ping_frame(b"afterunk"))
        p = c.wait(lambda f: f.type == PING, what="PING ACK")
        assert p.flags & ACK and p.payload == b"afterunk"


def test_4_1_unknown_flags_ignored(srv, pki):
    """Undefined flags on a HEADERS frame are ignored."""
    accepted(srv, pki, lambda c: frame(HEADERS, END_HEADERS | END_STREAM | 0x40 | 0x10, 1,
                                       c.block_of(req_headers())))


# ---- 4.2 frame size ----

def test_4_2_data_over_max_frame_size(srv, pki):
    """DATA of 16385 bytes with SETTINGS_MAX_FRAME_SIZE 16384 is a
    FRAME_SIZE_ERROR."""
    conn_error(srv, pki, lambda c: hdrs(c, 1, req_headers("POST"), end_stream=False) +
               data_frame(1, b"x" * 16385, end_stream=True), tg_h2.FRAME_SIZE_ERROR)


def test_4_2_data_at_max_frame_size_twin(srv, pki):
    """Twin: DATA of exactly 16384 bytes is taken whole."""
    got = accepted(srv, pki, lambda c: hdrs(c, 1, req_headers("POST"), end_stream=False) +
                   data_frame(1, b"x" * 16384, end_stream=True))
    assert got["body_len"] == 16384


def padded_headers(c, size, pad=255):
    """A request HEADERS frame whose payload is exactly size bytes: an
    x-fill field sized to fit, and pad bytes of padding."""
    def block(n, enc):
        return enc.encode(req_headers(extra=[("x-fill", "f" * n)]), huffman=False)
    probe = len(block(1000, hpack.Encoder()))
    n = 1000 + size - 1 - pad - probe
    b = block(n, c.enc)
    assert 1 + len(b) + pad == size
    return frame(HEADERS, PADDED | END_HEADERS | END_STREAM, 1, bytes([pad]) + b + b"\0" * pad)


def test_4_2_headers_over_max_frame_size(srv, pki):
    """A HEADERS frame of 16385 bytes (with padding) is a FRAME_SIZE_ERROR."""
    conn_error(srv, pki, lambda c: padded_headers(c, 16385), tg_h2.FRAME_SIZE_ERROR)


def test_4_2_headers_within_max_frame_size_twin(srv, pki):
    """Twin: the same kind of frame at 12000 bytes is served."""
    got = accepted(srv, pki, lambda c: padded_headers(c, 12000))
    assert len([v for n, v in got["headers"] if n == "x-fill"][0]) > 11000


@pytest.mark.parametrize("ftype,payload,sid", [
    (PING, b"1234567", 0),
    (SETTINGS, b"\0" * 5, 0),
    (WINDOW_UPDATE, b"\0\0\1", 0),
    (RST_STREAM, b"\0\0\0", 1),
    (PRIORITY, b"\0\0\0\0", 1),
], ids=["PING_7", "SETTINGS_5", "WINDOW_UPDATE_3", "RST_STREAM_3", "PRIORITY_4"])
def test_4_2_fixed_length_frames_with_wrong_length(srv, pki, ftype, payload, sid):
    """Frames whose length is fixed (PING 8, SETTINGS a multiple of 6,
    WINDOW_UPDATE 4, RST_STREAM 4, PRIORITY 5) with another length:
    FRAME_SIZE_ERROR (PRIORITY and RST_STREAM may be stream errors; tollgate
    makes them connection errors, §5.4.1)."""
    def data(c):
        pre = hdrs(c, 1, req_headers(path="/slow")) if sid else b""
        return pre + frame(ftype, 0, sid, payload)
    conn_error(srv, pki, data, tg_h2.FRAME_SIZE_ERROR)


# ---- 4.3 header compression ----

def test_4_3_invalid_hpack_index(srv, pki):
    """An indexed field past the static and dynamic tables is a
    COMPRESSION_ERROR."""
    conn_error(srv, pki, frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\x7f"),
               tg_h2.COMPRESSION_ERROR)


def test_4_3_valid_static_index_twin(srv, pki):
    """Twin: static table indexes (2 = :method GET, 7 = :scheme https,
    4 = :path /) with a literal :authority are decoded."""
    accepted(srv, pki, lambda c: frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                       b"\x82\x87\x84" + b"\x41\x09localhost"))


def test_4_3_table_size_update_over_limit(srv, pki):
    """A dynamic table size update above SETTINGS_HEADER_TABLE_SIZE (4096)
    is a COMPRESSION_ERROR."""
    conn_error(srv, pki, lambda c: frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                         b"\x3f\xe2\x1f" + c.block_of(req_headers())),
               tg_h2.COMPRESSION_ERROR)


def test_4_3_table_size_update_to_zero_twin(srv, pki):
    """Twin: an update to 0 at the start of the block is fine."""
    accepted(srv, pki, lambda c: frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                       b"\x20" + c.block_of(req_headers())))


def test_4_3_table_size_update_after_a_field(srv, pki):
    """A size update after the first field of a block is a COMPRESSION_ERROR
    (RFC 7541 §4.2)."""
    conn_error(srv, pki, lambda c: frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                         c.block_of(req_headers()) + b"\x20"),
               tg_h2.COMPRESSION_ERROR)


# ---- 5.1 stream states ----

def test_5_1_data_on_idle_stream(srv, pki):
    conn_error(srv, pki, data_frame(1, b"x"), tg_h2.PROTOCOL_ERROR)


def test_5_1_rst_stream_on_idle_stream(srv, pki):
    conn_error(srv, pki, rst_stream(1), tg_h2.PROTOCOL_ERROR)


def test_5_1_window_update_on_idle_stream(srv, pki):
    conn_error(srv, pki, window_update(1, 10), tg_h2.PROTOCOL_ERROR)


def test_5_1_priority_on_idle_stream_twin(srv, pki):
    """PRIORITY may be sent on an idle stream (§5.1): no error, and a
    request after it is served."""
    accepted(srv, pki, lambda c: frame(PRIORITY, 0, 3, struct.pack(">IB", 0, 16)) +
             hdrs(c, 1, req_headers()))


def test_5_1_headers_on_half_closed_remote(srv, pki):
    """HEADERS on a stream the client ended (half-closed remote, the
    response still pending): STREAM_CLOSED (a connection error here)."""
    conn_error(srv, pki, lambda c: hdrs(c, 1, req_headers(path="/slow")) +
               hdrs(c, 1, [("x-late", "1")]), tg_h2.STREAM_CLOSED)


def test_5_1_data_on_half_closed_remote(srv, pki):
    conn_error(srv, pki, lambda c: hdrs(c, 1, req_headers(path="/slow")) +
               data_frame(1, b"late", end_stream=True), tg_h2.STREAM_CLOSED)


def test_5_1_headers_on_closed_stream(srv, pki):
    """A new HEADERS on a stream that is done (its id reused): STREAM_CLOSED."""
    with raw(srv, pki) as c:
        c.request(1)
        assert c.response(1)[0] == 200
        c.request(1)
        c.expect_goaway(tg_h2.STREAM_CLOSED)
    assert_serves(srv, pki)


def test_5_1_1_even_stream_id(srv, pki):
    """A client may only open odd streams: HEADERS on 2 is PROTOCOL_ERROR."""
    conn_error(srv, pki, lambda c: hdrs(c, 2, req_headers()), tg_h2.PROTOCOL_ERROR)


def test_5_1_1_increasing_ids_twin(srv, pki):
    """Twin: odd ids that grow (with gaps) are all served on one connection."""
    with raw(srv, pki) as c:
        for sid in (1, 3, 9, 11):
            c.request(sid, path=f"/s{sid}")
            assert c.response(sid)[0] == 200


def test_5_1_1_lower_stream_id_than_before(srv, pki):
    """HEADERS 5 then HEADERS 3: stream 3 can never be opened (§5.1.1: ids
    only grow; an unexpected id is a connection error PROTOCOL_ERROR).
    tollgate answers stream 5 and ignores 3: the client waits for an answer
    that never comes until the idle timeout."""
    with raw(srv, pki) as c:
        c.send(hdrs(c, 5, req_headers()) + hdrs(c, 3, req_headers()))
        c.expect_goaway(tg_h2.PROTOCOL_ERROR, timeout=T(3))


# ---- 5.4 error handling ----

def test_5_4_2_stream_error_leaves_connection_usable(srv, pki):
    """After a stream error (RST_STREAM) the connection serves new streams."""
    stream_error(srv, pki, lambda c: hdrs(c, 1, req_headers(extra=[("X-Upper", "1")])), 1,
                 tg_h2.PROTOCOL_ERROR)


# ---- 5.5 extending HTTP/2 ----

def test_5_5_unknown_setting_ignored(srv, pki):
    """An unknown SETTINGS identifier is ignored: it is acknowledged."""
    with raw(srv, pki) as c:
        c.send(settings_frame((0x99, 5)))
        c.wait(lambda f: f.type == SETTINGS and f.flags & ACK, what="SETTINGS ACK")
        c.request(1)
        assert c.response(1)[0] == 200


# ---- 6.1 DATA ----

def test_6_1_data_on_stream_zero(srv, pki):
    conn_error(srv, pki, data_frame(0, b"x"), tg_h2.PROTOCOL_ERROR)


def test_6_1_data_padding_longer_than_frame(srv, pki):
    conn_error(srv, pki, lambda c: hdrs(c, 1, req_headers("POST"), end_stream=False) +
               frame(DATA, PADDED | END_STREAM, 1, bytes([10]) + b"abc"), tg_h2.PROTOCOL_ERROR)


def test_6_1_padded_data_twin(srv, pki):
    """Twin: valid padding is removed; the backend gets the payload only."""
    got = accepted(srv, pki, lambda c: hdrs(c, 1, req_headers("POST", path="/pad"),
                                            end_stream=False) +
                   frame(DATA, PADDED | END_STREAM, 1, bytes([4]) + b"abc" + b"\0" * 4))
    assert got["body_len"] == 3
    req = [r for r in srv[1].reqs() if r.target == "/pad"][-1]
    assert bytes(req.body) == b"abc"


# ---- 6.2 HEADERS ----

def test_6_2_headers_on_stream_zero(srv, pki):
    conn_error(srv, pki, lambda c: hdrs(c, 0, req_headers()), tg_h2.PROTOCOL_ERROR)


def test_6_2_headers_padding_longer_than_frame(srv, pki):
    conn_error(srv, pki, lambda c: frame(HEADERS, PADDED | END_HEADERS | END_STREAM, 1,
                                         bytes([200]) + c.block_of(req_headers())),
               tg_h2.PROTOCOL_ERROR)


def test_6_2_headers_depending_on_itself(srv, pki):
    """A HEADERS priority that depends on its own stream: PROTOCOL_ERROR
    (a stream error in §5.3.1; a connection error here, §5.4.1)."""
    conn_error(srv, pki, lambda c: frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY_FLAG, 1,
                                         struct.pack(">IB", 1, 16) + c.block_of(req_headers())),
               tg_h2.PROTOCOL_ERROR)


def test_6_2_headers_with_priority_twin(srv, pki):
    """Twin: a valid priority (on stream 0) is accepted."""
    accepted(srv, pki, lambda c: frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY_FLAG, 1,
                                       struct.pack(">IB", 0, 16) + c.block_of(req_headers())))


# ---- 6.3 PRIORITY ----

def test_6_3_priority_depending_on_itself(srv, pki):
    conn_error(srv, pki, frame(PRIORITY, 0, 1, struct.pack(">IB", 1, 16)), tg_h2.PROTOCOL_ERROR)


# ---- 6.4 RST_STREAM ----

def test_6_4_rst_stream_on_stream_zero(srv, pki):
    conn_error(srv, pki, rst_stream(0), tg_h2.PROTOCOL_ERROR)


def test_6_4_client_reset_ends_only_its_stream(srv, pki):
    """Twin: a RST_STREAM on an open stream ends it; the next stream on
    the connection is served, and the reset one is logged client_reset."""
    with raw(srv, pki) as c:
        c.send(hdrs(c, 1, req_headers(path="/slow")))
        time.sleep(0.1)
        c.send(rst_stream(1, tg_h2.CANCEL))
        c.request(3, path="/after-reset")
        assert c.response(3)[0] == 200
        port = c.port
    recs = srv[0].wait_access(lambda r: r["client"].endswith(f":{port}") and r["stream"] == 1)
    assert recs[0]["outcome"] == "client_reset", recs[0]


# ---- 6.5 SETTINGS ----

def test_6_5_settings_acknowledged(srv, pki):
    """The server acknowledges each SETTINGS of the client, and its own
    SETTINGS carry the documented values."""
    with raw(srv, pki, handshake=False) as c:
        c.send(PREFACE + settings_frame((INITIAL_WINDOW_SIZE, 100000)))
        s = c.wait(lambda f: f.type == SETTINGS and not f.flags & ACK, what="server SETTINGS")
        c.wait(lambda f: f.type == SETTINGS and f.flags & ACK, what="SETTINGS ACK")
        c.send(settings_frame(ack=True) + settings_frame((tg_h2.HEADER_TABLE_SIZE, 0)))
        c.wait(lambda f: f.type == SETTINGS and f.flags & ACK, what="second SETTINGS ACK")
    want = {tg_h2.MAX_CONCURRENT_STREAMS: 100, INITIAL_WINDOW_SIZE: 16384,
            tg_h2.MAX_HEADER_LIST_SIZE: 16384, tg_h2.ENABLE_PUSH: 0}
    assert s.settings == want, s.settings
    # RFC 8441 is not offered: no SETTINGS_ENABLE_CONNECT_PROTOCOL
    assert tg_h2.ENABLE_CONNECT_PROTOCOL not in s.settings


def test_6_5_connection_window_raised(srv, pki):
    """The connection's receive window is raised to 1 MiB at once."""
    with raw(srv, pki) as c:
        wu = c.wait(lambda f: f.type == WINDOW_UPDATE, what="WINDOW_UPDATE")
    assert wu.sid == 0 and 65535 + wu.increment == 1 << 20, wu


def test_6_5_settings_ack_with_payload(srv, pki):
    conn_error(srv, pki, frame(SETTINGS, ACK, 0, b"\0" * 6), tg_h2.FRAME_SIZE_ERROR)


def test_6_5_settings_on_a_stream(srv, pki):
    conn_error(srv, pki, frame(SETTINGS, 0, 1, b""), tg_h2.PROTOCOL_ERROR)


@pytest.mark.parametrize("setting,value,code", [
    (tg_h2.ENABLE_PUSH, 2, tg_h2.PROTOCOL_ERROR),
    (INITIAL_WINDOW_SIZE, 1 << 31, tg_h2.FLOW_CONTROL_ERROR),
    (tg_h2.MAX_FRAME_SIZE, 16383, tg_h2.PROTOCOL_ERROR),
    (tg_h2.MAX_FRAME_SIZE, 1 << 24, tg_h2.PROTOCOL_ERROR),
], ids=["ENABLE_PUSH_2", "INITIAL_WINDOW_SIZE_2^31", "MAX_FRAME_SIZE_16383",
        "MAX_FRAME_SIZE_2^24"])
def test_6_5_2_invalid_setting_values(srv, pki, setting, value, code):
    conn_error(srv, pki, settings_frame((setting, value)), code)


@pytest.mark.parametrize("setting,value", [
    (tg_h2.ENABLE_PUSH, 0), (INITIAL_WINDOW_SIZE, (1 << 31) - 1),
    (tg_h2.MAX_FRAME_SIZE, 16384), (tg_h2.MAX_FRAME_SIZE, (1 << 24) - 1)],
    ids=["ENABLE_PUSH_0", "INITIAL_WINDOW_SIZE_max", "MAX_FRAME_SIZE_min", "MAX_FRAME_SIZE_max"])
def test_6_5_2_limit_setting_values_twin(srv, pki, setting, value):
    """Twins: the extreme valid values are acknowledged and requests served."""
    with raw(srv, pki) as c:
        c.send(settings_frame((setting, value)))
        c.wait(lambda f: f.type == SETTINGS and f.flags & ACK, what="SETTINGS ACK")
        c.request(1)
        assert c.response(1)[0] == 200


def test_6_5_3_initial_window_zero_then_opened(srv, pki):
    """SETTINGS_INITIAL_WINDOW_SIZE 0 from the client: the response head
    comes, no DATA; a WINDOW_UPDATE on the stream lets the body through."""
    with raw(srv, pki, settings=[(INITIAL_WINDOW_SIZE, 0)]) as c:
        c.request(1, path="/big")
        c.wait(lambda f: f.type == HEADERS and f.sid == 1, what="response HEADERS")
        time.sleep(0.3)
        c.sock.settimeout(0.3)
        try:
            f = c.read_frame(0.3)
        except (TimeoutError, OSError):
            f = None
        assert f is None or f.type != DATA, f"DATA with a zero window: {f}"
        c.send(window_update(0, 100000) + window_update(1, 100000))
        body = 0
        while body < 100000:
            f = c.wait(lambda f: f.type == DATA and f.sid == 1, what="DATA")
            body += len(f.payload)
        assert body == 100000


# ---- 6.7 PING ----

def test_6_7_ping_answered_with_same_payload(srv, pki):
    with raw(srv, pki) as c:
        c.send(ping_frame(b"\x00\xffabc\x01\x02z"))
        p = c.wait(lambda f: f.type == PING, what="PING ACK")
        assert p.flags & ACK and p.payload == b"\x00\xffabc\x01\x02z"


def test_6_7_ping_ack_from_client_not_answered(srv, pki):
    """A PING with ACK is not answered (only the next PING is)."""
    with raw(srv, pki) as c:
        c.send(ping_frame(b"ackedack", ack=True) + ping_frame(b"realping"))
        p = c.wait(lambda f: f.type == PING, what="PING ACK")
        assert p.payload == b"realping"


def test_6_7_ping_on_a_stream(srv, pki):
    conn_error(srv, pki, frame(PING, 0, 1, b"12345678"), tg_h2.PROTOCOL_ERROR)


# ---- 6.8 GOAWAY ----

def test_6_8_goaway_on_a_stream(srv, pki):
    conn_error(srv, pki, frame(GOAWAY, 0, 1, struct.pack(">II", 0, 0)), tg_h2.PROTOCOL_ERROR)


def test_6_8_client_goaway_lets_stream_in_flight_finish(srv, pki):
    """A client GOAWAY ends the connection once the streams it opened are
    answered: the one in flight still gets its response."""
    with raw(srv, pki) as c:
        c.send(hdrs(c, 1, req_headers(path="/slow")) + goaway_frame(0))
        st, _, body = c.response(1, timeout=T(5))
        assert (st, body) == (200, b"slow")
        assert c.closed(T(5))


def test_6_8_client_goaway_idle_connection_closes(srv, pki):
    with raw(srv, pki) as c:
        c.send(goaway_frame(0))
        assert c.closed(T(5))
    assert_serves(srv, pki)


# ---- 6.9 WINDOW_UPDATE and flow control ----

def test_6_9_window_update_zero_on_connection(srv, pki):
    conn_error(srv, pki, window_update(0, 0), tg_h2.PROTOCOL_ERROR)


def test_6_9_window_update_zero_on_stream(srv, pki):
    """A zero increment on a stream: PROTOCOL_ERROR (a stream error in
    §6.9; a connection error here)."""
    conn_error(srv, pki, lambda c: hdrs(c, 1, req_headers("POST"), end_stream=False) +
               window_update(1, 0), tg_h2.PROTOCOL_ERROR)


def test_6_9_1_connection_window_overflow(srv, pki):
    """A connection window over 2^31-1 is a FLOW_CONTROL_ERROR
    (65535 + 2^31-1)."""
    conn_error(srv, pki, window_update(0, (1 << 31) - 1), tg_h2.FLOW_CONTROL_ERROR)


def test_6_9_1_stream_window_overflow(srv, pki):
    """A stream window over 2^31-1: stream error FLOW_CONTROL_ERROR."""
    stream_error(srv, pki, lambda c: hdrs(c, 1, req_headers(path="/slow")) +
                 window_update(1, (1 << 31) - 1), 1, tg_h2.FLOW_CONTROL_ERROR)


def test_6_9_1_window_at_limit_twin(srv, pki):
    """Twin: windows raised to exactly 2^31-1 are fine."""
    with raw(srv, pki) as c:
        c.send(window_update(0, (1 << 31) - 1 - 65535))
        c.request(1, path="/big")
        c.send(window_update(1, (1 << 31) - 1 - 65535))
        st, _, body = c.response(1, open_window=False)
        assert st == 200 and len(body) == 100000


def fill_windows(c, sids, budget=None):
    """Sends DATA on sids as far as the windows the server granted allow,
    until no WINDOW_UPDATE came for 0.3 s (the target takes nothing more).
    Returns (connection window left, {sid: stream window left})."""
    sent, total = {sid: 0 for sid in sids}, 0
    deadline = time.monotonic() + (budget or T(10))
    while time.monotonic() < deadline:
        n_seen = len(c.seen)
        try:
            while True:
                if c.read_frame(0.3) is None:
                    raise AssertionError(f"connection closed: {c.seen[-5:]}")
        except (TimeoutError, OSError):
            pass
        bad = [f for f in c.seen if f.type in (GOAWAY, RST_STREAM)]
        assert not bad, bad
        wu = [f for f in c.seen if f.type == WINDOW_UPDATE]
        conn = 65535 + sum(f.increment for f in wu if f.sid == 0) - total
        win = {sid: 16384 + sum(f.increment for f in wu if f.sid == sid) - sent[sid]
               for sid in sids}
        out = b""
        for sid in sids:
            n = min(win[sid], conn)
            while n > 0:
                k = min(n, 16384)
                out += data_frame(sid, b"x" * k)
                sent[sid] += k
                total += k
                win[sid] -= k
                conn -= k
                n -= k
        if not out and len(c.seen) == n_seen:
            return conn, win
        c.send(out)
    raise AssertionError("the windows kept opening: the target takes the bytes")


def test_6_9_1_data_over_stream_window(srv, pki):
    """A stream whose target takes nothing (its connect hangs): once the
    client has sent all the window it was granted, one more byte is a
    FLOW_CONTROL_ERROR (stream or connection error)."""
    with raw(srv, pki, listener="bh") as c:
        c.send(hdrs(c, 1, req_headers("POST", path="/fc"), end_stream=False))
        conn, win = fill_windows(c, [1])
        assert win[1] == 0 and conn > 0
        c.send(data_frame(1, b"y"))
        f = c.wait(lambda f: f.type in (GOAWAY, RST_STREAM), what="flow-control error")
        assert f.error_code == tg_h2.FLOW_CONTROL_ERROR, f
    assert_serves(srv, pki)


def test_6_9_1_data_within_stream_window_twin(srv, pki):
    """Twin: the same client that stops at the window gets no error."""
    with raw(srv, pki, listener="bh") as c:
        c.send(hdrs(c, 1, req_headers("POST", path="/fc"), end_stream=False))
        fill_windows(c, [1])
        c.send(ping_frame(b"fc-check"))
        c.wait(lambda f: f.type == PING and f.payload == b"fc-check", what="PING ACK")
        assert not [f for f in c.seen if f.type in (GOAWAY, RST_STREAM)], c.seen


def test_6_9_1_data_over_connection_window(srv, pki):
    """Ninety streams whose target takes nothing: the connection window
    (1 MiB, reopened by what the streams' buffers took) runs out before
    theirs; one more byte on a stream that still has window is a
    connection error FLOW_CONTROL_ERROR."""
    sids = [1 + 2 * i for i in range(90)]
    with raw(srv, pki, listener="bh") as c:
        c.send(b"".join(hdrs(c, sid, req_headers("POST", path="/fcc"), end_stream=False)
                        for sid in sids))
        conn, win = fill_windows(c, sids)
        assert conn == 0, conn
        open_sid = [sid for sid in sids if win[sid] > 0][0]
        c.send(data_frame(open_sid, b"y"))
        c.expect_goaway(tg_h2.FLOW_CONTROL_ERROR)
    assert_serves(srv, pki)


# ---- 6.10 CONTINUATION ----

def test_6_10_continuation_without_headers(srv, pki):
    conn_error(srv, pki, lambda c: frame(CONTINUATION, END_HEADERS, 1,
                                         c.block_of(req_headers())), tg_h2.PROTOCOL_ERROR)


def test_6_10_other_frame_inside_header_block(srv, pki):
    conn_error(srv, pki, lambda c: hdrs(c, 1, req_headers(), end_headers=False) + ping_frame(),
               tg_h2.PROTOCOL_ERROR)


def test_6_10_continuation_on_another_stream(srv, pki):
    conn_error(srv, pki, lambda c: hdrs(c, 1, req_headers(), end_headers=False) +
               frame(CONTINUATION, END_HEADERS, 3, b""), tg_h2.PROTOCOL_ERROR)


def test_6_10_continuation_twin(srv, pki):
    """Twin: a block split over HEADERS and two CONTINUATIONs is served."""
    def data(c):
        b = c.block_of(req_headers(path="/cont"))
        return (frame(HEADERS, END_STREAM, 1, b[:5]) + frame(CONTINUATION, 0, 1, b[5:10]) +
                frame(CONTINUATION, END_HEADERS, 1, b[10:]))
    assert accepted(srv, pki, data)["target"] == "/cont"


def test_push_promise_from_client(srv, pki):
    """A client may not push (and push is off): PROTOCOL_ERROR."""
    conn_error(srv, pki, lambda c: frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) +
                                         c.block_of(req_headers())), tg_h2.PROTOCOL_ERROR)


# ---- 8.1 HTTP message framing ----

def test_8_1_content_length_mismatch(srv, pki):
    """content-length 10 with 3 bytes of DATA: malformed, stream error
    PROTOCOL_ERROR (§8.1.1)."""
    stream_error(srv, pki, lambda c: hdrs(c, 1, req_headers("POST", extra=[
        ("content-length", "10")]), end_stream=False) + data_frame(1, b"abc", True), 1,
        tg_h2.PROTOCOL_ERROR)


def test_8_1_content_length_match_twin(srv, pki):
    got = accepted(srv, pki, lambda c: hdrs(c, 1, req_headers("POST", extra=[
        ("content-length", "3")]), end_stream=False) + data_frame(1, b"abc", True))
    assert got["body_len"] == 3
    assert ["Content-Length", "3"] in got["headers"] or ["content-length", "3"] in got["headers"]


def test_8_1_trailers_with_pseudo_header(srv, pki):
    stream_error(srv, pki, lambda c: hdrs(c, 1, req_headers("POST"), end_stream=False) +
                 data_frame(1, b"x") + hdrs(c, 1, [(":path", "/x")]), 1, tg_h2.PROTOCOL_ERROR)


def test_8_1_trailers_without_end_stream(srv, pki):
    stream_error(srv, pki, lambda c: hdrs(c, 1, req_headers("POST"), end_stream=False) +
                 data_frame(1, b"x") + hdrs(c, 1, [("x-t", "1")], end_stream=False), 1,
                 tg_h2.PROTOCOL_ERROR)


def test_8_1_well_formed_trailers_refused(srv, pki):
    """Well-formed request trailers (after DATA, with END_STREAM) are
    refused with 400, as an HTTP/1.1 client's are: a target that merged them
    into the header fields would take identity fields tollgate never
    rewrote. The connection serves the next stream."""
    be = srv[1]
    with raw(srv, pki) as c:
        c.send(hdrs(c, 1, req_headers("POST", path="/trailers"), end_stream=False) +
               data_frame(1, b"hello") + hdrs(c, 1, [("x-client-verify", "SUCCESS")]))
        st, _, body = c.response(1)
        assert st == 400 and b"trailer" in body, (st, body)
        c.request(3, path="/after")
        assert c.response(3)[0] == 200
    assert b"x-client-verify: success" not in b"".join(bytes(r) for r in be.raw).lower()


def test_8_1_body_without_trailers_twin(srv, pki):
    """Twin: the same request without trailers reaches the backend, its
    body chunked."""
    be = srv[1]
    got = accepted(srv, pki, lambda c: hdrs(c, 1, req_headers("POST", path="/trailers"),
                                            end_stream=False) + data_frame(1, b"hello", True))
    assert got["body_len"] == 5
    assert ["Transfer-Encoding", "chunked"] in got["headers"]
    raw_bytes = b"".join(bytes(r) for r in be.raw)
    assert b"5\r\nhello\r\n0\r\n\r\n" in raw_bytes


# ---- 8.2 header fields ----

def test_8_2_uppercase_field_name(srv, pki):
    stream_error(srv, pki, lambda c: hdrs(c, 1, req_headers(extra=[("X-Upper", "1")])), 1,
                 tg_h2.PROTOCOL_ERROR)


def test_8_2_lowercase_field_name_twin(srv, pki):
    got = accepted(srv, pki, lambda c: hdrs(c, 1, req_headers(extra=[("x-lower", "1")])))
    assert ["x-lower", "1"] in got["headers"]


@pytest.mark.parametrize("name,value", [
    ("connection", "close"), ("keep-alive", "timeout=5"), ("transfer-encoding", "chunked"),
    ("upgrade", "h2c"), ("proxy-connection", "keep-alive"), ("te", "gzip"),
    ("te", "trailers, gzip")])
def test_8_2_2_connection_specific_fields(srv, pki, name, value):
    """Connection-specific fields make a request malformed (§8.2.2): stream
    error PROTOCOL_ERROR, and nothing reaches the backend."""
    path = f"/conn-specific-{name}"
    stream_error(srv, pki, lambda c: hdrs(c, 1, req_headers(path=path, extra=[(name, value)])),
                 1, tg_h2.PROTOCOL_ERROR)
    assert all(r.target != path for r in srv[1].reqs())


def test_8_2_2_te_trailers_twin(srv, pki):
    """Twin: te: trailers is the one allowed value (§8.2.2)."""
    got = accepted(srv, pki, lambda c: hdrs(c, 1, req_headers(path="/te",
                                                              extra=[("te", "trailers")])))
    assert got["target"] == "/te"


@pytest.mark.parametrize("name,value", [
    ("x-a", "a\r\nx-injected: 1"), ("x-a", "a\nx-injected: 1"), ("x-a", "a\0b"),
    ("x-a", " leading"), ("x-a", "trailing\t"), ("x a", "v"), ("x:a", "v"), ("", "v")],
    ids=["crlf", "lf", "nul", "leading_space", "trailing_tab", "space_in_name",
         "colon_in_name", "empty_name"])
def test_8_2_1_invalid_field(srv, pki, name, value):
    """Field names and values that HTTP/1.1 could be confused by (CR, LF,
    NUL, white space at the ends, bad name characters): stream error
    PROTOCOL_ERROR, and no request with them reaches the backend."""
    before = len(srv[1].reqs())
    stream_error(srv, pki, lambda c: hdrs(c, 1, req_headers(path="/bad-field",
                                                            extra=[(name, value)])),
                 1, tg_h2.PROTOCOL_ERROR)
    reqs = srv[1].reqs()[before:]
    assert all(r.target != "/bad-field" for r in reqs)
    assert all(not r.all("x-injected") for r in reqs)


def test_8_2_3_cookie_crumbs_joined(srv, pki):
    """Cookie crumbs in separate fields become one Cookie header with "; "."""
    got = accepted(srv, pki, lambda c: hdrs(c, 1, req_headers(extra=[
        ("cookie", "a=1"), ("x-mid", "m"), ("cookie", "b=2"), ("cookie", "c=3")])))
    cookies = [v for n, v in got["headers"] if n.lower() == "cookie"]
    assert cookies == ["a=1; b=2; c=3"], got["headers"]


# ---- 8.3 pseudo-header fields ----

@pytest.mark.parametrize("headers", [
    [(":method", "GET"), (":scheme", "https"), (":authority", "localhost")],
    [(":scheme", "https"), (":path", "/"), (":authority", "localhost")],
    [(":method", "GET"), (":path", "/"), (":authority", "localhost")],
    [(":method", "GET"), (":method", "GET"), (":scheme", "https"), (":path", "/"),
     (":authority", "localhost")],
    [(":method", "GET"), (":scheme", "https"), ("x-a", "1"), (":path", "/"),
     (":authority", "localhost")],
    req_headers(extra=[(":foo", "1")]),
    req_headers(extra=[(":status", "200")]),
    req_headers(path=""),
    req_headers(path="relative"),
    req_headers(authority=None),
], ids=["no_path", "no_method", "no_scheme", "dup_method", "pseudo_after_regular",
        "unknown_pseudo", "response_pseudo", "empty_path", "relative_path",
        "no_authority_nor_host"])
def test_8_3_malformed_pseudo_headers(srv, pki, headers):
    stream_error(srv, pki, lambda c: hdrs(c, 1, headers), 1, tg_h2.PROTOCOL_ERROR)


def test_8_3_host_instead_of_authority_twin(srv, pki):
    """Twin: a host field without :authority is the authority (one Host)."""
    got = accepted(srv, pki, lambda c: hdrs(c, 1, req_headers(authority=None, extra=[
        ("host", "localhost")])))
    assert [v for n, v in got["headers"] if n.lower() == "host"] == ["localhost"]


def test_8_3_1_host_differs_from_authority(srv, pki):
    """host that says otherwise than :authority: 400, nothing forwarded."""
    with raw(srv, pki) as c:
        c.request(1, path="/two-hosts", extra=[("host", "evil.example")])
        st, _, _ = c.response(1)
    assert st == 400
    assert all(r.target != "/two-hosts" for r in srv[1].reqs())


def test_8_3_1_host_equal_to_authority_twin(srv, pki):
    got = accepted(srv, pki, lambda c: hdrs(c, 1, req_headers(path="/same-host", extra=[
        ("host", "LOCALHOST")])))
    assert [v for n, v in got["headers"] if n.lower() == "host"] == ["localhost"]


def test_8_5_connect_refused_405(srv, pki):
    """CONNECT (no tunnels through tollgate): 405, nothing forwarded."""
    with raw(srv, pki) as c:
        c.send(hdrs(c, 1, [(":method", "CONNECT"), (":authority", "localhost:443")]))
        st, _, _ = c.response(1)
    assert st == 405
    assert all(r.method != "CONNECT" for r in srv[1].reqs())


def test_rfc8441_extended_connect_refused(srv, pki):
    """:protocol (a WebSocket over h2) without SETTINGS_ENABLE_CONNECT_PROTOCOL:
    stream error PROTOCOL_ERROR."""
    stream_error(srv, pki, lambda c: hdrs(c, 1, [
        (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
        (":path", "/ws"), (":authority", "localhost")]), 1, tg_h2.PROTOCOL_ERROR)
    assert all(r.target != "/ws" for r in srv[1].reqs())


# ---- what tollgate logs ----

@pytest.mark.parametrize("case,reason,streams", [
    ("flow", "h2_flow_control_error", "0"), ("frame_size", "h2_frame_size_error", "1"),
    ("hpack", "h2_compression_error", "2"), ("protocol", "h2_protocol_error", "1")])
def test_connection_error_logged_once(srv, pki, case, reason, streams):
    """Each connection error is one event=h2_connection_error line naming
    the listener, the connection, the client, the reason, the streams open
    and a detail; stream errors are not logged as connection errors."""
    tg = srv[0]
    with raw(srv, pki) as c:
        if case == "flow":
            data = window_update(0, (1 << 31) - 1)
        else:
            data = hdrs(c, 1, req_headers(path="/slow"))
            data += {"frame_size": frame(PING, 0, 0, b"1234567"),
                     "hpack": frame(HEADERS, END_HEADERS | END_STREAM, 3, b"\xff\x7f"),
                     "protocol": data_frame(0, b"x")}[case]
        c.send(data)
        c.drain_until_eof()
        port = c.port
    ev = tg.wait_event("h2_connection_error", client=f"127.0.0.1:{port}")
    assert len(ev) == 1, ev
    e = ev[0]
    assert (e["listener"], e["reason"], e["streams"]) == ("main", reason, streams), e
    assert e["conn"] and e["detail"] and e["_level"] == "warn", e


def test_stream_error_is_not_a_connection_error_line(srv, pki):
    """Twin: a stream error (RST_STREAM) writes no h2_connection_error."""
    tg = srv[0]
    with raw(srv, pki) as c:
        c.send(hdrs(c, 1, req_headers(extra=[("X-Upper", "1")])))
        c.expect_rst(1, tg_h2.PROTOCOL_ERROR)
        c.request(3)
        assert c.response(3)[0] == 200
        port = c.port
    assert not tg.events("h2_connection_error", client=f"127.0.0.1:{port}")
