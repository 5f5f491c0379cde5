"""PII analyzer/anonymizer over HTTP: POST /api/v1/pii/analyze and
/api/v1/pii/anonymize (auth required, validation, code point offsets,
operators, the pool path for large bodies)."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import Daemon, Tap  # noqa: E402

PASSWORD = "correct horse battery staple"
PLUGINS = ("agent-echo", "auth-local", "auth-apikey")
ANALYZE = "/api/v1/pii/analyze"
ANONYMIZE = "/api/v1/pii/anonymize"


def login(d):
    email = "pii.%s@example.com" % os.urandom(3).hex()
    rc, out, err = d.aosctl("user", "add", "--tenant", "acme", "--email", email, "--role", "user",
                            stdin=PASSWORD + "\n")
    if rc != 0:
        raise RuntimeError("aosctl user add failed: %s %s" % (out, err))
    r = d.request("POST", "/api/v1/auth/login", body={"email": email, "password": PASSWORD})
    if r.status != 200:
        raise RuntimeError("login failed: %d %s" % (r.status, r.body))
    return {"Authorization": "Bearer " + r.json()["access_token"]}


def test_auth(t, d, auth):
    r = d.request("POST", ANALYZE, body={"text": "jane@example.com"})
    t.eq(r.status, 401, "analyze without a token is 401")
    r = d.request("POST", ANONYMIZE, body={"text": "jane@example.com"})
    t.eq(r.status, 401, "anonymize without a token is 401")
    r = d.request("GET", ANALYZE, headers=auth)
    t.eq(r.status, 405, "GET analyze is 405")


def test_analyze(t, d, auth):
    text = "Mail jane@example.com, card 4111 1111 1111 1111, ssn 078-05-1120, ip 10.0.0.1"
    r = d.request("POST", ANALYZE, body={"text": text, "language": "en"}, headers=auth)
    t.eq(r.status, 200, "analyze is 200")
    items = r.json()["items"]
    got = [(i["type"], text[i["start"]:i["end"]]) for i in items]
    t.eq(got, [("EMAIL_ADDRESS", "jane@example.com"), ("CREDIT_CARD", "4111 1111 1111 1111"),
               ("US_SSN", "078-05-1120"), ("IP_ADDRESS", "10.0.0.1")], "analyze finds each entity")
    t.eq([i["score"] for i in items], [1.0, 1.0, 0.85, 0.95], "scores are the documented fixed values")
    r = d.request("POST", ANALYZE, body={"text": text, "entities": ["US_SSN", "IP_ADDRESS"]}, headers=auth)
    t.eq([i["type"] for i in r.json()["items"]], ["US_SSN", "IP_ADDRESS"], "entities filters the types")
    r = d.request("POST", ANALYZE, body={"text": "card 4111 1111 1111 1112, ip 999.1.1.1"}, headers=auth)
    t.eq(r.json()["items"], [], "Luhn failure and a bad IP are not findings")
    r = d.request("POST", ANALYZE, body={"text": ""}, headers=auth)
    t.eq((r.status, r.json()["items"]), (200, []), "empty text is fine")


def test_multibyte(t, d, auth):
    text = "Grüße 😀 von jane@example.com ☎ +44 20 7946 0958"
    r = d.request("POST", ANALYZE, body={"text": text}, headers=auth)
    items = r.json()["items"]
    t.eq([(i["type"], i["start"], i["end"]) for i in items],
         [("EMAIL_ADDRESS", 12, 28), ("PHONE_NUMBER", 31, 47)], "offsets count code points")
    t.eq([text[i["start"]:i["end"]] for i in items], ["jane@example.com", "+44 20 7946 0958"],
         "offsets slice the Python string exactly")
    r = d.request("POST", ANONYMIZE, body={"text": text}, headers=auth)
    body = r.json()
    t.eq(body["text"], "Grüße 😀 von <EMAIL_ADDRESS> ☎ <PHONE_NUMBER>", "anonymize replaces by <TYPE>")
    t.eq([body["text"][i["start"]:i["end"]] for i in body["items"]], ["<EMAIL_ADDRESS>", "<PHONE_NUMBER>"],
         "anonymize items are offsets in the output text")


def test_validation(t, d, auth):
    cases = [
        ({}, "missing text"),
        ({"text": 5}, "text not a string"),
        ({"text": None}, "text null"),
        ({"text": "x", "entities": ["EMAIL_ADDRESS", "PERSON"]}, "unknown entity"),
        ({"text": "x", "entities": "EMAIL_ADDRESS"}, "entities not an array"),
        ({"text": "x", "entities": [1]}, "entity not a string"),
        ({"text": "x", "language": "de"}, "unsupported language"),
    ]
    for body, name in cases:
        r = d.request("POST", ANALYZE, body=body, headers=auth)
        t.eq((r.status, r.json()["error"]["code"]), (422, "invalid_field"), "analyze: %s is 422" % name)
    ops_cases = [
        ({"text": "x", "operators": []}, "operators not an object"),
        ({"text": "x", "operators": {"PERSON": {"type": "redact"}}}, "unknown entity"),
        ({"text": "x", "operators": {"DEFAULT": {"type": "encrypt"}}}, "unknown operator"),
        ({"text": "x", "operators": {"DEFAULT": {}}}, "operator without type"),
        ({"text": "x", "operators": {"DEFAULT": {"type": "mask", "masking_char": "ab"}}}, "two masking chars"),
        ({"text": "x", "operators": {"DEFAULT": {"type": "mask", "chars_to_mask": -1}}}, "negative chars_to_mask"),
        ({"text": "x", "operators": {"DEFAULT": {"type": "replace", "new_value": 3}}}, "new_value not a string"),
        ({"text": "x", "operators": {"DEFAULT": {"type": "hash", "hash_type": "md5"}}}, "md5 hash"),
        ({"operators": {}}, "missing text"),
    ]
    for body, name in ops_cases:
        r = d.request("POST", ANONYMIZE, body=body, headers=auth)
        t.eq((r.status, r.json()["error"]["code"]), (422, "invalid_field"), "anonymize: %s is 422" % name)
    r = d.request("POST", ANALYZE, body=b'{"text": "\xff"}', headers=dict(auth, **{"Content-Type": "application/json"}))
    t.eq(r.status, 400, "invalid UTF-8 is 400")


def test_operators(t, d, auth):
    text = "jane@example.com paid with 4111111111111111 from 10.0.0.1"
    ops = {
        "DEFAULT": {"type": "replace"},
        "EMAIL_ADDRESS": {"type": "mask", "masking_char": "#", "chars_to_mask": 4, "from_end": True},
        "CREDIT_CARD": {"type": "redact"},
        "IP_ADDRESS": {"type": "replace", "new_value": "[ip]"},
    }
    r = d.request("POST", ANONYMIZE, body={"text": text, "operators": ops}, headers=auth)
    t.eq(r.status, 200, "anonymize with operators is 200")
    body = r.json()
    t.eq(body["text"], "jane@example#### paid with  from [ip]", "per-type operators apply")
    t.eq([(i["type"], i["operator"], i["start"], i["end"]) for i in body["items"]],
         [("EMAIL_ADDRESS", "mask", 0, 16), ("CREDIT_CARD", "redact", 27, 27), ("IP_ADDRESS", "replace", 33, 37)],
         "items carry operator and output offsets")
    hashed = {"DEFAULT": {"type": "hash"}}
    a = d.request("POST", ANONYMIZE, body={"text": "jane@example.com", "operators": hashed}, headers=auth).json()
    b = d.request("POST", ANONYMIZE, body={"text": "x jane@example.com", "operators": hashed}, headers=auth).json()
    t.ok(re.fullmatch(r"[0-9a-f]{64}", a["text"]) is not None, "hash is 64 hex digits", a)
    t.eq(b["text"], "x " + a["text"], "hash is stable for the same value")


def test_large_body(t, d, auth):
    # Above the inline threshold: the work runs on the pool; same answers.
    filler = "lorem ipsum dolor sit amet " * 1500
    text = filler + "jane@example.com"
    r = d.request("POST", ANALYZE, body={"text": text}, headers=auth)
    items = r.json()["items"]
    t.eq((r.status, [(i["type"], i["start"]) for i in items]), (200, [("EMAIL_ADDRESS", len(filler))]),
         "a large body is analysed (on the pool)")
    r = d.request("POST", ANONYMIZE, body={"text": text}, headers=auth)
    t.eq(r.json()["text"], filler + "<EMAIL_ADDRESS>", "a large body is anonymised")


def main():
    t = Tap()
    d = Daemon(plugins=PLUGINS)
    try:
        d.start()
        auth = login(d)
        for fn in (test_auth, test_analyze, test_multibyte, test_validation, test_operators, test_large_body):
            print("# %s" % fn.__name__)
            t.run(fn, d, auth)
        t.eq(d.stop(), 0, "clean exit")
    except Exception as e:  # noqa: BLE001
        t.ok(False, "setup", "%s\n%s" % (e, d.log_text()[-2000:]))
    finally:
        d.cleanup()
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
