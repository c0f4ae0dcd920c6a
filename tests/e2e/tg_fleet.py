"""Fleet nodes for the end-to-end tests: one shared config pushed into a
real etcd with `tollgate fleet push`, and tollgate nodes that follow it
(`tollgate run --fleet`), each on its own loopback address.

The shared config names every address as "${TG_ADDR:-127.0.0.1}:PORT": all
nodes use the same ports, node i listens on its own 127.0.0.X (env
TG_ADDR), so that several nodes run side by side on one machine from one
config. Every wait is bounded (tg_proc.T).
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import tg_proc
from tg_proc import T, TOLLGATE_BIN, free_port, stop_all, to_yaml, wait_for

ADDR_VAR = "${TG_ADDR:-127.0.0.1}"


def node_addr(i):
    """The loopback address of node i (0, 1, 2...): 127.0.0.11, .12..."""
    return f"127.0.0.{11 + i}"


def port_free_everywhere(port, n):
    """Whether port is free on 127.0.0.1 and the first n node addresses."""
    for host in ["127.0.0.1"] + [node_addr(i) for i in range(n)]:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def shared_port(n=4):
    """A port free on 127.0.0.1 and on the addresses of n nodes."""
    for _ in range(50):
        p = free_port()
        if port_free_everywhere(p, n):
            return p
    raise AssertionError("no port free on every node address")


class Config:
    """A fleet config built from a dict (rendered as YAML by tg_proc.to_yaml)
    with fixed ports: listeners[name] = port, admin port. Addresses are
    ADDR_VAR:port, so each node fills in its own."""

    def __init__(self, pki, workdir, listeners=(), groups=None, admin=True, **top):
        self.pki = pki
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ports = {}
        self.admin_port = shared_port() if admin else None
        self.groups = groups if groups is not None else {
            "g": {"targets": [{"address": "builtin:echo"}]}}
        self.listeners = []
        for l in listeners or [tg_proc.listener()]:
            self.add_listener(l)
        self.top = top

    def add_listener(self, l):
        l = dict(l)
        port = self.ports.get(l["name"]) or shared_port()
        self.ports[l["name"]] = port
        l["listen"] = f"{ADDR_VAR}:{port}"
        self.listeners = [x for x in self.listeners if x["name"] != l["name"]] + [l]
        return port

    def remove_listener(self, name):
        self.listeners = [x for x in self.listeners if x["name"] != name]
        self.ports.pop(name, None)

    def as_dict(self):
        cfg = {"workers": 1, "log": {"level": "info"}, "drain_timeout": "2s",
               "certificates": self.pki.certificates(), "client_cas": self.pki.client_cas()}
        cfg.update(self.top)
        if self.admin_port is not None:
            cfg["admin"] = {"listen": f"{ADDR_VAR}:{self.admin_port}"}
        cfg["target_groups"] = self.groups
        cfg["listeners"] = self.listeners
        return cfg

    def text(self):
        return to_yaml(self.as_dict())

    def write(self, name="fleet.yaml", text=None):
        """Writes the config (atomically) and returns its path."""
        p = self.dir / name
        tmp = p.with_suffix(".tmp")
        tmp.write_text(self.text() if text is None else text)
        os.replace(tmp, p)
        return p


def write_secret(path, data=None):
    """A fleet secret file (0600, 48 random bytes unless data is given)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(48) if data is None else data)
    os.chmod(path, 0o600)
    return str(path)


class Fleet:
    """The commands of one prefix on one etcd (or cluster)."""

    def __init__(self, urls, prefix):
        self.urls = urls if isinstance(urls, str) else ",".join(urls)
        self.prefix = prefix

    def _run(self, args, env=None, timeout=None):
        e = dict(os.environ)
        e.pop("TG_ADDR", None)
        if env:
            e.update(env)
        return subprocess.run([TOLLGATE_BIN, "fleet", *args], capture_output=True, text=True,
                              timeout=timeout or T(30), env=e)

    def common(self):
        return ["--etcd", self.urls, "--prefix", self.prefix]

    def push(self, config_path, base=None, message=None, extra=(), env=None):
        args = ["push", "-c", str(config_path), *self.common()]
        if base is not None:
            args += ["--base", str(base)]
        if message is not None:
            args += ["-m", message]
        return self._run(args + list(extra), env=env)

    def push_ok(self, config_path, **kw):
        """Pushes; asserts success; returns the revision number pushed."""
        r = self.push(config_path, **kw)
        assert r.returncode == 0, f"push failed ({r.returncode}):\n{r.stdout}{r.stderr}"
        m = re.search(r"pushed revision (\d+) \(sha256 ([0-9a-f]+)\) on top of (\d+)", r.stdout)
        assert m, r.stdout
        return int(m.group(1))

    def history(self):
        r = self._run(["history", *self.common(), "--format", "json"])
        assert r.returncode == 0, f"history failed ({r.returncode}):\n{r.stdout}{r.stderr}"
        return json.loads(r.stdout)

    def rollback(self, rev, base=None, message=None):
        args = ["rollback", str(rev), *self.common()]
        if base is not None:
            args += ["--base", str(base)]
        if message is not None:
            args += ["-m", message]
        return self._run(args)

    def status(self):
        """(exit code, parsed JSON or None, stderr)."""
        r = self._run(["status", *self.common(), "--format", "json"])
        try:
            doc = json.loads(r.stdout) if r.stdout.strip() else None
        except ValueError:
            doc = None
        return r.returncode, doc, r.stderr

    def status_text(self):
        return self._run(["status", *self.common()])

    def wait_status(self, pred, timeout=None, what="fleet status"):
        """Polls fleet status until pred(rc, doc) is truthy; returns (rc, doc)."""
        last = [None]

        def look():
            rc, doc, err = self.status()
            last[0] = (rc, doc, err)
            return (rc, doc) if doc is not None and pred(rc, doc) else None
        try:
            return wait_for(look, timeout or T(15), interval=0.1, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}; last status: {last[0]}") from None


def node_of(doc, name):
    for n in doc.get("nodes", []):
        if n.get("node") == name:
            return n
    return None


class Node(tg_proc.Tollgate):
    """One fleet node: `tollgate run --fleet URLS --prefix P --node NAME`, on
    address node_addr(index), its cache in its own directory."""

    def __init__(self, workdir, pki, fleet, index, name=None, secret_file=None, lease_ttl=None,
                 cache_dir=None, env=None):
        name = name or f"n{index + 1}"
        super().__init__(Path(workdir) / name, pki, name=name)
        self.fleet = fleet
        self.index = index
        self.address = node_addr(index)
        self.secret_file = secret_file
        self.lease_ttl = lease_ttl
        self.cache_dir = Path(cache_dir) if cache_dir else self.dir / "cache"
        self.extra_env = dict(env or {})
        self.admin_port = None
        self.err_f = self.out_f = None

    def args(self):
        if getattr(self, "node_file", None):
            return [TOLLGATE_BIN, "run", "-c", str(self.node_file)]
        a = [TOLLGATE_BIN, "run", "--fleet", self.fleet.urls, "--prefix", self.fleet.prefix,
             "--node", self.name, "--cache-dir", str(self.cache_dir)]
        if self.secret_file:
            a += ["--secret-file", str(self.secret_file)]
        if self.lease_ttl:
            a += ["--lease-ttl", str(self.lease_ttl)]
        return a

    def command(self):
        return self.args()

    def spawn_env(self):
        return {"TG_ADDR": self.address, **self.extra_env}

    def start_node(self, cfg, wait=True, timeout=None):
        """Starts the node; cfg (a Config) gives the ports to probe."""
        self.ports = dict(cfg.ports) if cfg is not None else {}
        self.hosts = {n: self.address for n in self.ports}
        self.admin_port = cfg.admin_port if cfg is not None else None
        self._spawn()
        if wait:
            self.wait_ready(timeout=timeout or T(20))
        return self

    def wait_ready(self, generation=1, timeout=None):
        timeout = timeout or T(20)
        super().wait_ready(generation=generation, timeout=timeout)
        if self.admin_port:
            self._probe(self.address, self.admin_port, time.monotonic() + timeout)
        return self

    def stop(self):
        if self.proc is None:
            return None
        return super().stop()

    def crash(self):
        """SIGKILL to the whole process group (master, workers, agent)."""
        self.kill_group(signal.SIGKILL)
        try:
            self.exit_code = self.proc.wait(T(5))
        except subprocess.TimeoutExpired:
            pass
        return self.exit_code

    def addr(self, name="main"):
        return (self.address, self.ports[name])

    # -- the admin endpoint --
    def admin_status(self, timeout=2):
        c = http.client.HTTPConnection(self.address, self.admin_port, timeout=timeout)
        try:
            c.request("GET", "/status")
            r = c.getresponse()
            body = r.read()
            assert r.status == 200, (r.status, body[:300])
            return json.loads(body)
        finally:
            c.close()

    def fleet_state(self):
        """The "fleet" object of /status, or None when the endpoint does not
        answer."""
        try:
            return self.admin_status().get("fleet")
        except (OSError, ValueError, AssertionError):
            return None

    def rev(self):
        f = self.fleet_state()
        return f.get("rev") if f else None

    def wait_rev(self, rev, timeout=None):
        return wait_for(lambda: self.rev() == rev, timeout or T(15), interval=0.05,
                        what=f"{self.name} running revision {rev} (now {self.rev()})")

    def wait_fleet(self, pred, timeout=None, what="fleet state"):
        return wait_for(lambda: (lambda f: f if f and pred(f) else None)(self.fleet_state()),
                        timeout or T(15), interval=0.05, what=f"{self.name}: {what}")

    def applied(self, rev):
        return self.events("fleet_applied", revision=rev)

    def wait_applied(self, rev, timeout=None):
        return self.wait_event("fleet_applied", timeout=timeout or T(15), revision=rev)

