"""The admin status page (GET / and /ui) in a real browser: headless
Chromium driven over the DevTools protocol on a pipe (stdlib only). The page
loads, shows a refused client (reason and subject, peer text as text), a
target turning down, certificates; with admin.token_file it asks for the
token and works once given it. Plus the page's headers and the guard."""

import base64
import functools
import http.client
import json
import os
import queue
import shutil
import subprocess
import threading
import time

import pytest

import tg_tls
from tg_proc import T, free_port, listener, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "page-Token_0123456789abcdef"
# Peer-controlled text that would become elements if the page parsed it as HTML.
HOSTILE_CN = '<script id="pwned1">document.title="pwned"</script>'
HOSTILE_O = '<img id="pwned2" src="x">'



def needs_chromium(test):
    """scripts/setup.sh installs chromium for `make test`: without it the
    browser tests fail, so that they are never silently left out."""
    @functools.wraps(test)
    def run(*a, **kw):
        assert CHROMIUM is not None, "chromium is not installed: run scripts/setup.sh test"
        return test(*a, **kw)
    return run


# ---- a DevTools client over --remote-debugging-pipe -------------------------------------

class Browser:
    """Headless Chromium with one page; commands go to fd 3, answers and
    events come back on fd 4, each a JSON text ended by a NUL byte."""

    def __init__(self, workdir):
        self.events = []
        self.answers = queue.Queue()
        self.next_id = 0
        cmd_r, self.cmd_w = os.pipe()
        self.ans_r, ans_w = os.pipe()
        argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--remote-debugging-pipe", f"--user-data-dir={workdir / 'chromium-profile'}",
                "--disable-background-networking", "--disable-extensions", "--disable-sync",
                "--window-size=1280,1600", "about:blank"]
        # posix_spawn runs no Python in the child; the pipe ends land on the
        # fds the protocol names (dup2 leaves them inheritable), every other
        # fd of ours is close-on-exec.
        self.pid = os.posix_spawn(CHROMIUM, argv, os.environ, setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, str(workdir / "chromium.stderr"),
             os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_DUP2, cmd_r, 3),
            (os.POSIX_SPAWN_DUP2, ans_w, 4),
        ])
        os.close(cmd_r)
        os.close(ans_w)
        threading.Thread(target=self._read, daemon=True).start()
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"],
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.ans_r, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                m = json.loads(msg)
                if "id" in m:
                    self.answers.put(m)
                else:
                    self.events.append(m)

    def call(self, method, session=False, timeout=None, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or T(20))
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"chromium did not answer {method}"
            m = self.answers.get(timeout=left)
            if m["id"] == self.next_id:
                assert "error" not in m, f"{method}: {m['error']}"
                return m["result"]

    def navigate(self, url):
        self.call("Page.navigate", session=True, url=url)

    def js(self, expr):
        r = self.call("Runtime.evaluate", session=True, expression=expr, returnByValue=True)
        assert "exceptionDetails" not in r, f"{expr}: {r['exceptionDetails']}"
        return r["result"].get("value")

    def wait_js(self, expr, what, timeout=None):
        """Polls expr until it is truthy (an exception, such as no body yet
        while the page loads, counts as not yet)."""
        def probe():
            r = self.call("Runtime.evaluate", session=True, expression=expr, returnByValue=True)
            return None if "exceptionDetails" in r else r["result"].get("value")
        return wait_for(probe, T(timeout or 15), interval=0.1, what=what)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", session=True, format="png",
                         captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def console_problems(self):
        """Console errors and CSP violations the page reported."""
        out = []
        for e in self.events:
            if e.get("method") == "Log.entryAdded":
                entry = e["params"]["entry"]
                if entry["level"] == "error" or "Content Security Policy" in entry.get("text", ""):
                    out.append(entry.get("text"))
            if e.get("method") == "Runtime.exceptionThrown":
                out.append(json.dumps(e["params"]["exceptionDetails"])[:300])
        return out

    def request_headers(self, path):
        """The headers Chromium put on the wire for requests to path."""
        ids = {e["params"]["requestId"] for e in self.events
               if e.get("method") == "Network.requestWillBeSent"
               and e["params"]["request"]["url"].endswith(path)}
        return [{k.lower(): v for k, v in e["params"]["headers"].items()} for e in self.events
                if e.get("method") == "Network.requestWillBeSentExtraInfo"
                and e["params"]["requestId"] in ids]

    def close(self):
        try:
            self.call("Browser.close", timeout=T(5))
        except (AssertionError, queue.Empty, OSError):
            pass
        deadline = time.monotonic() + T(10)
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.killpg(self.pid, 9)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.05)
        os.close(self.cmd_w)
        os.close(self.ans_r)


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path)
    yield b
    b.close()


# ---- tollgate with a mutual listener, a checked group and an admin endpoint --------------

def ui_config(admin_port, a, b, token_file=None):
    admin = {"listen": f"127.0.0.1:{admin_port}"}
    if token_file is not None:
        admin["token_file"] = str(token_file)
    return {
        "admin": admin,
        "target_groups": {"g": {"targets": [{"address": a.address}, {"address": b.address}],
                                "health_check": {"type": "tcp", "interval": "300ms",
                                                 "timeout": "1s", "healthy_threshold": 2,
                                                 "unhealthy_threshold": 2}}},
        "listeners": [listener(name="mtls", mode="mutual")],
    }


@pytest.fixture
def ui_tg(tollgate, backend):
    port = free_port()
    a, b = backend(), backend()
    tg = tollgate(ui_config(port, a, b))
    tg.admin_port = port
    tg.backends = (a, b)
    return tg


def admin_get(port, path, headers=None, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=T(10))
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def hostile_cert(tmp_path):
    """A self-signed client certificate whose CN is markup."""
    crt, key = tmp_path / "hostile.crt", tmp_path / "hostile.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-keyout", str(key),
                    "-out", str(crt),
                    "-subj", "/CN=" + HOSTILE_CN.replace("/", "\\/") + "/O=" + HOSTILE_O,
                    "-addext", "extendedKeyUsage=clientAuth"],
                   check=True, capture_output=True, timeout=T(30))
    return crt, key


def refuse(tg, pki, cert):
    ok, detail, port = tg_tls.attempt(("127.0.0.1", tg.ports["mtls"]),
                                      tg_tls.client_ctx(pki, cert=cert))
    assert not ok, detail
    return tg.wait_rejection(port)


def rows(browser, table):
    return browser.js(f"[...document.querySelectorAll('#{table} tr')].map(r => r.innerText)")


# ---- tests -----------------------------------------------------------------------------------

def test_ui_page_headers(ui_tg):
    """/ and /ui are the page, with a CSP that allows its own inline script
    and style only, and anti-framing and anti-sniffing headers; /status gets
    a CSP that allows nothing."""
    for path in ("/", "/ui", "/?x=1"):
        st, h, body = admin_get(ui_tg.admin_port, path)
        assert st == 200, (path, st)
        assert h["content-type"] == "text/html; charset=utf-8"
        assert body.startswith(b"<!DOCTYPE html>") and b"tollgate status" in body
        csp = h["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp, csp
        assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp, csp
        assert "frame-ancestors 'none'" in csp, csp
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
        assert h["cache-control"] == "no-store"
    st, h, _ = admin_get(ui_tg.admin_port, "/status")
    assert st == 200 and h["content-security-policy"].startswith("default-src 'none'")
    assert h["x-content-type-options"] == "nosniff"
    st, h, _ = admin_get(ui_tg.admin_port, "/", method="POST")
    assert st == 405 and h["allow"] == "GET, HEAD"
    assert h["content-security-policy"].startswith("default-src 'none'"), h
    assert admin_get(ui_tg.admin_port, "/uix")[0] == 404


def test_ui_page_guarded(ui_tg):
    """The page goes through the guard like every admin request: a foreign
    Host (DNS rebinding) and a request from another site are refused."""
    port = ui_tg.admin_port
    assert admin_get(port, "/", {"Host": "evil.example"})[0] == 421
    assert admin_get(port, "/", {"Origin": "http://evil.example"})[0] == 403
    assert admin_get(port, "/ui", {"Sec-Fetch-Site": "cross-site"})[0] == 403
    # A typed URL (none) and the page's own requests (same-origin) pass.
    assert admin_get(port, "/", {"Sec-Fetch-Site": "none"})[0] == 200
    assert admin_get(port, "/status", {"Sec-Fetch-Site": "same-origin"})[0] == 200


@needs_chromium
def test_ui_shows_refusals_and_target_down(ui_tg, pki, foreign_pki, browser, tmp_path):
    tg = ui_tg
    a, b = tg.backends
    tg.wait_event("target_up", target=b.address, cause="first_check")
    # Traffic through the listener for the share column.
    for _ in range(4):
        ok, detail, _ = tg_tls.attempt(("127.0.0.1", tg.ports["mtls"]),
                                       tg_tls.client_ctx(pki, cert=pki.client("alice")))
        assert ok, detail

    browser.navigate(f"http://127.0.0.1:{tg.admin_port}/")
    browser.wait_js("document.body.dataset.loaded === '1'", "the page to load /status")
    assert "mtls" in " ".join(rows(browser, "listeners"))
    assert "none yet" in " ".join(rows(browser, "refusals")), "no refusal before any refusal"
    browser.wait_js(f"document.querySelector('tr[data-target=\"{b.address}\"]')"
                    f"?.dataset.health === 'up'", "target b up")

    # A client of a foreign CA and a self-signed client whose CN is markup.
    ev = refuse(tg, pki, foreign_pki.client("alice"))
    assert ev["reason"] == "unknown_ca", ev
    ev2 = refuse(tg, pki, hostile_cert(tmp_path))
    browser.wait_js("[...document.querySelectorAll('#refusals tr.refusal')].length >= 2",
                    "two refusals in the page")
    got = rows(browser, "refusals")
    assert any("unknown_ca" in r and "CN=alice" in r for r in got), got
    assert any(ev2["reason"] in r and "<script id=" in r and "<img id=" in r for r in got), got
    # The markup stayed text: no element was made from it, nothing ran.
    assert browser.js("document.getElementById('pwned1') === null && "
                      "document.getElementById('pwned2') === null && document.title") == \
        "tollgate status"
    # The per-minute chart of the mutual listener counts them.
    legend = browser.wait_js(
        "document.querySelector('#charts [data-reason=\"unknown_ca\"]')?.innerText",
        "unknown_ca in the chart legend")
    assert legend.strip() == "unknown_ca 1", legend
    assert browser.js("document.querySelectorAll('#charts svg rect').length") >= 3

    # Stop target b: the page shows it down with the check's cause.
    b.close()
    tg.wait_event("target_down", target=b.address, timeout=T(10))
    browser.wait_js(f"document.querySelector('tr[data-target=\"{b.address}\"]')"
                    f"?.dataset.health === 'down'", "target b down in the page")
    row_b = browser.js(f"document.querySelector('tr[data-target=\"{b.address}\"]').innerText")
    assert "down" in row_b and "refused" in row_b, row_b
    row_a = browser.js(f"document.querySelector('tr[data-target=\"{a.address}\"]').innerText")
    assert "up" in row_a and "down" not in row_a, row_a
    assert browser.js(f"getComputedStyle(document.querySelector("
                      f"'tr[data-target=\"{b.address}\"] .badge')).backgroundColor") \
        == "rgb(207, 34, 46)"
    # Certificates with days left.
    certs = " ".join(rows(browser, "certs"))
    assert "days left" in certs and "ecdsa" in certs, certs

    # The page's own requests: same-origin, no Origin header (else the guard
    # would have refused them and nothing above would show).
    sent = browser.request_headers("/status")
    assert sent, "no request to /status recorded"
    assert all(h.get("sec-fetch-site") == "same-origin" and "origin" not in h for h in sent), sent
    assert browser.console_problems() == []

    shot = browser.screenshot(tmp_path / "ui.png")
    assert shot.stat().st_size > 10000, f"screenshot too small: {shot}"
    print(f"screenshot: {shot}")


@needs_chromium
def test_ui_expiring_certificate_red(ui_tg, browser):
    """Days left under 14 is red, 14 and more is not (the PKI's certificates
    have years left)."""
    browser.navigate(f"http://127.0.0.1:{ui_tg.admin_port}/ui")
    browser.wait_js("document.body.dataset.loaded === '1'", "the page to load")
    reds = browser.js("[...document.querySelectorAll('#certs td.red')].length")
    assert reds == 0
    # The same rendering function with a certificate 13 days from expiry.
    browser.js("renderCerts({certificates: [{name: 'soon', role: 'leaf', subject: 'CN=soon', "
               "not_after: 'x', days_left: 13}, {name: 'later', role: 'leaf', "
               "subject: 'CN=later', not_after: 'x', days_left: 14}]})")
    assert browser.js("[...document.querySelectorAll('#certs td.red')].map(td => "
                      "td.parentNode.innerText.split('\\t')[0])") == ["soon"]


def test_ui_client_ca_crl_red_near_next_update(ui_tg, browser):
    """The client CA table shows each CA's CRL; a next update within a day is
    red, one further away is not."""
    browser.navigate(f"http://127.0.0.1:{ui_tg.admin_port}/ui")
    browser.wait_js("document.body.dataset.loaded === '1'", "the page to load")
    got = rows(browser, "client-cas")
    assert len(got) >= 2 and got[1].split("\t")[0] == "pki", got
    now = int(time.time())
    browser.js("renderClientCas({client_cas: [{name: 'soon', crl_number: '3', "
               f"crl_next_update: 'x', crl_next_update_unix: {now + 3600}, revoked: 1}}, "
               "{name: 'later', crl_number: '4', crl_next_update: 'y', "
               f"crl_next_update_unix: {now + 3 * 86400}, revoked: 0}}]}})")
    assert browser.js("[...document.querySelectorAll('#client-cas td.red')].map(td => "
                      "td.parentNode.innerText.split('\\t')[0])") == ["soon"]


@pytest.fixture
def token_tg(tollgate, backend, tmp_path):
    token = tmp_path / "admin.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    port = free_port()
    tg = tollgate(ui_config(port, backend(), backend(), token_file=token))
    tg.admin_port = port
    return tg


def test_ui_token_data_needs_token(token_tg):
    """With a token the page itself is served (it holds no data) but /status
    and /metrics still need it."""
    port = token_tg.admin_port
    assert admin_get(port, "/")[0] == 200
    st, h, _ = admin_get(port, "/status")
    assert st == 401 and h["www-authenticate"].startswith("Bearer")
    assert h["content-security-policy"].startswith("default-src 'none'"), h
    assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
    assert admin_get(port, "/metrics")[0] == 401
    assert admin_get(port, "/status", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    # The guard's other checks still apply to the page.
    assert admin_get(port, "/", {"Host": "evil.example"})[0] == 421
    assert admin_get(port, "/", {"Origin": "http://evil.example"})[0] == 403


@needs_chromium
def test_ui_token_required_then_given(token_tg, browser, tmp_path):
    base = f"http://127.0.0.1:{token_tg.admin_port}/"
    browser.navigate(base)
    browser.wait_js("document.body.dataset.loaded === 'auth'", "the token-required state")
    assert browser.js("document.getElementById('auth').hidden") is False
    assert browser.js("document.getElementById('content').hidden") is True
    assert "Token required" in browser.js("document.body.innerText")
    assert rows(browser, "listeners") == [], "no data without the token"
    browser.screenshot(tmp_path / "ui-token-required.png")

    # A wrong token typed in: still refused.
    browser.js("document.getElementById('token').value = 'wrong-token-0123456789';"
               "document.getElementById('token-save').click()")
    browser.wait_js("document.body.dataset.loaded === 'auth' && "
                    "sessionStorage.getItem('tollgate-admin-token') === 'wrong-token-0123456789'",
                    "the wrong token tried")
    assert browser.js("document.getElementById('content').hidden") is True

    # The right one, through the URL fragment (never sent to the server).
    browser.navigate(base + "#token=" + TOKEN)
    browser.wait_js("document.body.dataset.loaded === '1'", "the page with the token")
    assert browser.js("location.hash") == "", "the token is taken out of the URL"
    assert "mtls" in " ".join(rows(browser, "listeners"))
    sent = browser.request_headers("/status")
    assert any(h.get("authorization") == f"Bearer {TOKEN}" for h in sent), sent
