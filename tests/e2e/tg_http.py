"""A recording HTTP/1.1 test backend, and small HTTP clients for the tests.

HttpBackend listens on a free loopback port; one thread per connection.
Every request it reads is recorded (method, target, version, headers in
order, body size and SHA-256, which connection it came on). What it answers
is decided by `handler(req) -> Reply` (default: 200 with a JSON description
of the request). A Reply can be plain or chunked, carry a generated body of
any size (streamed, never held whole), be slow, close the connection after
it, or close abruptly without answering. A request with `Upgrade: websocket`
is answered with 101 and then served as a WebSocket echo (RFC 6455 frames).
"""

import base64
import hashlib
import json
import socket
import ssl
import struct
import threading
import time

import pytest

import tg_proc
from tg_proc import T

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def pattern_chunks(total, chunk=1 << 20):
    """Deterministic bytes (total of them), in pieces; the same every time."""
    block = bytes(range(256)) * (chunk // 256)
    left = total
    while left > 0:
        n = min(left, len(block))
        yield block[:n]
        left -= n


def pattern_sha256(total):
    h = hashlib.sha256()
    for b in pattern_chunks(total):
        h.update(b)
    return h.hexdigest()


class Request:
    """One request as the backend received it."""

    def __init__(self, conn_no, method, target, version, headers):
        self.conn_no = conn_no
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # [(name, value)] in arrival order, as sent
        self.body_len = 0
        self.body_sha = hashlib.sha256()
        self.body = bytearray()  # the first 64 KiB
        self.chunked = False
        self.at = time.monotonic()

    def get(self, name, default=None):
        """The value of the only header with this name (case-insensitive);
        AssertionError when repeated."""
        vals = self.all(name)
        assert len(vals) <= 1, f"header {name} sent {len(vals)} times: {vals}"
        return vals[0] if vals else default

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def names(self):
        return [n.lower() for n, _ in self.headers]

    def body_digest(self):
        return self.body_sha.hexdigest()

    def describe(self):
        return {"method": self.method, "target": self.target, "version": self.version,
                "headers": self.headers, "body_len": self.body_len,
                "body_sha256": self.body_digest(), "conn": self.conn_no}


class Reply:
    """What the backend answers. body: bytes; or body_size: a generated body
    of that many pattern bytes. chunked: Transfer-Encoding: chunked.
    delay: seconds before answering. close: close after the reply.
    abort: close without answering. raw: bytes sent as they are."""

    def __init__(self, status=200, headers=None, body=b"", chunked=False, body_size=None,
                 delay=0.0, close=False, abort=False, raw=None, reason=None, length=True,
                 interim=()):
        self.status = status
        self.headers = list(headers or [])
        self.body = body
        self.chunked = chunked
        self.body_size = body_size
        self.delay = delay
        self.close = close
        self.abort = abort
        self.raw = raw
        self.reason = reason
        self.length = length  # send Content-Length when not chunked
        self.interim = interim  # 1xx statuses sent first, e.g. (103,)


REASONS = {100: "Continue", 101: "Switching Protocols", 103: "Early Hints", 200: "OK",
           204: "No Content", 301: "Moved Permanently", 304: "Not Modified",
           404: "Not Found", 500: "Internal Server Error"}


def json_reply(req):
    body = json.dumps(req.describe()).encode()
    return Reply(200, [("Content-Type", "application/json")], body)


class BadRequest(Exception):
    pass


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def fill(self):
        b = self.sock.recv(262144)
        if not b:
            raise EOFError
        self.buf += b

    def line(self, limit=65536):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                ln = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return ln
            if len(self.buf) > limit:
                raise BadRequest("line too long")
            self.fill()

    def exact(self, n, sink):
        while n > 0:
            if not self.buf:
                self.fill()
            k = min(n, len(self.buf))
            sink(bytes(self.buf[:k]))
            del self.buf[:k]
            n -= k


class HttpBackend:
    def __init__(self, handler=None, host="127.0.0.1", continue_100=True, port=0):
        self.handler = handler or json_reply
        self.continue_100 = continue_100
        self.hold_body = None  # a threading.Event: bodies are not read until it is set
        self.early = None  # handler answering from the head alone, then closing
        self.requests = []
        self.raw = []          # per connection: the first 64 KiB received
        self.accepted = 0
        self.lock = threading.Lock()
        self.ls = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((host, port))
        self.ls.listen(1024)
        self.port = self.ls.getsockname()[1]
        self.address = f"{host}:{self.port}" if ":" not in host else f"[{host}]:{self.port}"
        self.closing = False
        self.socks = []
        threading.Thread(target=self._accept_loop, daemon=True).start()

    # -- public --
    def count(self):
        with self.lock:
            return self.accepted

    def reqs(self):
        with self.lock:
            return list(self.requests)

    def wait_requests(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or T(10))
        while len(self.reqs()) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"backend got {len(self.reqs())} requests, expected {n}")
            time.sleep(0.01)
        return self.reqs()

    def close(self):
        self.closing = True
        try:
            self.ls.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ls.close()
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop_connections(self):
        """Closes every open accepted connection (an idle backend restart)."""
        with self.lock:
            socks, self.socks = list(self.socks), []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- internals --
    def _accept_loop(self):
        while not self.closing:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.accepted += 1
                no = self.accepted
                self.socks.append(s)
                self.raw.append(bytearray())
            threading.Thread(target=self._serve, args=(s, no), daemon=True).start()

    def _serve(self, s, no):
        raw = self.raw[no - 1]

        class Tap:
            def __init__(self, sock):
                self.sock = sock

            def recv(self, n):
                b = self.sock.recv(n)
                room = 65536 - len(raw)
                if room > 0:
                    raw.extend(b[:room])
                return b

        r = _Reader(Tap(s))
        try:
            while True:
                req = self._read_head(r, no)
                if req is None:
                    break
                if req.get("upgrade", "").lower() == "websocket":
                    with self.lock:
                        self.requests.append(req)
                    self._websocket(s, r, req)
                    break
                rep_early = None
                if req.get("expect", "").lower() == "100-continue" and self.continue_100:
                    s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if self.early is not None:
                    # answer from the head alone, without reading the body
                    with self.lock:
                        self.requests.append(req)
                    self._send(s, req, self.early(req))
                    break
                if self.hold_body is not None:
                    self.hold_body.wait(T(120))
                self._read_body(r, req)
                with self.lock:
                    self.requests.append(req)
                rep = rep_early or self.handler(req)
                if not self._send(s, req, rep):
                    break
        except (EOFError, OSError, BadRequest):
            pass
        finally:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _read_head(self, r, no):
        try:
            line = r.line()
        except EOFError:
            return None
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3:
            raise BadRequest(f"request line {line!r}")
        headers = []
        while True:
            ln = r.line().decode("latin-1")
            if ln in ("\r\n", "\n"):
                break
            name, _, value = ln.rstrip("\r\n").partition(":")
            headers.append((name, value.strip(" \t")))
        return Request(no, parts[0], parts[1], parts[2], headers)

    def _read_body(self, r, req):
        def sink(b):
            req.body_len += len(b)
            req.body_sha.update(b)
            room = 65536 - len(req.body)
            if room > 0:
                req.body += b[:room]

        te = req.all("transfer-encoding")
        if te:
            req.chunked = True
            while True:
                size = int(r.line().split(b";")[0].strip(), 16)
                if size == 0:
                    while r.line() not in (b"\r\n", b"\n"):
                        pass
                    return
                r.exact(size, sink)
                r.line()
        cl = req.all("content-length")
        if cl:
            r.exact(int(cl[0]), sink)

    def _send(self, s, req, rep):
        if rep.delay:
            time.sleep(rep.delay)
        if rep.abort:
            return False
        if rep.raw is not None:
            s.sendall(rep.raw)
            return not rep.close
        for st in rep.interim:
            s.sendall(f"HTTP/1.1 {st} {REASONS.get(st, 'Info')}\r\n\r\n".encode())
        head = [f"HTTP/1.1 {rep.status} {rep.reason or REASONS.get(rep.status, 'Whatever')}"]
        head += [f"{n}: {v}" for n, v in rep.headers]
        size = rep.body_size if rep.body_size is not None else len(rep.body)
        bodiless = req.method == "HEAD" or rep.status in (204, 304) or rep.status < 200
        if rep.chunked:
            head.append("Transfer-Encoding: chunked")
        elif rep.length and rep.status not in (204,) and rep.status >= 200:
            head.append(f"Content-Length: {size}")
        if rep.close:
            head.append("Connection: close")
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if not bodiless:
            pieces = pattern_chunks(size) if rep.body_size is not None else [rep.body]
            for p in pieces:
                if not p:
                    continue
                if rep.chunked:
                    s.sendall(b"%x\r\n" % len(p) + p + b"\r\n")
                else:
                    s.sendall(p)
            if rep.chunked:
                s.sendall(b"0\r\n\r\n")
        return not rep.close and (rep.length or rep.chunked or bodiless)

    def _websocket(self, s, r, req):
        key = req.get("sec-websocket-key", "").encode()
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
        while True:
            op, payload = ws_read_frame(r, expect_mask=True)
            if op == 8:
                s.sendall(ws_frame(8, payload, mask=False))
                return
            s.sendall(ws_frame(op, payload, mask=False))


# ---- WebSocket frames (RFC 6455 §5.2) ----

def ws_frame(opcode, payload, mask=True):
    head = bytes([0x80 | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = bytes([0x37, 0xfa, 0x21, 0x3d])
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_read_frame(r, expect_mask):
    """(opcode, payload) from a _Reader."""
    hdr = bytearray()
    r.exact(2, hdr.extend)
    opcode = hdr[0] & 0x0f
    masked = hdr[1] & 0x80
    n = hdr[1] & 0x7f
    ext = bytearray()
    if n == 126:
        r.exact(2, ext.extend)
        n = struct.unpack("!H", ext)[0]
    elif n == 127:
        r.exact(8, ext.extend)
        n = struct.unpack("!Q", ext)[0]
    if bool(masked) != expect_mask:
        raise BadRequest("masking")
    key = bytearray()
    if masked:
        r.exact(4, key.extend)
    payload = bytearray()
    r.exact(n, payload.extend)
    if masked:
        payload = bytearray(b ^ key[i % 4] for i, b in enumerate(payload))
    return opcode, bytes(payload)


# ---- clients ----

def ssl_ctx(pki, cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.path("root.crt"))
    if cert is not None:
        ctx.load_cert_chain(cert[0], cert[1])
    return ctx


def open_conn(addr, pki=None, cert=None, sni="localhost", timeout=None, tls=True):
    """A connected socket (TLS when tls) to a listener."""
    raw = socket.create_connection(addr, timeout=timeout or T(15))
    if not tls:
        return raw
    try:
        return ssl_ctx(pki, cert).wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


class Response:
    def __init__(self, status, reason, headers, body, version):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.version = version

    def get(self, name, default=None):
        vals = [v for n, v in self.headers if n.lower() == name.lower()]
        return vals[0] if vals else default

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)


class Client:
    """A keep-alive HTTP/1.1 client on one connection that sends bytes as
    given and parses responses strictly (for pipelining, malformed requests
    and responses without bodies)."""

    def __init__(self, addr, pki=None, cert=None, sni="localhost", tls=True, timeout=None):
        self.sock = open_conn(addr, pki, cert, sni, timeout, tls)
        self.port = self.sock.getsockname()[1]
        self.r = _Reader(self.sock)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method="GET", target="/", host="localhost", headers=(), body=None,
                head_only=None):
        self.send(build(method, target, host, headers, body))
        return self.response(head_only=method == "HEAD" if head_only is None else head_only)

    def response(self, head_only=False, sink=None):
        """Reads one final response (1xx are returned in .interim)."""
        interim = []
        while True:
            line = self.r.line().decode("latin-1").rstrip("\r\n")
            version, _, rest = line.partition(" ")
            code, _, reason = rest.partition(" ")
            status = int(code)
            headers = []
            while True:
                ln = self.r.line().decode("latin-1")
                if ln in ("\r\n", "\n"):
                    break
                n, _, v = ln.rstrip("\r\n").partition(":")
                headers.append((n, v.strip()))
            if 100 <= status < 200 and status != 101:
                interim.append(status)
                continue
            break
        body = bytearray()
        out = sink or body.extend
        resp = Response(status, reason, headers, body, version)
        resp.interim = interim
        te = resp.get("transfer-encoding")
        cl = resp.get("content-length")
        if head_only or status in (204, 304, 101):
            pass
        elif te is not None:
            assert te.lower() == "chunked", te
            while True:
                size = int(self.r.line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.r.line() not in (b"\r\n", b"\n"):
                        pass
                    break
                self.r.exact(size, out)
                self.r.line()
        elif cl is not None:
            self.r.exact(int(cl), out)
        else:
            try:
                while True:
                    if self.r.buf:
                        out(bytes(self.r.buf))
                        self.r.buf.clear()
                    self.r.fill()
            except (EOFError, OSError):
                pass
        resp.body = bytes(body)
        return resp

    def closed_by_peer(self, timeout=None):
        """True when the server closes the connection (EOF) within timeout."""
        self.sock.settimeout(timeout or T(10))
        try:
            if self.r.buf:
                return False
            return self.sock.recv(1) == b""
        except ssl.SSLError:
            return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def build(method="GET", target="/", host="localhost", headers=(), body=None):
    lines = [f"{method} {target} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{n}: {v}" for n, v in headers]
    if body is not None and not any(n.lower() in ("content-length", "transfer-encoding")
                                    for n, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def https_listener(name="main", mode="one-way", certs=("ecdsa",), client_auth=None,
                   client_ca="pki", rules=None, default="g", tls_extra=None, protocol="https",
                   **extra):
    """An https (or plain http) listener dict; `listen` is filled at start."""
    from tg_proc import AUTO
    d = {"name": name, "protocol": protocol, "listen": AUTO}
    if protocol == "https":
        tls = {"mode": mode, "certificates": list(certs)}
        if mode == "mutual":
            tls["client_ca"] = client_ca
            if client_auth is not None:
                tls["client_auth"] = client_auth
        if tls_extra:
            tls.update(tls_extra)
        d["tls"] = tls
        d["handshake_timeout"] = "5s"
    if rules is not None:
        d["rules"] = rules
    if default is not None:
        d["default_target_group"] = default
    d.update(extra)
    return d


# ---- fixtures (imported by the test modules) ----

@pytest.fixture
def hbackend():
    """hbackend(handler=None, **kw) -> running HttpBackend (closed after the test)."""
    made = []

    def make(handler=None, **kw):
        b = HttpBackend(handler, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def hserve(tollgate, hbackend):
    """hserve(*listeners, handler=None, groups=None, **top) -> (tg, backend).

    One recording HTTP backend and tollgate with target group "g" pointing
    at it; listeners default to one one-way https listener named "main"."""

    def start(*listeners, handler=None, groups=None, name="tg", wait=True, **top):
        be = hbackend(handler)
        cfg = dict(top)
        cfg["target_groups"] = groups if groups is not None else {"g": tg_proc.group(be.address)}
        cfg["listeners"] = list(listeners) or [https_listener()]
        return tollgate(cfg, name=name, wait=wait), be

    return start
