"""HTTP/2 in /metrics and /status: requests, connections, streams and the
share of HTTP/2 per https listener, and its twin, a listener that does not
offer h2."""

import json
import subprocess

from test_admin import admin_get, metric, parse_metrics
from tg_http import hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T, free_port, wait_for


def curl(tg, pki, paths, http):
    port = tg.addr()[1]
    urls = [f"https://localhost:{port}{p}" for p in paths]
    r = subprocess.run(["curl", "-sS", http, "--cacert", pki.path("root.crt"),
                        "--resolve", f"localhost:{port}:127.0.0.1",
                        "-w", "%{http_version} %{response_code}\\n", "-o", "/dev/null",
                        *sum((["-o", "/dev/null", u] for u in urls[1:]), [urls[0]])],
                       capture_output=True, text=True, timeout=T(30))
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def settled_scrape(port):
    def quiet():
        _, _, body = admin_get(port, "/metrics")
        s = parse_metrics(body.decode())[0]
        if metric(s, "tollgate_connections_active", listener="main") == 0:
            return s
        return None
    return wait_for(quiet, T(10), what="connections closed")


def status_of(port):
    _, _, body = admin_get(port, "/status")
    return {ls["name"]: ls for ls in json.loads(body)["listeners"]}["main"]


def test_h2_requests_counted_and_shared(hserve, pki):
    """Three requests over one h2 connection and one over HTTP/1.1: the h2
    counters say 3 requests and 1 connection of 4 requests, the gauge is
    back to 0, every error reason is present at 0, and /status gives the
    share."""
    port = free_port()
    tg, be = hserve(admin={"listen": f"127.0.0.1:{port}"})
    assert curl(tg, pki, ["/a", "/b", "/c"], "--http2") == ["2", "200"] * 3
    assert curl(tg, pki, ["/d"], "--http1.1") == ["1.1", "200"]
    tg.wait_access(lambda r: True, count=4)
    s = settled_scrape(port)
    assert metric(s, "tollgate_h2_requests_total", listener="main") == 3
    assert metric(s, "tollgate_h2_connections_total", listener="main") == 1
    assert metric(s, "tollgate_h2_streams_active", listener="main") == 0
    assert metric(s, "tollgate_requests_total", listener="main", code="200") == 4
    for reason in ("h2_protocol_error", "h2_flood", "h2_error"):
        assert metric(s, "tollgate_h2_connection_errors_total", listener="main",
                      reason=reason) == 0
    h2 = status_of(port)["http2"]
    assert h2["offered"] is True and h2["requests"] == 3 and h2["connections"] == 1
    assert h2["request_share"] == 0.75
    assert 0 < h2["connection_share"] <= 0.5  # readiness probes count as connections


def test_listener_without_h2_twin(hserve, pki):
    """Twin: alpn [http/1.1]: curl asking for h2 speaks HTTP/1.1, nothing is
    counted as h2 and /status says h2 is not offered."""
    port = free_port()
    tg, be = hserve(https_listener(alpn=["http/1.1"]), admin={"listen": f"127.0.0.1:{port}"})
    assert curl(tg, pki, ["/a", "/b"], "--http2") == ["1.1", "200"] * 2
    tg.wait_access(lambda r: True, count=2)
    s = settled_scrape(port)
    assert metric(s, "tollgate_h2_requests_total", listener="main") == 0
    assert metric(s, "tollgate_h2_connections_total", listener="main") == 0
    assert metric(s, "tollgate_requests_total", listener="main", code="200") == 2
    h2 = status_of(port)["http2"]
    assert h2 == {"offered": False, "connections": 0, "requests": 0, "streams_active": 0,
                  "request_share": 0.0, "connection_share": 0.0}
