"""A small, strict PROXY protocol parser (haproxy's proxy-protocol.txt), for
checking what tollgate sends to a backend. Written independently of the C
encoder on purpose."""

import ipaddress
import struct
from dataclasses import dataclass, field

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"

PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_SUBTYPE_SSL_CIPHER = 0x23
PP2_SUBTYPE_SSL_SIG_ALG = 0x24
PP2_SUBTYPE_SSL_KEY_ALG = 0x25
PP2_TYPE_CLIENT_CERT = 0xE0

PP2_CLIENT_SSL = 0x01
PP2_CLIENT_CERT_CONN = 0x02
PP2_CLIENT_CERT_SESS = 0x04


class ProxyError(ValueError):
    pass


@dataclass
class ProxyHeader:
    version: int
    command: str = "PROXY"        # PROXY | LOCAL
    family: str = "UNSPEC"        # TCP4 | TCP6 | UNSPEC ...
    src: tuple = None             # (ip, port)
    dst: tuple = None
    tlvs: list = field(default_factory=list)   # [(type, bytes)] in wire order
    ssl: dict = None              # {"client": int, "verify": int, "sub": [(type, bytes)]}
    raw: bytes = b""

    def tlv(self, t):
        vals = [v for k, v in self.tlvs if k == t]
        if len(vals) > 1:
            raise ProxyError(f"TLV 0x{t:02x} appears {len(vals)} times")
        return vals[0] if vals else None

    def ssl_sub(self, t):
        if self.ssl is None:
            return None
        vals = [v for k, v in self.ssl["sub"] if k == t]
        return vals[0] if vals else None


def _tlvs(data):
    out = []
    i = 0
    while i < len(data):
        if len(data) - i < 3:
            raise ProxyError(f"truncated TLV header at offset {i}")
        t = data[i]
        n = struct.unpack(">H", data[i + 1:i + 3])[0]
        if i + 3 + n > len(data):
            raise ProxyError(f"TLV 0x{t:02x} claims {n} bytes, only {len(data) - i - 3} left")
        out.append((t, data[i + 3:i + 3 + n]))
        i += 3 + n
    return out


def needed(buf):
    """How many bytes the header at the start of buf takes: an int when
    known, None when more bytes are needed, or raises ProxyError."""
    if len(buf) >= 1 and not (V2_SIG.startswith(buf[:12]) or b"PROXY ".startswith(buf[:6])):
        raise ProxyError(f"no PROXY header; stream starts with {bytes(buf[:16])!r}")
    if buf[:12] == V2_SIG:
        if len(buf) < 16:
            return None
        return 16 + struct.unpack(">H", buf[14:16])[0]
    if buf[:6] == b"PROXY ":
        i = buf.find(b"\r\n")
        if i < 0:
            if len(buf) > 107:
                raise ProxyError("v1 line longer than 107 bytes")
            return None
        if i + 2 > 107:
            raise ProxyError("v1 line longer than 107 bytes")
        return i + 2
    return None


def parse(buf):
    """Parses one complete header (v1 or v2). Returns a ProxyHeader."""
    buf = bytes(buf)
    if buf.startswith(b"PROXY "):
        return parse_v1(buf)
    return parse_v2(buf)


def parse_v1(buf):
    if not buf.endswith(b"\r\n"):
        raise ProxyError("v1 line does not end with CRLF")
    parts = buf[:-2].decode("ascii").split(" ")
    if parts[0] != "PROXY":
        raise ProxyError("v1 line does not start with PROXY")
    if parts[1:] == ["UNKNOWN"] or (len(parts) > 1 and parts[1] == "UNKNOWN"):
        return ProxyHeader(version=1, family="UNKNOWN", raw=buf)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyError(f"malformed v1 line {buf!r}")
    fam = parts[1]
    src, dst = ipaddress.ip_address(parts[2]), ipaddress.ip_address(parts[3])
    if (fam == "TCP4") != (src.version == 4) or src.version != dst.version:
        raise ProxyError(f"v1 family {fam} does not match addresses {parts[2]} {parts[3]}")
    for p in parts[4:6]:
        if not p.isdigit() or (len(p) > 1 and p[0] == "0") or int(p) > 65535:
            raise ProxyError(f"bad v1 port {p!r}")
    return ProxyHeader(version=1, family=fam, src=(parts[2], int(parts[4])),
                       dst=(parts[3], int(parts[5])), raw=buf)


def parse_v2(buf):
    if len(buf) < 16 or buf[:12] != V2_SIG:
        raise ProxyError("no v2 signature")
    ver_cmd, fam = buf[12], buf[13]
    length = struct.unpack(">H", buf[14:16])[0]
    if len(buf) != 16 + length:
        raise ProxyError(f"v2 length field {length} but {len(buf) - 16} bytes follow")
    if ver_cmd >> 4 != 2:
        raise ProxyError(f"v2 version nibble is {ver_cmd >> 4}")
    cmd = {0: "LOCAL", 1: "PROXY"}.get(ver_cmd & 0xF)
    if cmd is None:
        raise ProxyError(f"v2 command {ver_cmd & 0xF}")
    body = buf[16:]
    h = ProxyHeader(version=2, command=cmd, raw=buf)
    if fam == 0x11:
        if len(body) < 12:
            raise ProxyError("TCP4 body shorter than 12 bytes")
        h.family = "TCP4"
        s, d = ipaddress.IPv4Address(body[0:4]), ipaddress.IPv4Address(body[4:8])
        sp, dp = struct.unpack(">HH", body[8:12])
        rest = body[12:]
    elif fam == 0x21:
        if len(body) < 36:
            raise ProxyError("TCP6 body shorter than 36 bytes")
        h.family = "TCP6"
        s, d = ipaddress.IPv6Address(body[0:16]), ipaddress.IPv6Address(body[16:32])
        sp, dp = struct.unpack(">HH", body[32:36])
        rest = body[36:]
    elif fam == 0x00:
        h.family = "UNSPEC"
        s = d = None
        rest = body
    else:
        raise ProxyError(f"unexpected v2 family byte 0x{fam:02x}")
    if s is not None:
        h.src, h.dst = (str(s), sp), (str(d), dp)
    h.tlvs = _tlvs(rest)
    ssl = h.tlv(PP2_TYPE_SSL)
    if ssl is not None:
        if len(ssl) < 5:
            raise ProxyError("SSL TLV shorter than 5 bytes")
        h.ssl = {"client": ssl[0], "verify": struct.unpack(">I", ssl[1:5])[0],
                 "sub": _tlvs(ssl[5:])}
    return h
