"""HTTP/2 clients for the tests.

- RawH2: frames written byte by byte (any frame, valid or not) over TLS
  with ALPN h2; what the server sends is parsed and its header blocks
  decoded with hpack, so a test can say "send this, expect that frame".
- H2Client: a well-behaved client made with the h2 library, for requests
  on many streams of one connection, with control over which stream's
  window is opened (a client that reads one response and not another).
- Worker RSS, a client in the background, a target whose connect hangs.

Every read has a deadline; nothing waits without one.
"""

import socket
import ssl
import struct
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack

from tg_proc import T

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 §6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
TYPE_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING",
              "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]
# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
# Error codes (RFC 9113 §7).
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, \
    ENHANCE_YOUR_CALM, INADEQUATE_SECURITY, HTTP_1_1_REQUIRED = range(14)
ERROR_NAMES = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
               "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL",
               "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY",
               "HTTP_1_1_REQUIRED"]
# SETTINGS identifiers (RFC 9113 §6.5.2).
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, \
    MAX_HEADER_LIST_SIZE = range(1, 7)
ENABLE_CONNECT_PROTOCOL = 8


def err_name(code):
    return ERROR_NAMES[code] if 0 <= code < len(ERROR_NAMES) else f"0x{code:x}"


# ---- frames as bytes ----

def frame(ftype, flags, sid, payload=b"", length=None):
    """One frame; length overrides the length field (a lying header)."""
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def settings_frame(*pairs, ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v)
                                                         for k, v in pairs))


def window_update(sid, inc):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc))


def rst_stream(sid, code=CANCEL):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def ping_frame(data=b"12345678", ack=False):
    return frame(PING, ACK if ack else 0, 0, data)


def goaway_frame(last, code=NO_ERROR, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + debug)


def data_frame(sid, data, end_stream=False):
    return frame(DATA, END_STREAM if end_stream else 0, sid, data)


def req_headers(method="GET", path="/", authority="localhost", scheme="https", extra=()):
    h = [(":method", method), (":scheme", scheme), (":path", path)]
    if authority is not None:
        h.append((":authority", authority))
    return h + list(extra)


class Frame:
    """One frame from the server."""

    def __init__(self, ftype, flags, sid, payload):
        self.type, self.flags, self.sid, self.payload = ftype, flags, sid, payload
        self.headers = None  # a HEADERS block's decoded fields, once END_HEADERS came

    @property
    def name(self):
        return TYPE_NAMES[self.type] if self.type < len(TYPE_NAMES) else f"0x{self.type:x}"

    @property
    def error_code(self):
        if self.type == RST_STREAM:
            return struct.unpack(">I", self.payload[:4])[0]
        if self.type == GOAWAY:
            return struct.unpack(">I", self.payload[4:8])[0]
        raise ValueError(self.name)

    @property
    def last_stream_id(self):
        assert self.type == GOAWAY
        return struct.unpack(">I", self.payload[:4])[0] & 0x7fffffff

    @property
    def debug(self):
        return self.payload[8:] if self.type == GOAWAY else b""

    @property
    def settings(self):
        assert self.type == SETTINGS
        p = self.payload
        return {struct.unpack(">H", p[i:i + 2])[0]: struct.unpack(">I", p[i + 2:i + 6])[0]
                for i in range(0, len(p) - 5, 6)}

    @property
    def increment(self):
        assert self.type == WINDOW_UPDATE
        return struct.unpack(">I", self.payload)[0] & 0x7fffffff

    def status(self):
        return int(dict(self.headers)[":status"]) if self.headers else None

    def __repr__(self):
        extra = ""
        if self.type in (RST_STREAM, GOAWAY):
            extra = " " + err_name(self.error_code)
            if self.type == GOAWAY:
                extra += f" last={self.last_stream_id} debug={self.debug[:80]!r}"
        elif self.headers is not None:
            extra = f" {self.headers}"
        elif self.type == SETTINGS:
            extra = " ACK" if self.flags & ACK else f" {self.settings}"
        elif self.type == WINDOW_UPDATE:
            extra = f" +{self.increment}"
        elif self.type == DATA:
            extra = f" {len(self.payload)} bytes" + (" END_STREAM" if self.flags & END_STREAM
                                                      else "")
        return f"<{self.name} sid={self.sid} flags=0x{self.flags:x}{extra}>"


def tls_connect(addr, pki, alpn=("h2",), cert=None, sni="localhost", timeout=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.path("root.crt"))
    if cert is not None:
        ctx.load_cert_chain(cert[0], cert[1])
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    raw = socket.create_connection(addr, timeout=timeout or T(10))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


class ConnClosed(Exception):
    pass


class _Owner:
    """A client that owns self.sock: closed on leaving a with block."""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class RawH2(_Owner):
    """A client that writes frames as it is told. With handshake=True the
    preface and an empty SETTINGS go out and the server's SETTINGS is
    read and acknowledged."""

    def __init__(self, addr, pki, settings=(), handshake=True, cert=None, sni="localhost",
                 alpn=("h2",), timeout=None):
        self.sock = tls_connect(addr, pki, alpn, cert, sni, timeout)
        self.port = self.sock.getsockname()[1]
        self.alpn = self.sock.selected_alpn_protocol()
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 65536
        self.buf = bytearray()
        self.seen = []  # every frame read, for failure messages
        self.backlog = []  # frames read that no wait() took yet
        self.block = {}  # sid -> header block bytes awaiting END_HEADERS
        self.server_settings = {}
        self.eof = False
        if handshake:
            self.send(PREFACE + settings_frame(*settings))
            f = self.wait(lambda f: f.type == SETTINGS and not f.flags & ACK, what="SETTINGS")
            self.server_settings = f.settings
            self.send(settings_frame(ack=True))


    # -- writing --
    def send(self, data):
        """Sends bytes; False when the server closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (OSError, ssl.SSLError):
            return False

    def block_of(self, headers, huffman=True):
        return self.enc.encode(headers, huffman=huffman)

    def headers_frame(self, sid, headers=None, end_stream=True, end_headers=True, block=None):
        if block is None:
            block = self.block_of(headers)
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        return frame(HEADERS, flags, sid, block)

    def header_frames(self, sid, headers=None, end_stream=True, block=None, max_frame=16384):
        """HEADERS then CONTINUATION frames for a block larger than a frame."""
        if block is None:
            block = self.block_of(headers)
        pieces = [block[i:i + max_frame] for i in range(0, len(block), max_frame)] or [b""]
        out = frame(HEADERS, (END_STREAM if end_stream else 0) |
                    (END_HEADERS if len(pieces) == 1 else 0), sid, pieces[0])
        for i, p in enumerate(pieces[1:], 2):
            out += frame(CONTINUATION, END_HEADERS if i == len(pieces) else 0, sid, p)
        return out

    def request(self, sid, method="GET", path="/", authority="localhost", extra=(),
                end_stream=True, body=None):
        """HEADERS (and a DATA with the body) for one request."""
        out = self.headers_frame(sid, req_headers(method, path, authority, extra=extra),
                                 end_stream=end_stream and body is None)
        if body is not None:
            out += data_frame(sid, body, end_stream=end_stream)
        return self.send(out)

    # -- reading --
    def read_frame(self, timeout=None):
        """The next frame; None at EOF; socket.timeout when none came."""
        self.sock.settimeout(timeout if timeout is not None else T(10))
        while True:
            if len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + n:
                    ftype, flags = self.buf[3], self.buf[4]
                    sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7fffffff
                    f = Frame(ftype, flags, sid, bytes(self.buf[9:9 + n]))
                    del self.buf[:9 + n]
                    self._decode(f)
                    self.seen.append(f)
                    return f
            if self.eof:
                return None
            try:
                b = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                b = b""
            if not b:
                self.eof = True
                continue
            self.buf += b

    def _decode(self, f):
        if f.type == HEADERS:
            p = f.payload
            pad = 0
            if f.flags & PADDED:
                pad = p[0]
                p = p[1:]
            if f.flags & PRIORITY_FLAG:
                p = p[5:]
            self.block[f.sid] = p[:len(p) - pad]
        elif f.type == CONTINUATION:
            self.block[f.sid] = self.block.get(f.sid, b"") + f.payload
        else:
            return
        if f.flags & END_HEADERS:
            f.headers = [(n.decode() if isinstance(n, bytes) else n,
                          v.decode() if isinstance(v, bytes) else v)
                         for n, v in self.dec.decode(self.block.pop(f.sid))]

    def wait(self, pred, timeout=None, what="a frame"):
        """The first frame, read before (and not taken) or read now, for which
        pred(frame) holds; the frames it refuses wait for a later wait().
        AssertionError when the deadline passes, ConnClosed at EOF."""
        for i, f in enumerate(self.backlog):
            if pred(f):
                del self.backlog[i]
                return f
        deadline = time.monotonic() + (timeout or T(10))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within the deadline; got {self.seen[-20:]}")
            try:
                f = self.read_frame(left)
            except (socket.timeout, TimeoutError):
                raise AssertionError(f"no {what} within the deadline; got {self.seen[-20:]}")
            if f is None:
                raise ConnClosed(f"connection closed before {what}; got {self.seen[-20:]}")
            if pred(f):
                return f
            self.backlog.append(f)

    def drain_until_eof(self, timeout=None):
        """Reads until the server closes; returns the frames read. Raises
        AssertionError when the connection is still open at the deadline."""
        deadline = time.monotonic() + (timeout or T(10))
        got = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"connection still open; last frames {self.seen[-10:]}")
            try:
                f = self.read_frame(left)
            except (socket.timeout, TimeoutError):
                continue
            if f is None:
                return got
            got.append(f)

    def expect_goaway(self, code, timeout=None, closes=True):
        """The connection error `code`: a GOAWAY carrying it, then (when
        closes) the end of the connection. Returns the GOAWAY."""
        g = self.wait(lambda f: f.type == GOAWAY, timeout, what=f"GOAWAY({err_name(code)})")
        assert g.error_code == code, f"GOAWAY {err_name(g.error_code)}, want {err_name(code)}: {g}"
        if closes:
            self.drain_until_eof(timeout)
        return g

    def expect_rst(self, sid, code, timeout=None):
        """The stream error `code` on sid: RST_STREAM, no GOAWAY before it."""
        f = self.wait(lambda f: (f.type == RST_STREAM and f.sid == sid) or f.type == GOAWAY,
                      timeout, what=f"RST_STREAM({err_name(code)}) on {sid}")
        assert f.type == RST_STREAM, f"connection error instead of a stream error: {f}"
        assert f.error_code == code, f"RST_STREAM {err_name(f.error_code)}, want {err_name(code)}"
        return f

    def response(self, sid, timeout=None, open_window=True):
        """(status, headers, body) of stream sid, reading to END_STREAM; the
        windows are reopened as DATA arrives. AssertionError on RST_STREAM
        or GOAWAY."""
        head, body = None, bytearray()
        deadline = time.monotonic() + (timeout or T(10))
        while True:
            f = self.wait(lambda f: f.sid in (sid, 0), deadline - time.monotonic(),
                          what=f"the response on stream {sid}")
            if f.type == RST_STREAM:
                raise AssertionError(f"stream {sid} reset: {f}")
            if f.type == GOAWAY:
                raise AssertionError(f"GOAWAY before stream {sid} ended: {f}")
            if f.type == HEADERS and f.headers is not None:
                if head is None and int(dict(f.headers)[":status"]) >= 200:
                    head = f.headers
            if f.type == DATA:
                body += f.payload[1 + f.payload[0]:len(f.payload) - f.payload[0]] \
                    if f.flags & PADDED else f.payload
                if open_window and len(f.payload) > 0:
                    self.send(window_update(0, len(f.payload)) +
                              window_update(sid, len(f.payload)))
            if f.type in (HEADERS, DATA, CONTINUATION) and f.sid == sid and \
                    f.flags & END_STREAM and (f.type == DATA or head is not None):
                if f.type == HEADERS and f.headers is None:
                    continue
                return int(dict(head)[":status"]), head, bytes(body)

    def status_of(self, sid, timeout=None):
        """The final status of sid, or ("rst", code) when it was reset."""
        f = self.wait(lambda f: f.sid == sid and (f.type == RST_STREAM or
                                                  (f.headers is not None and
                                                   int(dict(f.headers)[":status"]) >= 200))
                      or f.type == GOAWAY, timeout, what=f"the answer on stream {sid}")
        if f.type == GOAWAY:
            return ("goaway", f.error_code)
        if f.type == RST_STREAM:
            return ("rst", f.error_code)
        return int(dict(f.headers)[":status"])

    def closed(self, timeout=None):
        """True when the server closed the connection within timeout (frames
        before the close are read and kept)."""
        try:
            self.drain_until_eof(timeout)
            return True
        except AssertionError:
            return False


# ---- a well-behaved client (the h2 library) ----

class H2Client(_Owner):
    """The h2 library's client state machine over TLS with ALPN h2.
    Streams are started with start(); pump() reads and collects events.
    Windows are reopened for what arrives except on streams in .hold (their
    window stays closed until released, the connection's is reopened)."""

    def __init__(self, addr, pki, cert=None, sni="localhost", settings=None, timeout=None):
        self.sock = tls_connect(addr, pki, ("h2",), cert, sni, timeout)
        self.port = self.sock.getsockname()[1]
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()
        self.status = {}
        self.headers = {}
        self.body = {}
        self.ended = {}  # sid -> time the stream ended
        self.reset = {}  # sid -> error code
        self.hold = set()
        self.held = {}  # sid -> bytes not yet acknowledged
        self.goaway = None
        self.eof = False
        self.lock = threading.Lock()


    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def start(self, path="/", method="GET", body=None, headers=(), authority="localhost"):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https"), (":path", path),
                (":authority", authority)] + list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=body is None)
        self.body[sid] = bytearray()
        self.flush()
        if body is not None:
            self.send_body(sid, body)
        return sid

    def send_body(self, sid, body, end_stream=True, timeout=None):
        """Sends body on sid as the flow-control windows allow."""
        deadline = time.monotonic() + (timeout or T(30))
        sent = 0
        while sent < len(body):
            if sid in self.reset or self.eof:
                return sent
            w = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size,
                    len(body) - sent)
            if w <= 0:
                assert time.monotonic() < deadline, f"stream {sid}: window closed for good"
                self.pump(0.2)
                continue
            self.conn.send_data(sid, body[sent:sent + w])
            sent += w
            self.flush()
        if end_stream:
            self.conn.end_stream(sid)
            self.flush()
        return sent

    def release(self, sid):
        """Opens the held window of sid again."""
        self.hold.discard(sid)
        n = self.held.pop(sid, 0)
        if n and sid not in self.ended and sid not in self.reset:
            self.conn.increment_flow_control_window(n, stream_id=sid)
            self.flush()

    def pump(self, timeout):
        """Reads for at most timeout seconds (less when data came)."""
        if self.eof:
            return
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.eof = True
            return
        for ev in self.conn.receive_data(data):
            self._event(ev)
        self.flush()

    def _event(self, ev):
        now = time.monotonic()
        if isinstance(ev, h2.events.ResponseReceived):
            h = [(n.decode(), v.decode()) for n, v in ev.headers]
            self.headers[ev.stream_id] = h
            self.status[ev.stream_id] = int(dict(h)[":status"])
        elif isinstance(ev, h2.events.DataReceived):
            self.body.setdefault(ev.stream_id, bytearray()).extend(ev.data)
            n = ev.flow_controlled_length
            if ev.stream_id in self.hold:
                self.held[ev.stream_id] = self.held.get(ev.stream_id, 0) + n
                if n:
                    self.conn.increment_flow_control_window(n)
            elif n:
                self.conn.acknowledge_received_data(n, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.ended[ev.stream_id] = now
        elif isinstance(ev, h2.events.StreamReset):
            self.reset[ev.stream_id] = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev

    def wait(self, pred, timeout=None, what="condition"):
        deadline = time.monotonic() + (timeout or T(10))
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                if pred():
                    break
                raise AssertionError(f"{what}: not within the deadline (eof={self.eof}, "
                                     f"status={self.status}, reset={self.reset}, "
                                     f"goaway={self.goaway})")
            self.pump(min(left, 0.2))
        return True

    def wait_ended(self, sids, timeout=None):
        sids = list(sids)
        self.wait(lambda: all(s in self.ended or s in self.reset for s in sids), timeout,
                  what=f"streams {sids} ended")
        return {s: self.status.get(s) for s in sids}

    def get(self, path="/", timeout=None, **kw):
        """One request; (status, headers, body)."""
        sid = self.start(path, **kw)
        self.wait_ended([sid], timeout)
        assert sid not in self.reset, f"stream {sid} reset: {self.reset[sid]}"
        return self.status[sid], self.headers[sid], bytes(self.body[sid])


# ---- process memory, background clients, a hanging target ----

def worker_rss_kib(tg):
    """The sum of VmRSS of the tollgate workers."""
    total = 0
    pids = tg.worker_pids()
    assert pids, "no worker"
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


class Background:
    """Runs fn(stop_event) in a thread; join() re-raises what it raised."""

    def __init__(self, fn):
        self.stop = threading.Event()
        self.exc = None
        self.result = None

        def run():
            try:
                self.result = fn(self.stop)
            except BaseException as e:  # noqa: BLE001 - handed to join()
                self.exc = e
        self.t = threading.Thread(target=run, daemon=True)
        self.t.start()

    def join(self, timeout=None):
        self.stop.set()
        self.t.join(timeout or T(30))
        assert not self.t.is_alive(), "background client did not stop"
        if self.exc is not None:
            raise self.exc
        return self.result


def probe_latencies(addr, pki, stop, path="/probe", pause=0.02, limit=None, out=None):
    """A well-behaved client on its own connection: one GET after another
    until stop is set (or limit requests); returns each request's seconds
    (also appended to out as they come). A failed request raises."""
    out = [] if out is None else out
    deadline = time.monotonic() + T(60)
    with H2Client(addr, pki) as c:
        while not stop.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            st, _, _ = c.get(path, timeout=T(10))
            assert st == 200, st
            out.append(time.monotonic() - t0)
            if limit is not None and len(out) >= limit:
                break
            time.sleep(pause)
    return out


class Blackhole:
    """A loopback address whose accept queue is full: a connect to it is
    neither accepted nor refused (the SYN is dropped), so a stream routed
    there waits in its backend connect (until connect_timeout)."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(0)
        self.address = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.filler = socket.create_connection(self.ls.getsockname(), timeout=T(2))
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(self.ls.getsockname())
            raise AssertionError("the accept queue is not full: connects still succeed")
        except (socket.timeout, TimeoutError):
            pass
        finally:
            probe.close()

    def close(self):
        self.filler.close()
        self.ls.close()
