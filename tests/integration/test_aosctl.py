"""aosctl, black-box: bootstrapping users and API keys through the store
before aosd ever ran.  Runs on SQLite always and, when AOS_TEST_PGSQL is
set, again on PostgreSQL (in a private schema; e-mails are unique per run
all the same).  The command forms used here are a contract: other tests
and the benchmarks call aosctl exactly this way.

AOS_TEST_WRAPPER (e.g. "valgrind --error-exitcode=99 -q") runs aosctl
under a checker; a finding then fails the exit-code checks."""
import hashlib
import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import BUILDDIR, TENANT_ID, Daemon, Tap, pg_private_store, plugin_path  # noqa: E402

AOSCTL = os.path.join(BUILDDIR, "tools", "aosctl")
OTHER_ID = "0b3e8c1d-2f4a-4b5c-9d6e-7f8a9b0c1d2e"
PASSWORD = "correct horse battery staple"
PROMPT_RE = re.compile(rb"Password for [^\r\n]*: |Repeat the password: ")
KEY_RE = re.compile(r"^aos_([a-z0-9]{12})_([0-9a-f]{64})$")
ID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
RUN = os.urandom(4).hex()
# Cheap hashing for speed (and to see that auth.argon2 is honoured), a
# stricter policy than the default (to see that it is read), a second tenant.
CONF_D = 'auth: { password_min_length = 16; password_max_length = 64; argon2 = { t_cost = 1; m_cost_kib = 1024; }; };\n'
TENANTS_D = 'tenants = ( { id = "%s"; name = "globex"; } );\n' % OTHER_ID


def wrapper():
    return os.environ.get("AOS_TEST_WRAPPER", "").split()


def ctl(d, *args, stdin=None, conf=True):
    argv = wrapper() + [AOSCTL] + (["-c", d.conf] if conf else []) + list(args)
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def email(name):
    return "%s.%s@example.com" % (name, RUN)


class Store:
    """Reads rows behind aosctl's back: sqlite3 directly, psql for PostgreSQL."""

    def __init__(self, d, pg_url=None, pg_schema=None):
        self.d = d
        self.pg_url = pg_url
        self.pg_schema = pg_schema

    def query(self, sql, *params):
        """sql uses ?1, ?2...: positional in SQLite, psql variables below."""
        if self.pg_url is None:
            con = sqlite3.connect(os.path.join(self.d.dir, "data", "aos.db"))
            try:
                return [tuple(r) for r in con.execute(sql, params).fetchall()]
            finally:
                con.close()
        # psql variables quote the values: no text is pasted into the SQL.
        argv = ["psql", self.pg_url, "-qAtX", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
        for i, v in enumerate(params):
            argv += ["-v", "p%d=%s" % (i + 1, v)]
        text = sql
        for i in range(len(params), 0, -1):
            text = text.replace("?%d" % i, ":'p%d'" % i)
        script = ("SET search_path TO %s;\n" % self.pg_schema if self.pg_schema else "") + text + ";\n"
        p = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=60, check=True)
        return [tuple(line.split("\t")) for line in p.stdout.splitlines() if line != ""]

    def everything(self):
        """Every byte the database keeps, as text, to look for secrets in."""
        if self.pg_url is None:
            out = []
            data = os.path.join(self.d.dir, "data")
            for name in os.listdir(data):
                with open(os.path.join(data, name), "rb") as f:
                    out.append(f.read().decode("latin-1"))
            return "\n".join(out)
        rows = self.query("SELECT row_to_json(t)::text FROM api_keys t UNION ALL SELECT row_to_json(u)::text FROM users u")
        return "\n".join(r[0] for r in rows)


def write_extra_conf(d):
    os.makedirs(os.path.join(d.dir, "conf.d"), exist_ok=True)
    os.makedirs(os.path.join(d.dir, "tenants.d"), exist_ok=True)
    with open(os.path.join(d.dir, "conf.d", "auth.conf"), "w") as f:
        f.write(CONF_D)
    with open(os.path.join(d.dir, "tenants.d", "globex.conf"), "w") as f:
        f.write(TENANTS_D)


# ---------------------------------------------------------------- users


def test_user_add(t, d, db, label):
    alice = email("alice")
    raw = "  " + alice.upper() + " "
    rc, out, err = ctl(d, "user", "add", "--tenant", "acme", "--email", raw, "--role", "admin", stdin=PASSWORD + "\n")
    t.eq(rc, 0, "%s: user add through a pipe exits 0" % label, err)
    m = re.match(r"^(%s)\t(\S+)\n$" % ID_RE, out)
    t.ok(m is not None, "%s: user add prints the new id and the e-mail" % label, out)
    if m is None:
        return
    uid = m.group(1)
    t.eq(m.group(2), alice, "%s: the printed e-mail is normalised" % label)
    rows = db.query("SELECT tenant_id, email, role, password_hash FROM users WHERE id = ?1", uid)
    t.eq(len(rows), 1, "%s: the user row exists" % label)
    if rows:
        tid, mail, role, pw_hash = rows[0]
        t.eq((tid, mail, role), (TENANT_ID, alice, "admin"), "%s: row has tenant, normalised e-mail, role" % label)
        t.ok(pw_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$"),
             "%s: the password is an Argon2id hash with auth.argon2's parameters" % label, pw_hash)
    t.ok(PASSWORD not in out + err, "%s: the password is never printed" % label)

    # The same e-mail, written differently, in the same tenant.
    rc, out, err = ctl(d, "user", "add", "--tenant", "acme", "--email", alice.upper(), "--role", "user",
                       stdin=PASSWORD + "\n")
    t.eq(rc, 1, "%s: duplicate e-mail in the tenant exits 1" % label, out + err)
    t.ok("already exists" in err and alice in err, "%s: and says so" % label, err)
    # ... is fine in another tenant, named by id (upper case accepted).
    rc, out, err = ctl(d, "user", "add", "--tenant", OTHER_ID.upper(), "--email", alice, "--role", "user",
                       stdin=PASSWORD + "\r\n")
    t.eq(rc, 0, "%s: the same e-mail in another tenant (by UUID) is a new user" % label, err)
    rows = db.query("SELECT tenant_id FROM users WHERE email = ?1 ORDER BY tenant_id", alice)
    t.eq(sorted(r[0] for r in rows), sorted([TENANT_ID, OTHER_ID]), "%s: one row per tenant" % label)


def test_user_add_refusals(t, d, db, label):
    bob = email("bob")

    def count():
        return len(db.query("SELECT id FROM users WHERE email = ?1", bob))

    rc, _, err = ctl(d, "user", "add", "--tenant", "acme", "--email", bob, "--role", "user", stdin="fifteen-chars!!\n")
    t.eq(rc, 1, "%s: a password under auth.password_min_length exits 1" % label)
    t.ok("at least 16 characters" in err, "%s: with the policy's message" % label, err)
    rc, _, err = ctl(d, "user", "add", "--tenant", "acme", "--email", bob, "--role", "user", stdin="x" * 65 + "\n")
    t.ok(rc == 1 and "at most 64 characters" in err, "%s: a password over password_max_length exits 1" % label, err)
    rc, _, err = ctl(d, "user", "add", "--tenant", "acme", "--email", bob, "--role", "user", stdin="x" * 100000)
    t.ok(rc == 1 and "at most 64" in err, "%s: a huge input is refused without reading it all" % label, err)
    rc, _, err = ctl(d, "user", "add", "--tenant", "acme", "--email", bob, "--role", "user", stdin="")
    t.ok(rc == 1 and "no password" in err, "%s: no password on stdin exits 1" % label, err)
    rc, _, err = ctl(d, "user", "add", "--tenant", "acme", "--email", bob, "--role", "boss", stdin=PASSWORD + "\n")
    t.eq(rc, 2, "%s: a bad role is a usage error (2)" % label, err)
    t.ok("admin, approver or user" in err, "%s: naming the roles" % label, err)
    rc, _, err = ctl(d, "user", "add", "--tenant", "nope", "--email", bob, "--role", "user", stdin=PASSWORD + "\n")
    t.eq(rc, 1, "%s: an unknown tenant exits 1" % label)
    t.ok("unknown tenant 'nope' (tenants are declared in the configuration)" in err,
         "%s: and says where tenants come from" % label, err)
    rc, _, err = ctl(d, "user", "add", "--tenant", "acme", "--email", "not-an-email", "--role", "user",
                     stdin=PASSWORD + "\n")
    t.ok(rc == 1 and "--email" in err, "%s: a malformed e-mail exits 1" % label, err)
    rc, _, err = ctl(d, "user", "add", "--tenant", "acme", "--role", "user", stdin=PASSWORD + "\n")
    t.ok(rc == 2 and "--email is required" in err, "%s: a missing --email is a usage error" % label, err)
    t.eq(count(), 0, "%s: no refused attempt left a row" % label)


def test_user_list(t, d, db, label):
    rc, out, err = ctl(d, "user", "list", "--tenant", "acme")
    t.eq(rc, 0, "%s: user list exits 0" % label, err)
    lines = [line.split("\t") for line in out.splitlines()]
    mine = [f for f in lines if f[1] == email("alice")]
    t.ok(len(mine) == 1 and re.match(ID_RE, mine[0][0]) and mine[0][2] == "admin",
         "%s: user list shows id, e-mail and role" % label, out)
    t.ok("$argon2" not in out, "%s: user list shows no password hash" % label)
    rc, out, err = ctl(d, "user", "list", "--tenant", "globex")
    t.eq(rc, 0, "%s: user list of the other tenant exits 0" % label, err)
    acme_ids = {f[0] for f in lines}
    other_ids = {line.split("\t")[0] for line in out.splitlines()}
    t.ok(acme_ids.isdisjoint(other_ids), "%s: each tenant lists only its own users" % label)


# ---------------------------------------------------------------- API keys


def create_key(d, *extra, tenant="acme", role="user"):
    rc, out, err = ctl(d, "apikey", "create", "--tenant", tenant, "--role", role, *extra)
    info = dict(line.split(": ", 1) for line in err.splitlines() if re.match(r"^[a-z]+: ", line) and
                not line.startswith("aosctl: "))
    return rc, out, err, info


def test_apikey_create(t, d, db, label):
    rc, out, err, info = create_key(d, "--name", "ci-%s" % RUN, role="admin")
    t.eq(rc, 0, "%s: apikey create exits 0" % label, err)
    lines = out.splitlines()
    t.ok(len(lines) == 1 and KEY_RE.match(lines[0]), "%s: stdout is the key alone, aos_<prefix>_<secret>" % label, out)
    m = KEY_RE.match(lines[0]) if lines else None
    if m is None:
        return None
    prefix, secret = m.group(1), m.group(2)
    t.eq(info.get("prefix"), prefix, "%s: stderr names the key's prefix" % label, err)
    t.ok(re.match("^%s$" % ID_RE, info.get("id", "")), "%s: stderr names the key's id" % label, err)
    t.eq(info.get("expires"), "never", "%s: without --expires the key never expires" % label, err)
    t.ok(secret not in err, "%s: the secret is not on stderr" % label)
    rows = db.query("SELECT id, tenant_id, role, name, secret_hash, user_id FROM api_keys WHERE prefix = ?1", prefix)
    t.eq(len(rows), 1, "%s: the key row exists" % label)
    if rows:
        kid, tid, role, name, secret_hash, user_id = rows[0]
        t.eq((kid, tid, role, name), (info.get("id"), TENANT_ID, "admin", "ci-%s" % RUN),
             "%s: row has id, tenant, role, name" % label)
        t.eq(secret_hash, hashlib.sha256(secret.encode()).hexdigest(), "%s: the store keeps SHA-256 of the secret" % label)
        t.ok(user_id in (None, ""), "%s: a key without --user is a service key" % label, user_id)
    t.ok(secret not in db.everything(), "%s: the secret itself is nowhere in the database" % label)
    return info.get("id"), prefix, secret


def test_apikey_options(t, d, db, label):
    rc, out, err, info = create_key(d, "--expires", "7")
    t.eq(rc, 0, "%s: apikey create --expires 7 exits 0" % label, err)
    m = KEY_RE.match(out.strip())
    if m:
        rows = db.query("SELECT expires_at FROM api_keys WHERE prefix = ?1", m.group(1))
        want = time.time() * 1000 + 7 * 86400 * 1000
        t.ok(rows and abs(int(rows[0][0]) - want) < 600 * 1000, "%s: expires_at is 7 days ahead" % label, rows)
    t.ok(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", info.get("expires", "")),
         "%s: stderr shows the expiry as a UTC time" % label, err)
    for bad in ("0", "-1", "x", "3651"):
        rc, out, err, _ = create_key(d, "--expires", bad)
        t.ok(rc == 2 and out == "", "%s: --expires %s is a usage error and prints no key" % (label, bad), out + err)

    # A user's key: needs the user in this tenant, and no more than their role.
    rc, out, err, info = create_key(d, "--user", email("alice").upper(), role="approver")
    t.eq(rc, 0, "%s: apikey create --user (an admin) with role approver" % label, err)
    t.eq(info.get("user"), email("alice"), "%s: names the user" % label, err)
    m = KEY_RE.match(out.strip())
    if m:
        rows = db.query("SELECT u.email FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.prefix = ?1",
                        m.group(1))
        t.eq(rows, [(email("alice"),)], "%s: the key row points at the user" % label)
    rc, out, err, _ = create_key(d, "--user", email("nobody"))
    t.ok(rc == 1 and out == "" and "no user" in err, "%s: --user unknown exits 1, no key" % label, err)
    rc, out, err, _ = create_key(d, "--user", email("alice"), role="admin", tenant="globex")
    t.ok(rc == 1 and out == "" and "role" in err,
         "%s: a key cannot outrank its user (alice is only 'user' in globex)" % label, err)
    rc, out, err, _ = create_key(d, role="root")
    t.ok(rc == 2 and out == "", "%s: apikey create with a bad role is a usage error" % label, err)
    rc, out, err, _ = create_key(d, tenant="initech")
    t.ok(rc == 1 and "unknown tenant 'initech'" in err, "%s: apikey create for an unknown tenant exits 1" % label, err)


def key_rows(out):
    return {f[0]: f for f in (line.split("\t") for line in out.splitlines())}


def test_apikey_list_revoke(t, d, db, label, created):
    kid, prefix, secret = created
    rc, out, err = ctl(d, "apikey", "list", "--tenant", "acme")
    t.eq(rc, 0, "%s: apikey list exits 0" % label, err)
    rows = key_rows(out)
    row = rows.get(kid)
    t.ok(row is not None and row[1:4] == [prefix, "admin", "active"] and row[-1] == "ci-%s" % RUN,
         "%s: apikey list shows id, prefix, role, status, name" % label, out)
    hashes = {r[0] for r in db.query("SELECT secret_hash FROM api_keys")}
    t.ok(secret not in out and not any(h in out for h in hashes), "%s: apikey list shows no secret, no hash" % label)
    rc, out, _ = ctl(d, "apikey", "list", "--tenant", "globex")
    t.ok(rc == 0 and kid not in out, "%s: the other tenant's list does not show the key" % label, out)

    # Another tenant cannot revoke it, even by id.
    rc, out, err = ctl(d, "apikey", "revoke", "--tenant", "globex", kid)
    t.ok(rc == 1 and "no API key" in err, "%s: revoking through another tenant exits 1" % label, err)
    rc, out, err = ctl(d, "apikey", "revoke", "--tenant", "acme", kid)
    t.eq((rc, out), (0, "revoked\t%s\n" % kid), "%s: apikey revoke ID exits 0" % label, err)
    got = db.query("SELECT revoked_at FROM api_keys WHERE id = ?1", kid)
    t.ok(got and got[0][0] not in (None, ""), "%s: revoked_at is set in the store" % label, got)
    _, out, _ = ctl(d, "apikey", "list", "--tenant", "acme")
    t.eq(key_rows(out).get(kid, [None] * 4)[3], "revoked", "%s: apikey list shows it revoked" % label, out)
    rc, out, err = ctl(d, "apikey", "revoke", "--tenant", "acme", kid)
    t.ok(rc == 0 and "already revoked" in err, "%s: revoking twice is fine and says so" % label, err)

    rc, out, err, info = create_key(d, "--name", "by-prefix")
    m = KEY_RE.match(out.strip())
    if m:
        rc, out, err = ctl(d, "apikey", "revoke", "--tenant", "acme", m.group(1))
        t.eq((rc, out), (0, "revoked\t%s\n" % info.get("id")), "%s: apikey revoke PREFIX" % label, err)
    rc, _, err = ctl(d, "apikey", "revoke", "--tenant", "acme", "zzzzzzzzzzzz")
    t.ok(rc == 1 and "no API key 'zzzzzzzzzzzz'" in err, "%s: revoking an unknown key exits 1" % label, err)
    rc, _, err = ctl(d, "apikey", "revoke", "--tenant", "acme")
    t.eq(rc, 2, "%s: apikey revoke without an id is a usage error" % label, err)


def test_tenant_list(t, d, db, label):
    rc, out, err = ctl(d, "tenant", "list")
    rows = {tuple(line.split("\t")) for line in out.splitlines()}
    t.ok(rc == 0 and (TENANT_ID, "acme", "active") in rows and (OTHER_ID, "globex", "active") in rows,
         "%s: tenant list shows the configured tenants, synced into the store" % label, out + err)


# ---------------------------------------------------------------- terminal


def run_on_tty(d, answers, args):
    """Runs aosctl with a pseudo-terminal as stdin and stderr, answering each
    prompt once it appears; returns (rc, stdout, transcript)."""
    master, slave = pty.openpty()
    argv = wrapper() + [AOSCTL, "-c", d.conf] + list(args)
    p = subprocess.Popen(argv, stdin=slave, stdout=subprocess.PIPE, stderr=slave, close_fds=True)
    os.close(slave)
    transcript = b""
    pending = list(answers)
    deadline = time.monotonic() + 120  # a bound for a hung run, not a timing assumption
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 1.0)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer has gone
                break
            if not chunk:
                break
            transcript += chunk
            prompts = len(PROMPT_RE.findall(transcript))
            if prompts > len(answers) - len(pending):
                if not pending:  # asked once more than expected: fail now rather than hang
                    p.kill()
                    break
                os.write(master, pending.pop(0))
        elif p.poll() is not None:
            break
    out = p.stdout.read().decode()
    rc = p.wait(60)
    os.close(master)
    return rc, out, transcript.decode("utf-8", "replace")


def test_terminal(t, d, db, label):
    carol = email("carol")
    secret = "terminal password %s" % RUN
    args = ["user", "add", "--tenant", "acme", "--email", carol, "--role", "user"]
    rc, out, tr = run_on_tty(d, [secret.encode() + b"\n", b"something else entirely\n"], args)
    t.eq(rc, 1, "%s: on a terminal, two different passwords exit 1" % label, tr)
    t.ok("do not match" in tr, "%s: and say they do not match" % label, tr)
    rc, out, tr = run_on_tty(d, [secret.encode() + b"\n", secret.encode() + b"\n"], args)
    t.eq(rc, 0, "%s: on a terminal, the password typed twice creates the user" % label, tr)
    t.eq(len(PROMPT_RE.findall(tr.encode())), 2, "%s: the terminal was prompted twice" % label, tr)
    t.ok(secret not in tr, "%s: the password is not echoed" % label, tr)
    t.ok(out.endswith("\t%s\n" % carol), "%s: and the new user is printed" % label, out)

    # Interrupted at the prompt: the terminal gets its echo back.
    args = ["user", "add", "--tenant", "acme", "--email", email("erin"), "--role", "user"]
    master, slave = pty.openpty()
    p = subprocess.Popen(wrapper() + [AOSCTL, "-c", d.conf] + args, stdin=slave, stdout=subprocess.DEVNULL,
                         stderr=slave)
    try:
        seen = b""
        while not PROMPT_RE.search(seen):
            r, _, _ = select.select([master], [], [], 120)
            try:
                chunk = os.read(master, 4096) if r else b""
            except OSError:  # EIO: aosctl is gone
                chunk = b""
            if not chunk:
                break
            seen += chunk
        echo_off = not termios.tcgetattr(slave)[3] & termios.ECHO
        p.send_signal(signal.SIGINT)
        rc = p.wait(120)
        echo_back = bool(termios.tcgetattr(slave)[3] & termios.ECHO)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(slave)
        os.close(master)
    t.ok(echo_off, "%s: echo is off while the prompt waits" % label)
    t.ok(rc == -signal.SIGINT and echo_back, "%s: SIGINT at the prompt kills aosctl and restores echo" % label,
         "rc=%s echo=%s" % (rc, echo_back))


# ---------------------------------------------------------------- daemon


def test_bootstrap_then_login(t, d, label):
    """The README's path: aosctl before aosd ever ran, then log in."""
    if not all(os.path.exists(plugin_path(p)) for p in ("auth-local", "auth-apikey")):
        t.skip("%s: login with an aosctl user" % label, "auth plugins not built")
        return
    dave = email("dave")
    rc, _, err = ctl(d, "user", "add", "--tenant", "acme", "--email", dave, "--role", "approver", stdin=PASSWORD + "\n")
    t.eq(rc, 0, "%s: user add before the daemon starts" % label, err)
    rc, out, err, info = create_key(d, role="user")
    key = out.strip()
    d.start()
    try:
        r = d.request("POST", "/api/v1/auth/login", body={"email": dave, "password": PASSWORD})
        t.eq(r.status, 200, "%s: aosd accepts the password aosctl hashed" % label, r.body)
        if r.status == 200:
            token = r.json()["access_token"]
            me = d.request("GET", "/api/v1/auth/me", headers={"Authorization": "Bearer " + token}).json()
            t.eq((me.get("email"), me.get("role")), (dave, "approver"), "%s: /auth/me is that user" % label, me)
        r = d.request("GET", "/api/v1/auth/me", headers={"X-API-Key": key})
        t.eq(r.status, 200, "%s: aosd accepts the API key aosctl printed" % label, r.body)
        rc, _, err = ctl(d, "apikey", "revoke", "--tenant", "acme", info.get("id", "?"))
        t.eq(rc, 0, "%s: revoke while aosd runs" % label, err)
        r = d.request("GET", "/api/v1/auth/me", headers={"X-API-Key": key})
        t.eq(r.status, 401, "%s: the revoked key is refused" % label, r.body)
    finally:
        d.stop()


# ---------------------------------------------------------------- suites


def run_suite(t, store, label, db_factory):
    d = Daemon(plugins=("agent-echo", "auth-local", "auth-apikey"), store=store)
    write_extra_conf(d)
    try:
        db = db_factory(d)
        test_user_add(t, d, db, label)
        test_user_add_refusals(t, d, db, label)
        test_user_list(t, d, db, label)
        created = test_apikey_create(t, d, db, label)
        test_apikey_options(t, d, db, label)
        if created:
            test_apikey_list_revoke(t, d, db, label, created)
        test_tenant_list(t, d, db, label)
        test_terminal(t, d, db, label)
        test_bootstrap_then_login(t, d, label)
    finally:
        d.cleanup()


def test_cli(t):
    d = Daemon(plugins=())
    try:
        rc, out, err = ctl(d, "--help", conf=False)
        t.ok(rc == 0 and "user add --tenant T --email EMAIL --role ROLE" in out and
             "apikey create --tenant T --role ROLE [--expires DAYS]" in out, "--help lists the commands", out + err)
        rc, out, _ = ctl(d, "--version", conf=False)
        t.ok(rc == 0 and out.startswith("aosctl (aosd) "), "--version", out)
        rc, out, _ = ctl(d, "apikey", "create", "--help")
        t.ok(rc == 0 and "--expires DAYS" in out, "a command's --help", out)
        for args, what in ((["user", "remove"], "an unknown command"), (["user"], "a group without a verb"),
                           ([], "no command"), (["--bogus", "tenant", "list"], "an unknown option"),
                           (["user", "list", "--tenant", "acme", "--role", "admin"], "an option the command lacks"),
                           (["user", "list", "--tenant", "acme", "--tenant", "acme"], "an option given twice"),
                           (["user", "list", "--tenant"], "an option without its value")):
            rc, out, err = ctl(d, *args)
            t.ok(rc == 2 and err.startswith("aosctl: "), "%s is a usage error (2)" % what, "rc=%d\n%s" % (rc, err))
        t.ok(not os.path.exists(os.path.join(d.dir, "data", "aos.db")), "usage errors never open the store")
    finally:
        d.cleanup()


def test_config_and_store_errors(t):
    d = Daemon(plugins=())
    try:
        d.write_conf(d.conf_text() + "server: { threads = ; };\n")
        rc, _, err = ctl(d, "tenant", "list")
        t.ok(rc == 1 and re.search(r"aosd\.conf:\d+: ", err), "a broken config exits 1 naming file:line", err)
        d.write_conf(d.conf_text() + "bogus_setting = 1;\n")
        rc, _, err = ctl(d, "tenant", "list")
        t.ok(rc == 1 and re.search(r"aosd\.conf:\d+: .*bogus_setting", err), "an unknown setting too", err)

        # Never prints the conninfo or its password, even when it fails.
        d.store = 'driver = "pgsql"; conninfo = "postgresql://aos:Hunter2Secret@127.0.0.1:1/aos?connect_timeout=5";'
        d.write_conf()
        rc, out, err = ctl(d, "tenant", "list")
        t.eq(rc, 1, "an unreachable PostgreSQL exits 1", err)
        t.ok("Hunter2Secret" not in out + err, "the conninfo's password is never printed", err)

        # Without auto_migrate a fresh store is not touched: say what to run.
        d.store = 'driver = "sqlite"; path = "%s/data/aos.db"; auto_migrate = false;' % d.dir
        d.write_conf()
        rc, _, err = ctl(d, "tenant", "list")
        t.ok(rc == 1 and "aosd --migrate" in err, "pending migrations without auto_migrate exit 1, naming the fix", err)
        d.store = 'driver = "sqlite"; path = "%s/data/aos.db";' % d.dir
        d.write_conf()
        rc, out, err = ctl(d, "tenant", "list")
        t.ok(rc == 0 and "applied migration 0001_" in err and "acme" in out,
             "with auto_migrate (SQLite default) aosctl migrates a fresh store", err)
        mode = os.stat(os.path.join(d.dir, "data", "aos.db")).st_mode & 0o777
        t.eq(mode & 0o007, 0, "the database aosctl creates is not world-readable (mode %o)" % mode)
    finally:
        d.cleanup()


def test_root_becomes_owner(t):
    """Root running aosctl must not leave aosd (its own user) a database it
    cannot write: aosctl acts as the owner of the data directory."""
    import pwd
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        nobody = None
    if os.geteuid() != 0 or nobody is None:
        t.skip("as root, aosctl creates the database as the data directory's owner", "needs root and 'nobody'")
        return
    d = Daemon(plugins=())
    try:
        os.chmod(d.dir, 0o755)
        os.chmod(d.conf, 0o600)  # readable by root only: read before switching
        data = os.path.join(d.dir, "data")
        os.chown(data, nobody.pw_uid, nobody.pw_gid)
        rc, _, err = ctl(d, "user", "add", "--tenant", "acme", "--email", email("root"), "--role", "admin",
                         stdin=PASSWORD + "\n")
        t.eq(rc, 0, "as root, user add into a data directory owned by another user", err)
        st = os.stat(os.path.join(data, "aos.db"))
        t.eq((st.st_uid, st.st_mode & 0o777), (nobody.pw_uid, 0o600),
             "the database belongs to the directory's owner, mode 0600")
        rc, out, err = ctl(d, "user", "list", "--tenant", "acme")
        t.ok(rc == 0 and email("root") in out, "and stays usable by aosctl as root", err)
    finally:
        d.cleanup()


def main():
    t = Tap()
    if not os.path.exists(AOSCTL):
        t.ok(False, "tools/aosctl is built", AOSCTL)
        sys.exit(t.done())
    t.run(test_cli)
    t.run(test_config_and_store_errors)
    t.run(test_root_becomes_owner)
    t.run(run_suite, None, "sqlite", lambda d: Store(d))
    store, cleanup = pg_private_store()
    if store is None:
        t.skip("pgsql: aosctl against PostgreSQL", "AOS_TEST_PGSQL is not set")
    else:
        schema = re.search(r"search_path%3D(\w+)", store).group(1)
        url = os.environ["AOS_TEST_PGSQL"]
        try:
            t.run(run_suite, store, "pgsql", lambda d: Store(d, url, schema))
        finally:
            cleanup()
    sys.exit(t.done())


if __name__ == "__main__":
    main()
