"""Black-box test harness: runs the built aosd on a free loopback port and
talks to it over real sockets.  Tests print TAP (one line per check), which
the Automake TAP driver turns into per-check PASS/FAIL lines.

Environment (set by `make check`): AOS_BUILDDIR, AOS_SRCDIR.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

BUILDDIR = os.environ.get("AOS_BUILDDIR", os.getcwd())
SRCDIR = os.environ.get("AOS_SRCDIR", BUILDDIR)
AOSD = os.path.join(BUILDDIR, "aosd")
TENANT_ID = "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f"


def plugin_path(name):
    return os.path.join(BUILDDIR, "plugins", name, ".libs", name + ".so")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tap:
    """Minimal TAP producer.  Each check is independent: an exception in one
    is reported as `not ok` and the run goes on."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, detail=None):
        self.n += 1
        if cond:
            print("ok %d - %s" % (self.n, name))
        else:
            self.failed += 1
            print("not ok %d - %s" % (self.n, name))
            if detail is not None:
                for line in str(detail).splitlines():
                    print("#   " + line)
        sys.stdout.flush()
        return cond

    def skip(self, name, reason):
        self.n += 1
        print("ok %d - %s # SKIP %s" % (self.n, name, reason))
        sys.stdout.flush()

    def eq(self, got, want, name, context=None):
        detail = "got:  %r\nwant: %r" % (got, want)
        if context:
            detail += "\n" + str(context)
        return self.ok(got == want, name, detail)

    def run(self, fn, *args):
        """Runs one test function; an exception counts as one failed check."""
        try:
            fn(self, *args)
        except Exception:  # noqa: BLE001 - report everything, keep going
            self.ok(False, "%s raised" % fn.__name__, traceback.format_exc())

    def done(self):
        print("1..%d" % self.n)
        sys.stdout.flush()
        return 1 if self.failed else 0


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header(self, name):
        return self.headers.get(name.lower())


class Daemon:
    """One aosd process with its own directory, config and port."""

    def __init__(self, server_extra="", plugins=("agent-echo",), extra="", testing=True, store=None,
                 auth_extra="", tenants=None):
        self.dir = tempfile.mkdtemp(prefix="aosd-it-")
        self.port = free_port()
        self.plugins_dir = os.path.join(self.dir, "plugins")
        os.makedirs(self.plugins_dir)
        os.makedirs(os.path.join(self.dir, "data"))
        for p in plugins:
            src = plugin_path(p)
            if os.path.exists(src):
                os.symlink(src, os.path.join(self.plugins_dir, p + ".so"))
        with open(os.path.join(self.dir, "jwt.key"), "wb") as f:
            f.write(os.urandom(48))
        os.chmod(os.path.join(self.dir, "jwt.key"), 0o600)
        self.conf = os.path.join(self.dir, "aosd.conf")
        self.plugins = plugins
        self.server_extra = server_extra
        self.extra = extra
        self.testing = testing
        self.auth_extra = auth_extra
        self.tenants = tenants or [(TENANT_ID, "acme")]
        # The store group; default: SQLite in the daemon's own directory.
        self.store = store or 'driver = "sqlite"; path = "%s/data/aos.db";' % self.dir
        self.write_conf()
        self.proc = None
        self.log_path = os.path.join(self.dir, "aosd.log")

    def conf_text(self, server_extra=None, extra=None):
        server_extra = self.server_extra if server_extra is None else server_extra
        extra = self.extra if extra is None else extra
        enable = ", ".join('"%s"' % p for p in self.plugins)
        return (
            'server: { listen = [ "127.0.0.1:%d" ]; data_dir = "%s/data"; %s };\n'
            "store: { %s };\n"
            'auth: { jwt_secret_file = "%s/jwt.key"; %s };\n'
            'plugins: { dir = "%s"; enable = [ %s ]; };\n'
            "tenants = ( %s );\n"
            "%s\n"
            % (self.port, self.dir, server_extra, self.store, self.dir, self.auth_extra, self.plugins_dir, enable,
               ", ".join('{ id = "%s"; name = "%s"; }' % t for t in self.tenants), extra)
        )

    def write_conf(self, text=None):
        with open(self.conf, "w") as f:
            f.write(self.conf_text() if text is None else text)

    def start(self, wait=True):
        env = dict(os.environ)
        if self.testing:
            env["AOS_TESTING"] = "1"
        self.log = open(self.log_path, "ab")
        # AOS_TEST_WRAPPER="valgrind --error-exitcode=99 ..." runs the daemon
        # under a checker; a non-zero exit then fails the exit-code checks.
        wrapper = os.environ.get("AOS_TEST_WRAPPER", "").split()
        self.proc = subprocess.Popen(wrapper + [AOSD, "-c", self.conf], stdout=self.log, stderr=self.log, env=env)
        if wait:
            self.wait_ready()
        return self

    def jwt_key(self):
        with open(os.path.join(self.dir, "jwt.key"), "rb") as f:
            return f.read()

    def aosctl(self, *args, stdin=None):
        """Runs tools/aosctl against this daemon's config."""
        p = subprocess.run([os.path.join(BUILDDIR, "tools", "aosctl"), "-c", self.conf] + list(args),
                           input=stdin, capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("aosd exited with %d:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                r = self.request("GET", "/readyz")
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("aosd not ready after %.0fs:\n%s" % (timeout, self.log_text()))

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15.0):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        self.cleanup()

    # -- clients ---------------------------------------------------------
    def connection(self, timeout=10.0, source=None):
        """source: a local address such as "127.0.0.7", to appear as another client."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                          source_address=(source, 0) if source else None)

    def request(self, method, path, body=None, headers=None, conn=None, source=None):
        own = conn is None
        c = conn or self.connection(source=source)
        try:
            hdrs = dict(headers or {})
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            data = r.read()
            return Response(r.status, r.getheaders(), data)
        finally:
            if own:
                c.close()

    def raw(self, data, timeout=5.0, shut=False):
        """Sends raw bytes; returns everything received until the server
        closes or `timeout` passes without data."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
            return read_all(s, timeout)
        finally:
            s.close()


def read_all(s, timeout):
    s.settimeout(timeout)
    chunks = []
    while True:
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


def parse_responses(data):
    """Splits a byte stream into (status, headers dict, body) responses."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        if status == 100:
            out.append((status, headers, b""))
            data = rest
            continue
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


def pg_private_store():
    """When AOS_TEST_PGSQL is set: a private schema on that server, so tests
    running in parallel (and their tenant syncs) never see each other.
    Returns (store settings, cleanup function) or (None, None)."""
    url = os.environ.get("AOS_TEST_PGSQL")
    if not url:
        return None, None
    schema = "aos_it_" + os.urandom(6).hex()
    subprocess.run(["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", "CREATE SCHEMA %s" % schema],
                   check=True, timeout=60, stdout=subprocess.DEVNULL)
    conninfo = url + ("&" if "?" in url else "?") + "options=-csearch_path%3D" + schema

    def cleanup():
        subprocess.run(["psql", url, "-qAtX", "-c", "DROP SCHEMA %s CASCADE" % schema], timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return 'driver = "pgsql"; conninfo = "%s"; auto_migrate = true; pool_size = 3;' % conninfo, cleanup


PG_BIN_CANDIDATES = ["/usr/lib/postgresql/%d/bin" % v for v in range(20, 12, -1)]


def pg_bin():
    for d in PG_BIN_CANDIDATES:
        if os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    return None


class PgCluster:
    """A private, throwaway PostgreSQL server that a test may stop and start
    at will (the shared CI server must not be touched).  Needs root, because
    the server runs as the postgres user (it refuses to run as root)."""

    def __init__(self):
        self.bin = pg_bin()
        self.dir = tempfile.mkdtemp(prefix="aosd-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.url = "postgresql://aosd:aosd@127.0.0.1:%d/aosd" % self.port

    @staticmethod
    def usable():
        import pwd
        if os.geteuid() != 0 or pg_bin() is None:
            return False
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False
        return True

    def _as_postgres(self, *args):
        subprocess.run(["runuser", "-u", "postgres", "--"] + list(args), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def init(self):
        subprocess.run(["chown", "postgres:postgres", self.dir], check=True)
        self._as_postgres(os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "postgres", "-A", "trust",
                          "-E", "UTF8", "--locale=C.UTF-8")
        self.start()
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-qX",
                        "-v", "ON_ERROR_STOP=1", "-c", "CREATE ROLE aosd LOGIN PASSWORD 'aosd'",
                        "-c", "CREATE DATABASE aosd OWNER aosd"], check=True, stdout=subprocess.DEVNULL,
                       timeout=60)
        return self

    def start(self):
        self._as_postgres(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", os.path.join(self.dir, "log"),
                          "-w", "-t", "60", "-o",
                          "-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off" % (self.port, self.dir),
                          "start")

    def stop(self):
        self._as_postgres(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop")

    def cleanup(self):
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - already stopped
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
