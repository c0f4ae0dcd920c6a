"""A recording TCP backend: one thread per connection, records what arrives.

Modes:
  echo  send back every payload byte (after the PROXY header, if any)
  sink  keep quiet, just record
  line  read up to the first newline, send `reply` (default b"echo:" + line),
        then close
Whatever the mode, when the peer half-closes (EOF) the backend sends
`on_eof` (if any) and then shuts its side down, so half-close can be seen
from the client. `greeting` is sent as soon as a connection is accepted
(after reading the PROXY header, when one is expected). With `hold` (an
Event), payload is not read until the event is set: a backend that stops
reading, for backpressure tests.
"""

import hashlib
import socket
import threading
import time

import tg_proxyproto as pp


class BConn:
    """One accepted connection, as the backend saw it."""

    def __init__(self, sock, peer, keep):
        self.sock = sock
        self.peer = peer
        self.keep = keep
        self.data = bytearray()       # the first `keep` payload bytes
        self.nbytes = 0               # payload bytes received
        self.sha = hashlib.sha256()
        self.proxy = None             # ProxyHeader
        self.proxy_error = None
        self.sent = 0
        self.eof = threading.Event()  # peer sent FIN
        self.done = threading.Event() # our thread has finished
        self.accepted_at = time.monotonic()
        self.error = None

    def digest(self):
        return self.sha.hexdigest()

    def _payload(self, b):
        self.nbytes += len(b)
        self.sha.update(b)
        room = self.keep - len(self.data)
        if room > 0:
            self.data += b[:room]


class Backend:
    def __init__(self, mode="echo", proxy=None, reply=None, on_eof=None, greeting=None,
                 keep=1 << 20, close_after_greeting=False, hold=None):
        self.mode = mode
        self.proxy = proxy
        self.reply = reply
        self.on_eof = on_eof
        self.greeting = greeting
        self.close_after_greeting = close_after_greeting
        self.keep = keep
        self.hold = hold  # a threading.Event: do not read payload until it is set
        self.conns = []
        self.lock = threading.Lock()
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1024)
        self.port = self.ls.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.closing = False
        self.threads = []
        self.t = threading.Thread(target=self._accept_loop, daemon=True)
        self.t.start()

    # -- public --
    def count(self):
        with self.lock:
            return len(self.conns)

    def snapshot(self):
        with self.lock:
            return list(self.conns)

    def wait_conns(self, n, timeout):
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"backend saw {self.count()} connections, expected {n}")
            time.sleep(0.01)
        return self.snapshot()

    def wait_payload(self, conn, n, timeout):
        deadline = time.monotonic() + timeout
        while conn.nbytes < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"backend got {conn.nbytes} of {n} bytes")
            time.sleep(0.01)

    def close(self):
        self.closing = True
        try:
            self.ls.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ls.close()
        for c in self.snapshot():
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- internals --
    def _accept_loop(self):
        while not self.closing:
            try:
                s, peer = self.ls.accept()
            except OSError:
                return
            c = BConn(s, peer, self.keep)
            with self.lock:
                self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()

    def _read_proxy(self, c):
        buf = bytearray()
        while True:
            try:
                n = pp.needed(buf)
            except pp.ProxyError as e:
                c.proxy_error = str(e)
                return bytes(buf)
            if n is not None and len(buf) >= n:
                try:
                    c.proxy = pp.parse(buf[:n])
                except (pp.ProxyError, ValueError) as e:
                    c.proxy_error = str(e)
                return bytes(buf[n:])
            b = c.sock.recv(65536)
            if not b:
                c.proxy_error = f"EOF after {len(buf)} header bytes"
                return bytes(buf)
            buf += b

    def _serve(self, c):
        s = c.sock
        try:
            first = b""
            if self.proxy:
                first = self._read_proxy(c)
            if self.greeting:
                s.sendall(self.greeting)
                c.sent += len(self.greeting)
                if self.close_after_greeting:
                    s.shutdown(socket.SHUT_WR)
            if self.hold is not None:
                self.hold.wait(120)
            line = bytearray()
            pending = first
            while True:
                if pending:
                    b, pending = pending, b""
                else:
                    b = s.recv(262144)
                if not b:
                    c.eof.set()
                    if self.on_eof:
                        s.sendall(self.on_eof)
                        c.sent += len(self.on_eof)
                    break
                c._payload(b)
                if self.mode == "echo":
                    s.sendall(b)
                    c.sent += len(b)
                elif self.mode == "line":
                    line += b
                    if b"\n" in line:
                        ln = bytes(line[:line.index(b"\n") + 1])
                        out = self.reply if self.reply is not None else b"echo:" + ln
                        s.sendall(out)
                        c.sent += len(out)
                        break
        except OSError as e:
            c.error = str(e)
        finally:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if self.mode == "line" and not c.eof.is_set():
                # Wait (bounded) for the relay to close after our FIN.
                s.settimeout(10)
                try:
                    while s.recv(65536):
                        pass
                except OSError:
                    pass
            s.close()
            c.done.set()
