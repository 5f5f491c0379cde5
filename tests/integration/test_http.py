"""HTTP core, black-box: routing errors, JSON errors, limits, timeouts,
pipelining, request ids and metrics, against the real aosd over TCP."""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aostest  # noqa: E402
from aostest import Daemon, Tap, parse_responses, read_all  # noqa: E402

LIMITS = (
    "max_body_size = 2048; max_header_size = 4096; max_headers = 20; max_uri_size = 512;"
    " max_json_depth = 4; header_timeout = 1; body_timeout = 1; idle_timeout = 1;"
)


def error_of(r):
    return r.json()["error"]


def test_ops(t, d):
    r = d.request("GET", "/healthz")
    t.eq(r.status, 200, "GET /healthz is 200")
    t.eq(r.json(), {"status": "ok"}, "/healthz body")
    t.eq(r.header("content-type"), "application/json", "/healthz is JSON")
    t.ok(r.header("x-request-id"), "a request id is generated")
    r = d.request("GET", "/readyz")
    t.eq((r.status, r.json()["status"]), (200, "ready"), "/readyz is ready once plugins are up")
    r = d.request("GET", "/healthz", headers={"X-Request-ID": "abc-123.X_y:z"})
    t.eq(r.header("x-request-id"), "abc-123.X_y:z", "a valid X-Request-ID is echoed")
    r = d.request("GET", "/healthz", headers={"X-Request-ID": "bad id\twith<>"})
    t.ok(r.header("x-request-id") not in (None, "bad id\twith<>"), "an invalid X-Request-ID is replaced")


def test_routing_errors(t, d):
    r = d.request("GET", "/no/such/route")
    t.eq(r.status, 404, "unknown route is 404")
    e = error_of(r)
    t.eq(e["code"], "not_found", "404 error code")
    t.eq(e["request_id"], r.header("x-request-id"), "error body carries the request id of the header")
    t.ok("message" in e and e["message"], "error has a message")
    r = d.request("DELETE", "/healthz")
    t.eq(r.status, 405, "wrong method is 405")
    t.eq(r.header("allow"), "GET, HEAD", "405 carries Allow")
    t.eq(error_of(r)["code"], "method_not_allowed", "405 error code")
    r = d.request("GET", "/%zz")
    t.eq(r.status, 400, "malformed percent-encoding is 400")


def test_json(t, d):
    r = d.request("POST", "/api/v1/testing/echo", body={"a": [1, 2, {"b": None}]})
    t.eq((r.status, r.json()), (200, {"echo": {"a": [1, 2, {"b": None}]}}), "valid JSON is accepted")
    r = d.request("POST", "/api/v1/testing/echo", body=b'{"a":', headers={"Content-Type": "application/json"})
    t.eq((r.status, error_of(r)["code"]), (400, "invalid_json"), "truncated JSON is 400 invalid_json")
    r = d.request("POST", "/api/v1/testing/echo", body=b'{"a":1} x', headers={"Content-Type": "application/json"})
    t.eq(r.status, 400, "trailing garbage is 400")
    r = d.request("POST", "/api/v1/testing/echo", body=b"[1]", headers={"Content-Type": "application/json"})
    t.eq(r.status, 400, "a non-object body is 400")
    deep = b'{"a":' * 5 + b"1" + b"}" * 5
    r = d.request("POST", "/api/v1/testing/echo", body=deep, headers={"Content-Type": "application/json"})
    t.eq(r.status, 400, "JSON deeper than server.max_json_depth is 400")
    t.ok("deep" in error_of(r)["message"], "depth error says so", r.body)
    r = d.request("POST", "/api/v1/testing/echo", body=b'{"a":1}', headers={"Content-Type": "text/plain"})
    t.eq((r.status, error_of(r)["code"]), (415, "unsupported_media_type"), "non-JSON content type is 415")
    r = d.request("POST", "/api/v1/testing/echo", body=b'{"a":"\xff"}', headers={"Content-Type": "application/json"})
    t.eq(r.status, 400, "invalid UTF-8 is 400")


def test_limits(t, d):
    body = json.dumps({"a": "x" * 4000}).encode()
    r = d.request("POST", "/api/v1/testing/echo", body=body, headers={"Content-Type": "application/json"})
    t.eq((r.status, error_of(r)["code"]), (413, "payload_too_large"), "body over max_body_size is 413")
    # Chunked bodies have no Content-Length: the limit must hold while streaming.
    chunk = b"x" * 1000
    req = b"POST /api/v1/testing/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    req += b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
    resp = parse_responses(d.raw(req))
    t.eq([x[0] for x in resp], [413], "chunked body over the limit is 413")
    r = d.request("GET", "/healthz", headers={"X-Big": "a" * 5000})
    t.eq((r.status, error_of(r)["code"]), (431, "header_fields_too_large"), "headers over max_header_size are 431")
    r = d.request("GET", "/healthz", headers={"X-H%d" % i: "v" for i in range(25)})
    t.eq(r.status, 431, "more than max_headers headers is 431")
    r = d.request("GET", "/" + "a" * 600)
    t.eq((r.status, error_of(r)["code"]), (414, "uri_too_long"), "URI over max_uri_size is 414")
    r = d.request("GET", "/healthz")
    t.eq(r.status, 200, "the server still serves after refusals")


def test_hygiene(t, d):
    resp = parse_responses(d.raw(b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"))
    t.eq([x[0] for x in resp], [400], "two Host headers are 400")
    resp = parse_responses(d.raw(b"GET /healthz HTTP/1.1\r\n\r\n"))
    t.eq([x[0] for x in resp], [400], "HTTP/1.1 without Host is 400")
    resp = parse_responses(d.raw(b"BREW /healthz HTTP/1.1\r\nHost: a\r\n\r\n"))
    t.eq([x[0] for x in resp], [501], "unknown method is 501")
    resp = parse_responses(d.raw(b"GARBAGE\r\n\r\n"))
    t.ok(resp and resp[0][0] in (400, 501), "garbage request line is refused", resp)
    req = b"POST /api/v1/testing/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    resp = parse_responses(d.raw(req))
    t.eq([x[0] for x in resp], [400], "Content-Length with Transfer-Encoding is 400 (smuggling)")
    resp = parse_responses(d.raw(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n"))
    t.eq([x[0] for x in resp], [400], "NUL in a header value is 400")


def test_keepalive_and_pipelining(t, d):
    req = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /readyz HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    resp = parse_responses(d.raw(req))
    t.eq([x[0] for x in resp], [200, 200, 404], "pipelined requests are answered in order")
    t.eq(resp[-1][1].get("connection"), "close", "Connection: close is honoured")
    c = d.connection()
    statuses = [d.request("GET", "/healthz", conn=c).status for _ in range(5)]
    c.close()
    t.eq(statuses, [200] * 5, "keep-alive serves several requests on one connection")
    data = d.raw(b"HEAD /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    head, _, rest = data.partition(b"\r\n\r\n")
    t.ok(head.startswith(b"HTTP/1.1 200"), "HEAD on a GET route is 200", head)
    t.ok(b"Content-Length: 15" in head and rest == b"", "HEAD has Content-Length and no body", data)
    data = d.raw(b"GET /healthz HTTP/1.0\r\n\r\n")
    t.ok(data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data, "HTTP/1.0 is answered then closed", data)
    req = (b"POST /api/v1/testing/echo HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
           b"Content-Length: 7\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    s.sendall(req)
    interim = s.recv(4096)
    t.ok(interim.startswith(b"HTTP/1.1 100 Continue"), "Expect: 100-continue gets 100 Continue", interim)
    s.sendall(b'{"a":1}')
    resp = parse_responses(read_all(s, 5))
    s.close()
    t.eq([x[0] for x in resp], [200], "the body after 100 Continue is processed")


def test_pipelining_backpressure(t, d):
    """More pipelined requests than the server buffers (64 KiB) while the
    client reads nothing: the server's writes hit a full socket (EAGAIN,
    the rest kept and sent on EV_WRITE) and its reading stops, then both
    resume once the client reads; every answer arrives, in order."""
    n = 3000
    req = b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Request-ID: bp-%d\r\n\r\n"
    data = b"".join(req % i for i in range(n - 1))
    data += b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Request-ID: bp-last\r\nConnection: close\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    errors = []

    def send():
        try:
            s.sendall(data)
        except OSError as e:
            errors.append(e)

    th = threading.Thread(target=send)
    th.start()
    time.sleep(0.5)  # not reading: the server must hold its output
    got = read_all(s, 10)
    th.join(10)
    s.close()
    resp = parse_responses(got)
    t.eq(errors, [], "the client could send all %d requests" % n)
    t.eq(len(resp), n, "every pipelined request is answered (%d bytes received)" % len(got))
    ids = [r[1].get("x-request-id") for r in resp]
    t.eq(ids, ["bp-%d" % i for i in range(n - 1)] + ["bp-last"], "in order")
    t.ok(all(r[0] == 200 for r in resp), "all 200")


def test_timeouts(t, d):
    # Slowloris: headers trickle in and never finish.
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    start = time.monotonic()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
    got = b""
    for _ in range(4):
        time.sleep(0.4)
        try:
            s.sendall(b"X-Slow: 1\r\n")
        except OSError:
            break
    got = read_all(s, 5)
    elapsed = time.monotonic() - start
    s.close()
    resp = parse_responses(got)
    t.eq([x[0] for x in resp], [408], "headers not complete within header_timeout get 408")
    t.ok(elapsed < 4, "slow headers are cut at the deadline, not extended by each byte (%.1fs)" % elapsed)
    # Body that stops arriving.
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    s.sendall(b"POST /api/v1/testing/echo HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    resp = parse_responses(read_all(s, 5))
    s.close()
    t.eq([x[0] for x in resp], [408], "a stalled body gets 408 after body_timeout")
    # Idle keep-alive connection is closed silently.
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    first = s.recv(4096)
    start = time.monotonic()
    rest = read_all(s, 5)
    elapsed = time.monotonic() - start
    s.close()
    t.ok(first.startswith(b"HTTP/1.1 200") and rest == b"", "idle keep-alive connection is closed without a response")
    t.ok(elapsed < 4, "idle close happens after idle_timeout (%.1fs)" % elapsed)
    # A connection that never sends anything.
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    start = time.monotonic()
    data = read_all(s, 5)
    s.close()
    t.ok(data == b"" and time.monotonic() - start < 4, "a silent connection is closed after header_timeout")


def test_metrics(t, d):
    d.request("GET", "/healthz")
    r = d.request("GET", "/metrics")
    t.eq(r.status, 200, "/metrics is 200")
    t.ok(r.header("content-type").startswith("text/plain; version=0.0.4"), "Prometheus content type")
    text = r.body.decode()
    t.ok('aosd_http_requests_total{route="/healthz",method="GET",status="200"}' in text, "request count by route and status")
    t.ok('aosd_http_request_duration_seconds_bucket{route="/healthz",method="GET",le="+Inf"}' in text, "latency histogram")
    t.ok("aosd_plugins_loaded 1" in text, "plugin count gauge", text[-600:])
    t.ok('status="404"' in text and 'route="unmatched"' in text, "unmatched requests are counted")


def main():
    t = Tap()
    d = Daemon(server_extra=LIMITS)
    try:
        d.start()
        for fn in (test_ops, test_routing_errors, test_json, test_limits, test_hygiene,
                   test_keepalive_and_pipelining, test_pipelining_backpressure, test_timeouts, test_metrics):
            t.run(fn, d)
        t.eq(d.stop(), 0, "aosd exits 0 on SIGTERM")
    except Exception as e:  # noqa: BLE001
        t.ok(False, "daemon lifecycle", "%s\n%s" % (e, d.log_text()))
    finally:
        if t.failed:
            print("# aosd log:\n" + "\n".join("#   " + l for l in d.log_text().splitlines()[-40:]))
        d.cleanup()
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
