"""Clients of the per-SNI site tests: a TLS client context for the test PKI
and one HTTP/1.1 request over a chosen SNI, Host and session."""

import socket
import ssl
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

import tg_certs
from tg_proc import T

# The server names of the test sites, and the certificate (config name)
# that covers each.
SITE_CERTS = (("mtls", ["mtls.test"]), ("api", ["api.test", "*.api.test"]),
              ("other", ["other.test"]), ("opt", ["opt.test"]),
              ("partner", ["partner.test"]))


def mint_site_certs(pki, d):
    """Server certificates for the site names, signed by the PKI's
    intermediate (chain included) into directory d, as config fragments."""
    inter = tg_certs.load_cert(pki.path("intermediate.crt"))
    inter_key = serialization.load_pem_private_key(
        Path(pki.path("intermediate.key")).read_bytes(), password=None)
    out = {}
    for name, sans in SITE_CERTS:
        crt, key = tg_certs.make_cert(d, name, issuer_cert=inter, issuer_key=inter_key,
                                      chain=(inter,), eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
                                      sans=sans)
        out[name] = {"cert": crt, "key": key}
    return out


def site_top(pki, certs, foreign_pki=None):
    """The certificates (the PKI's and the sites') and client CAs (the
    PKI's, and "foreign" for foreign_pki) of a config."""
    c = dict(pki.certificates())
    c.update(certs)
    cas = dict(pki.client_cas())
    if foreign_pki is not None:
        cas["foreign"] = {"ca": foreign_pki.path("root.crt")}
    return {"certificates": c, "client_cas": cas}


def ctx_for(pki, cert=None, version=None, verify=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.path("root.crt"))
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(cert[0], cert[1])
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def https_get(addr, ctx, sni, host, path="/", session=None, head=None):
    """(status, session_reused, session) of one HTTP/1.1 request; status
    None when the handshake or the request failed. head: the request's
    head as sent (Host and Connection lines then come from it)."""
    raw_sock = socket.create_connection(addr, timeout=T(10))
    try:
        s = ctx.wrap_socket(raw_sock, server_hostname=sni, session=session)
    except (ssl.SSLError, OSError):
        raw_sock.close()
        return None, False, None
    with s:
        try:
            if head is None:
                head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            s.sendall(head.encode("latin-1") if isinstance(head, str) else head)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ssl.SSLError, OSError):
            return None, s.session_reused, s.session
        if not data.startswith(b"HTTP/1.1 "):
            return None, s.session_reused, s.session
        return int(data.split(b" ", 2)[1]), s.session_reused, s.session
