"""Peer-chosen bytes in the logs: an SNI, a client certificate subject, a
request path or header, an admin request. Every event-log line must stay one
line of `ts level pid=N key=value...` with the peer's value in one field, and
every access-log line must stay valid UTF-8 JSON."""

import json
import re
import socket
import subprocess

import pytest

import tg_certs
import tg_tls
from tg_proc import AUTO, T, free_port, listener

# One event line: the prefix log_msg writes, then key=value fields whose value
# is bare (no space, quote, backslash or '=') or quoted with \" \\ \xNN.
_LINE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug) pid=\d+'
                   r'((?: \w+=(?:"(?:[^"\\\x00-\x1f\x7f-\xff]|\\["\\]|\\x[0-9a-f]{2})*"'
                   r'|[^\s"\\=\x00-\x1f\x7f-\xff]*))+)$')
_FIELD = re.compile(r' (\w+)=("(?:[^"\\]|\\["\\]|\\x[0-9a-f]{2})*"|[^\s"\\=]*)')
_ESC = re.compile(rb'\\(["\\])|\\x([0-9a-f]{2})')

FORGED = b"2026-01-01T00:00:00.000Z warn pid=1 event=forged"


def _unescape(v):
    """The bytes a field value stands for."""
    if not v.startswith('"'):
        return v.encode()
    return _ESC.sub(lambda m: m.group(1) or bytes([int(m.group(2), 16)]), v[1:-1].encode())


def strict_events(tg):
    """Every line of the event log, parsed strictly; fails on any line that
    is not one well-formed event. Returns a list of {key: bytes}."""
    raw = tg.stderr_path.read_bytes()
    out = []
    for line in raw.split(b"\n")[:-1]:
        text = line.decode("ascii", errors="strict") if all(b < 0x80 for b in line) else None
        assert text is not None, f"a raw byte from 0x80 up in the event log: {line!r}"
        m = _LINE.match(text)
        assert m, f"not one well-formed event line: {line!r}"
        fields = {}
        for k, v in _FIELD.findall(m.group(2)):
            assert k not in fields or k == "event", f"field {k} twice in {line!r}"
            fields[k] = _unescape(v)
        out.append(fields)
    assert out, "empty event log"
    assert not [e for e in out if e.get("event") == b"forged"], "a forged event line"
    return out


def strict_access(tg):
    """Every access-log line: valid UTF-8 and one JSON object."""
    try:
        raw = tg.access_path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in raw.split(b"\n")[:-1]:
        out.append(json.loads(line.decode("utf-8", errors="strict")))
    return out


def _s_client(addr, pki, servername, cert=None):
    cmd = [b"openssl", b"s_client", b"-connect", f"{addr[0]}:{addr[1]}".encode(),
           b"-servername", servername, b"-CAfile", pki.path("root.crt").encode(), b"-brief"]
    if cert is not None:
        cmd += [b"-cert", cert[0].encode(), b"-key", cert[1].encode()]
    return subprocess.run(cmd, input=b"", capture_output=True, timeout=T(20))


def test_sni_with_line_break_stays_in_its_field(serve, pki):
    """openssl s_client sends the name as given: a line break, a forged
    event line, a quote and a byte that is not UTF-8."""
    sni = b"evil.example\n" + FORGED + b' "q" \\ \xff'
    tg, _ = serve(listener(name="m", mode="mutual"), listener(name="o"))
    _s_client(tg.addr("m"), pki, sni)  # no client certificate: refused
    tg.wait_rejection()
    rej = [e for e in strict_events(tg) if e.get("event") == b"tls_handshake_failed"]
    assert len(rej) == 1 and rej[0]["sni"] == sni, rej
    assert rej[0]["reason"] == b"no_client_cert"
    # Accepted on a one-way listener: the name goes into the access log.
    _s_client(tg.addr("o"), pki, sni)
    recs = tg.wait_access(lambda r: r.get("listener") == "o" and r.get("sni"))
    assert recs[0]["sni"] == sni.decode("utf-8", errors="replace")
    assert [r for r in strict_access(tg) if r.get("sni")] == recs
    # Twin: an ordinary name is written bare.
    _s_client(tg.addr("m"), pki, b"plain.example")
    tg.wait_event("tls_handshake_failed", sni="plain.example")
    assert re.search(r" sni=plain\.example ", tg.log())
    strict_events(tg)


@pytest.fixture(scope="module")
def odd_certs(tmp_path_factory, pki):
    """Client certificates whose subject holds a line break, U+2028, a quote
    and a forged event line: one signed by our CA, one self-signed."""
    d = tmp_path_factory.mktemp("oddcerts")
    from cryptography.hazmat.primitives import serialization
    inter = tg_certs.load_cert(pki.path("intermediate.crt"))
    inter_key = serialization.load_pem_private_key(
        open(pki.path("intermediate.key"), "rb").read(), password=None)
    # U+2028 LINE SEPARATOR: a line break to some log viewers.
    cn = "mallory\n" + FORGED.decode() + ' "q" \\ \u2028'
    signed = tg_certs.make_cert(d, "odd-signed", issuer_cert=inter, issuer_key=inter_key,
                                chain=(inter,), cn=cn)
    selfsigned = tg_certs.make_cert(d, "odd-self", cn=cn)
    return {"cn": cn, "signed": signed, "self": selfsigned}


def test_certificate_subject_with_line_break(serve, pki, odd_certs):
    tg, _ = serve(listener(name="m", mode="mutual"))
    # Refused (unknown CA): the subject goes into the rejection line.
    ctx = tg_tls.client_ctx(pki, cert=odd_certs["self"])
    with pytest.raises((OSError, ConnectionError)):
        tg_tls.roundtrip(tg.addr("m"), ctx)
    tg.wait_rejection()
    rej = [e for e in strict_events(tg) if e.get("event") == b"tls_handshake_failed"
           and b"mallory" in e.get("subject", b"")]
    assert len(rej) == 1, rej
    # One field holds the whole subject, forged text and all.
    assert rej[0]["subject"].startswith(b"CN=mallory") and b"event=forged" in rej[0]["subject"]
    assert rej[0]["reason"] == b"self_signed"
    # Accepted (our CA): the subject goes into the access log as JSON.
    got, _ = tg_tls.roundtrip(tg.addr("m"), tg_tls.client_ctx(pki, cert=odd_certs["signed"]))
    assert got
    tg.wait_access(lambda r: "mallory" in r.get("client_subject", ""))
    recs = [r for r in strict_access(tg) if "mallory" in r.get("client_subject", "")]
    assert len(recs) == 1
    strict_events(tg)


def _https_raw(tg, pki, data):
    """Sends data over TLS to the https listener; returns what came back."""
    ctx = tg_tls.client_ctx(pki)
    with socket.create_connection(tg.addr("web"), timeout=T(10)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(data)
            out = b""
            while True:
                try:
                    b = s.recv(65536)
                except (OSError, ConnectionError):
                    return out
                if not b:
                    return out
                out += b


def test_request_path_and_headers_with_odd_bytes(tollgate, pki, tmp_path):
    cfg = {
        "log": {"level": "debug", "access": str(tmp_path / "tg" / "tg.access.log")},
        "target_groups": {"echo": {"targets": [{"address": "builtin:echo"}]}},
        "listeners": [{"name": "web", "protocol": "https", "listen": AUTO,
                       "tls": {"mode": "one-way", "certificates": ["ecdsa"]},
                       "default_target_group": "echo"}],
    }
    admin_port = free_port()
    cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    tg = tollgate(cfg)
    # Control bytes and a line break are refused by the parser: the refusal
    # is one well-formed line.
    for req in (b"GET /a\x01b HTTP/1.1\r\nHost: localhost\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\x01\x7fb\r\n\r\n",
                b"GET /a\r\n" + FORGED + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"):
        assert _https_raw(tg, pki, req).startswith(b"HTTP/1.1 400 "), req
    # What the parser lets through (a quote and a backslash in the path,
    # obs-text in a header) goes to the access log as valid JSON.
    resp = _https_raw(tg, pki, b'GET /p"q\\%ff HTTP/1.1\r\nHost: localhost\r\n'
                               b"User-Agent: ua\xff\x80\r\nConnection: close\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200 "), resp[:200]
    recs = tg.wait_access(lambda r: str(r.get("path", "")).startswith("/p"))
    assert recs[0]["path"] == '/p"q\\%ff'
    assert [r for r in strict_access(tg) if str(r.get("path", "")).startswith("/p")] == recs
    # The admin endpoint logs the method and path it was asked for (debug).
    with socket.create_connection(("127.0.0.1", admin_port), timeout=T(10)) as s:
        s.sendall(b'GET /x"y=z\\w HTTP/1.1\r\nHost: localhost\r\n\r\n')
        assert s.recv(100).startswith(b"HTTP/1.1 404 ")
    tg.wait_event("admin_request")
    evs = [e for e in strict_events(tg) if e.get("event") == b"admin_request"]
    assert [e["path"] for e in evs] == [b'/x"y=z\\w'] and evs[0]["method"] == b"GET"
