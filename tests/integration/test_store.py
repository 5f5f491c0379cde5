"""Store, black-box: `aosd --migrate`, refusal on a schema the binary cannot
serve, tenants synchronised from config on start and SIGHUP, and outage
behaviour against a private PostgreSQL server that the test stops and
restarts under a running aosd."""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import AOSD, TENANT_ID, Daemon, PgCluster, Tap, pg_private_store  # noqa: E402

OTHER_ID = "0b3e8c1d-2f4a-4b5c-9d6e-7f8a9b0c1d2e"


def migrate(d, *args):
    p = subprocess.run([AOSD, "-c", d.conf, "--migrate"] + list(args), capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def wait_for(pred, timeout=20.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def db_path(d):
    return os.path.join(d.dir, "data", "aos.db")


def test_migrate_cli(t):
    d = Daemon()
    d.store = 'driver = "sqlite"; path = "%s"; auto_migrate = false;' % db_path(d)
    d.write_conf()
    try:
        rc, out, err = migrate(d, "status")
        m = re.search(r"schema version 0, latest known (\d+) \((\d+) pending", out)
        t.ok(rc == 0 and m, "--migrate status on an empty database shows the pending count", out + err)
        latest = int(m.group(1)) if m else 1
        # auto_migrate = false: a daemon refuses to serve an unmigrated store.
        d.start(wait=False)
        rc = d.proc.wait(30)
        t.ok(rc != 0, "aosd stops on pending migrations without store.auto_migrate (rc=%s)" % rc)
        t.ok("aosd --migrate" in d.log_text(), "and says what to run", d.log_text()[-800:])
        rc, out, err = migrate(d)
        t.ok(rc == 0 and "applied 0001_" in out, "--migrate applies the migrations and names them", out + err)
        t.ok("schema at version %d (latest)" % latest in out, "--migrate reports the final version", out)
        rc, out, _ = migrate(d)
        t.ok(rc == 0 and "applied" not in out, "--migrate twice applies nothing the second time", out)
        rc, out, err = migrate(d, "down", "1")
        t.ok(rc == 0 and "reverted %04d_" % latest in out, "--migrate down 1 reverts the last one", out + err)
        rc, out, _ = migrate(d, "status")
        t.ok("1 pending" in out, "status shows it pending again", out)
        rc, _, err = migrate(d, "down", "x")
        t.eq(rc, 2, "--migrate down needs a number")
        rc, out, err = migrate(d)
        t.eq(rc, 0, "up again")
        # A schema newer than this binary: refuse to start, say what to do.
        con = sqlite3.connect(db_path(d))
        # What a newer aosd would leave behind: the next version, applied.
        con.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 0)",
                    (latest + 1,))
        con.commit()
        con.close()
        d.start(wait=False)
        rc = d.proc.wait(30)
        t.ok(rc != 0 and "upgrade aosd" in d.log_text(), "aosd refuses a schema newer than it knows",
             d.log_text()[-800:])
    finally:
        d.cleanup()


def test_migrate_as_owner(t):
    import pwd
    if os.geteuid() != 0:
        t.skip("--migrate as root switches to the database owner", "needs root")
        return
    nobody = pwd.getpwnam("nobody")
    d = Daemon()
    try:
        os.chmod(d.dir, 0o755)
        os.chown(os.path.join(d.dir, "data"), nobody.pw_uid, nobody.pw_gid)
        rc, out, err = migrate(d)
        t.eq(rc, 0, "aosd --migrate as root on a directory owned by another user", out + err)
        owner = os.stat(db_path(d)).st_uid
        t.eq(owner, nobody.pw_uid, "the database it creates belongs to the directory's owner, not root")
    finally:
        d.cleanup()


def tenants(d):
    con = sqlite3.connect(db_path(d))
    try:
        return sorted(con.execute("SELECT id, name, active FROM tenants").fetchall())
    finally:
        con.close()


def test_tenant_sync(t):
    d = Daemon()
    try:
        d.start()
        t.eq(tenants(d), [(TENANT_ID, "acme", 1)], "config tenants are upserted at start (auto_migrate on SQLite)")
        extra = 'tenants = ( { id = "%s"; name = "acme"; }, { id = "%s"; name = "globex"; } );' % (TENANT_ID, OTHER_ID)
        text = d.conf_text().replace('tenants = ( { id = "%s"; name = "acme"; } );' % TENANT_ID, extra)
        d.write_conf(text)
        d.signal(signal.SIGHUP)
        got = wait_for(lambda: len(tenants(d)) == 2 and tenants(d))
        t.eq(got, sorted([(TENANT_ID, "acme", 1), (OTHER_ID, "globex", 1)]), "SIGHUP adds a new tenant")
        text = d.conf_text().replace('name = "acme"', 'name = "acme-renamed"')
        d.write_conf(text)
        d.signal(signal.SIGHUP)
        got = wait_for(lambda: (TENANT_ID, "acme-renamed", 1) in tenants(d) and tenants(d))
        t.eq(got, sorted([(TENANT_ID, "acme-renamed", 1), (OTHER_ID, "globex", 0)]),
             "SIGHUP renames, and deactivates a tenant removed from config (its data stays)")
        t.eq(d.stop(), 0, "exit 0")
    finally:
        d.cleanup()


def readyz(d):
    try:
        r = d.request("GET", "/readyz")
        return r
    except OSError:
        return None


def test_pgsql_outage(t):
    if not PgCluster.usable():
        t.skip("PostgreSQL outage", "needs root and the postgresql package")
        return
    pg = PgCluster()
    d = None
    try:
        pg.init()
        pg.stop()
        d = Daemon(store='driver = "pgsql"; conninfo = "%s"; auto_migrate = true; pool_size = 2;' % pg.url)
        # PostgreSQL down at start-up: aosd stays up, not ready, says why.
        d.start(wait=False)
        r = wait_for(lambda: readyz(d))
        t.ok(r is not None and r.status == 503, "/readyz is 503 while PostgreSQL is unreachable at start-up")
        t.ok(r is not None and "store unavailable" in r.json().get("reason", ""), "the reason names the store",
             r.body if r else None)
        t.ok(r is not None and r.header("retry-after"), "503 carries Retry-After")
        t.eq(d.request("GET", "/healthz").status, 200, "/healthz stays 200 (alive, not ready)")
        t.ok(d.proc.poll() is None, "aosd keeps running and retrying instead of exiting")
        t.ok("password" not in d.log_text() and ":aosd@" not in d.log_text(), "the conninfo password is never logged")
        pg.start()
        r = wait_for(lambda: (readyz(d) or None) and readyz(d).status == 200 and readyz(d), timeout=40)
        t.ok(r and r.status == 200, "ready by itself once PostgreSQL is up (migrated, tenants synced)",
             d.log_text()[-1500:])
        # PostgreSQL goes away while running.
        pg.stop()
        r = wait_for(lambda: (readyz(d) or None) and readyz(d).status == 503 and readyz(d), timeout=20)
        t.ok(r and r.status == 503 and r.header("retry-after"), "/readyz 503 + Retry-After when PostgreSQL stops",
             r.body if r else None)
        t.ok(d.proc.poll() is None, "aosd survives the outage")
        pg.start()
        r = wait_for(lambda: (readyz(d) or None) and readyz(d).status == 200 and readyz(d), timeout=40)
        t.ok(r and r.status == 200, "service resumes by itself when PostgreSQL returns", d.log_text()[-1500:])
        t.eq(d.stop(), 0, "exit 0 after the outage")
    finally:
        if d is not None:
            d.cleanup()
        pg.cleanup()


def system_libpq():
    """The path of the libpq.so.5 the dynamic loader would find, or None."""
    p = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30)
    for line in p.stdout.splitlines():
        m = re.match(r"\s*libpq\.so\.5 \(.*x86-64.*\) => (\S+)", line) or \
            re.match(r"\s*libpq\.so\.5 \(.*\) => (\S+)", line)
        if m:
            return m.group(1)
    return None


def mapped_libraries(pid):
    with open("/proc/%d/maps" % pid) as f:
        return {os.path.basename(line.split()[-1]) for line in f if ".so" in line}


def test_libpq_loaded_on_demand(t):
    """libpq (and its dozen libraries) is loaded on the first PostgreSQL
    connection: never on SQLite; a missing or broken libpq is the reason
    /readyz gives, and installing it is enough, without a restart."""
    d = Daemon()
    try:
        d.start()
        libs = mapped_libraries(d.proc.pid)
        t.ok(not any(x.startswith("libpq.") for x in libs), "an SQLite node never maps libpq", sorted(libs))
        t.ok(not any(x.startswith(("libgnutls", "libkrb5", "libldap")) for x in libs),
             "nor libpq's dependencies", sorted(libs))
        t.ok(not any(x.startswith("libsystemd") for x in libs), "nor libsystemd (sd_notify is spoken directly)")
        t.eq(d.stop(), 0, "exit 0")
    finally:
        d.cleanup()

    store, cleanup = pg_private_store()
    real = system_libpq()
    if store is None or real is None:
        t.skip("libpq missing, then installed", "needs AOS_TEST_PGSQL and libpq5")
        return
    d = Daemon(store=store)
    libdir = os.path.join(d.dir, "lib")
    os.makedirs(libdir)
    fake = os.path.join(libdir, "libpq.so.5")
    with open(fake, "wb") as f:
        f.write(b"not a shared object\n")
    saved = os.environ.get("LD_LIBRARY_PATH")
    os.environ["LD_LIBRARY_PATH"] = libdir
    try:
        d.start(wait=False)
        r = wait_for(lambda: (readyz(d) or None) and "libpq" in readyz(d).body.decode() and readyz(d))
        t.ok(r is not None and r.status == 503, "/readyz is 503 while libpq cannot be loaded")
        reason = r.json().get("reason", "") if r is not None else ""
        t.ok("libpq.so.5" in reason and "libpq5" in reason, "the reason names the library and its package", reason)
        t.ok(d.proc.poll() is None, "aosd keeps running and retrying")
        os.unlink(fake)
        os.symlink(real, fake)
        r = wait_for(lambda: (readyz(d) or None) and readyz(d).status == 200 and readyz(d), timeout=60)
        t.ok(r and r.status == 200, "ready once libpq is there, without a restart", d.log_text()[-1500:])
        t.ok(any(x.startswith("libpq.so") for x in mapped_libraries(d.proc.pid)), "libpq is mapped now")
        t.eq(d.stop(), 0, "exit 0")
    finally:
        if saved is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = saved
        d.cleanup()
        cleanup()


def main():
    t = Tap()
    for fn in (test_migrate_cli, test_migrate_as_owner, test_tenant_sync, test_pgsql_outage,
               test_libpq_loaded_on_demand):
        t.run(fn)
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
