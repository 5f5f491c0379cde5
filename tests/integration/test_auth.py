"""Identity and tenancy, black-box, on SQLite and (when AOS_TEST_PGSQL is
set) PostgreSQL: login, /auth/me, API keys, registration policies, and the
CROSS-TENANT MATRIX.

MATRIX RULE: every later issue that adds routes must add them to ROUTES
below, so each new route is checked against every attack in ATTACKS.
"""
import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import TENANT_ID, Daemon, Tap, pg_private_store  # noqa: E402

OTHER_ID = "0b3e8c1d-2f4a-4b5c-9d6e-7f8a9b0c1d2e"
PASSWORD = "correct horse battery staple"
PLUGINS = ("agent-echo", "auth-local", "auth-apikey")
ROLES = ("admin", "approver", "user")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(key, claims, alg="HS256", header=None):
    """A JWT signed with the daemon's own key, for crafted cases."""
    hdr = header or {"alg": alg, "typ": "JWT"}
    signing = b64url(json.dumps(hdr).encode()) + "." + b64url(json.dumps(claims).encode())
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}.get(alg, hashlib.sha256)
    sig = b64url(hmac.new(key, signing.encode(), digest).digest()) if alg != "none" else ""
    return signing + "." + sig


class World:
    """Two tenants, a user of each role in each, and API keys."""

    def __init__(self, t, d):
        self.t = t
        self.d = d
        self.users = {}   # (tenant, role) -> (id, email)
        self.tokens = {}  # (tenant, role) -> token
        self.keys = {}    # (tenant, role) -> API key
        run = os.urandom(3).hex()
        for tenant in ("acme", "globex"):
            for role in ROLES:
                email = "%s.%s.%s@example.com" % (role, tenant, run)
                rc, out, err = d.aosctl("user", "add", "--tenant", tenant, "--email", email, "--role", role,
                                        stdin=PASSWORD + "\n")
                if rc != 0:
                    raise RuntimeError("aosctl user add failed: %s %s" % (out, err))
                self.users[(tenant, role)] = email
                rc, out, err = d.aosctl("apikey", "create", "--tenant", tenant, "--role", role, "--name", "svc-" + role)
                if rc != 0:
                    raise RuntimeError("aosctl apikey create failed: %s %s" % (out, err))
                self.keys[(tenant, role)] = out.splitlines()[0].strip()
        for (tenant, role), email in self.users.items():
            r = d.request("POST", "/api/v1/auth/login", body={"email": email, "password": PASSWORD})
            if r.status != 200:
                raise RuntimeError("login failed: %d %s" % (r.status, r.body))
            self.tokens[(tenant, role)] = r.json()["access_token"]

    def bearer(self, tenant, role):
        return {"Authorization": "Bearer " + self.tokens[(tenant, role)]}


def test_login(t, d, w):
    email = w.users[("acme", "user")]
    r = d.request("POST", "/api/v1/auth/login", body={"email": email.upper(), "password": PASSWORD})
    t.eq(r.status, 200, "login succeeds (e-mail normalised)")
    body = r.json()
    t.eq((body["token_type"], body["expires_in"]), ("bearer", 28800), "login returns a bearer token for 8 h")
    t.eq(body["tenant_id"], TENANT_ID, "the token's tenant is the user's")
    t.ok(body["access_token"].count(".") == 2, "access_token is a JWT")
    r = d.request("POST", "/api/v1/auth/login", body={"email": email, "password": "wrong password here"})
    t.eq((r.status, r.json()["error"]["code"]), (401, "invalid_credentials"), "wrong password is 401")
    r = d.request("POST", "/api/v1/auth/login", body={"email": "nobody@example.com", "password": PASSWORD})
    t.eq(r.status, 401, "unknown e-mail is 401, same answer as a wrong password")
    r = d.request("POST", "/api/v1/auth/login", body={"email": "not-an-email", "password": PASSWORD})
    t.eq(r.status, 422, "malformed e-mail is 422")
    r = d.request("POST", "/api/v1/auth/login", body={"email": email})
    t.eq(r.status, 422, "missing password is 422")
    r = d.request("POST", "/api/v1/auth/login", body={"email": email, "password": PASSWORD, "tenant": "globex"})
    t.eq(r.status, 401, "login into another tenant is 401")
    r = d.request("POST", "/api/v1/auth/login", body={"email": email, "password": PASSWORD, "tenant": "acme"})
    t.eq(r.status, 200, "login naming the right tenant works")


def test_me(t, d, w):
    r = d.request("GET", "/api/v1/auth/me", headers=w.bearer("globex", "approver"))
    t.eq(r.status, 200, "/auth/me with a token")
    me = r.json()
    t.eq((me["tenant_id"], me["tenant"], me["role"], me["kind"]), (OTHER_ID, "globex", "approver", "user"),
         "/auth/me names the principal's tenant and role")
    t.eq(me.get("email"), w.users[("globex", "approver")], "/auth/me shows the user's e-mail")
    r = d.request("GET", "/api/v1/auth/me", headers={"X-API-Key": w.keys[("acme", "admin")]})
    t.eq((r.status, r.json().get("kind"), r.json().get("role")), (200, "api_key", "admin"), "API key via X-API-Key")
    r = d.request("GET", "/api/v1/auth/me", headers={"Authorization": "Bearer " + w.keys[("acme", "user")]})
    t.eq((r.status, r.json().get("tenant_id")), (200, TENANT_ID), "API key as a bearer token")


def test_api_keys(t, d, w):
    admin = w.bearer("acme", "admin")
    r = d.request("POST", "/api/v1/auth/api-keys", body={"name": "ci", "role": "user", "expires_days": 30},
                  headers=admin)
    t.eq(r.status, 201, "an admin creates an API key")
    created = r.json()
    t.ok(created["key"].startswith("aos_") and len(created["key"]) == 81, "the key is shown once, in full")
    r = d.request("GET", "/api/v1/auth/me", headers={"X-API-Key": created["key"]})
    t.eq(r.status, 200, "the new key works")
    r = d.request("GET", "/api/v1/auth/api-keys", headers=admin)
    items = r.json()["items"]
    t.ok(any(k["id"] == created["id"] for k in items), "the key is listed")
    t.ok(all("key" not in k and "secret_hash" not in k for k in items), "lists never show secrets")
    r = d.request("POST", "/api/v1/auth/api-keys", body={"role": "admin"}, headers=w.bearer("acme", "admin"))
    t.eq(r.status, 201, "an admin may create an admin key")
    r = d.request("POST", "/api/v1/auth/api-keys", body={"role": "superuser"}, headers=admin)
    t.eq(r.status, 422, "an unknown role is 422")
    r = d.request("DELETE", "/api/v1/auth/api-keys/" + created["id"], headers=admin)
    t.eq(r.status, 204, "revoke is 204")
    r = d.request("GET", "/api/v1/auth/me", headers={"X-API-Key": created["key"]})
    t.eq((r.status, r.json()["error"]["code"]), (401, "invalid_credentials"), "a revoked key is 401")
    r = d.request("DELETE", "/api/v1/auth/api-keys/not-a-uuid", headers=admin)
    t.eq(r.status, 404, "revoking a malformed id is 404")


def claims_for(tenant_id, role="admin", exp_delta=3600, sub="00000000-0000-4000-8000-000000000001"):
    now = int(time.time())
    return {"sub": sub, "tid": tenant_id, "role": role, "iat": now - 10, "exp": now + exp_delta,
            "jti": "11111111-2222-4333-8444-555555555555"}


# MATRIX: every protected route that exists.  (method, path template, minimum role, body)
ROUTES = [
    ("GET", "/api/v1/auth/me", "user", None),
    ("GET", "/api/v1/auth/api-keys", "admin", None),
    ("POST", "/api/v1/auth/api-keys", "admin", {"role": "user"}),
    ("DELETE", "/api/v1/auth/api-keys/{acme_key_id}", "admin", None),
    ("GET", "/api/v1/journal", "admin", None),
    ("POST", "/api/v1/pii/analyze", "user", {"text": "mail me at a@example.com"}),
    ("POST", "/api/v1/pii/anonymize", "user", {"text": "mail me at a@example.com"}),
    ("GET", "/api/v1/agents", "user", None),
    ("POST", "/api/v1/agents", "admin", {"name": "matrix", "plugin": "agent-echo", "config": {}}),
    ("GET", "/api/v1/agents/{acme_agent_id}", "user", None),
    ("PUT", "/api/v1/agents/{acme_agent_id}", "admin", {"name": "matrix-2", "plugin": "agent-echo", "config": {}}),
    ("DELETE", "/api/v1/agents/{acme_agent_id}", "admin", None),
    ("GET", "/api/v1/events", "user", None),
    ("GET", "/api/v1/events/stream", "user", None),
    ("GET", "/api/v1/aoa/events", "user", None),
    ("POST", "/api/v1/events/stream-token", "user", None),
    ("POST", "/api/v1/aoa/run", "user", {"agent": "victim", "input": {}}),
    ("POST", "/api/v1/agents/{acme_agent_id}/runs", "user", {"input": {}}),
    ("GET", "/api/v1/runs", "user", None),
    ("GET", "/api/v1/runs/{acme_run_id}", "user", None),
    ("POST", "/api/v1/runs/{acme_run_id}/cancel", "user", None),
    ("POST", "/api/v1/runs/{acme_run_id}/resume", "admin", None),
    ("GET", "/api/v1/approvals", "approver", None),
    ("GET", "/api/v1/approvals/{acme_approval_id}", "approver", None),
    ("POST", "/api/v1/approvals/{acme_approval_id}/approve", "approver", {"comment": "x"}),
    ("POST", "/api/v1/approvals/{acme_approval_id}/reject", "approver", None),
    ("GET", "/api/v1/workflows", "user", None),
    ("POST", "/api/v1/workflows", "admin", {"name": "matrix-wf", "steps": [{"agent": "victim"}]}),
    ("GET", "/api/v1/workflows/{acme_workflow_id}", "user", None),
    ("PUT", "/api/v1/workflows/{acme_workflow_id}", "admin", {"name": "matrix-wf-2", "steps": [{"agent": "victim"}]}),
    ("DELETE", "/api/v1/workflows/{acme_workflow_id}", "admin", None),
    ("GET", "/api/v1/aoa/dashboard", "user", None),
    ("GET", "/api/v1/orchestration/vitals", "user", None),
]
RANK = {"user": 1, "approver": 2, "admin": 3}


def wait_pending_approval(d, headers, run_id, timeout=20.0):
    """The id of run_id's pending approval, once the engine has asked for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = d.request("GET", "/api/v1/approvals?status=pending&limit=100", headers=headers)
        for a in r.json().get("items", []) if r.status == 200 else []:
            if a["run_id"] == run_id:
                return a["id"]
        time.sleep(0.05)
    raise RuntimeError("no pending approval for run %s" % run_id)


def test_matrix(t, d, w):
    key = d.jwt_key()
    # An API key of acme whose id the globex principals will try to touch.
    r = d.request("POST", "/api/v1/auth/api-keys", body={"name": "victim"}, headers=w.bearer("acme", "admin"))
    acme_key_id = r.json()["id"]
    revoked = d.request("POST", "/api/v1/auth/api-keys", body={"role": "admin"}, headers=w.bearer("acme", "admin")).json()
    d.request("DELETE", "/api/v1/auth/api-keys/" + revoked["id"], headers=w.bearer("acme", "admin"))
    acme_agent_id = d.request("POST", "/api/v1/agents", body={"name": "victim", "plugin": "agent-echo"},
                              headers=w.bearer("acme", "admin")).json()["id"]
    # A run of acme waiting for approval: its run and approval ids are targets too.
    acme_run_id = d.request("POST", "/api/v1/agents/%s/runs" % acme_agent_id, body={"input": {"approval_at": 1}},
                            headers=w.bearer("acme", "admin")).json()["run_id"]
    acme_approval_id = wait_pending_approval(d, w.bearer("acme", "admin"), acme_run_id)
    acme_workflow_id = d.request("POST", "/api/v1/workflows", body={"name": "victim", "steps": [{"agent": acme_agent_id}]},
                                 headers=w.bearer("acme", "admin")).json()["id"]
    ids = {"{acme_key_id}": acme_key_id, "{acme_agent_id}": acme_agent_id, "{acme_run_id}": acme_run_id,
           "{acme_approval_id}": acme_approval_id, "{acme_workflow_id}": acme_workflow_id}
    attacks = {
        "no credentials": ({}, 401),
        "expired token": ({"Authorization": "Bearer " + mint(key, claims_for(TENANT_ID, exp_delta=-3600))}, 401),
        "tampered token": ({"Authorization": "Bearer " + w.tokens[("acme", "admin")][:-4] + "AAAA"}, 401),
        "alg none token": ({"Authorization": "Bearer " + mint(key, claims_for(TENANT_ID), alg="none")}, 401),
        "HS512 token": ({"Authorization": "Bearer " + mint(key, claims_for(TENANT_ID), alg="HS512")}, 401),
        "token of a wrong key": ({"Authorization": "Bearer " + mint(b"x" * 48, claims_for(TENANT_ID))}, 401),
        "token of an unknown tenant": (
            {"Authorization": "Bearer " + mint(key, claims_for("9e9e9e9e-9e9e-4e9e-8e9e-9e9e9e9e9e9e"))}, 401),
        "forged X-Tenant-ID": (dict(w.bearer("globex", "admin"), **{"X-Tenant-ID": TENANT_ID}), 403),
        "malformed X-Tenant-ID": (dict(w.bearer("acme", "admin"), **{"X-Tenant-ID": "acme"}), 400),
        "revoked API key": ({"X-API-Key": revoked["key"]}, 401),
        "garbage API key": ({"X-API-Key": "aos_zzzzzzzzzzzz_" + "0" * 64}, 401),
        "wrong scheme": ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
    }
    for method, path, need, body in ROUTES:
        p = path
        for placeholder, value in ids.items():
            p = p.replace(placeholder, value)
        for name, (headers, status) in attacks.items():
            r = d.request(method, p, body=body, headers=headers)
            t.eq(r.status, status, "%s %s with %s -> %d" % (method, path, name, status), r.body[:200])
            text = r.body.decode("utf-8", "replace")
            t.ok(TENANT_ID not in text and all(v not in text for v in ids.values()),
                 "%s %s with %s leaks no tenant data" % (method, path, name))
        # The other tenant's admin, with valid credentials of its own: an
        # acme id is 404 (never 403: no existence oracle) and lists are its own.
        if any(ph in path for ph in ids):
            r = d.request(method, p, body=body, headers=w.bearer("globex", "admin"))
            t.eq(r.status, 404, "%s %s as globex's admin -> 404" % (method, path), r.body[:200])
            text = r.body.decode("utf-8", "replace")
            t.ok(all(v not in text for v in ids.values()), "%s %s as globex leaks nothing" % (method, path))
        # Insufficient role, by token and by API key.
        for role in ROLES:
            if RANK[role] >= RANK[need]:
                continue
            for how, headers in (("token", w.bearer("acme", role)), ("API key", {"X-API-Key": w.keys[("acme", role)]})):
                r = d.request(method, p, body=body, headers=headers)
                t.eq((r.status, r.json()["error"]["code"] if r.status >= 400 else None), (403, "forbidden"),
                     "%s %s as %s (%s) -> 403" % (method, path, role, how))
    # The other tenant's admin: never sees or touches acme's data.
    g = w.bearer("globex", "admin")
    r = d.request("GET", "/api/v1/auth/api-keys", headers=g)
    t.ok(r.status == 200 and all(k["id"] != acme_key_id for k in r.json()["items"]),
         "globex's key list never contains acme's keys")
    r = d.request("DELETE", "/api/v1/auth/api-keys/" + acme_key_id, headers=g)
    t.eq(r.status, 404, "globex cannot revoke acme's key: 404, not 403 (no existence oracle)")
    r = d.request("GET", "/api/v1/auth/me", headers={"X-API-Key": w.keys[("acme", "user")]})
    t.eq(r.status, 200, "acme's key still works after globex's attempt")
    raw = ("GET /api/v1/auth/me HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\nAuthorization: Bearer %s\r\n"
           "Connection: close\r\n\r\n" % (w.tokens[("acme", "user")], w.tokens[("globex", "admin")])).encode()
    t.ok(d.raw(raw).startswith(b"HTTP/1.1 400"), "two Authorization headers -> 400 duplicate_header")
    raw = ("GET /api/v1/auth/me HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\nX-Tenant-ID: %s\r\n"
           "X-Tenant-ID: %s\r\nConnection: close\r\n\r\n" % (w.tokens[("acme", "user")], TENANT_ID, OTHER_ID)).encode()
    t.ok(d.raw(raw).startswith(b"HTTP/1.1 400"), "two X-Tenant-ID headers -> 400")
    r = d.request("GET", "/api/v1/auth/me", headers=dict(w.bearer("acme", "user"), **{"X-API-Key": w.keys[("globex", "user")]}))
    t.eq(r.status, 400, "Authorization and X-API-Key together -> 400")
    r = d.request("GET", "/api/v1/auth/me", headers=dict(w.bearer("acme", "user"), **{"X-Tenant-ID": TENANT_ID.upper()}))
    t.eq(r.status, 200, "a matching X-Tenant-ID (any case) is accepted")


def test_register_admin_only(t, d, w):
    email = "new.%s@example.com" % os.urandom(3).hex()
    body = {"email": email, "password": PASSWORD, "role": "approver"}
    r = d.request("POST", "/api/v1/auth/register", body=body)
    t.eq(r.status, 401, "admin-only registration without credentials is 401")
    r = d.request("POST", "/api/v1/auth/register", body=body, headers=w.bearer("acme", "user"))
    t.eq(r.status, 403, "admin-only registration by a user is 403")
    r = d.request("POST", "/api/v1/auth/register", body=body, headers=w.bearer("globex", "admin"))
    t.eq((r.status, r.json().get("tenant_id")), (201, OTHER_ID), "an admin registers into their own tenant")
    r = d.request("POST", "/api/v1/auth/register", body=body, headers=w.bearer("globex", "admin"))
    t.eq(r.status, 409, "registering the same e-mail twice is 409")
    r = d.request("POST", "/api/v1/auth/register", body=dict(body, password="short"), headers=w.bearer("globex", "admin"))
    t.ok(r.status == 422 and "12" in r.json()["error"]["message"], "a short password is 422 naming the minimum")
    r = d.request("POST", "/api/v1/auth/login", body={"email": email, "password": PASSWORD})
    t.eq(r.status, 200, "the registered user logs in")


def test_tenant_removed(t, d, w):
    token = w.tokens[("globex", "user")]
    d.tenants = [(TENANT_ID, "acme")]
    d.write_conf()
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:
        status = d.request("GET", "/api/v1/auth/me", headers={"Authorization": "Bearer " + token}).status
        if status == 401:
            break
        time.sleep(0.1)
    t.eq(status, 401, "a token of a tenant removed from config stops working after SIGHUP")
    t.eq(d.request("GET", "/api/v1/auth/me", headers=w.bearer("acme", "user")).status, 200, "other tenants unaffected")


def test_login_flood(t, d, w):
    email = w.users[("acme", "user")]
    results = []

    def login():
        r = d.request("POST", "/api/v1/auth/login", body={"email": email, "password": "wrong password here"})
        results.append(r.status)

    threads = [threading.Thread(target=login) for _ in range(24)]
    for th in threads:
        th.start()
    start = time.monotonic()
    health = d.request("GET", "/healthz").status
    health_s = time.monotonic() - start
    for th in threads:
        th.join()
    t.eq(health, 200, "the HTTP loop answers during a login flood")
    t.ok(health_s < 1.0, "and answers quickly (%.3fs)" % health_s)
    t.ok(set(results) <= {401, 503}, "flooded logins are refused (401) or shed (503), nothing else: %s" % sorted(set(results)))


def run_suite(t, store, label):
    d = Daemon(plugins=PLUGINS, store=store, tenants=[(TENANT_ID, "acme"), (OTHER_ID, "globex")],
               auth_extra='registration = "admin-only";', server_extra="workers = 4;")
    try:
        d.start()
        w = World(t, d)
        for fn in (test_login, test_me, test_api_keys, test_matrix, test_register_admin_only, test_login_flood,
                   test_tenant_removed):
            print("# %s: %s" % (label, fn.__name__))
            t.run(fn, d, w)
        t.eq(d.stop(), 0, "%s: clean exit" % label)
    except Exception as e:  # noqa: BLE001
        t.ok(False, "%s: setup" % label, "%s\n%s" % (e, d.log_text()[-2000:]))
    finally:
        d.cleanup()


def test_policies(t):
    d = Daemon(plugins=PLUGINS)
    try:
        d.start()
        r = d.request("POST", "/api/v1/auth/register", body={"email": "a@example.com", "password": PASSWORD})
        t.eq((r.status, r.json()["error"]["code"]), (403, "registration_closed"), "closed registration is 403")
        d.auth_extra = 'registration = "open"; registration_tenant = "acme";'
        d.write_conf()
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        r = None
        while time.monotonic() < deadline:
            r = d.request("POST", "/api/v1/auth/register", body={"email": "a@example.com", "password": PASSWORD})
            if r.status != 403:
                break
            time.sleep(0.1)
        t.eq((r.status, r.json().get("role"), r.json().get("tenant_id")), (201, "user", TENANT_ID),
             "open registration creates a user in the configured tenant")
        r = d.request("POST", "/api/v1/auth/register", body={"email": "b@example.com", "password": PASSWORD,
                                                            "role": "admin"})
        t.eq(r.status, 422, "open registration cannot pick a role")
    finally:
        d.stop()
        d.cleanup()


def main():
    t = Tap()
    run_suite(t, None, "sqlite")
    store, cleanup = pg_private_store()
    if store is not None:
        try:
            run_suite(t, store, "pgsql")
        finally:
            cleanup()
    else:
        print("# AOS_TEST_PGSQL not set: the PostgreSQL run of the matrix is not run")
    t.run(test_policies)
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
