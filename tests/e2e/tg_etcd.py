"""A real etcd on loopback for the fleet tests: one member or a cluster of
several, each with its own data directory under the test's temporary
directory, on free ports, and a small client for etcd's v3 JSON gateway
(POST /v3/..., keys and values base64 in the JSON).

Every wait is bounded (tg_proc.T scales them like the rest of the suite);
stop() is SIGTERM and then SIGKILL, kill() is a crash, start() again brings
the member back on the same ports with the same data.
"""

import base64
import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import tg_proc
from tg_proc import T, free_port

ETCD_BIN = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
MISSING = f"etcd is not installed at {ETCD_BIN}: run scripts/setup.sh test (Debian package etcd-server)"

# The gateway must be reached directly, whatever http_proxy says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text) if text else b""


def prefix_end(prefix):
    """The range_end that makes [prefix, range_end) every key starting with
    prefix (etcd's rule: the last byte below 0xff incremented, the rest cut)."""
    p = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\0"  # every key


class EtcdError(AssertionError):
    """The gateway answered with an HTTP error; .status and .body (parsed
    JSON when it is JSON, else text)."""

    def __init__(self, status, body):
        super().__init__(f"etcd gateway answered {status}: {body}")
        self.status = status
        self.body = body


class Etcd:
    """One etcd member. Alone by default; Etcd.cluster() makes several that
    know each other."""

    def __init__(self, workdir, name="etcd", client_port=None, peer_port=None, extra_args=()):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.data_dir = self.dir / f"{name}.data"
        self.log_path = self.dir / f"{name}.log"
        self.auto_ports = client_port is None and peer_port is None
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.extra_args = list(extra_args)
        self.initial_cluster = f"{name}={self.peer_url}"
        self.cluster_token = f"tg-{name}-{self.peer_port}"
        self.proc = None
        self.log_f = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self):
        return f"http://127.0.0.1:{self.peer_port}"

    # -- process --
    def args(self):
        return [ETCD_BIN, "--name", self.name, "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", self.initial_cluster,
                "--initial-cluster-token", self.cluster_token,
                "--initial-cluster-state", "new",
                # Loopback: elections in half a second rather than etcd's one to
                # two, so that starting and losing a leader stay quick.
                "--heartbeat-interval", "50", "--election-timeout", "500",
                # Quiet, and all of it in one file: zap to stderr, stderr to the log.
                "--logger", "zap", "--log-level", "warn", "--log-outputs", "stderr",
                *self.extra_args]

    def start(self, wait=True, retries=3):
        """Starts (or starts again: same ports, same data directory).
        Returns self; with wait, once the member answers a range request.
        A lone member's first start whose free port got taken in between
        tries again on new ones."""
        fresh = self.proc is None and self.auto_ports and self.initial_cluster.count("=") == 1
        tries = retries if fresh and wait else 1
        for attempt in range(tries):
            try:
                return self._start(wait)
            except StartupError as e:
                if "address already in use" not in str(e) or attempt + 1 >= tries:
                    raise
                self.stop()
                shutil.rmtree(self.data_dir, ignore_errors=True)
                self.client_port, self.peer_port = free_port(), free_port()
                self.initial_cluster = f"{self.name}={self.peer_url}"
        return self

    def _start(self, wait):
        assert os.access(ETCD_BIN, os.X_OK), MISSING
        assert not self.alive(), f"etcd {self.name} is already running"
        self._close_log()
        self.log_f = open(self.log_path, "ab")
        self.log_offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=self.log_f,
                                     stderr=self.log_f, start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    def ready(self, timeout=1):
        """True once a linearizable range is answered (the member has a
        leader and has caught up)."""
        try:
            self.call("/v3/kv/range", {"key": b64("tg-etcd-ready")}, timeout=timeout)
            return True
        except (OSError, EtcdError):
            return False

    def wait_ready(self, timeout=None):
        timeout = timeout or T(20)
        # A request made before there is a leader waits for one rather than
        # failing: short tries first, longer ones after.
        tries = [0]

        def up():
            if not self.alive():
                raise StartupError(f"etcd {self.name} exited with {self.proc.returncode}:\n"
                                   + self.this_log()[-4000:])
            tries[0] += 1
            return self.ready(timeout=min(2.0, 0.2 * tries[0]))
        try:
            tg_proc.wait_for(up, timeout, interval=0.05, what=f"etcd {self.name} at {self.url}")
        except StartupError:
            raise
        except AssertionError as e:  # wait_for's deadline
            raise StartupError(f"{e}:\n" + self.this_log()[-4000:]) from None
        return self

    def stop(self):
        """SIGTERM, then SIGKILL after a bound. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(T(10))
            except subprocess.TimeoutExpired:
                self._killpg()
                self.proc.wait(T(5))
        self._killpg()
        self._close_log()
        return self.proc.returncode

    def kill(self):
        """SIGKILL: a crash, nothing flushed on the way out."""
        if self.alive():
            self._killpg()
            self.proc.wait(T(5))
        self._close_log()
        return self.proc.returncode if self.proc else None

    def _killpg(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _close_log(self):
        if self.log_f is not None:
            self.log_f.close()
            self.log_f = None

    def log(self):
        """Everything every start of this member wrote (warnings and up)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def this_log(self):
        """What the latest start wrote."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_offset)
                return f.read().decode(errors="replace")
        except (FileNotFoundError, AttributeError):
            return ""

    # -- the JSON gateway --
    def call(self, path, body, timeout=None):
        """POSTs body (a dict, as JSON) to path; returns the parsed answer.
        Raises EtcdError for an HTTP error, OSError when nothing answers."""
        data = json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with _OPENER.open(req, timeout=timeout or T(10)) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            raise EtcdError(e.code, parsed) from None

    def get(self, key):
        """The value of key (bytes), or None when there is no such key."""
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs", [])
        return unb64(kvs[0].get("value")) if kvs else None

    def put(self, key, value, lease=None):
        """Puts; returns the revision of the put. lease: a lease ID (int)."""
        body = {"key": b64(key), "value": b64(value)}
        if lease is not None:
            body["lease"] = str(lease)
        return int(self.call("/v3/kv/put", body)["header"]["revision"])

    def range_prefix(self, prefix):
        """{key (str, or bytes when not UTF-8): value (bytes)} for every key
        starting with prefix."""
        r = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})
        out = {}
        for kv in r.get("kvs", []):
            k = unb64(kv.get("key"))
            try:
                k = k.decode()
            except UnicodeDecodeError:
                pass
            out[k] = unb64(kv.get("value"))
        return out

    def delete_prefix(self, prefix):
        """Deletes every key starting with prefix; returns how many."""
        r = self.call("/v3/kv/deleterange",
                      {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})
        return int(r.get("deleted", 0))

    def revision(self):
        """The store's current revision."""
        return int(self.call("/v3/kv/range", {"key": b64("tg-etcd-revision")})["header"]["revision"])

    def grant(self, ttl):
        """A new lease of ttl seconds; returns its ID (int)."""
        return int(self.call("/v3/lease/grant", {"TTL": str(ttl)})["ID"])

    def status(self):
        """The member's /v3/maintenance/status (member_id in its header,
        leader, raftTerm...)."""
        return self.call("/v3/maintenance/status", {}, timeout=2)

    def member_id(self):
        return self.status()["header"]["member_id"]

    def is_leader(self):
        s = self.status()
        return s.get("leader") == s["header"]["member_id"]

    # -- several --
    @classmethod
    def cluster(cls, workdir, n=3, extra_args=(), retries=3):
        """n members on loopback that bootstrap together; returns a running
        EtcdCluster once every member answers."""
        for attempt in range(retries):
            members = [cls(Path(workdir) / f"attempt{attempt}", name=f"etcd{i}",
                           extra_args=extra_args) for i in range(n)]
            initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
            token = f"tg-cluster-{members[0].peer_port}"
            for m in members:
                m.initial_cluster = initial
                m.cluster_token = token
            c = EtcdCluster(members)
            try:
                for m in members:
                    m.start(wait=False)
                for m in members:
                    m.wait_ready()
                return c
            except StartupError as e:
                c.stop()
                # A port taken between picking and binding: new ports, new directories.
                if "address already in use" in str(e) and attempt + 1 < retries:
                    continue
                raise
        raise AssertionError("unreachable")


class EtcdCluster(list):
    """The members of one cluster (a list of Etcd) with their client URLs."""

    @property
    def urls(self):
        return [m.url for m in self]

    def leader(self, timeout=None):
        """The member that is leader now (waits a bounded time for one)."""
        def find():
            for m in self:
                if m.alive():
                    try:
                        if m.is_leader():
                            return m
                    except (OSError, EtcdError, KeyError):
                        pass
            return None
        return tg_proc.wait_for(find, timeout or T(15), interval=0.05, what="an etcd leader")

    def stop(self):
        """Ends every member with SIGKILL: the cluster goes away with the
        test, and a leader told to stop when its followers are gone spends
        five seconds trying to hand its leadership over first. (One member's
        own stop() is SIGTERM, fine while the others are up.)"""
        for m in self:
            m.kill()

    def log(self):
        return "".join(f"---- {m.name}\n{m.log()}" for m in self)


class StartupError(AssertionError):
    pass
