"""The event log, black-box, on SQLite and (when AOS_TEST_PGSQL is set)
PostgreSQL: GET /api/v1/events, the SSE streams /api/v1/events/stream and
/api/v1/aoa/events, POST /api/v1/events/stream-token.  Events are appended
through the AOS_TESTING route POST /api/v1/testing/events.

With AOS_TEST_PGSQL and AOS_TEST_REDIS both set, two aosd processes share
one PostgreSQL schema and one Redis: an event appended through node A must
reach a stream of node B long before B's own poll (30 s) could find it.

Timing: no assertion depends on speed except generous upper bounds.
"""
import hashlib
import hmac
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import TENANT_ID, Daemon, Tap, pg_private_store  # noqa: E402
from test_auth import OTHER_ID, PLUGINS, World, b64url  # noqa: E402

RUN_A = "11111111-1111-4111-8111-111111111111"
RUN_B = "22222222-2222-4222-8222-222222222222"
RING = 16
TOKEN_TTL = 10
EVENTS_CONF = ("events: { poll = 0.2; ring = %d; heartbeat = 0.5; retry = 2.5; client_buffer = 65536L; "
               "max_subscribers = 100; stream_token_ttl = %d; };" % (RING, TOKEN_TTL))
LABEL = b"aosd stream token v1"


def err_code(r):
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


class Sse:
    """A raw SSE client: sends the request, parses the response head, then
    collects frames.  frames: list of dicts {"id","data","retry","comment"}."""

    def __init__(self, d, path, headers=None, rcvbuf=None, timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", d.port))
        lines = ["GET %s HTTP/1.1" % path, "Host: test"]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        self.closed = False
        self.frames = []
        while b"\r\n\r\n" not in self.buf:
            b = self.sock.recv(65536)
            if not b:
                self.closed = True
                break
            self.buf += b
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if self.status != 200 and "content-length" in self.headers:
            n = int(self.headers["content-length"])
            while len(self.buf) < n and not self.closed:
                b = self.sock.recv(65536)
                if not b:
                    self.closed = True
                self.buf += b
            self.body = self.buf[:n]

    def json(self):
        return json.loads(self.body)

    def _parse(self):
        while b"\n\n" in self.buf:
            raw, _, self.buf = self.buf.partition(b"\n\n")
            f = {"id": None, "data": None, "retry": None, "comment": False}
            for line in raw.decode("utf-8").split("\n"):
                if line.startswith(":"):
                    f["comment"] = True
                    continue
                k, _, v = line.partition(":")
                v = v[1:] if v.startswith(" ") else v
                if k == "data":
                    f["data"] = v if f["data"] is None else f["data"] + "\n" + v
                elif k in ("id", "retry"):
                    f[k] = v
            self.frames.append(f)

    def pump(self, until, timeout=10.0):
        """Reads until until(self) is true, the server closes, or timeout."""
        deadline = time.monotonic() + timeout
        self._parse()
        while not until(self) and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(min(left, 1.0))
            try:
                b = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                self.closed = True
                break
            if not b:
                self.closed = True
                break
            self.buf += b
            self._parse()
        return until(self)

    def events(self):
        return [f for f in self.frames if f["data"] is not None]

    def ids(self):
        return [int(f["id"]) for f in self.events()]

    def wait_events(self, n, timeout=10.0):
        self.pump(lambda s: len(s.events()) >= n, timeout)
        return self.events()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def append(d, headers, events, repeat=1):
    r = d.request("POST", "/api/v1/testing/events", body={"events": events, "repeat": repeat}, headers=headers)
    if r.status != 201:
        raise RuntimeError("append failed: %d %s" % (r.status, r.body[:300]))
    return r.json()["ids"]


def list_all(d, headers, query=""):
    """Every event of the list, following next_cursor."""
    out, cursor = [], None
    for _ in range(1000):
        q = query + ("&" if query else "") + "limit=1000" + ("&after=" + cursor if cursor else "")
        r = d.request("GET", "/api/v1/events?" + q, headers=headers)
        if r.status != 200:
            raise RuntimeError("list failed: %d %s" % (r.status, r.body[:300]))
        body = r.json()
        out += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise RuntimeError("list did not end")


def auth_header(h):
    return {"Authorization": h["Authorization"]}


def metric(d, name):
    r = d.request("GET", "/metrics")
    for line in r.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


# ---------------------------------------------------------------- list


def test_list(t, d, w):
    a, g = w.bearer("acme", "user"), w.bearer("globex", "user")
    base = list_all(d, a)
    ids = append(d, a, [
        {"type": "run.started", "run_id": RUN_A, "payload": {"who": "jane.doe@example.com", "n": 1}},
        {"type": "run.step", "run_id": RUN_A, "payload": {"list": ["call +1 415 555 0100"]}},
        {"type": "runner.other", "run_id": RUN_B},
        {"type": "approval.requested", "run_id": RUN_B, "payload": {"x": True}},
        {"type": "run.done"},
    ])
    gids = append(d, g, [{"type": "run.started", "payload": {"secret": "globex only"}}])
    t.ok(ids == sorted(ids) and len(set(ids)) == 5, "appended ids increase")
    items = list_all(d, a)[len(base):]
    t.eq([i["id"] for i in items], ids, "the list is oldest first and holds the tenant's events only")
    first = items[0]
    t.eq(sorted(first.keys()), ["created_at", "id", "payload", "run_id", "type"], "an item's fields")
    t.eq((first["type"], first["run_id"], first["payload"]),
         ("run.started", RUN_A, {"who": "<EMAIL_ADDRESS>", "n": 1}), "PII in payloads is stored redacted")
    t.eq(items[1]["payload"], {"list": ["call <PHONE_NUMBER>"]}, "redaction reaches nested strings")
    t.eq((items[4]["run_id"], items[4]["payload"]), (None, {}), "no run: null; no payload: {}")
    t.ok(all(i["id"] not in gids for i in list_all(d, a)), "acme never sees globex's events")
    t.ok(all(i["id"] not in ids for i in list_all(d, g)), "globex never sees acme's events")

    after = str(base[-1]["id"]) if base else "0"
    r = d.request("GET", "/api/v1/events?limit=2&after=" + after, headers=a)
    p1 = r.json()
    t.eq(([i["id"] for i in p1["items"]], p1["next_cursor"]), (ids[:2], str(ids[1])), "limit=2: first page and cursor")
    r = d.request("GET", "/api/v1/events?limit=2&cursor=" + p1["next_cursor"], headers=a)
    t.eq([i["id"] for i in r.json()["items"]], ids[2:4], "cursor= continues where the page ended")
    r = d.request("GET", "/api/v1/events?limit=3&after=" + str(ids[1]), headers=a)
    t.eq((r.json()["next_cursor"], [i["id"] for i in r.json()["items"]]), (None, ids[2:]), "the last page: no cursor")

    q = "after=" + after
    got = [i["id"] for i in list_all(d, a, q + "&type=run.started")]
    t.eq(got, [ids[0]], "type= exact")
    got = [i["id"] for i in list_all(d, a, q + "&type=run.*")]
    t.eq(got, [ids[0], ids[1], ids[4]], "type=run.* is a prefix on 'run.' (not runner.)")
    got = [i["id"] for i in list_all(d, a, q + "&type=run.%2A")]
    t.eq(got, [ids[0], ids[1], ids[4]], "an encoded * (%2A) works too")
    got = [i["id"] for i in list_all(d, a, q + "&run=" + RUN_B.upper())]
    t.eq(got, [ids[2], ids[3]], "run= (any case)")
    got = [i["id"] for i in list_all(d, a, q + "&run=%s&type=run.*" % RUN_A)]
    t.eq(got, [ids[0], ids[1]], "type and run together")
    got = [i["id"] for i in list_all(d, g, "run=" + RUN_A)]
    t.eq(got, [], "another tenant's run filter finds nothing")
    for bad in ("limit=0", "limit=1001", "limit=x", "after=-1", "after=x", "after=1&cursor=2", "type=a*b",
                "type=a%20b", "run=nope", "type=x&type=y"):
        r = d.request("GET", "/api/v1/events?" + bad, headers=a)
        t.eq((r.status, err_code(r)), (400, "invalid_query"), "GET /events?%s -> 400" % bad)
    r = d.request("POST", "/api/v1/testing/events", body={"events": [{"type": "bad type"}]}, headers=a)
    t.eq(r.status, 422, "a malformed type is refused")
    r = d.request("POST", "/api/v1/testing/events", body={"events": [{"type": "x", "payload": [1]}]}, headers=a)
    t.eq(r.status, 422, "a payload that is not an object is refused")


# ---------------------------------------------------------------- streams


def test_framing(t, d, w):
    a = auth_header(w.bearer("acme", "user"))
    s = Sse(d, "/api/v1/events/stream", a)
    try:
        t.eq(s.status, 200, "stream: 200")
        t.eq((s.headers.get("content-type"), s.headers.get("cache-control"), s.headers.get("connection")),
             ("text/event-stream", "no-store", "close"), "stream headers")
        t.ok("content-length" not in s.headers and "transfer-encoding" not in s.headers,
             "the body runs until the connection closes (no length, not chunked)")
        s.pump(lambda x: any(f["retry"] for f in x.frames), 5)
        t.eq([f["retry"] for f in s.frames if f["retry"]][:1], ["2500"], "a retry: hint (events.retry) comes first")
        ids = append(d, a, [{"type": "run.started", "run_id": RUN_A, "payload": {"k": "v"}}, {"type": "run.done"}])
        ev = s.wait_events(2)
        t.eq([int(f["id"]) for f in ev], ids, "each event is a frame with id: set")
        t.eq(json.loads(ev[0]["data"]), {"id": ids[0], "type": "run.started", "run_id": RUN_A, "payload": {"k": "v"},
                                         "created_at": json.loads(ev[0]["data"])["created_at"]},
             "data: is the event as the list shows it")
        listed = [i for i in list_all(d, a) if i["id"] in ids]
        t.eq([json.loads(f["data"]) for f in ev], listed, "stream and list agree")
        n = len(s.frames)
        t.ok(s.pump(lambda x: any(f["comment"] for f in x.frames[n:]), 10), "idle streams get heartbeat comments")
    finally:
        s.close()
    # The second SSE route is the same stream.
    s = Sse(d, "/api/v1/aoa/events?last_event_id=" + str(ids[0]), a)
    try:
        t.eq(s.status, 200, "GET /api/v1/aoa/events: 200")
        s.wait_events(1)
        t.eq(s.ids(), [ids[1]], "it resumes like the other route")
    finally:
        s.close()
    r = d.request("HEAD", "/api/v1/events/stream", headers=a)
    t.eq((r.status, r.header("content-type")), (200, "text/event-stream"), "HEAD: the headers, no stream")


def test_resume(t, d, w):
    a = auth_header(w.bearer("acme", "user"))
    ids = append(d, a, [{"type": "resume.%d" % i} for i in range(5)])
    s = Sse(d, "/api/v1/events/stream?type=resume.*&last_event_id=%d" % ids[1], a)
    try:
        s.wait_events(3)
        t.eq(s.ids(), ids[2:], "last_event_id: exactly the events after it")
        more = append(d, a, [{"type": "resume.live"}])
        s.wait_events(4)
        t.eq(s.ids(), ids[2:] + more, "then live, no gap, no duplicate")
    finally:
        s.close()
    # The header wins over the parameter (a reconnect is newer than the URL).
    s = Sse(d, "/api/v1/events/stream?type=resume.*&last_event_id=%d" % ids[0], dict(a, **{"Last-Event-ID": str(ids[3])}))
    try:
        s.wait_events(2)
        t.eq(s.ids(), [ids[4], more[0]], "Last-Event-ID resumes after its id")
    finally:
        s.close()
    # Without either: from now.
    s = Sse(d, "/api/v1/events/stream?type=resume.*", a)
    try:
        s.pump(lambda x: len(x.frames) > 0, 5)
        later = append(d, a, [{"type": "resume.after"}])
        s.wait_events(1)
        t.eq(s.ids(), later, "no resume point: only events from now on")
    finally:
        s.close()
    for hdr in ("x", "-1", "1.5"):
        s = Sse(d, "/api/v1/events/stream", dict(a, **{"Last-Event-ID": hdr}))
        t.eq(s.status, 400, "Last-Event-ID %r -> 400" % hdr)
        s.close()
    for q in ("last_event_id=x", "type=a*b", "run=nope"):
        s = Sse(d, "/api/v1/events/stream?" + q, a)
        t.eq(s.status, 400, "stream ?%s -> 400" % q)
        s.close()


def test_resume_beyond_ring(t, d, w):
    a = auth_header(w.bearer("acme", "user"))
    n = RING * 6
    ids = append(d, a, [{"type": "deep.%d" % (i % 3), "payload": {"i": i}} for i in range(n)])
    start = ids[0] - 1
    s = Sse(d, "/api/v1/events/stream?type=deep.*&last_event_id=%d" % start, a)
    try:
        s.wait_events(n, 20)
        t.eq(s.ids(), ids, "resuming %d events back (ring %d) replays all of them from the store, in order" % (n, RING))
    finally:
        s.close()
    s = Sse(d, "/api/v1/events/stream?type=deep.1&last_event_id=%d" % start, a)
    try:
        want = ids[1::3]
        s.wait_events(len(want), 20)
        t.eq(s.ids(), want, "the same with a filter")
    finally:
        s.close()

    # Events keep coming while a stream resumes from far back: the result
    # must still be every event exactly once, in order.
    stop = threading.Event()
    added = []

    def writer():
        while not stop.is_set() and len(added) < 400:
            added.extend(append(d, a, [{"type": "race.x"}] * 7))

    s = Sse(d, "/api/v1/events/stream?type=race.*&last_event_id=%d" % start, a)
    th = threading.Thread(target=writer)
    th.start()
    try:
        time.sleep(1.0)
        stop.set()
        th.join()
        want = [i["id"] for i in list_all(d, a, "type=race.*&after=%d" % start)]
        s.wait_events(len(want), 30)
        t.eq(s.ids(), want, "resume racing with %d new events: no gap, no duplicate" % len(want))
    finally:
        stop.set()
        th.join()
        s.close()


def test_stream_filters_and_tenants(t, d, w):
    a, g = auth_header(w.bearer("acme", "user")), auth_header(w.bearer("globex", "user"))
    sa = Sse(d, "/api/v1/events/stream?run=" + RUN_B, a)
    sg = Sse(d, "/api/v1/events/stream", g)
    sk = Sse(d, "/api/v1/events/stream", {"X-API-Key": w.keys[("globex", "user")]})
    try:
        for s in (sa, sg, sk):
            s.pump(lambda x: len(x.frames) > 0, 5)
        ia = append(d, a, [{"type": "f.1", "run_id": RUN_A}, {"type": "f.2", "run_id": RUN_B}])
        ig = append(d, g, [{"type": "f.3", "run_id": RUN_B}])
        sa.wait_events(1)
        sg.wait_events(1)
        sk.wait_events(1)
        end = append(d, a, [{"type": "f.end", "run_id": RUN_B}])
        sa.wait_events(2)
        t.eq(sa.ids(), [ia[1], end[0]], "run= on a stream: only that run's events, of the own tenant")
        t.eq(sg.ids(), ig, "globex's stream carries globex's events only")
        t.eq(sk.ids(), ig, "a stream opened with an API key works the same")
    finally:
        for s in (sa, sg, sk):
            s.close()


def test_pipelined(t, d, w):
    a = auth_header(w.bearer("acme", "user"))
    req = ("GET /api/v1/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n\r\n"
           "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" % a["Authorization"]).encode()
    out = d.raw(req, timeout=3)
    t.ok(out.startswith(b"HTTP/1.1 400"), "a stream with a request pipelined behind it is refused", out[:200])
    req = ("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/events/stream HTTP/1.1\r\nHost: x\r\n"
           "Authorization: %s\r\n\r\n" % a["Authorization"]).encode()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    try:
        s.sendall(req)
        data = b""
        deadline = time.monotonic() + 5
        while b"retry:" not in data and time.monotonic() < deadline:
            data += s.recv(65536)
        t.ok(data.startswith(b"HTTP/1.1 200") and b"text/event-stream" in data and b"retry:" in data,
             "a stream as the last of pipelined requests works", data[:300])
    finally:
        s.close()


def test_slow_client(t, d, w):
    a = auth_header(w.bearer("acme", "user"))
    before = metric(d, "aosd_events_slow_disconnects") or 0
    s = Sse(d, "/api/v1/events/stream?type=slow.*", a, rcvbuf=4096)
    fast = Sse(d, "/api/v1/events/stream?type=slow.*", a)
    stop = threading.Event()
    # The fast client reads all the time; the slow one never reads.
    reader = threading.Thread(target=lambda: fast.pump(lambda x: stop.is_set(), 120))
    reader.start()
    try:
        t.eq(s.status, 200, "the slow client's stream opens")
        big = "x" * 8000
        total = 0
        # Bursts (one transaction each) well under events.client_buffer.  The
        # publisher waits for the fast client after each burst, so that on a
        # loaded machine (a slow reader thread) it is never more than one
        # burst behind: only the client that never reads can be cut off.
        for _ in range(100):
            total += len(append(d, a, [{"type": "slow.big", "payload": {"blob": big}}], repeat=3))
            pace = time.monotonic() + 10
            while time.monotonic() < pace and len(fast.events()) < total and not fast.closed:
                time.sleep(0.002)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(fast.events()) < total and not fast.closed:
            time.sleep(0.05)
        stop.set()
        reader.join()
        t.eq(len(fast.events()), total, "a client that keeps up gets all %d large events" % total)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (metric(d, "aosd_events_slow_disconnects") or 0) <= before:
            time.sleep(0.1)
        t.ok((metric(d, "aosd_events_slow_disconnects") or 0) > before, "the slow client is cut off (counted in /metrics)")
        # Its socket ends after what was already sent: reading now drains
        # the buffers and then meets the close.
        s.pump(lambda x: False, 20)
        t.ok(s.closed, "the slow client's connection is closed")
        got = s.ids()
        t.ok(len(got) < total and got == fast.ids()[:len(got)],
             "it got a prefix of the stream (%d of %d), in order" % (len(got), total))
        # It resumes where it stopped.
        last = got[-1] if got else 0
        r = Sse(d, "/api/v1/events/stream?type=slow.*", dict(a, **{"Last-Event-ID": str(last)}))
        try:
            r.wait_events(total - len(got), 30)
            t.eq(got + r.ids(), fast.ids(), "resuming with Last-Event-ID fills the rest exactly")
        finally:
            r.close()
    finally:
        stop.set()
        reader.join()
        s.close()
        fast.close()


# ---------------------------------------------------------------- tokens


def stream_key(d):
    key = d.jwt_key()
    if key.endswith(b"\n"):
        key = key[:-1]  # the daemon strips one trailing newline
    return hmac.new(key, LABEL, hashlib.sha256).digest()


def forge(key, tenant, exp_delta, sub="00000000-0000-4000-8000-000000000001", role="user"):
    now = int(time.time())
    claims = {"sub": sub, "tid": tenant, "role": role, "iat": now - 100, "exp": now + exp_delta,
              "jti": "11111111-2222-4333-8444-555555555555"}
    signing = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64url(json.dumps(claims).encode())
    return signing + "." + b64url(hmac.new(key, signing.encode(), hashlib.sha256).digest())


def test_tokens(t, d, w):
    a = w.bearer("acme", "user")
    r = d.request("POST", "/api/v1/events/stream-token", headers=a)
    t.eq(r.status, 200, "POST /events/stream-token -> 200")
    body = r.json()
    tok = body.get("token", "")
    t.eq((body.get("expires_in"), body.get("token_type"), tok.count(".")), (TOKEN_TTL, "stream", 2),
         "a JWT-shaped stream token valid events.stream_token_ttl seconds")
    r = d.request("POST", "/api/v1/events/stream-token", headers={"X-API-Key": w.keys[("globex", "approver")]})
    t.eq(r.status, 200, "an API key principal may get one too")
    gtok = r.json()["token"]

    s = Sse(d, "/api/v1/events/stream?token=" + tok)
    try:
        t.eq(s.status, 200, "the stream token opens a stream (no Authorization header)")
        s.pump(lambda x: len(x.frames) > 0, 5)
        gi = append(d, w.bearer("globex", "user"), [{"type": "tok.globex"}])
        ai = append(d, a, [{"type": "tok.acme"}])
        s.wait_events(1)
        t.eq(s.ids(), ai, "it is bound to its tenant: acme's events only")
    finally:
        s.close()
    s = Sse(d, "/api/v1/aoa/events?token=%s&last_event_id=%d" % (gtok, gi[0] - 1))
    try:
        s.wait_events(1)
        t.eq((s.status, s.ids()), (200, gi), "on /aoa/events too, bound to globex")
    finally:
        s.close()

    r = d.request("GET", "/api/v1/events", headers={"Authorization": "Bearer " + tok})
    t.eq((r.status, err_code(r)), (401, "invalid_credentials"), "a stream token is no bearer token on other routes")
    r = d.request("GET", "/api/v1/auth/me", headers={"Authorization": "Bearer " + tok})
    t.eq(r.status, 401, "nor on /auth/me")
    s = Sse(d, "/api/v1/events/stream", {"Authorization": "Bearer " + tok})
    t.eq(s.status, 401, "nor as a bearer token on the stream itself")
    s.close()
    r = d.request("GET", "/api/v1/events?token=" + tok)
    t.eq((r.status, err_code(r)), (401, "missing_credentials"), "?token= means nothing on other routes")
    r = d.request("GET", "/api/v1/events?token=" + w.tokens[("acme", "user")])
    t.eq(r.status, 401, "nor does an access token in the URL")
    main_jwt = w.tokens[("acme", "user")]
    s = Sse(d, "/api/v1/events/stream?token=" + main_jwt)
    t.eq((s.status, s.json()["error"]["code"]), (401, "invalid_credentials"), "the main JWT is refused in the URL")
    s.close()
    s = Sse(d, "/api/v1/events/stream?token=" + tok, {"Authorization": "Bearer " + main_jwt})
    t.eq(s.status, 400, "a stream token plus Authorization -> 400")
    s.close()
    s = Sse(d, "/api/v1/events/stream?token=" + tok[:-3] + "AAA")
    t.eq(s.status, 401, "a tampered stream token -> 401")
    s.close()
    key = stream_key(d)
    s = Sse(d, "/api/v1/events/stream?token=" + forge(key, TENANT_ID, 60))
    t.eq(s.status, 200, "(control: a token forged with the derived key is accepted)")
    s.close()
    s = Sse(d, "/api/v1/events/stream?token=" + forge(key, TENANT_ID, -60))
    t.eq((s.status, s.json()["error"]["message"]), (401, "the stream token has expired"), "an expired token -> 401")
    s.close()
    s = Sse(d, "/api/v1/events/stream?token=" + forge(key, "9e9e9e9e-9e9e-4e9e-8e9e-9e9e9e9e9e9e", 60))
    t.eq(s.status, 401, "a token of an unknown tenant -> 401")
    s.close()
    s = Sse(d, "/api/v1/events/stream?token=%s" % gtok, {"X-Tenant-ID": TENANT_ID})
    t.eq(s.status, 403, "X-Tenant-ID of another tenant than the token's -> 403")
    s.close()
    # A real token, waited out (ttl 10 s, 2 s leeway).
    time.sleep(TOKEN_TTL + 3.5)
    s = Sse(d, "/api/v1/events/stream?token=" + tok)
    t.eq(s.status, 401, "the issued token is refused after it expires")
    s.close()


# ---------------------------------------------------------------- suites


def test_first_stream_after_idle_commits(t, d, w):
    """With no stream open the hub does not read the store after commits;
    the first stream to open then must still get every event committed
    after its response head -- none may fall into the hub's catch-up."""
    a = auth_header(w.bearer("acme", "user"))
    missed = []
    for i in range(15):
        append(d, a, [{"type": "idle.commit"}])  # no stream open: the hub lags
        s = Sse(d, "/api/v1/events/stream?type=probe.*", a)
        try:
            if s.status != 200:
                missed.append((i, "status %d" % s.status))
                continue
            ids = append(d, a, [{"type": "probe.after_head"}])
            got = s.wait_events(1, timeout=10)
            if [int(f["id"]) for f in got] != ids:
                missed.append((i, ids, [f["id"] for f in got]))
        finally:
            s.close()
        # Let the hub see the stream close before the next idle commit.
        deadline = time.monotonic() + 5
        while metric(d, "aosd_events_streams") and time.monotonic() < deadline:
            time.sleep(0.02)
    t.eq(missed, [], "the first stream after idle commits gets every event committed after its head")


def run_suite(t, store, label):
    d = Daemon(plugins=PLUGINS, store=store, tenants=[(TENANT_ID, "acme"), (OTHER_ID, "globex")],
               server_extra="workers = 4;", extra=EVENTS_CONF)
    try:
        d.start()
        w = World(t, d)
        for fn in (test_list, test_framing, test_resume, test_resume_beyond_ring, test_stream_filters_and_tenants,
                   test_pipelined, test_slow_client, test_tokens, test_first_stream_after_idle_commits):
            print("# %s: %s" % (label, fn.__name__))
            t.run(fn, d, w)
        t.eq(d.stop(), 0, "%s: clean exit with streams open" % label)
    except Exception as e:  # noqa: BLE001
        t.ok(False, "%s: setup" % label, "%s\n%s" % (e, d.log_text()[-2000:]))
    finally:
        d.cleanup()


def test_stream_head_after_starting_point(t):
    """The first stream after commits nobody read gets its head only once
    the hub knows where "now" is: with the hub's read of a new starting
    point held back 400 ms, an event appended right after the head is
    delivered (before the fix the head went out first and the event fell
    before the starting point)."""
    saved = os.environ.get("AOS_TEST_HUB_START_DELAY_MS")
    os.environ["AOS_TEST_HUB_START_DELAY_MS"] = "400"
    d = Daemon(plugins=PLUGINS, tenants=[(TENANT_ID, "acme"), (OTHER_ID, "globex")], extra=EVENTS_CONF)
    try:
        d.start()
        w = World(t, d)
        a = auth_header(w.bearer("acme", "user"))

        def no_streams():
            deadline = time.monotonic() + 5
            while metric(d, "aosd_events_streams") and time.monotonic() < deadline:
                time.sleep(0.02)

        # A first stream waits for the hub's start-up read; once it is
        # closed, every commit below is one the hub does not read.
        Sse(d, "/api/v1/events/stream", a).close()
        no_streams()
        waits = []
        for i in range(5):
            append(d, a, [{"type": "idle.commit"}])
            # Let the hub take the commit's wake-up (it marks itself as
            # behind): otherwise the stream may open first and the hub
            # simply reads the commit for it.
            time.sleep(0.05)
            t0 = time.monotonic()
            s = Sse(d, "/api/v1/events/stream?type=probe.*", a)
            try:
                waits.append(round(time.monotonic() - t0, 2))
                t.eq(s.status, 200, "round %d: stream 200" % i)
                ids = append(d, a, [{"type": "probe.after_head"}])
                t.eq(s.ids() or [int(f["id"]) for f in s.wait_events(1, timeout=10)], ids,
                     "round %d: the event appended after the head is delivered" % i)
            finally:
                s.close()
            no_streams()
        # The path under test was taken (else the test proves nothing).
        t.ok(sum(1 for x in waits if x >= 0.35) >= 3, "heads waited for the hub's starting point", waits)
        t.eq(d.stop(), 0, "clean exit")
    finally:
        if saved is None:
            os.environ.pop("AOS_TEST_HUB_START_DELAY_MS", None)
        else:
            os.environ["AOS_TEST_HUB_START_DELAY_MS"] = saved
        d.cleanup()


def api_key(d, tenant, role="user"):
    rc, out, err = d.aosctl("apikey", "create", "--tenant", tenant, "--role", role, "--name", "k" + os.urandom(3).hex())
    if rc != 0:
        raise RuntimeError("aosctl apikey create: %s %s" % (out, err))
    return {"X-API-Key": out.splitlines()[0].strip()}


def test_max_subscribers(t):
    d = Daemon(plugins=PLUGINS, extra="events: { max_subscribers = 2; heartbeat = 0.5; };")
    streams = []
    try:
        d.start()
        k = api_key(d, "acme")
        for _ in range(2):
            streams.append(Sse(d, "/api/v1/events/stream", k))
        t.eq([s.status for s in streams], [200, 200], "streams up to events.max_subscribers open")
        s = Sse(d, "/api/v1/events/stream", k)
        t.eq((s.status, s.json()["error"]["code"], s.headers.get("retry-after") is not None),
             (503, "too_many_streams", True), "one more -> 503 with Retry-After")
        s.close()
        t.ok((metric(d, "aosd_events_refused") or 0) >= 1, "refusals are counted")
        t.eq(metric(d, "aosd_events_streams"), 2.0, "open streams are a gauge")
        streams.pop().close()
        status, deadline = None, time.monotonic() + 10
        while time.monotonic() < deadline:
            s = Sse(d, "/api/v1/events/stream", k)
            status = s.status
            if status == 200:
                streams.append(s)
                break
            s.close()
            time.sleep(0.1)
        t.eq(status, 200, "a closed stream frees its slot")
        t.eq(d.stop(), 0, "clean exit with streams open")
        for s in streams:
            s.pump(lambda x: False, 5)
        t.ok(all(s.closed for s in streams), "draining closes the streams")
    finally:
        for s in streams:
            s.close()
        d.cleanup()


def test_two_nodes(t):
    pg, redis = os.environ.get("AOS_TEST_PGSQL"), os.environ.get("AOS_TEST_REDIS")
    if not pg or not redis:
        t.skip("two nodes: an event of node A reaches a stream of node B through Redis",
               "needs AOS_TEST_PGSQL and AOS_TEST_REDIS")
        return
    store, cleanup = pg_private_store()
    conf = 'redis: { url = "%s"; }; events: { poll = 30; heartbeat = 1; };' % redis
    a = Daemon(plugins=PLUGINS, store=store, extra=conf)
    b = Daemon(plugins=PLUGINS, store=store, extra=conf)
    s = None
    try:
        a.start()
        b.start()
        ka = api_key(a, "acme")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (metric(a, "aosd_events_redis_up") == 1.0 and
                                                     metric(b, "aosd_events_redis_up") == 1.0):
            time.sleep(0.1)
        t.ok(metric(a, "aosd_events_redis_up") == 1.0 and metric(b, "aosd_events_redis_up") == 1.0,
             "both nodes subscribe to the wake-up channel")
        # Resume after the newest event, so the check does not depend on
        # when B read its starting point; B's next poll is 30 s away, so
        # only a Redis wake-up explains a quick delivery.
        listed = a.request("GET", "/api/v1/events?limit=1000", headers=ka).json()["items"]
        last = listed[-1]["id"] if listed else 0
        s = Sse(b, "/api/v1/events/stream?last_event_id=%d" % last, ka)
        t.eq(s.status, 200, "a stream on node B")
        s.pump(lambda x: len(x.frames) > 0, 5)
        start = time.monotonic()
        ids = append(a, ka, [{"type": "node.a", "payload": {"from": "a"}}])
        s.wait_events(1, 20)
        took = time.monotonic() - start
        t.eq(s.ids(), ids, "an event appended through node A reaches node B's stream")
        t.ok(took < 10.0, "well before B's 30 s poll (%.2fs): Redis woke it" % took)
        t.ok((metric(b, "aosd_events_redis_wakeups") or 0) >= 1, "B counts the wake-up")
        t.eq((a.stop(), b.stop()), (0, 0), "both nodes exit cleanly")
    except Exception as e:  # noqa: BLE001
        t.ok(False, "two nodes: setup", "%s\nA:\n%s\nB:\n%s" % (e, a.log_text()[-1500:], b.log_text()[-1500:]))
    finally:
        if s is not None:
            s.close()
        a.cleanup()
        b.cleanup()
        cleanup()


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
        t.skip("pgsql: the event log on PostgreSQL", "AOS_TEST_PGSQL is not set")
    t.run(test_max_subscribers)
    t.run(test_two_nodes)
    t.run(test_stream_head_after_starting_point)
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
