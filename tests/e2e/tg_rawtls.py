"""A TLS client written by hand, for ClientHellos no library would send.

- `client_hello()` builds the bytes of a ClientHello (TLS 1.2 or 1.3) whose
  server_name extension is whatever the test gives (`sni_body()` for well
  formed lists of entries, raw bytes for anything else).
- `Tls12` runs a whole TLS 1.2 handshake over a plain socket with such a
  hello (ECDHE X25519, AES-128-GCM-SHA256, an optional ECDSA client
  certificate), then carries application data: a test can send HTTP
  requests on a connection that started with a malformed hello. Before the
  ChangeCipherSpec the server's flight is in clear: `server_cert` (which
  site's certificate) and `cert_request` (whether a client certificate is
  asked for) say which site the server picked.
- `hello13_probe()` sends a TLS 1.3 ClientHello that forces a
  HelloRetryRequest, then a second ClientHello (its server_name possibly
  another), and reports what the server answered to it: a ServerHello or
  an alert. Nothing after the ServerHello is decrypted.

Every read has a deadline (tg_proc.T)."""

import hashlib
import hmac
import os
import socket
import struct

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import tg_certs
from tg_proc import T

# Record content types.
CCS, ALERT, HANDSHAKE, APPDATA = 20, 21, 22, 23
# Handshake message types.
CLIENT_HELLO, SERVER_HELLO, NEW_SESSION_TICKET = 1, 2, 4
CERTIFICATE, SERVER_KEY_EXCHANGE, CERTIFICATE_REQUEST = 11, 12, 13
SERVER_HELLO_DONE, CERTIFICATE_VERIFY, CLIENT_KEY_EXCHANGE, FINISHED = 14, 15, 16, 20
# Extensions.
EXT_SERVER_NAME, EXT_GROUPS, EXT_POINT_FORMATS, EXT_SIGALGS = 0x0000, 0x000A, 0x000B, 0x000D
EXT_ALPN, EXT_SUPPORTED_VERSIONS, EXT_COOKIE = 0x0010, 0x002B, 0x002C
EXT_PSK_MODES, EXT_KEY_SHARE, EXT_RENEGOTIATION_INFO = 0x002D, 0x0033, 0xFF01
# Groups.
X25519, SECP256R1, SECP384R1, SECP521R1 = 0x001D, 0x0017, 0x0018, 0x0019
# Alerts.
ALERT_NAMES = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
               40: "handshake_failure", 42: "bad_certificate", 46: "certificate_unknown",
               47: "illegal_parameter", 50: "decode_error", 51: "decrypt_error",
               70: "protocol_version", 80: "internal_error", 100: "no_renegotiation",
               109: "missing_extension", 110: "unsupported_extension",
               112: "unrecognized_name", 116: "certificate_required",
               120: "no_application_protocol"}

HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
SIGALGS = (0x0403, 0x0503, 0x0804, 0x0805, 0x0401, 0x0501)
TLS12_SUITES = (0xC02B, 0xC02F)  # ECDHE-{ECDSA,RSA}-AES128-GCM-SHA256
TLS13_SUITES = (0x1301, 0x1302, 0x1303)


def u8(n):
    return struct.pack(">B", n)


def u16(n):
    return struct.pack(">H", n)


def u24(n):
    return struct.pack(">I", n)[1:]


def vec8(b):
    return u8(len(b)) + b


def vec16(b):
    return u16(len(b)) + b


def vec24(b):
    return u24(len(b)) + b


def ext(etype, body):
    return u16(etype) + vec16(body)


def sni_body(*entries):
    """The body of a server_name extension: each entry a name (str or bytes,
    type host_name) or a (type, name) pair; lengths as they should be."""
    out = b""
    for e in entries:
        typ, name = e if isinstance(e, tuple) else (0, e)
        if isinstance(name, str):
            name = name.encode()
        out += u8(typ) + vec16(name)
    return vec16(out)


def handshake_msg(mtype, body):
    return u8(mtype) + vec24(body)


def record(ctype, payload, version=0x0301):
    """One record, or several when payload is over 16 KiB (a large hello)."""
    out = b""
    for i in range(0, max(len(payload), 1), 16384):
        out += u8(ctype) + u16(version) + vec16(payload[i:i + 16384])
    return out


def client_hello(*, tls13, sni=None, random=None, session_id=b"", suites=None,
                 groups=None, key_shares=None, cookie=None, alpn=None, extra=(),
                 renegotiation_info=b"\x00"):
    """A ClientHello handshake message. sni: None (no server_name), a str
    (one well-formed host_name), or bytes (the extension body as given).
    extra: (type, body) extensions added after the others (a second
    server_name, say). key_shares: [(group, public bytes)] (TLS 1.3)."""
    random = random if random is not None else os.urandom(32)
    exts = b""
    if sni is not None:
        exts += ext(EXT_SERVER_NAME, sni_body(sni) if isinstance(sni, str) else sni)
    if tls13:
        groups = groups or (X25519, SECP256R1)
        exts += ext(EXT_SUPPORTED_VERSIONS, vec8(u16(0x0304)))
        exts += ext(EXT_GROUPS, vec16(b"".join(u16(g) for g in groups)))
        exts += ext(EXT_SIGALGS, vec16(b"".join(u16(a) for a in SIGALGS)))
        exts += ext(EXT_PSK_MODES, vec8(u8(1)))
        shares = b"".join(u16(g) + vec16(pub) for g, pub in (key_shares or []))
        exts += ext(EXT_KEY_SHARE, vec16(shares))
        if cookie is not None:
            exts += ext(EXT_COOKIE, vec16(cookie))
    else:
        # P-256 too: an ECDSA certificate on it is only used for a client
        # that names its curve (TLS 1.2).
        groups = groups or (X25519, SECP256R1)
        exts += ext(EXT_GROUPS, vec16(b"".join(u16(g) for g in groups)))
        exts += ext(EXT_POINT_FORMATS, vec8(u8(0)))
        exts += ext(EXT_SIGALGS, vec16(b"".join(u16(a) for a in SIGALGS)))
        if renegotiation_info is not None:
            exts += ext(EXT_RENEGOTIATION_INFO, renegotiation_info)
    if alpn:
        exts += ext(EXT_ALPN, vec16(b"".join(vec8(p.encode()) for p in alpn)))
    for etype, body in extra:
        exts += ext(etype, body)
    suites = suites or (TLS13_SUITES if tls13 else TLS12_SUITES)
    body = (u16(0x0303) + random + vec8(session_id) +
            vec16(b"".join(u16(s) for s in suites)) + vec8(b"\x00") + vec16(exts))
    return handshake_msg(CLIENT_HELLO, body)


def parse_extensions(data):
    out = {}
    i = 0
    while i + 4 <= len(data):
        t, n = struct.unpack(">HH", data[i:i + 4])
        out[t] = data[i + 4:i + 4 + n]
        i += 4 + n
    return out


def parse_server_hello(body):
    """(random, session_id, suite, extensions dict)."""
    rnd = body[2:34]
    sid_len = body[34]
    sid = body[35:35 + sid_len]
    i = 35 + sid_len
    suite = struct.unpack(">H", body[i:i + 2])[0]
    i += 3  # suite, compression
    exts = parse_extensions(body[i + 2:i + 2 + struct.unpack(">H", body[i:i + 2])[0]]) \
        if i + 2 <= len(body) else {}
    return rnd, sid, suite, exts


class Alert(Exception):
    def __init__(self, level, desc):
        super().__init__(f"alert {ALERT_NAMES.get(desc, desc)} (level {level})")
        self.level = level
        self.desc = desc
        self.name = ALERT_NAMES.get(desc, str(desc))


class Eof(Exception):
    pass


class Conn:
    """Records over a plain socket, each read bounded by the timeout."""

    def __init__(self, addr, timeout=None):
        self.sock = socket.create_connection(addr, timeout=timeout or T(10))
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        """Sends what the server takes: one that closed the connection
        midway is seen by the next read_record (its alert, then Eof)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def read_record(self):
        """(type, payload); Eof at the end of the stream (or a reset)."""
        while True:
            if len(self.buf) >= 5:
                n = struct.unpack(">H", self.buf[3:5])[0]
                if len(self.buf) >= 5 + n:
                    rec = (self.buf[0], self.buf[5:5 + n])
                    self.buf = self.buf[5 + n:]
                    return rec
            try:
                b = self.sock.recv(65536)
            except ConnectionResetError:
                b = b""
            if not b:
                raise Eof("the server closed the connection")
            self.buf += b


def _prf(secret, label, seed, n):
    """TLS 1.2 PRF with SHA-256 (RFC 5246 §5)."""
    seed = label + seed
    out, a = b"", seed
    while len(out) < n:
        a = hmac.new(secret, a, hashlib.sha256).digest()
        out += hmac.new(secret, a + seed, hashlib.sha256).digest()
    return out[:n]


class Tls12:
    """One TLS 1.2 connection driven by hand (see the module's doc).

    handshake() returns True when the handshake completed, False when the
    server refused it (self.alert holds the alert's name, or "eof"). The
    facts of the server's flight stay: server_cert (x509), cert_request,
    server_name_acked (the ServerHello echoed server_name)."""

    def __init__(self, addr, sni=None, cert=None, extra=(), timeout=None, alpn=None,
                 hello_record=16384):
        self.conn = Conn(addr, timeout)
        self.sni, self.cert, self.extra, self.alpn = sni, cert, extra, alpn
        self.hello_record = hello_record  # the ClientHello in records this long
        self.transcript = b""
        self.hs_buf = b""
        self.server_cert = None
        self.cert_request = False
        self.ca_names = []  # the CertificateRequest's CA names (DER)
        self.server_name_acked = False
        self.alert = None
        self.enc = None  # (key, salt) of each direction once keys are on
        self.dec = None
        self.seq_out = self.seq_in = 0
        self.app_buf = b""
        self.client_verify_data = b""
        self.server_verify_data = b""

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # -- records --
    def _send(self, ctype, payload):
        if self.enc is not None:
            key, salt = self.enc
            explicit = struct.pack(">Q", self.seq_out)
            aad = explicit + u8(ctype) + u16(0x0303) + u16(len(payload))
            payload = explicit + AESGCM(key).encrypt(salt + explicit, payload, aad)
            self.seq_out += 1
        self.conn.send(record(ctype, payload, 0x0303))

    def _recv(self):
        """(type, plaintext); raises Alert for an alert (a warning one too)."""
        ctype, payload = self.conn.read_record()
        if self.dec is not None and ctype != CCS:
            key, salt = self.dec
            explicit, body = payload[:8], payload[8:]
            aad = struct.pack(">Q", self.seq_in) + u8(ctype) + u16(0x0303) + u16(len(body) - 16)
            payload = AESGCM(key).decrypt(salt + explicit, body, aad)
            self.seq_in += 1
        if ctype == ALERT:
            raise Alert(payload[0], payload[1])
        return ctype, payload

    def _hs_message(self):
        """The next handshake message (type, body, raw bytes)."""
        while True:
            if len(self.hs_buf) >= 4:
                n = struct.unpack(">I", b"\x00" + self.hs_buf[1:4])[0]
                if len(self.hs_buf) >= 4 + n:
                    raw = self.hs_buf[:4 + n]
                    self.hs_buf = self.hs_buf[4 + n:]
                    return raw[0], raw[4:], raw
            ctype, payload = self._recv()
            if ctype != HANDSHAKE:
                raise AssertionError(f"record type {ctype} where a handshake message was due")
            self.hs_buf += payload

    def _send_hs(self, raw):
        self.transcript += raw
        self._send(HANDSHAKE, raw)

    # -- handshake --
    def handshake(self):
        try:
            return self._handshake()
        except Alert as a:
            self.alert = a.name
            return False
        except Eof:
            self.alert = "eof"
            return False

    def _handshake(self):
        crandom = os.urandom(32)
        ch = client_hello(tls13=False, sni=self.sni, random=crandom, extra=self.extra,
                          alpn=self.alpn)
        self.transcript += ch
        for i in range(0, len(ch), self.hello_record):
            self.conn.send(record(HANDSHAKE, ch[i:i + self.hello_record], 0x0301))
        srandom, server_pub, skx = None, None, None
        while True:
            mtype, body, raw = self._hs_message()
            self.transcript += raw
            if mtype == SERVER_HELLO:
                srandom, _, suite, exts = parse_server_hello(body)
                assert suite in TLS12_SUITES, hex(suite)
                self.server_name_acked = EXT_SERVER_NAME in exts
            elif mtype == CERTIFICATE:
                certs = body[3:]
                n = struct.unpack(">I", b"\x00" + certs[:3])[0]
                self.server_cert = x509.load_der_x509_certificate(certs[3:3 + n])
            elif mtype == SERVER_KEY_EXCHANGE:
                skx = body
                assert body[0] == 3, body[:3]
                server_group = struct.unpack(">H", body[1:3])[0]
                server_pub = body[4:4 + body[3]]
            elif mtype == CERTIFICATE_REQUEST:
                self.cert_request = True
                i = 1 + body[0]
                i += 2 + struct.unpack(">H", body[i:i + 2])[0]
                end = i + 2 + struct.unpack(">H", body[i:i + 2])[0]
                i += 2
                while i + 2 <= end:
                    n = struct.unpack(">H", body[i:i + 2])[0]
                    self.ca_names.append(body[i + 2:i + 2 + n])
                    i += 2 + n
            elif mtype == SERVER_HELLO_DONE:
                break
            else:
                raise AssertionError(f"unexpected handshake message {mtype}")
        assert srandom is not None and skx is not None
        if self.cert_request:
            chain = []
            if self.cert is not None:
                chain = [c.public_bytes(serialization.Encoding.DER)
                         for c in tg_certs.load_certs(self.cert[0])]
            self._send_hs(handshake_msg(CERTIFICATE, vec24(b"".join(vec24(c) for c in chain))))
        priv, pub = _keypair(server_group)
        self._send_hs(handshake_msg(CLIENT_KEY_EXCHANGE, vec8(pub)))
        if self.cert_request and self.cert is not None:
            key = serialization.load_pem_private_key(open(self.cert[1], "rb").read(), None)
            sig = key.sign(self.transcript, ec.ECDSA(hashes.SHA256()))
            self._send_hs(handshake_msg(CERTIFICATE_VERIFY, u16(0x0403) + vec16(sig)))
        pms = _exchange(server_group, priv, server_pub)
        ms = _prf(pms, b"master secret", crandom + srandom, 48)
        kb = _prf(ms, b"key expansion", srandom + crandom, 40)
        self._send(CCS, b"\x01")
        self.enc = (kb[0:16], kb[32:36])
        vd = _prf(ms, b"client finished", hashlib.sha256(self.transcript).digest(), 12)
        self.client_verify_data = vd
        self._send_hs(handshake_msg(FINISHED, vd))
        while True:
            ctype, payload = self._recv()
            if ctype == CCS:
                self.dec = (kb[16:32], kb[36:40])
                break
            if ctype == HANDSHAKE:  # a NewSessionTicket before the CCS
                self.hs_buf += payload
                while len(self.hs_buf) >= 4:
                    n = struct.unpack(">I", b"\x00" + self.hs_buf[1:4])[0]
                    if len(self.hs_buf) < 4 + n:
                        break
                    self.transcript += self.hs_buf[:4 + n]
                    self.hs_buf = self.hs_buf[4 + n:]
        want = _prf(ms, b"server finished", hashlib.sha256(self.transcript).digest(), 12)
        mtype, body, raw = self._hs_message()
        assert mtype == FINISHED and body == want, "the server's Finished does not verify"
        self.server_verify_data = body
        return True

    # -- application data --
    def send(self, data):
        for i in range(0, len(data), 16384):
            self._send(APPDATA, data[i:i + 16384])

    def send_handshake(self, raw):
        """A handshake message after the handshake (a renegotiation)."""
        self._send(HANDSHAKE, raw)

    def recv(self):
        """Application bytes; b"" at the end (close_notify or EOF). Raises
        Alert for any other alert, a warning one included."""
        while True:
            try:
                ctype, payload = self._recv()
            except Eof:
                return b""
            except Alert as a:
                if a.desc == 0:
                    return b""
                raise
            if ctype == APPDATA:
                return payload

    def http_status(self, host, path="/", extra=""):
        """Sends one request (Connection: close) and returns its status, or
        None when the connection ended without a response."""
        self.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
                  .encode("latin-1"))
        data = b""
        while b"\r\n" not in data:
            b = self.recv()
            if not b:
                break
            data += b
        if not data.startswith(b"HTTP/1.1 "):
            return None
        return int(data.split(b" ", 2)[1])


def san_names(cert):
    """The DNS names of a certificate's subjectAltName."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return sans.get_values_for_type(x509.DNSName)


_CURVES = {SECP256R1: ec.SECP256R1, SECP384R1: ec.SECP384R1, SECP521R1: ec.SECP521R1}


def _keypair(group):
    """(private key, public bytes as TLS carries them) for a group."""
    if group == X25519:
        k = x25519.X25519PrivateKey.generate()
        return k, k.public_key().public_bytes(serialization.Encoding.Raw,
                                              serialization.PublicFormat.Raw)
    k = ec.generate_private_key(_CURVES[group]())
    return k, k.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.UncompressedPoint)


def _exchange(group, priv, peer):
    if group == X25519:
        return priv.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
    return priv.exchange(ec.ECDH(),
                         ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[group](), peer))


def _share(group):
    return _keypair(group)[1]


def _first_answer(conn):
    """The server's answer to a TLS 1.3 ClientHello: ("hello", body) for a
    ServerHello, ("alert", name), or ("eof", None). ChangeCipherSpec
    records (middlebox compatibility) are skipped."""
    buf = b""
    try:
        while True:
            ctype, payload = conn.read_record()
            if ctype == CCS:
                continue
            if ctype == ALERT:
                return "alert", ALERT_NAMES.get(payload[1], str(payload[1]))
            if ctype != HANDSHAKE:
                return "other", ctype
            buf += payload
            if len(buf) >= 4:
                n = struct.unpack(">I", b"\x00" + buf[1:4])[0]
                if len(buf) >= 4 + n:
                    assert buf[0] == SERVER_HELLO, buf[0]
                    return "hello", buf[4:4 + n]
    except Eof:
        return "eof", None


def hello13_probe(addr, sni1, sni2, groups=(X25519, SECP256R1), timeout=None):
    """A TLS 1.3 ClientHello with sni1 and no key share (the server must
    answer HelloRetryRequest), then a second one with sni2 and a share of
    the group the server asked for. sni as client_hello takes it.
    Returns (first, second): first is "hrr" (or what came instead), second
    the answer to the second hello: "server_hello", or "alert:<name>",
    or "eof"."""
    conn = Conn(addr, timeout)
    try:
        rnd, sid = os.urandom(32), os.urandom(32)
        ch1 = client_hello(tls13=True, sni=sni1, random=rnd, session_id=sid, groups=groups,
                           key_shares=[])
        conn.send(record(HANDSHAKE, ch1))
        kind, body = _first_answer(conn)
        if kind != "hello":
            return f"{kind}:{body}", None
        srandom, _, suite, exts = parse_server_hello(body)
        if srandom != HRR_RANDOM:
            return "server_hello", None
        group = struct.unpack(">H", exts[EXT_KEY_SHARE][:2])[0]
        cookie = exts.get(EXT_COOKIE)
        ch2 = client_hello(tls13=True, sni=sni2, random=rnd, session_id=sid, groups=groups,
                           key_shares=[(group, _share(group))],
                           cookie=cookie[2:] if cookie else None)
        conn.send(record(CCS, b"\x01", 0x0303) + record(HANDSHAKE, ch2, 0x0303))
        kind, body = _first_answer(conn)
        if kind == "hello":
            srandom, _, _, _ = parse_server_hello(body)
            return "hrr", "hrr_again" if srandom == HRR_RANDOM else "server_hello"
        return "hrr", kind if body is None else f"{kind}:{body}"
    finally:
        conn.close()


def hello13_answer(addr, sni, timeout=None):
    """One TLS 1.3 ClientHello (with an X25519 share) with this server_name
    (as client_hello takes it); the server's answer as hello13_probe
    reports the second one."""
    conn = Conn(addr, timeout)
    try:
        ch = client_hello(tls13=True, sni=sni, session_id=os.urandom(32),
                          key_shares=[(X25519, _share(X25519))])
        conn.send(record(HANDSHAKE, ch))
        kind, body = _first_answer(conn)
        if kind == "hello":
            return "server_hello"
        return kind if body is None else f"{kind}:{body}"
    finally:
        conn.close()
