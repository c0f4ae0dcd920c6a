#!/usr/bin/env python3
"""Side-by-side benchmark of tollgate, HAProxy and nginx. Run through bench/run.sh.

Each server runs one worker pinned to core 0; the load generator (tgload, wrk
or h2load) and the backend (tgback) are pinned to core 1, and so is this driver.
Rounds are interleaved: tollgate, haproxy, nginx, tollgate, haproxy, ...
Server CPU is read from /proc/PID/stat (utime + stime of the server's whole
process tree) before and after each load run.
"""

import csv
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "1"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONC = int(os.environ.get("BENCH_CONC", "32"))
HOLD = int(os.environ.get("BENCH_HOLD", "9900"))
RATE = int(os.environ.get("BENCH_RATE", "2000"))
PORT_BASE = int(os.environ.get("BENCH_PORT_BASE", "17000"))
SERVERS = os.environ.get("BENCH_SERVERS", "tollgate,haproxy,nginx").split(",")
TOLLGATE = os.environ.get("TOLLGATE_BIN", os.path.join(ROOT, "build-release", "tollgate"))
TOOLS = os.environ.get("BENCH_TOOLS", os.path.join(HERE, ".build"))
OUT = os.environ.get("BENCH_OUT", os.path.join(HERE, "results"))
# Workers (tollgate, nginx) or threads (HAProxy) per server. With more than
# one, servers and client share every core: see docs/PERFORMANCE.md.
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
ALL_CORES = f"0-{os.cpu_count() - 1}"
SERVER_CORE = os.environ.get("BENCH_SERVER_CORE", "0" if WORKERS == 1 else ALL_CORES)
CLIENT_CORE = os.environ.get("BENCH_CLIENT_CORE", "1" if WORKERS == 1 else ALL_CORES)
NGINX_STREAM = os.environ.get("NGINX_STREAM_MODULE", "/usr/lib/nginx/modules/ngx_stream_module.so")

CLK_TCK = os.sysconf("SC_CLK_TCK")
# h2load: connections x streams each. 50 requests in flight, as wrk's 50
# connections: within the 64 idle backend connections nginx and tollgate keep.
H2_CONNS, H2_STREAMS = 5, 10
BACKEND_PID = 0  # set by main

# Listener port offsets, the same for every server.
OFF = {
    "https_ecdsa": 1, "https_rsa": 2, "https_mtls": 3, "https_h2": 4,
    "tcp_ecdsa": 11, "tcp_rsa": 12, "tcp_mtls": 13, "tcp_sink": 14, "tcp_source": 15,
}
BACK = {"http": PORT_BASE + 1, "echo": PORT_BASE + 2, "sink": PORT_BASE + 3, "source": PORT_BASE + 4}
# The plain relay of the bulk ceiling (tgrelay), one per direction.
RELAY = {"up": PORT_BASE + 5, "down": PORT_BASE + 6}
TOLLGATE_ADMIN = PORT_BASE + 9


def server_port(server, listener):
    return PORT_BASE + 100 * (SERVERS.index(server) + 1) + OFF[listener]


# name: (title, kind, listener, extra tgload args, unit, ceiling key)
SCENARIOS = {
    "hs_rsa_https": ("full TLS 1.3 handshakes/s, RSA-2048, https (new connection per request)",
                     "hs", "https_rsa", [], "conn/s", "hs_rsa"),
    "hs_rsa_tcp": ("full TLS 1.3 handshakes/s, RSA-2048, tcp_ssl (new connection per request)",
                   "hs", "tcp_rsa", [], "conn/s", "hs_rsa"),
    "hs_ecdsa_https": ("full TLS 1.3 handshakes/s, ECDSA P-256, https",
                       "hs", "https_ecdsa", [], "conn/s", "hs_ecdsa"),
    "hs_ecdsa_tcp": ("full TLS 1.3 handshakes/s, ECDSA P-256, tcp_ssl",
                     "hs", "tcp_ecdsa", [], "conn/s", "hs_ecdsa"),
    "resume_https": ("resumed TLS 1.3 handshakes/s (session tickets), ECDSA, https",
                     "hs", "https_ecdsa", ["-r"], "conn/s", "hs_resume"),
    "resume_tcp": ("resumed TLS 1.3 handshakes/s (session tickets), ECDSA, tcp_ssl",
                   "hs", "tcp_ecdsa", ["-r"], "conn/s", "hs_resume"),
    "resume_mtls_https": ("resumed mutual-TLS handshakes/s (tickets; the client certificate "
                          "judged again on each), ECDSA, https",
                          "hs", "https_mtls", ["@mtls", "-r"], "conn/s", "hs_resume"),
    "resume_mtls_tcp": ("resumed mutual-TLS handshakes/s (tickets; the client certificate "
                        "judged again on each), ECDSA, tcp_ssl",
                        "hs", "tcp_mtls", ["@mtls", "-r"], "conn/s", "hs_resume"),
    "mtls_https": ("mutual-TLS full handshakes/s, ECDSA server and client, https",
                   "hs", "https_mtls", ["@mtls"], "conn/s", "hs_mtls"),
    "mtls_tcp": ("mutual-TLS full handshakes/s, ECDSA server and client, tcp_ssl",
                 "hs", "tcp_mtls", ["@mtls"], "conn/s", "hs_mtls"),
    "keepalive_https": ("https keep-alive requests/s, 13-byte body (wrk -t1 -c50)",
                        "wrk", "https_ecdsa", [], "req/s", None),
    "h2_https": (f"https HTTP/2 requests/s, 13-byte body (h2load, {H2_CONNS} connections x "
                 f"{H2_STREAMS} streams each)", "h2", "https_h2", [], "req/s", None),
    "bulk_up_tcp": ("tcp_ssl bulk client to backend, MB/s (4 connections, 16 KiB writes)",
                    "bulk-up", "tcp_sink", [], "MB/s", "bulk_up"),
    "bulk_down_tcp": ("tcp_ssl bulk backend to client, MB/s (4 connections)",
                      "bulk-down", "tcp_source", [], "MB/s", "bulk_down"),
    "idle_rss_tcp": (f"RSS per idle tcp_ssl connection, {HOLD} held (each with a backend connection)",
                     "hold", "tcp_ecdsa", [], "KiB/conn", None),
    "idle_rss_https": (f"RSS per idle https connection, {HOLD} held after one keep-alive request",
                       "hold", "https_ecdsa", [], "KiB/conn", None),
    "latency_https": (f"latency at a fixed {RATE} req/s, https keep-alive (20 connections)",
                      "rate", "https_ecdsa", [], "ms", None),
    "latency_tcp": (f"latency at a fixed {RATE} msg/s, tcp_ssl 64-byte echo (20 connections)",
                    "rate", "tcp_ecdsa", [], "ms", None),
}
ORDER = list(SCENARIOS)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc

def tree_pids(root):
    """root and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def rss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def core_times():
    """{core: (busy, total, irq + softirq)} in ticks from /proc/stat. Busy
    includes steal: time the hypervisor gave to someone else."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *v = line.split()
                v = [int(x) for x in v]
                idle = v[3] + v[4]
                out[name[3:]] = (sum(v[:8]) - idle, sum(v[:8]), v[5] + v[6])
    return out


def core_list(spec):
    """The cores of a taskset list such as "1", "0,1" or "0-1"."""
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def core_busy_pct(before, after, spec):
    """Busy % of the cores in spec (their mean when several)."""
    cs = [str(c) for c in core_list(spec)]
    busy = sum(after[c][0] - before[c][0] for c in cs)
    total = sum(after[c][1] - before[c][1] for c in cs)
    return 100.0 * busy / max(1, total)


def core_irq_pct(before, after, spec):
    cs = [str(c) for c in core_list(spec)]
    irq = sum(after[c][2] - before[c][2] for c in cs)
    total = sum(after[c][1] - before[c][1] for c in cs)
    return 100.0 * irq / max(1, total)


# ---------------------------------------------------------------- servers

def wait_ports(ports, proc, what, timeout=15):
    deadline = time.time() + timeout
    pending = set(ports)
    while pending and time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} during startup")
        for p in list(pending):
            try:
                with socket.create_connection(("127.0.0.1", p), timeout=0.5):
                    pending.discard(p)
            except OSError:
                pass
        if pending:
            time.sleep(0.05)
    if pending:
        raise RuntimeError(f"{what}: ports {sorted(pending)} not listening after {timeout}s")


class Server:
    def __init__(self, name, work):
        self.name = name
        self.work = work
        self.proc = None
        self.log = None

    def ports(self):
        return [server_port(self.name, k) for k in OFF]

    def start(self):
        cmd = self.command()
        self.log = open(os.path.join(self.work, f"{self.name}.log"), "ab")
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CORE] + cmd, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.work,
                                     start_new_session=True)
        wait_ports(self.ports(), self.proc, self.name)
        time.sleep(0.2)  # let workers settle after the ports open

    def pids(self):
        return tree_pids(self.proc.pid)

    def stop(self):
        if self.proc is None:
            return
        pids = self.pids()
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.wait()
        # Workers left behind by a master that exited first.
        for p in pids[1:]:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.proc = None
        self.log.close()


class Tollgate(Server):
    def command(self):
        pki = os.path.join(self.work, "pki")
        p = lambda k: server_port("tollgate", k)
        lst = []
        for name, proto, cert, mtls, group in [
            ("https_ecdsa", "https", "ecdsa", False, "http"),
            ("https_rsa", "https", "rsa", False, "http"),
            ("https_mtls", "https", "ecdsa", True, "http"),
            ("https_h2", "https", "ecdsa", False, "http"),
            ("tcp_ecdsa", "tcp_ssl", "ecdsa", False, "echo"),
            ("tcp_rsa", "tcp_ssl", "rsa", False, "echo"),
            ("tcp_mtls", "tcp_ssl", "ecdsa", True, "echo"),
            ("tcp_sink", "tcp_ssl", "ecdsa", False, "sink"),
            ("tcp_source", "tcp_ssl", "ecdsa", False, "source"),
        ]:
            tls = f"{{ mode: {'mutual' if mtls else 'one-way'}, certificates: [{cert}], " \
                  f"policy: modern, groups: X25519"
            tls += ", client_ca: clients, verify_depth: 3 }" if mtls else " }"
            route = f"target_group: {group}" if proto == "tcp_ssl" else f"default_target_group: {group}"
            lst.append(f"  - {{ name: {name.replace('_', '-')}, protocol: {proto}, "
                       f"listen: 127.0.0.1:{p(name)}, max_connections: 20000,\n"
                       f"      idle_timeout: 5m, tls: {tls}, {route} }}")
        cfg = f"""workers: {WORKERS}
log: {{ level: warn, access: off }}
admin: {{ listen: 127.0.0.1:{TOLLGATE_ADMIN} }}
certificates:
  ecdsa: {{ cert: {pki}/server-ecdsa.crt, key: {pki}/server-ecdsa.key }}
  rsa:   {{ cert: {pki}/server-rsa.crt, key: {pki}/server-rsa.key }}
client_cas:
  clients: {{ ca: {pki}/root.crt, crl: {pki}/clients.crl }}
target_groups:
  http:   {{ targets: [ {{ address: 127.0.0.1:{BACK['http']} }} ] }}
  echo:   {{ targets: [ {{ address: 127.0.0.1:{BACK['echo']} }} ] }}
  sink:   {{ targets: [ {{ address: 127.0.0.1:{BACK['sink']} }} ] }}
  source: {{ targets: [ {{ address: 127.0.0.1:{BACK['source']} }} ] }}
listeners:
""" + "\n".join(lst) + "\n"
        path = os.path.join(self.work, "tollgate.yaml")
        with open(path, "w") as f:
            f.write(cfg)
        return [TOLLGATE, "run", "-c", path]


class Haproxy(Server):
    def command(self):
        pki = os.path.join(self.work, "pki")
        p = lambda k: server_port("haproxy", k)
        mtls = f"ca-file {pki}/root.crt crl-file {pki}/clients.crl verify required"
        cfg = f"""global
    nbthread {WORKERS}
    maxconn 9950
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-bind-curves X25519
    tune.ssl.default-dh-param 2048

defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    timeout http-request 10s

frontend https_ecdsa
    mode http
    bind 127.0.0.1:{p('https_ecdsa')} defer-accept ssl crt {pki}/haproxy-ecdsa.pem
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    default_backend be_http
frontend https_rsa
    mode http
    bind 127.0.0.1:{p('https_rsa')} defer-accept ssl crt {pki}/haproxy-rsa.pem
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    default_backend be_http
frontend https_mtls
    mode http
    bind 127.0.0.1:{p('https_mtls')} defer-accept ssl crt {pki}/haproxy-ecdsa.pem {mtls}
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    default_backend be_http
frontend https_h2
    mode http
    bind 127.0.0.1:{p('https_h2')} defer-accept ssl crt {pki}/haproxy-ecdsa.pem alpn h2,http/1.1
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    default_backend be_http
frontend tcp_ecdsa
    bind 127.0.0.1:{p('tcp_ecdsa')} defer-accept ssl crt {pki}/haproxy-ecdsa.pem
    default_backend be_echo
frontend tcp_rsa
    bind 127.0.0.1:{p('tcp_rsa')} defer-accept ssl crt {pki}/haproxy-rsa.pem
    default_backend be_echo
frontend tcp_mtls
    bind 127.0.0.1:{p('tcp_mtls')} defer-accept ssl crt {pki}/haproxy-ecdsa.pem {mtls}
    default_backend be_echo
frontend tcp_sink
    bind 127.0.0.1:{p('tcp_sink')} defer-accept ssl crt {pki}/haproxy-ecdsa.pem
    default_backend be_sink
frontend tcp_source
    bind 127.0.0.1:{p('tcp_source')} defer-accept ssl crt {pki}/haproxy-ecdsa.pem
    default_backend be_source

backend be_http
    mode http
    http-reuse always
    server s1 127.0.0.1:{BACK['http']}
backend be_echo
    server s1 127.0.0.1:{BACK['echo']}
backend be_sink
    server s1 127.0.0.1:{BACK['sink']}
backend be_source
    server s1 127.0.0.1:{BACK['source']}
"""
        path = os.path.join(self.work, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(cfg)
        return ["haproxy", "-q", "-db", "-f", path]


class Nginx(Server):
    def command(self):
        pki = os.path.join(self.work, "pki")
        w = os.path.join(self.work, "nginx")
        os.makedirs(w, exist_ok=True)
        p = lambda k: server_port("nginx", k)
        ssl = "ssl_protocols TLSv1.3;\n    ssl_ecdh_curve X25519;\n    ssl_session_tickets on;"
        cert = lambda k: (f"ssl_certificate {pki}/server-{k}.crt; "
                          f"ssl_certificate_key {pki}/server-{k}.key;")
        mtls = (f"ssl_client_certificate {pki}/root.crt; ssl_crl {pki}/clients.crl; "
                "ssl_verify_client on; ssl_verify_depth 3;")
        loc = ("location / { proxy_pass http://be_http; proxy_http_version 1.1; "
               "proxy_set_header Connection \"\"; proxy_set_header Host $host; "
               "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; "
               "proxy_set_header X-Real-IP $remote_addr; "
               "proxy_set_header X-Forwarded-Proto https; }")
        cfg = f"""load_module {NGINX_STREAM};
worker_processes {WORKERS};
worker_rlimit_nofile 20000;
daemon off;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path {w}/body;
    proxy_temp_path {w}/proxy;
    fastcgi_temp_path {w}/fastcgi;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    {ssl}
    upstream be_http {{ server 127.0.0.1:{BACK['http']}; keepalive 64; }}
    server {{ listen 127.0.0.1:{p('https_ecdsa')} ssl deferred; {cert('ecdsa')} {loc} }}
    server {{ listen 127.0.0.1:{p('https_rsa')} ssl deferred; {cert('rsa')} {loc} }}
    server {{ listen 127.0.0.1:{p('https_mtls')} ssl deferred; {cert('ecdsa')} {mtls} {loc} }}
    server {{ listen 127.0.0.1:{p('https_h2')} ssl http2 deferred; {cert('ecdsa')} {loc} }}
}}
stream {{
    # nginx 1.22's stream module has no "deferred" listen parameter.
    {ssl}
    server {{ listen 127.0.0.1:{p('tcp_ecdsa')} ssl; {cert('ecdsa')} proxy_pass 127.0.0.1:{BACK['echo']}; }}
    server {{ listen 127.0.0.1:{p('tcp_rsa')} ssl; {cert('rsa')} proxy_pass 127.0.0.1:{BACK['echo']}; }}
    server {{ listen 127.0.0.1:{p('tcp_mtls')} ssl; {cert('ecdsa')} {mtls} proxy_pass 127.0.0.1:{BACK['echo']}; }}
    server {{ listen 127.0.0.1:{p('tcp_sink')} ssl; {cert('ecdsa')} proxy_pass 127.0.0.1:{BACK['sink']}; }}
    server {{ listen 127.0.0.1:{p('tcp_source')} ssl; {cert('ecdsa')} proxy_pass 127.0.0.1:{BACK['source']}; }}
}}
"""
        path = os.path.join(w, "nginx.conf")
        with open(path, "w") as f:
            f.write(cfg)
        return ["nginx", "-p", w, "-e", os.path.join(w, "error.log"), "-c", path]


CLASSES = {"tollgate": Tollgate, "haproxy": Haproxy, "nginx": Nginx}


# ---------------------------------------------------------------- load

def tollgate_handshakes():
    """tollgate's own counters: (full, resumed) handshakes over all listeners."""
    full = resumed = 0
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{TOLLGATE_ADMIN}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    for m in re.finditer(r'^tollgate_tls_handshakes_total\{[^}]*resumed="(true|false)"[^}]*\} (\d+)',
                         text, re.M):
        if m.group(1) == "true":
            resumed += int(m.group(2))
        else:
            full += int(m.group(2))
    return full, resumed


def parse_kv(line):
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', line)}


def run_tgload(server, scen, pki, secs=None):
    title, kind, listener, extra, unit, _ = SCENARIOS[scen]
    secs = SECONDS if secs is None else secs
    port = server_port(server.name, listener)
    proto = "http" if listener.startswith("https") else "tcp"
    args = [os.path.join(TOOLS, "tgload"), "-a", f"127.0.0.1:{port}", "-p", proto]
    for e in extra:
        if e == "@mtls":
            args += ["-C", f"{pki}/alice.crt", "-K", f"{pki}/alice.key"]
        else:
            args.append(e)
    if kind == "hs":
        args += ["-m", "hs", "-c", str(CONC), "-d", str(secs), "-n", "10000000"]
    elif kind in ("bulk-up", "bulk-down"):
        args += ["-m", kind, "-c", "4", "-d", str(secs)]
    elif kind == "rate":
        args += ["-m", "rate", "-c", "20", "-R", str(RATE), "-d", str(secs)]
    return args


def run_h2load(server, scen, secs):
    port = server_port(server.name, SCENARIOS[scen][2])
    # Only h2 is offered: without it h2load would fall back to HTTP/1.1.
    return ["h2load", "--npn-list=h2", "--tls13-ciphers=TLS_AES_128_GCM_SHA256",
            "-c", str(H2_CONNS), "-m", str(H2_STREAMS), "-t", "1", "-D", str(max(1, int(secs))),
            f"https://127.0.0.1:{port}/"]


def parse_h2load(out):
    """(requests succeeded, req/s) of an h2load run in which every request
    succeeded over h2; RuntimeError for anything else."""
    m = re.search(r"^finished in \S+, ([\d.]+) req/s", out.stdout, re.M)
    n = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out.stdout, re.M)
    st = re.search(r"^status codes: (\d+) 2xx", out.stdout, re.M)
    if out.returncode != 0 or not m or not n or not st:
        raise RuntimeError(f"h2load exited with {out.returncode}, output not understood: "
                           f"{out.stdout[-500:]}{out.stderr[-500:]}")
    total, _, done, ok, failed, errored, timeout = (int(x) for x in n.groups())
    protos = set(re.findall(r"^Application protocol: (\S+)", out.stdout, re.M))
    if "No protocol negotiated" in out.stdout or protos - {"h2"}:
        raise RuntimeError("h2load: the server did not negotiate h2 (ALPN), no HTTP/2 request made")
    if ok == 0 or ok != total or ok != done or failed or errored or timeout or \
            int(st.group(1)) != ok:
        raise RuntimeError(f"h2load: {ok} of {total} requests succeeded, {st.group(1)} with 2xx "
                           f"({failed} failed, {errored} errored, {timeout} timed out)")
    return ok, float(m.group(1))


def warm_up(server, scen, pki):
    """A short unmeasured run before the first round: pools, caches and the
    connections of wrk are set up outside the measured rounds."""
    kind, listener = SCENARIOS[scen][1], SCENARIOS[scen][2]
    if kind == "hold" or WARMUP <= 0:
        return
    if kind == "wrk":
        port = server_port(server.name, listener)
        args = ["wrk", "-t1", "-c50", f"-d{max(1, int(WARMUP))}s", f"https://127.0.0.1:{port}/"]
    elif kind == "h2":
        args = run_h2load(server, scen, WARMUP)
    else:
        args = run_tgload(server, scen, pki, WARMUP)
    subprocess.run(["taskset", "-c", CLIENT_CORE] + args, capture_output=True,
                   timeout=WARMUP * 3 + 60)


def measure(server, scen, pki, rnd):
    """One round against one server. Returns a dict of figures."""
    title, kind, listener, extra, unit, _ = SCENARIOS[scen]
    pids = server.pids()
    res = {"scenario": scen, "server": server.name, "round": rnd}
    if kind == "hold":
        return measure_hold(server, scen, pki, res)
    if kind == "wrk":
        port = server_port(server.name, listener)
        args = ["wrk", "-t1", "-c50", f"-d{max(1, int(SECONDS))}s", "--latency",
                f"https://127.0.0.1:{port}/"]
    elif kind == "h2":
        args = run_h2load(server, scen, SECONDS)
    else:
        args = run_tgload(server, scen, pki)
    is_counted = server.name == "tollgate" and kind == "hs"
    h0 = tollgate_handshakes() if is_counted else None
    c0 = cpu_ticks(pids)
    b0 = cpu_ticks([BACKEND_PID])
    k0 = core_times()
    u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run(["taskset", "-c", CLIENT_CORE] + args, capture_output=True, text=True,
                         timeout=SECONDS * 3 + 60)
    wall = time.monotonic() - t0
    u1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    k1 = core_times()
    b1 = cpu_ticks([BACKEND_PID])
    c1 = cpu_ticks(pids)
    h1 = tollgate_handshakes() if is_counted else None
    if h0 and h1:
        # The server's own view: proves that no full-handshake round resumed.
        res["server_full"] = h1[0] - h0[0]
        res["server_resumed"] = h1[1] - h0[1]
    server_cpu = (c1 - c0) / CLK_TCK
    load_cpu = (u1.ru_utime - u0.ru_utime) + (u1.ru_stime - u0.ru_stime)
    res["server_cpu_s"] = server_cpu
    res["server_cpu_pct"] = 100.0 * server_cpu / wall
    # The client side: load generator plus backend, both on the client core.
    res["client_cpu_pct"] = 100.0 * (load_cpu + (b1 - b0) / CLK_TCK) / wall
    res["client_core_pct"] = core_busy_pct(k0, k1, CLIENT_CORE)
    res["server_core_pct"] = core_busy_pct(k0, k1, SERVER_CORE)
    # What kept a core busy that was neither ours nor interrupts (loopback
    # TCP runs partly in softirq): other processes, or steal.
    res["server_core_other_pct"] = max(0.0, res["server_core_pct"] - res["server_cpu_pct"] -
                                       core_irq_pct(k0, k1, SERVER_CORE))
    res["client_core_other_pct"] = max(0.0, res["client_core_pct"] - res["client_cpu_pct"] -
                                       core_irq_pct(k0, k1, CLIENT_CORE))
    res["wall_s"] = wall
    if kind == "wrk":
        m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out.stdout)
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
        if not m or not rps:
            raise RuntimeError(f"wrk output not understood: {out.stdout}{out.stderr}")
        count = int(m.group(1))
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
        errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                         out.stdout)
        res["fail"] = (int(bad.group(1)) if bad else 0) + (
            sum(int(x) for x in errs.groups()) if errs else 0)
        res["value"] = float(rps.group(1))
        res["count"] = count
        for q in ("50", "99"):
            lm = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)", out.stdout, re.M)
            if lm:
                mult = {"us": 0.001, "ms": 1, "s": 1000}[lm.group(2)]
                res[f"p{q}_ms"] = float(lm.group(1)) * mult
    elif kind == "h2":
        res["count"], res["value"] = parse_h2load(out)
        res["fail"] = 0
    else:
        kv = parse_kv(out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "")
        if "ok" not in kv:
            raise RuntimeError(f"tgload failed: {out.stdout}{out.stderr}")
        res["fail"] = int(kv["fail"])
        res["resumed"] = int(kv["resumed"])
        res["client_cpu_s"] = float(kv["cpu_s"])
        res["last_err"] = kv.get("last_err", "")
        if kind in ("bulk-up", "bulk-down"):
            res["value"] = float(kv["mbps"])
            res["count"] = float(kv["mbps"]) * float(kv["secs"])
        else:
            res["value"] = float(kv["rate"])
            res["count"] = int(kv["ok"])
        if kind == "rate":
            res["p50_ms"] = float(kv["p50_ms"])
            res["p99_ms"] = float(kv["p99_ms"])
            res["value"] = res["p50_ms"]
    res["per_cpu_s"] = res["count"] / server_cpu if server_cpu > 0 else 0.0
    return res


def measure_hold(server, scen, pki, res):
    _, _, listener, _, _, _ = SCENARIOS[scen]
    # A fresh process: memory freed by earlier rounds must not hide the cost.
    server.stop()
    server.start()
    pids = server.pids()
    time.sleep(0.5)
    before = rss_kib(pids)
    port = server_port(server.name, listener)
    proto = "http" if listener.startswith("https") else "tcp"
    args = ["taskset", "-c", CLIENT_CORE, os.path.join(TOOLS, "tgload"), "-m", "hold",
            "-a", f"127.0.0.1:{port}", "-p", proto, "-n", str(HOLD), "-c", "64", "-d", "3"]
    c0 = cpu_ticks(pids)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    held = 0
    after = before
    try:
        line = proc.stdout.readline()
        kv = parse_kv(line)
        held = int(kv.get("held", "0"))
        if held:
            time.sleep(1)
            after = rss_kib(pids)
        rest = proc.stdout.read()
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    c1 = cpu_ticks(pids)
    kvf = parse_kv(rest.strip().splitlines()[-1]) if rest.strip() else parse_kv(line)
    res["fail"] = int(kvf.get("fail", "0"))
    res["last_err"] = kvf.get("last_err", "")
    res["held"] = held
    res["rss_before_kib"] = before
    res["rss_after_kib"] = after
    res["value"] = (after - before) / held if held else float("nan")
    res["server_cpu_s"] = (c1 - c0) / CLK_TCK
    res["count"] = held
    return res


# ---------------------------------------------------------------- ceiling

def openssl_speed():
    secs = str(max(1, min(3, int(SECONDS / 3))))
    ceil = {}
    out = subprocess.run(["taskset", "-c", SERVER_CORE, "openssl", "speed", "-mr", "-seconds",
                          secs, "ecdsap256", "rsa2048", "ecdhx25519"],
                         capture_output=True, text=True, timeout=120).stdout
    for line in out.splitlines():
        f = line.split(":")
        if line.startswith("+F2:") and f[2] == "2048":
            ceil["rsa2048_sign"] = float(f[3])
            ceil["rsa2048_verify"] = float(f[4])
        elif line.startswith("+F4:") and f[2] == "256":
            ceil["ecdsap256_sign"] = float(f[3])
            ceil["ecdsap256_verify"] = float(f[4])
        elif line.startswith("+F5:") and f[2] == "253":
            ceil["x25519"] = float(f[3])
    out = subprocess.run(["taskset", "-c", SERVER_CORE, "openssl", "speed", "-mr", "-seconds",
                          secs, "-bytes", "16384", "-evp", "aes-128-gcm"],
                         capture_output=True, text=True, timeout=120).stdout
    for line in out.splitlines():
        if line.startswith("+F:"):
            ceil["aes128gcm_MBps"] = float(line.split(":")[3]) / 1e6
    x, es, ev, rs = (ceil.get(k) for k in ("x25519", "ecdsap256_sign", "ecdsap256_verify",
                                            "rsa2048_sign"))
    if x and es and ev and rs:
        # Server work per handshake: X25519 key generation and derivation (two
        # scalar multiplications), one signature; mutual TLS adds verifying
        # the client's CertificateVerify and its two-certificate chain.
        ceil["hs_ecdsa"] = 1 / (1 / es + 2 / x)
        ceil["hs_rsa"] = 1 / (1 / rs + 2 / x)
        ceil["hs_resume"] = x / 2
        ceil["hs_mtls"] = 1 / (1 / es + 2 / x + 3 / ev)
    if "aes128gcm_MBps" in ceil:
        ceil["aes"] = ceil["aes128gcm_MBps"]
    return ceil


def relay_speed(ceil):
    """The rest of the bulk ceiling: the cheapest user-space relay. tgrelay
    (plain TCP, read() and write() through a 64 KiB buffer per direction: a
    TLS terminator cannot splice) runs on the server core and carries tgload
    -P's bulk data to tgback's sink, then from its source, as the bulk rows
    do but without TLS. Its MB per CPU-second, with AES-128-GCM's cost per
    byte added, is the bulk ceiling per direction. Adds to ceil; a failed
    measurement leaves that direction without a ceiling."""
    secs = max(1, min(3, int(SECONDS / 3)))
    for d, back in (("up", "sink"), ("down", "source")):
        port = RELAY[d]
        relay = subprocess.Popen(["taskset", "-c", SERVER_CORE, os.path.join(TOOLS, "tgrelay"),
                                  "-l", str(port), "-t", f"127.0.0.1:{BACK[back]}",
                                  "-d", str(secs * 3 + 60)], stdout=subprocess.DEVNULL)
        try:
            wait_ports([port], relay, "tgrelay")
            c0 = cpu_ticks([relay.pid])
            k0 = core_times()
            t0 = time.monotonic()
            out = subprocess.run(["taskset", "-c", CLIENT_CORE, os.path.join(TOOLS, "tgload"),
                                  "-P", "-m", f"bulk-{d}", "-a", f"127.0.0.1:{port}", "-c", "4",
                                  "-d", str(secs)], capture_output=True, text=True,
                                 timeout=secs * 3 + 60)
            wall = time.monotonic() - t0
            k1 = core_times()
            cpu = (cpu_ticks([relay.pid]) - c0) / CLK_TCK
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            log(f"bench: relay ceiling {d}: {e}")
            continue
        finally:
            relay.terminate()
            relay.wait()
        kv = parse_kv(out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "")
        if "mbps" not in kv or kv.get("fail") != "0" or cpu <= 0:
            log(f"bench: relay ceiling {d}: tgload -P failed: {out.stdout}{out.stderr}")
            continue
        mbps = float(kv["mbps"])
        ceil[f"relay_{d}_MBps"] = mbps * float(kv["secs"]) / cpu
        ceil[f"relay_{d}_rate"] = mbps
        ceil[f"relay_{d}_cpu_pct"] = 100.0 * cpu / wall
        ceil[f"relay_{d}_other_pct"] = max(0.0, core_busy_pct(k0, k1, SERVER_CORE) -
                                           100.0 * cpu / wall - core_irq_pct(k0, k1, SERVER_CORE))
        if ceil.get("aes"):
            # Per byte: one pass through the relay, one through AES-GCM.
            ceil[f"bulk_{d}"] = 1 / (1 / ceil[f"relay_{d}_MBps"] + 1 / ceil["aes"])


# ---------------------------------------------------------------- report

def fmt(v, unit=None):
    if v is None or v != v:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def spread(vals):
    vals = [v for v in vals if v is not None and v == v]
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)


def saturation(p):
    """Which side limited the rate: the server (its process, or its core with
    the interrupts it causes, near 100%), the client (load generator +
    backend), other load (≥ 10% of a core went to other processes or to
    steal: a shared machine), or none."""
    srv, cli = p["server_cpu_pct"][0], p["client_cpu_pct"][0]
    c0, c1 = p["server_core_pct"][0], p["client_core_pct"][0]
    o0, o1 = p["server_core_other_pct"][0], p["client_core_other_pct"][0]
    if srv is None:
        return "-"
    if srv >= 90:
        return "server"
    if cli is not None and cli >= 90:
        return "client"
    if (o0 or 0) >= 10 or (o1 or 0) >= 10:
        return "other load"
    if (c0 or 0) >= 90:
        return "server"
    if (c1 or 0) >= 90:
        return "client"
    return "neither"


def summarize(rows, ceil, failed):
    """Returns (markdown, summary rows). failed: the rounds that gave no figure."""
    md = []
    summary = []
    for scen in ORDER:
        rs = [r for r in rows if r["scenario"] == scen]
        fs = [f for f in failed if f["scenario"] == scen]
        if not rs and not fs:
            continue
        title, kind, listener, extra, unit, ckey = SCENARIOS[scen]
        md.append(f"### {scen}: {title}\n")
        per = {}
        for srv in SERVERS:
            sr = [r for r in rs if r["server"] == srv]
            if not sr:
                continue
            g = lambda k: spread([r.get(k) for r in sr])
            per[srv] = {k: g(k) for k in ("value", "per_cpu_s", "server_cpu_pct", "client_cpu_pct",
                                          "client_core_pct", "server_core_pct",
                                          "server_core_other_pct", "client_core_other_pct", "p50_ms",
                                          "p99_ms", "server_cpu_s")}
            per[srv]["fail"] = sum(r.get("fail", 0) for r in sr)
            per[srv]["resumed"] = sum(r.get("resumed", 0) for r in sr)
            per[srv]["server_full"] = sum(r.get("server_full", 0) for r in sr)
            per[srv]["server_resumed"] = sum(r.get("server_resumed", 0) for r in sr)
            per[srv]["count"] = sum(r.get("count", 0) for r in sr)
            per[srv]["rounds"] = len(sr)
            per[srv]["held"] = min(r.get("held", 0) for r in sr)
            per[srv]["errs"] = sorted({r.get("last_err") for r in sr if r.get("last_err")})
        if kind == "hold":
            md.append("| server | KiB per idle connection, median (min–max) | held | failures |")
            md.append("| --- | --- | --- | --- |")
            for srv, p in per.items():
                v = p["value"]
                md.append(f"| {srv} | {fmt(v[0])} ({fmt(v[1])}–{fmt(v[2])}) | {p['held']} | "
                          f"{p['fail']} |")
        elif kind == "rate":
            md.append("| server | p50 ms, median (min–max) | p99 ms, median (min–max) | "
                      "server CPU % | failures |")
            md.append("| --- | --- | --- | --- | --- |")
            for srv, p in per.items():
                a, b, c = p["p50_ms"], p["p99_ms"], p["server_cpu_pct"]
                md.append(f"| {srv} | {fmt(a[0])} ({fmt(a[1])}–{fmt(a[2])}) | "
                          f"{fmt(b[0])} ({fmt(b[1])}–{fmt(b[2])}) | {fmt(c[0])} | {p['fail']} |")
        else:
            head = (f"| server | {unit}, median (min–max) | server CPU % | "
                    f"{unit.split('/')[0]} per server CPU-s, median (min–max) | client CPU % | "
                    f"core {SERVER_CORE}/{CLIENT_CORE} busy % (other load) | saturated | failures |")
            sep = "| --- | --- | --- | --- | --- | --- | --- | --- |"
            is_bulk = ckey in ("bulk_up", "bulk_down")
            if ckey:
                head += " share of 1-core ceiling |"
                sep += " --- |"
            if is_bulk:
                head += " share of AES-GCM alone |"
                sep += " --- |"
            if kind == "hs":
                head += " resumed |"
                sep += " --- |"
            md.append(head)
            md.append(sep)
            for srv, p in per.items():
                v, pc, cp = p["value"], p["per_cpu_s"], p["server_cpu_pct"]
                cl, k0, k1 = p["client_cpu_pct"], p["server_core_pct"], p["client_core_pct"]
                o0, o1 = p["server_core_other_pct"], p["client_core_other_pct"]
                line = (f"| {srv} | {fmt(v[0])} ({fmt(v[1])}–{fmt(v[2])}) | {fmt(cp[0])} | "
                        f"{fmt(pc[0])} ({fmt(pc[1])}–{fmt(pc[2])}) | {fmt(cl[0])} | "
                        f"{fmt(k0[0])}/{fmt(k1[0])} ({fmt(o0[0])}/{fmt(o1[0])}) | "
                        f"{saturation(p)} | {p['fail']} |")
                for k in ([ckey] if ckey else []) + (["aes"] if is_bulk else []):
                    c = ceil.get(k)
                    line += f" {100 * pc[0] / c:.0f}% |" if c and pc[0] else " - |"
                if kind == "hs":
                    line += f" {p['resumed']} of {p['count']} |"
                md.append(line)
            if is_bulk:
                d = ckey.split("_")[1]
                md.append(f"\nShare of 1-core ceiling: MB per server CPU-second divided by the "
                          f"relay + AES-GCM ceiling, {fmt(ceil.get(ckey))} MB per CPU-second = "
                          f"1 / (1 / {fmt(ceil.get(f'relay_{d}_MBps'))} plain relay + 1 / "
                          f"{fmt(ceil.get('aes'))} AES-128-GCM). Share of AES-GCM alone: "
                          f"divided by {fmt(ceil.get('aes'))}.")
        # Ratio of tollgate to the best peer; >= 1.0 means tollgate is better.
        ratio_txt = ""
        ratios = {}
        if "tollgate" in per and len(per) > 1:
            peers = {s: p for s, p in per.items() if s != "tollgate"}
            t = per["tollgate"]
            if kind == "hold":
                best = min(peers, key=lambda s: peers[s]["value"][0])
                if t["value"][0]:
                    ratios["value"] = peers[best]["value"][0] / t["value"][0]
                ratio_txt = f"best peer {best}: ratio {fmt(ratios.get('value'))} (best peer KiB / tollgate KiB)"
            elif kind == "rate":
                best = min(peers, key=lambda s: peers[s]["p99_ms"][0])
                ratios["p50"] = peers[best]["p50_ms"][0] / t["p50_ms"][0] if t["p50_ms"][0] else None
                ratios["p99"] = peers[best]["p99_ms"][0] / t["p99_ms"][0] if t["p99_ms"][0] else None
                ratio_txt = (f"best peer (p99) {best}: ratio p50 {fmt(ratios['p50'])}, "
                             f"p99 {fmt(ratios['p99'])} (peer latency / tollgate latency)")
                ratios["value"] = ratios["p99"]
            else:
                best_r = max(peers, key=lambda s: peers[s]["value"][0])
                best_c = max(peers, key=lambda s: peers[s]["per_cpu_s"][0])
                ratios["value"] = t["value"][0] / peers[best_r]["value"][0] if peers[best_r]["value"][0] else None
                ratios["per_cpu"] = (t["per_cpu_s"][0] / peers[best_c]["per_cpu_s"][0]
                                     if peers[best_c]["per_cpu_s"][0] else None)
                ratio_txt = (f"rate {fmt(ratios['value'])} (best peer {best_r}), "
                             f"per server CPU-s {fmt(ratios['per_cpu'])} (best peer {best_c})")
            md.append(f"\n**tollgate / best peer** (≥ 1.0: tollgate better): {ratio_txt}\n")
        else:
            md.append("")
        t = per.get("tollgate")
        if kind == "hs" and t and (t["server_full"] or t["server_resumed"]):
            md.append(f"tollgate's own counter (`tollgate_tls_handshakes_total`) over the rounds: "
                      f"{t['server_full']} full, {t['server_resumed']} resumed.\n")
        for srv, p in per.items():
            if p["errs"]:
                md.append(f"- {srv} failures: {', '.join(p['errs'])}")
        for f in fs:
            md.append(f"- {f['server']} round {f['round']} failed, no figure: "
                      + " ".join(f["error"].split()))
        if fs or any(p["errs"] for p in per.values()):
            md.append("")
        for srv, p in per.items():
            summary.append({
                "scenario": scen, "server": srv, "unit": unit, "rounds": p["rounds"],
                "median": p["value"][0], "min": p["value"][1], "max": p["value"][2],
                "per_cpu_s_median": p["per_cpu_s"][0], "server_cpu_pct": p["server_cpu_pct"][0],
                "client_cpu_pct": p["client_cpu_pct"][0],
                "server_core_pct": p["server_core_pct"][0],
                "client_core_pct": p["client_core_pct"][0],
                "server_core_other_pct": p["server_core_other_pct"][0],
                "client_core_other_pct": p["client_core_other_pct"][0], "saturated": saturation(p),
                "p50_ms": p["p50_ms"][0], "p99_ms": p["p99_ms"][0], "failures": p["fail"],
                "ratio_rate": ratios.get("value") if srv == "tollgate" else None,
                "ratio_per_cpu": ratios.get("per_cpu") if srv == "tollgate" else None,
            })
    return "\n".join(md), summary


def relay_note(ceil, d):
    """How the plain relay ran: its rate and share of the server core."""
    if f"relay_{d}_rate" not in ceil:
        return ""
    return (f" ({fmt(ceil[f'relay_{d}_rate'])} MB/s at {fmt(ceil[f'relay_{d}_cpu_pct'])}% CPU, "
            f"other load {fmt(ceil[f'relay_{d}_other_pct'])}%)")


def ceiling_md(ceil, rows):
    has_relay = any(k.startswith("relay_") for k in ceil)
    what = "`openssl speed` and a plain relay" if has_relay else "`openssl speed`"
    md = [f"### one-core ceiling ({what}, core {SERVER_CORE})\n",
          "| operation | per second |", "| --- | --- |"]
    names = [("ecdsap256_sign", "ECDSA P-256 sign"), ("ecdsap256_verify", "ECDSA P-256 verify"),
             ("rsa2048_sign", "RSA-2048 sign"), ("rsa2048_verify", "RSA-2048 verify"),
             ("x25519", "X25519 derive"), ("aes128gcm_MBps", "AES-128-GCM MB/s (16 KiB blocks)"),
             ("relay_up_MBps", "plain TCP relay, client to backend, MB per CPU-second"
              + relay_note(ceil, "up")),
             ("relay_down_MBps", "plain TCP relay, backend to client, MB per CPU-second"
              + relay_note(ceil, "down")),
             ("hs_ecdsa", "→ full ECDSA handshakes (1 sign + 2 X25519)"),
             ("hs_rsa", "→ full RSA handshakes (1 sign + 2 X25519)"),
             ("hs_resume", "→ resumed handshakes (2 X25519)"),
             ("hs_mtls", "→ mutual ECDSA handshakes (+3 verifies)"),
             ("bulk_up", "→ bulk client to backend, MB per CPU-second (relay + AES-128-GCM)"),
             ("bulk_down", "→ bulk backend to client, MB per CPU-second (relay + AES-128-GCM)")]
    for k, n in names:
        if k in ceil:
            md.append(f"| {n} | {fmt(ceil[k])} |")
    md.append("\nShare of ceiling = the server's rate per CPU-second divided by the ceiling: "
              "what the server spends outside the cryptography shows as the gap to 100%.")
    if has_relay:
        md.append("The bulk ceiling is 1 / (1 / relay + 1 / AES-128-GCM) MB per CPU-second: "
                  "each byte costs one pass through the cheapest user-space relay (tgrelay: "
                  "plain TCP, `read()` and `write()` through a 64 KiB buffer per direction, "
                  "the same 4 connections of tgload and the same backend, without TLS) plus "
                  "one AES-GCM pass; what the server spends beyond both shows as the gap "
                  "to 100%.")
    md.append("")
    return "\n".join(md)


# ---------------------------------------------------------------- profile

def profile(scen, work, pki):
    """perf record -g on one server's worker (BENCH_PROFILE_SERVER, default
    tollgate) while one load run goes on."""
    name = os.environ.get("BENCH_PROFILE_SERVER", "tollgate")
    srv = CLASSES[name](name, work)
    srv.start()
    try:
        for sc in scen:
            pids = srv.pids()
            worker = pids[-1] if len(pids) > 1 else pids[0]
            data = os.path.join(OUT, f"perf-{name}-{sc}.data")
            perf = subprocess.Popen(["perf", "record", "-g", "-F", "999", "-p", str(worker),
                                     "-o", data, "--", "sleep", str(SECONDS)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)
            r = measure(srv, sc, pki, 1)
            perf.wait(timeout=SECONDS + 60)
            log(f"bench: profile {sc}: {fmt(r.get('value'))} {SCENARIOS[sc][4]}, "
                f"server cpu {fmt(r.get('server_cpu_pct'))}%")
            txt = os.path.join(OUT, f"profile-{name}-{sc}.txt")
            with open(txt, "w") as f:
                f.write(f"# {sc}: {SCENARIOS[sc][0]}\n# {fmt(r.get('value'))} "
                        f"{SCENARIOS[sc][4]}, server cpu {fmt(r.get('server_cpu_pct'))}%\n\n")
                f.flush()
                subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                                "-g", "none", "--sort", "dso", "--percent-limit", "0.5"],
                               stdout=f, stderr=subprocess.DEVNULL)
                f.flush()
                subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                                "-g", "none", "--sort", "dso,symbol", "--percent-limit", "0.4"],
                               stdout=f, stderr=subprocess.DEVNULL)
                f.flush()
                subprocess.run(["perf", "report", "-i", data, "--stdio", "--children",
                                "-g", "none", "--sort", "symbol", "--percent-limit", "3"],
                               stdout=f, stderr=subprocess.DEVNULL)
            log(f"bench: profile written to {txt}")
    finally:
        srv.stop()
    return 0


def syscalls(scen, work, pki):
    """System calls per request (or per MB) of each server's worker, counted
    with perf stat on the syscalls:sys_enter_* tracepoints during one load
    run. Counting a tracepoint does not slow the worker (strace -c would,
    about tenfold, and then the next record is always there already, which
    hides exactly the reads that find nothing)."""
    lines = ["| scenario | server | per | counted over | syscalls | top calls |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name in SERVERS:
        srv = CLASSES[name](name, work)
        srv.start()
        try:
            worker = srv.pids()[-1]
            for sc in scen:
                out = os.path.join(work, f"perfstat-{name}-{sc}.csv")
                st = subprocess.Popen(["perf", "stat", "-x", ",", "-o", out,
                                       "-e", "syscalls:sys_enter_*", "-p", str(worker)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                r = measure(srv, sc, pki, 1)
                st.send_signal(signal.SIGINT)
                st.wait(timeout=30)
                calls = {}
                with open(out) as f:
                    for line in f:
                        fields = line.strip().split(",")
                        if len(fields) < 3 or not fields[0].isdigit():
                            continue
                        ev = fields[2].rsplit("sys_enter_", 1)[-1]
                        if int(fields[0]):
                            calls[ev] = calls.get(ev, 0) + int(fields[0])
                n = r["count"] or 1
                per = "MB" if SCENARIOS[sc][4] == "MB/s" else "op"
                top = sorted(calls.items(), key=lambda x: -x[1])[:12]
                lines.append(f"| {sc} | {name} | {per} | {n:,.0f} {per} | "
                             f"{sum(calls.values()) / n:.1f} | "
                             + ", ".join(f"{k} {v / n:.2f}" for k, v in top) + " |")
                log(lines[-1])
        finally:
            srv.stop()
    text = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "syscalls.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


# ---------------------------------------------------------------- main

def main(argv):
    want = argv or ["all"]
    tool = want[0] if want[0] in ("profile", "syscalls") else None
    if tool:
        want = want[1:] or ["hs_rsa_https", "hs_ecdsa_https", "keepalive_https"]
    if "all" in want:
        scen = ORDER
    else:
        bad = [s for s in want if s not in SCENARIOS]
        if bad:
            print(f"unknown scenario {bad}; known: all {' '.join(ORDER)}", file=sys.stderr)
            return 2
        scen = want
    try:
        os.sched_setaffinity(0, set(core_list(CLIENT_CORE)))
    except OSError:
        pass
    os.makedirs(OUT, exist_ok=True)
    work = tempfile.mkdtemp(prefix="tollgate-bench-")
    pki = os.path.join(work, "pki")
    subprocess.run([TOLLGATE, "pki", "init", pki], check=True, stdout=subprocess.DEVNULL)
    for k in ("ecdsa", "rsa"):
        with open(os.path.join(pki, f"haproxy-{k}.pem"), "w") as f:
            for part in (f"server-{k}.crt", f"server-{k}.key"):
                with open(os.path.join(pki, part)) as g:
                    f.write(g.read())
    log(f"bench: work dir {work}; {ROUNDS} rounds of {SECONDS:g}s; servers {','.join(SERVERS)}")
    global BACKEND_PID
    backend = subprocess.Popen(["taskset", "-c", CLIENT_CORE, os.path.join(TOOLS, "tgback"),
                                str(BACK["http"]), str(BACK["echo"]), str(BACK["sink"]),
                                str(BACK["source"])])
    BACKEND_PID = backend.pid
    servers = [CLASSES[s](s, work) for s in SERVERS]
    rows = []
    failed = []
    try:
        wait_ports(BACK.values(), backend, "tgback")
        if tool == "profile":
            return profile(scen, work, pki)
        if tool == "syscalls":
            return syscalls(scen, work, pki)
        for s in servers:
            s.start()
        log("bench: openssl speed (one-core ceiling)")
        ceil = openssl_speed()
        if any(SCENARIOS[sc][5] in ("bulk_up", "bulk_down") for sc in scen):
            log("bench: plain relay (bulk ceiling)")
            relay_speed(ceil)
        for sc in scen:
            log(f"bench: {sc}: {SCENARIOS[sc][0]}")
            for s in servers:
                try:
                    warm_up(s, sc, pki)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    log(f"bench: {sc} {s.name} warm-up: {e}")
            for rnd in range(1, ROUNDS + 1):
                for s in servers:
                    try:
                        r = measure(s, sc, pki, rnd)
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        log(f"bench: {sc} {s.name} round {rnd}: {e}")
                        failed.append({"scenario": sc, "server": s.name, "round": rnd,
                                       "error": str(e)})
                        if s.proc is None or s.proc.poll() is not None:
                            log(f"bench: restarting {s.name}")
                            s.proc = None
                            s.start()
                        continue
                    rows.append(r)
                    log(f"  {s.name:8} round {rnd}: {fmt(r.get('value'))} "
                        f"{SCENARIOS[sc][4]}  server cpu {fmt(r.get('server_cpu_pct'))}%  "
                        f"fail {r.get('fail', 0)} {r.get('last_err', '')}")
    finally:
        for s in servers:
            s.stop()
        backend.terminate()
        backend.wait()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"bench: kept {work} (configs, logs, PKI)")

    body, summary = summarize(rows, ceil, failed)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    ver = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    ngv = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    osv = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    head = (f"# tollgate benchmark: {when}\n\n"
            f"{ROUNDS} rounds of {SECONDS:g} s per server and scenario, interleaved; {WORKERS} "
            f"worker(s) per server on core(s) {SERVER_CORE}, load generator and backend on "
            f"core(s) {CLIENT_CORE}; {CONC} concurrent connections for handshakes. {ver}; {ngv}; {osv}. "
            f"TLS 1.3 only, X25519, tickets on, access logs off everywhere. "
            f"Generated by `bench/run.sh {' '.join(want)}`.\n\n"
            f"Server CPU % is the server's process tree (utime + stime from /proc); client CPU % "
            f"is the load generator plus the backend; core busy % is from /proc/stat, and "
            f"(other load) is the part of it that was neither our processes nor interrupts: "
            f"other processes or steal. Saturated: `server` when the server uses ≥ 90% of its "
            f"core, `client` when the load generator and backend use ≥ 90% of theirs, "
            f"`other load` when other load took ≥ 10% of a core (a shared machine: the "
            f"figures are distorted), then `server` or `client` when that core is ≥ 90% busy "
            f"(interrupts included), else `neither`. When the "
            f"server is not the saturated side, the rate per server CPU-second is the figure "
            f"that compares.\n")
    text = head + "\n" + ceiling_md(ceil, rows) + "\n" + body + "\n"
    with open(os.path.join(OUT, "latest.md"), "w") as f:
        f.write(text)
    fields = ["scenario", "server", "unit", "rounds", "median", "min", "max", "per_cpu_s_median",
              "server_cpu_pct", "client_cpu_pct", "server_core_pct", "client_core_pct",
              "server_core_other_pct", "client_core_other_pct",
              "saturated", "p50_ms", "p99_ms", "failures", "ratio_rate",
              "ratio_per_cpu"]
    with open(os.path.join(OUT, "latest.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in summary:
            w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
    rk = sorted({k for r in rows for k in r})
    with open(os.path.join(OUT, "rounds.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=rk)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
