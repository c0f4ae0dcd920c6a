"""Running tollgate under test: config files, free ports, the process, its logs.

Everything here polls with deadlines; nothing sleeps for a fixed time and
hopes. Timeouts go through T() so an ASan build gets three times as long.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOLLGATE_BIN = os.environ.get("TOLLGATE_BIN", str(REPO / "build" / "tollgate"))
ASAN = os.environ.get("TOLLGATE_ASAN", "") not in ("", "0")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")


def T(seconds):
    """A timeout, scaled for sanitizer builds."""
    return seconds * (3 if ASAN else 1)


AUTO = object()  # placeholder for "give this listener a free loopback port"


_ports_given = set()


def free_port(host="127.0.0.1"):
    """A loopback port that was free a moment ago (the kernel picks it),
    never one this test run was given before: two ports taken for the same
    config (a listener and the admin endpoint) must differ."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def wait_for(pred, timeout, interval=0.02, what="condition"):
    """Polls pred() until it returns something truthy; returns that value.
    Raises AssertionError naming `what` when the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


# ---- YAML ----------------------------------------------------------------

def _scalar(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """Block-style YAML, the way an operator writes it."""
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:\n{to_yaml(v, indent + 2)}")
            elif isinstance(v, dict):
                lines.append(f"{pad}{k}: {{}}\n")
            elif isinstance(v, list):
                lines.append(f"{pad}{k}: []\n")
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}\n")
        return "".join(lines)
    if isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 2)
                # "- " replaces the first two spaces of the first line
                lines.append(f"{pad}- {inner[indent + 2:]}")
            else:
                lines.append(f"{pad}- {_scalar(v)}\n")
        return "".join(lines)
    return pad + _scalar(obj) + "\n"


# ---- config building ----------------------------------------------------------

def listener(name="main", group="g", mode="one-way", certs=("ecdsa",), client_auth=None,
             client_ca="pki", proxy=None, tls_extra=None, **extra):
    """A tcp_ssl listener dict; `listen` is filled with a free port at start."""
    tls = {"mode": mode, "certificates": list(certs)}
    if mode == "mutual":
        tls["client_ca"] = client_ca
        if client_auth is not None:
            tls["client_auth"] = client_auth
    if tls_extra:
        tls.update(tls_extra)
    d = {"name": name, "protocol": "tcp_ssl", "listen": AUTO, "tls": tls, "target_group": group,
         "handshake_timeout": "5s"}
    if proxy is not None:
        d["proxy_protocol"] = proxy
    d.update(extra)
    return d


def group(*targets, algorithm="wrr"):
    """A target group; each target is "host:port", "builtin:echo" or (address, weight)."""
    ts = []
    for t in targets:
        if isinstance(t, tuple):
            ts.append({"address": t[0], "weight": t[1]})
        else:
            ts.append({"address": t})
    return {"algorithm": algorithm, "targets": ts}


# ---- log parsing ----------------------------------------------------------------

_KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
_LINE = re.compile(r"^(\S+Z) (\w+) pid=(\d+) (.*)$")


def parse_event(line):
    """One event-log line as a dict (with _level, _pid, _line), or None."""
    m = _LINE.match(line)
    if not m:
        return None
    d = {"_time": m.group(1), "_level": m.group(2), "_pid": int(m.group(3)), "_line": line}
    for k, v in _KV.findall(m.group(4)):
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        d[k] = v
    return d


class Tollgate:
    """One tollgate master with its workers, started from a config dict."""

    def __init__(self, workdir, pki, name="tg"):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pki = pki
        self.name = name
        self.proc = None
        self.config_path = self.dir / f"{name}.yaml"
        self.stderr_path = self.dir / f"{name}.stderr"
        self.stdout_path = self.dir / f"{name}.stdout"
        self.access_path = self.dir / f"{name}.access.log"
        self.ports = {}
        self.hosts = {}
        self.cfg = None
        self.probe_ports = set()
        self.exit_code = None

    # -- config --
    def render(self, cfg):
        """Fills defaults and free ports into cfg (a dict) and returns YAML text."""
        cfg = json.loads(json.dumps(cfg, default=lambda o: "__AUTO__"))
        cfg.setdefault("workers", 1)
        cfg.setdefault("log", {"level": "info", "access": str(self.access_path)})
        cfg.setdefault("drain_timeout", "10s")
        cfg.setdefault("certificates", self.pki.certificates())
        cfg.setdefault("client_cas", self.pki.client_cas())
        for l in cfg.get("listeners", []):
            if l.get("listen") in ("__AUTO__", "[::1]:auto"):
                v6 = l["listen"] == "[::1]:auto"
                port = self.ports.get(l["name"]) or free_port("::1" if v6 else "127.0.0.1")
                l["listen"] = f"[::1]:{port}" if v6 else f"127.0.0.1:{port}"
            host, _, port = l["listen"].rpartition(":")
            self.ports[l["name"]] = int(port)
            self.hosts[l["name"]] = host.strip("[]")
        self.cfg = cfg
        return to_yaml(cfg)

    def write_config(self, cfg):
        text = self.render(cfg)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)  # atomic: a reload never reads half a file
        return self.config_path

    def write_raw_config(self, text):
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    # -- process --
    def start_text(self, text, ports, wait=True):
        """Starts from config text written by hand (not rendered from a dict);
        ports maps each listener's name to the port its text gives it."""
        self.ports = dict(ports)
        self.hosts = {n: "127.0.0.1" for n in ports}
        self.write_raw_config(text)
        self._spawn()
        return self.wait_ready() if wait else self

    def start(self, cfg, wait=True, retries=3):
        for attempt in range(retries):
            self.ports = {}
            self.write_config(cfg)
            self._spawn()
            if not wait:
                return self
            try:
                self.wait_ready()
                return self
            except StartupError as e:
                if "cannot listen" in str(e) and attempt + 1 < retries:
                    self._reap()
                    continue  # a port got taken in between; pick new ones
                raise
        return self

    def command(self):
        """The command line the process is started with."""
        return [TOLLGATE_BIN, "run", "-c", str(self.config_path)]

    def spawn_env(self):
        """Variables added to the process's environment."""
        return {}

    def _spawn(self):
        self.err_f = open(self.stderr_path, "ab")
        self.out_f = open(self.stdout_path, "ab")
        self.log_offset = self.stderr_path.stat().st_size
        env = dict(os.environ)
        if ASAN:
            env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        env.update(self.spawn_env())
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=self.out_f, stderr=self.err_f,
            start_new_session=True, env=env)
        self.exit_code = None

    def _reap(self):
        if self.proc is not None and self.proc.poll() is None:
            self.kill_group(signal.SIGKILL)
            self.proc.wait(T(5))
        self.exit_code = self.proc.returncode if self.proc else None

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, generation=1, timeout=None):
        timeout = timeout or T(15)
        deadline = time.monotonic() + timeout
        pat = re.compile(rf"event=ready generation={generation}\b")
        while True:
            text = self.log()
            if pat.search(text):
                break
            if not self.alive():
                raise StartupError(f"tollgate exited with {self.proc.returncode} before ready:\n"
                                   + text[-4000:])
            if time.monotonic() > deadline:
                raise StartupError("tollgate not ready in time:\n" + text[-4000:])
            time.sleep(0.02)
        for name, port in self.ports.items():
            self._probe(self.hosts.get(name, "127.0.0.1"), port, deadline)
        return self

    def _probe(self, host, port, deadline):
        while True:
            try:
                with socket.create_connection((host, port), timeout=1) as s:
                    self.probe_ports.add(s.getsockname()[1])
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise StartupError(f"port {port} does not accept:\n" + self.log()[-4000:])
                time.sleep(0.02)

    def addr(self, name="main"):
        return (self.hosts.get(name, "127.0.0.1"), self.ports[name])

    def worker_pids(self):
        """The master's children, straight from /proc."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(x) for x in text.split()]

    def signal(self, sig):
        os.kill(self.pid, sig)

    def kill_group(self, sig):
        try:
            os.killpg(self.pid, sig)  # the session we started: master and workers
        except ProcessLookupError:
            pass

    def wait_exit(self, timeout):
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"tollgate did not exit within {timeout}s")
        return self.exit_code

    def stop(self):
        """SIGTERM, then SIGKILL after a bound. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.exit_code = self.proc.wait(T(15))
            except subprocess.TimeoutExpired:
                self.kill_group(signal.SIGKILL)
                self.exit_code = self.proc.wait(T(5))
        else:
            self.exit_code = self.proc.returncode
        # Workers must not outlive the master; never leave ours behind.
        self.kill_group(signal.SIGKILL)
        for f in (self.err_f, self.out_f):
            f.close()
        return self.exit_code

    # -- logs --
    def log(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stdout(self):
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def settle_probes(self, timeout=None):
        """Waits until the worker has closed the readiness probes' connections
        (TLS listeners: one client_closed_before_hello each). Until then they
        count toward max_connections and the per-client limit."""
        def done():
            seen = {int(e.get("client", ":0").rpartition(":")[2] or 0)
                    for e in self.events("client_closed_before_hello")}
            return self.probe_ports <= seen or None
        wait_for(done, timeout or T(10), what="readiness probes closed")

    def events(self, name=None, **match):
        out = []
        for line in self.log().splitlines():
            e = parse_event(line)
            if e is None or (name is not None and e.get("event") != name):
                continue
            if all(e.get(k) == str(v) for k, v in match.items()):
                out.append(e)
        return out

    def wait_event(self, name, timeout=None, count=1, **match):
        """Waits until at least `count` events named `name` match; returns them."""
        timeout = timeout or T(10)
        return wait_for(lambda: (lambda ev: ev if len(ev) >= count else None)(
            self.events(name, **match)), timeout, what=f"event={name} {match} x{count}")

    def rejections(self, client_port=None):
        """tls_handshake_failed events, minus the readiness probes."""
        out = []
        for e in self.events("tls_handshake_failed"):
            port = int(e.get("client", ":0").rpartition(":")[2] or 0)
            if port in self.probe_ports:
                continue
            if client_port is not None and port != client_port:
                continue
            out.append(e)
        return out

    def wait_rejection(self, client_port=None, timeout=None):
        return wait_for(lambda: self.rejections(client_port), timeout or T(10),
                        what=f"tls_handshake_failed for client port {client_port}")[0]

    def access(self):
        """Access-log records (JSON), minus the readiness probes."""
        try:
            text = self.access_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        # A line not yet ended with its newline is still being written.
        for line in text.split("\n")[:-1]:
            if not line.strip():
                continue
            rec = json.loads(line)
            port = int(str(rec.get("client", ":0")).rpartition(":")[2] or 0)
            if port in self.probe_ports:
                continue
            out.append(rec)
        return out

    def wait_access(self, pred=lambda r: True, count=1, timeout=None, what="access records"):
        return wait_for(lambda: (lambda rs: rs if len(rs) >= count else None)(
            [r for r in self.access() if pred(r)]), timeout or T(10), what=what)

    def access_for(self, client_port, timeout=None):
        """The access record of the connection from this client port."""
        suffix = f":{client_port}"
        return self.wait_access(lambda r: str(r.get("client", "")).endswith(suffix),
                                timeout=timeout, what=f"access record for port {client_port}")[0]

    def sanitizer_report(self):
        text = self.log()
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                return text[max(0, i - 200):i + 4000]
        return None


class StartupError(AssertionError):
    pass


def run_tollgate(args, timeout=None, cwd=None):
    """Runs a one-shot tollgate command; returns CompletedProcess (text)."""
    return subprocess.run([TOLLGATE_BIN, *args], capture_output=True, text=True,
                          timeout=timeout or T(60), cwd=cwd)


def stop_all(tollgates, what="node"):
    """Stops every process of tollgates; then fails the test when one of
    them left a sanitizer report."""
    problems = []
    for tg in tollgates:
        tg.stop()
        report = tg.sanitizer_report()
        if report:
            problems.append(f"sanitizer error in {what} {tg.name}:\n{report}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
