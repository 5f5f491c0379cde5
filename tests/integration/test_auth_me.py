"""GET /auth/me answered from the per-loop cache (core/auth/token_cache.h):
the same bytes as the store's answer, the token's role, and a user deleted
in the store is refused once AOS_USER_CACHE_TTL_MS (1 s) has passed.

The only wait here is the documented bound itself (then 0.5 s to spare):
the test asserts what must hold AFTER it, never that something is still
cached before it, so a slow machine cannot make it fail."""
import base64
import hashlib
import hmac
import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import TENANT_ID, Daemon, Tap  # noqa: E402

PASSWORD = "correct horse battery staple"
PLUGINS = ("agent-echo", "auth-local", "auth-apikey")
TTL_S = 1.0  # AOS_USER_CACHE_TTL_MS


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(key, claims):
    signing = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64url(json.dumps(claims).encode())
    return signing + "." + b64url(hmac.new(key, signing.encode(), hashlib.sha256).digest())


def add_user(d, email, role):
    rc, out, err = d.aosctl("user", "add", "--tenant", "acme", "--email", email, "--role", role,
                            stdin=PASSWORD + "\n")
    if rc != 0:
        raise RuntimeError("aosctl user add failed: %s %s" % (out, err))


def login(d, email):
    r = d.request("POST", "/api/v1/auth/login", body={"email": email, "password": PASSWORD})
    if r.status != 200:
        raise RuntimeError("login failed: %d %s" % (r.status, r.body))
    return r.json()["access_token"]


def me(d, token, conn=None):
    return d.request("GET", "/api/v1/auth/me", headers={"Authorization": "Bearer " + token}, conn=conn)


def claims_of(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_same_answer(t, d, email, token):
    c = d.connection()
    first = me(d, token, conn=c)
    second = me(d, token, conn=c)
    c.close()
    t.eq((first.status, second.status), (200, 200), "/auth/me twice on one connection (one loop)")
    t.eq(second.body, first.body, "a cached answer is byte for byte the store's answer")
    body = first.json()
    t.eq((body.get("email"), body.get("role"), body.get("kind"), body.get("tenant")), (email, "user", "user", "acme"),
         "the answer names the user", body)
    t.eq(sorted(body), ["email", "kind", "role", "subject", "tenant", "tenant_id"], "the same fields as before", body)


def test_role_from_token(t, d, token):
    claims = claims_of(token)
    claims["role"] = "approver"
    other = mint(d.jwt_key(), claims)
    c = d.connection()
    a = me(d, token, conn=c)
    b = me(d, other, conn=c)
    c.close()
    t.eq((a.json().get("role"), b.json().get("role")), ("user", "approver"),
         "the role shown is each token's own (part of the cache key)")
    t.eq(a.json().get("email"), b.json().get("email"), "both name the same user")


def test_deleted_user(t, d, email, token):
    t.eq(me(d, token).status, 200, "/auth/me before the user is deleted")
    db = sqlite3.connect(os.path.join(d.dir, "data", "aos.db"), timeout=30)
    try:
        with db:
            n = db.execute("DELETE FROM users WHERE tenant_id = ? AND email = ?", (TENANT_ID, email)).rowcount
    finally:
        db.close()
    t.eq(n, 1, "the user is deleted behind aosd's back (as an operator would)")
    time.sleep(TTL_S + 0.5)
    r = me(d, token)
    t.eq(r.status, 401, "once the cache TTL has passed, /auth/me refuses a deleted user", r.body)
    t.eq(r.json()["error"]["message"], "the user no longer exists", "and says why")


def test_api_key(t, d):
    rc, out, err = d.aosctl("apikey", "create", "--tenant", "acme", "--role", "admin", "--name", "svc")
    t.eq(rc, 0, "an API key", err)
    key = out.splitlines()[0].strip()
    c = d.connection()
    a = d.request("GET", "/api/v1/auth/me", headers={"X-API-Key": key}, conn=c)
    b = d.request("GET", "/api/v1/auth/me", headers={"X-API-Key": key}, conn=c)
    c.close()
    t.eq((a.status, b.status, a.json().get("kind"), a.json().get("role")), (200, 200, "api_key", "admin"),
         "/auth/me with an API key, twice")
    t.eq(a.body, b.body, "the same bytes both times")
    t.ok("email" not in a.json(), "an API key has no e-mail")


def main():
    t = Tap()
    d = Daemon(plugins=PLUGINS, server_extra="threads = 1;")
    try:
        d.start()
        run = os.urandom(3).hex()
        email, gone = "me.%s@example.com" % run, "gone.%s@example.com" % run
        add_user(d, email, "user")
        add_user(d, gone, "user")
        token = login(d, email)
        t.run(test_same_answer, d, email, token)
        t.run(test_role_from_token, d, token)
        t.run(test_deleted_user, d, gone, login(d, gone))
        t.run(test_api_key, d)
        t.eq(me(d, token).status, 200, "other users are unaffected")
        t.eq(d.stop(), 0, "clean exit")
    except Exception as e:  # noqa: BLE001
        t.ok(False, "setup", "%s\n%s" % (e, d.log_text()[-2000:]))
    finally:
        d.cleanup()
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
