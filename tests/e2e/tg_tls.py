"""TLS clients for the tests: Python ssl, a memory-BIO client that can
half-close, and wrappers around `openssl s_client` and `gnutls-cli`."""

import socket
import ssl
import subprocess
import threading
import time

from tg_proc import T

TLS_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


# An OpenSSL configuration that lowers the system's default security level
# to 0 (for OPENSSL_CONF), to show that tollgate pins its own.
SECLEVEL0_CONF = """openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
CipherString = DEFAULT:@SECLEVEL=0
"""


def client_ctx(pki, cert=None, version=None, ciphers=None, verify=True, seclevel0=False):
    """A client SSLContext trusting the PKI's root. cert: (crt, key) or None.
    version: "1.2" etc. pins min and max."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(pki.path("root.crt"))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(cert[0], cert[1])
    if seclevel0:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if version is not None:
        ctx.minimum_version = TLS_VERSIONS[version]
        ctx.maximum_version = TLS_VERSIONS[version]
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


def connect(addr, ctx, server_hostname="localhost", timeout=None, session=None):
    """A connected, handshaken SSLSocket. Raises on failure."""
    raw = socket.create_connection(addr, timeout=timeout or T(10))
    try:
        s = ctx.wrap_socket(raw, server_hostname=server_hostname, session=session)
    except BaseException:
        raw.close()
        raise
    return s


def recv_exact(s, n, timeout=None):
    s.settimeout(timeout or T(10))
    buf = bytearray()
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            break
        buf += b
    return bytes(buf)


def roundtrip(addr, ctx, payload=b"hello tollgate\n", server_hostname="localhost"):
    """Connects, sends payload, reads as many bytes back (echo), closes.
    Returns (echoed bytes, info dict)."""
    with connect(addr, ctx, server_hostname=server_hostname) as s:
        info = {"version": s.version(), "cipher": s.cipher(), "local": s.getsockname(),
                "peer_der": s.getpeercert(binary_form=True), "reused": s.session_reused}
        s.sendall(payload)
        got = recv_exact(s, len(payload))
        info["session"] = s.session
    return got, info


def attempt(addr, ctx, payload=b"should never reach a backend\n", server_hostname="localhost",
            session=None):
    """Tries a handshake and one echo. Returns (ok, detail, client_port).
    ok is True only when the payload came back."""
    raw = socket.create_connection(addr, timeout=T(10))
    port = raw.getsockname()[1]
    try:
        s = ctx.wrap_socket(raw, server_hostname=server_hostname, session=session)
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return False, f"handshake: {e}", port
    try:
        # TLS 1.3: the client finishes first; the server's verdict on our
        # certificate arrives as an alert on the first read.
        s.sendall(payload)
        got = recv_exact(s, len(payload))
        if got == payload:
            return True, "echoed", port
        return False, f"read {got!r}", port
    except (ssl.SSLError, OSError) as e:
        return False, f"after handshake: {e}", port
    finally:
        s.close()


class MemTLS:
    """A TLS client over a plain socket with memory BIOs, so that it can send
    close_notify and keep reading (half-close), and send partial records."""

    def __init__(self, addr, ctx, server_hostname="localhost", timeout=None):
        self.sock = socket.create_connection(addr, timeout=timeout or T(10))
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname)
        self.closed_by_peer = None  # "close_notify" | "eof"

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _fill(self):
        b = self.sock.recv(65536)
        if not b:
            self.inc.write_eof()
            return False
        self.inc.write(b)
        return True

    def client_hello(self):
        """Starts the handshake and returns the ClientHello bytes unsent."""
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.out.read()

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise ConnectionError("EOF during handshake")

    def send(self, data):
        self.obj.write(data)
        self._flush()

    def recv(self):
        """Some bytes; b"" at the end of the stream (see closed_by_peer)."""
        while True:
            try:
                b = self.obj.read(65536)
                if not b:
                    # CPython returns b"" (no exception) for a close_notify
                    # when we have not sent ours yet.
                    self.closed_by_peer = "close_notify"
                return b
            except ssl.SSLWantReadError:
                if not self._fill():
                    continue  # write_eof makes the next read raise
            except ssl.SSLZeroReturnError:
                self.closed_by_peer = "close_notify"
                return b""
            except ssl.SSLEOFError:
                self.closed_by_peer = "eof"
                return b""

    def read_all(self):
        buf = bytearray()
        while True:
            b = self.recv()
            if not b:
                return bytes(buf)
            buf += b

    def shutdown_write(self):
        """Sends close_notify; reading stays possible."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()

    def close(self):
        self.sock.close()


# ---- external clients ----------------------------------------------------------------

def _run(cmd, stdin_data, timeout, keep_stdin_open=True):
    """Runs cmd, writes stdin_data, waits for it to exit by itself (the
    backend closes after replying). Returns (rc, stdout, stderr)."""
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    out, err = [], []
    to = threading.Thread(target=lambda: out.append(p.stdout.read()), daemon=True)
    te = threading.Thread(target=lambda: err.append(p.stderr.read()), daemon=True)
    to.start()
    te.start()
    try:
        p.stdin.write(stdin_data)
        p.stdin.flush()
        if not keep_stdin_open:
            p.stdin.close()
    except BrokenPipeError:
        pass
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
        to.join(5)
        te.join(5)
        raise AssertionError(f"{cmd[0]} did not finish in {timeout}s; stdout="
                             f"{b''.join(out)!r} stderr={b''.join(err)[-2000:]!r}")
    finally:
        try:
            p.stdin.close()
        except OSError:
            pass
    to.join(5)
    te.join(5)
    return rc, b"".join(out), b"".join(err).decode(errors="replace")


def s_client(addr, pki, data=b"hello from s_client\n", cert=None, extra=(), timeout=None,
             brief=True):
    cmd = ["openssl", "s_client", "-connect", f"{addr[0]}:{addr[1]}", "-servername", "localhost",
           "-CAfile", pki.path("root.crt"), "-verify_return_error", "-verify_hostname",
           "localhost", "-ign_eof", *(["-brief"] if brief else []), *extra]
    if cert is not None:
        # -cert sends only the first certificate of the file; the rest of
        # the file (the intermediate) goes with -cert_chain.
        cmd += ["-cert", cert[0], "-key", cert[1], "-cert_chain", cert[0]]
    return _run(cmd, data, timeout or T(20))


def gnutls_cli(addr, pki, data=b"hello from gnutls-cli\n", cert=None, extra=(), timeout=None):
    cmd = ["gnutls-cli", "--x509cafile", pki.path("root.crt"), "--port", str(addr[1]),
           "--sni-hostname", "localhost", "--verify-hostname", "localhost", *extra]
    if cert is not None:
        cmd += ["--x509certfile", cert[0], "--x509keyfile", cert[1]]
    cmd.append(addr[0])
    return _run(cmd, data, timeout or T(20))


def records(data):
    """The TLS records of a byte string, each whole."""
    out, i = [], 0
    while i + 5 <= len(data):
        n = int.from_bytes(data[i + 3:i + 5], "big")
        out.append(data[i:i + 5 + n])
        i += 5 + n
    assert i == len(data)
    return out


def held_handshake(addr, ctx, change, payload, pause=0.3):
    """A TLS 1.3 client handshake held before its Finished: the client's
    Certificate and CertificateVerify go out (the server judges them),
    change() runs after `pause` seconds (not a wait for an outcome: it lets
    the server judge them first), then Finished and payload. Returns what
    the server echoed (up to len(payload) bytes), b"" when it refused."""
    m = MemTLS(addr, ctx)
    try:
        m.sock.sendall(m.client_hello())
        while True:  # the client ends its side once it has the server's flight
            try:
                m.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                m._fill()
        recs = records(m.out.read())
        assert len(recs) >= 3, recs
        for r in recs[:-1]:
            m.sock.sendall(r)
        time.sleep(pause)
        change()
        m.sock.sendall(recs[-1])  # Finished
        m.send(payload)
        got = b""
        while len(got) < len(payload):
            chunk = m.recv()
            if not chunk:
                break
            got += chunk
        return got
    except (ssl.SSLError, OSError):
        return b""
    finally:
        m.close()
