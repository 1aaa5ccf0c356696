#!/usr/bin/env python3
"""Local stand-ins for the AWS credential services, and a recording S3 proxy, for the tests of
the credential chain and of the object settings (tests/object_store.rs).

    scripts/aws_stub.py --port P --s3-port Q --target 127.0.0.1:9000 --log calls.jsonl \
        [--lifetime 900] [--base-key AKIA...:secret] [--web-token TOKEN] [--container-token T]

Port P answers, as AWS does:
  GET /?Action=AssumeRole...               STS AssumeRole; the SigV4 signature is verified
                                           against --base-key (403 otherwise)
  GET /?Action=AssumeRoleWithWebIdentity   STS web identity; the token must be --web-token
  PUT /latest/api/token                    IMDSv2 session token
  GET /latest/meta-data/iam/security-credentials/[role]   IMDSv2 role and credentials
  GET /container                           container credentials (ECS / EKS Pod Identity); the
                                           Authorization header must be --container-token
  GET /msk-verify?token=T                  checks an AWS MSK IAM token as MSK does (for the test
                                           broker's MSKIAM listener, scripts/kafka/MskIamValidator
                                           .java): base64url of a SigV4-presigned
                                           https://kafka.<--msk-region>.amazonaws.com/?Action=
                                           kafka-cluster%3AConnect, signed by a key handed out here
                                           (or --base-key) with its session token, not expired;
                                           200 "principal lifetimeMs startMs", else 403
Every answer hands out new temporary keys, STUB0001..., valid --lifetime seconds.

Port Q forwards every request to --target (an S3 server) and logs its method, path, the access
key id of its signature, the headers it signed and its x-amz-* headers. The server knows only its
own keys (--target-key), so each request is signed again with them before it is forwarded: the
temporary keys handed out above are checked by what the log shows, not by the server.

Each call is one JSON line in --log: {"service": "sts"|"imds"|"container"|"s3", ...}.
"""
import argparse
import datetime
import hashlib
import hmac
import http.client
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"issued": 0, "keys": {}}


def log(args, entry):
    with LOCK:
        with open(args.log, "a") as f:
            f.write(json.dumps(entry) + "\n")


def issue(args):
    with LOCK:
        STATE["issued"] += 1
        n = STATE["issued"]
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=args.lifetime)
    c = {
        "AccessKeyId": f"STUB{n:04d}KEYID",
        "SecretAccessKey": f"stub-secret-{n}",
        "Token": f"stub-session-token-{n}",
        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    with LOCK:
        STATE["keys"][c["AccessKeyId"]] = (c["SecretAccessKey"], c["Token"], expires)
    return c


def msk_verify(args, token):
    """Checks an MSK IAM auth token as the MSK broker does; returns (principal, lifetime_ms,
    start_ms) or raises ValueError with the reason."""
    import base64
    try:
        url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except Exception as e:
        raise ValueError(f"not base64url: {e}")
    u = urllib.parse.urlsplit(url)
    host = f"kafka.{args.msk_region}.amazonaws.com"
    if u.scheme != "https" or u.netloc != host or u.path not in ("", "/"):
        raise ValueError(f"signed for {u.scheme}://{u.netloc}{u.path}, expected https://{host}/")
    pairs = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
    q = dict(pairs)
    for k, want in (("Action", "kafka-cluster:Connect"), ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-SignedHeaders", "host")):
        if q.get(k) != want:
            raise ValueError(f"{k} is {q.get(k)!r}, expected {want!r}")
    key_id, date, region, service, term = (q.get("X-Amz-Credential", "").split("/") + [""] * 5)[:5]
    if (region, service, term) != (args.msk_region, "kafka-cluster", "aws4_request"):
        raise ValueError(f"credential scope {date}/{region}/{service}/{term}")
    signed_at = datetime.datetime.strptime(q.get("X-Amz-Date", ""), "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    expires_in = int(q.get("X-Amz-Expires", "0"))
    now = datetime.datetime.now(datetime.timezone.utc)
    if not 0 < expires_in <= 900:
        raise ValueError(f"X-Amz-Expires {expires_in} outside 1..900")
    if now > signed_at + datetime.timedelta(seconds=expires_in) or signed_at > now + datetime.timedelta(minutes=5):
        raise ValueError(f"signed at {signed_at}, valid {expires_in} s: expired or from the future")
    base_id, base_secret = args.base_key.split(":", 1)
    with LOCK:
        known = dict(STATE["keys"])
    if key_id == base_id:
        secret, session = base_secret, None
    elif key_id in known:
        secret, session, key_expires = known[key_id]
        if now > key_expires:
            raise ValueError(f"signed with {key_id}, whose credentials expired at {key_expires}")
    else:
        raise ValueError(f"unknown access key {key_id}")
    if q.get("X-Amz-Security-Token") != session:
        raise ValueError("session token missing or not the key's")
    # User-Agent is added after signing (aws-msk-iam-sasl-signer), so it is not in the signature.
    signed = sorted((k, v) for k, v in pairs if k not in ("X-Amz-Signature", "User-Agent"))
    query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in signed)
    canonical = "\n".join(["GET", "/", query, f"host:{host}\n", "host", hashlib.sha256(b"").hexdigest()])
    scope = f"{date}/{region}/kafka-cluster/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", q["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()])
    expected = hmac.new(signing_key(secret, date, region, "kafka-cluster"), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, q.get("X-Amz-Signature", "")):
        raise ValueError("signature mismatch")
    start_ms = int(signed_at.timestamp() * 1000)
    return key_id, start_ms + expires_in * 1000, start_ms


def sts_xml(action, c):
    return (
        f'<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><{action}Result><Credentials>'
        f"<AccessKeyId>{c['AccessKeyId']}</AccessKeyId><SecretAccessKey>{c['SecretAccessKey']}</SecretAccessKey>"
        f"<SessionToken>{c['Token']}</SessionToken><Expiration>{c['Expiration']}</Expiration>"
        f"</Credentials></{action}Result></{action}Response>"
    )


def sts_error(code, message):
    return f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>"


def signing_key(secret, date, region, service):
    k = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def canonical_query(query):
    pairs = sorted(urllib.parse.parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in pairs)


def resign(method, path, headers, key_id, secret, region="us-east-1"):
    """Signs an S3 request again (SigV4, header auth) with another key."""
    url = urllib.parse.urlsplit(path)
    h = {k.lower(): v for k, v in headers.items() if k.lower() not in ("authorization", "x-amz-security-token")}
    now = datetime.datetime.now(datetime.timezone.utc)
    h["x-amz-date"] = now.strftime("%Y%m%dT%H%M%SZ")
    h.setdefault("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
    signed = sorted(k for k in h if k == "host" or k.startswith("x-amz-") or k in ("content-md5", "content-type"))
    canonical_headers = "".join(f"{k}:{' '.join(h[k].split())}\n" for k in signed)
    canonical = "\n".join([method, url.path or "/", canonical_query(url.query), canonical_headers, ";".join(signed), h["x-amz-content-sha256"]])
    date = now.strftime("%Y%m%d")
    scope = f"{date}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", h["x-amz-date"], scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(signing_key(secret, date, region, "s3"), to_sign.encode(), hashlib.sha256).hexdigest()
    h["authorization"] = f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={';'.join(signed)}, Signature={signature}"
    return h


def sigv4_ok(handler, key_id, secret):
    """Recomputes the SigV4 signature of the request with the base key's secret."""
    auth = handler.headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return False, "no SigV4 Authorization header"
    parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    cred = parts["Credential"].split("/")
    if cred[0] != key_id:
        return False, f"signed with {cred[0]}, expected {key_id}"
    date, region, service = cred[1], cred[2], cred[3]
    signed = parts["SignedHeaders"].split(";")
    url = urllib.parse.urlsplit(handler.path)
    query = sorted(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    canonical_query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in query)
    headers = "".join(f"{h}:{' '.join(handler.headers.get(h, '').split())}\n" for h in signed)
    payload = handler.headers.get("x-amz-content-sha256", hashlib.sha256(b"").hexdigest())
    canonical = "\n".join(["GET", url.path or "/", canonical_query, headers, ";".join(signed), payload])
    amz_date = handler.headers.get("x-amz-date", "")
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    return (expected == parts["Signature"]), "signature mismatch"


class Credentials(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, code, body, ctype="text/xml"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        if self.path == "/latest/api/token":
            log(self.server.args, {"service": "imds", "call": "token"})
            return self.answer(200, "imds-session-token", "text/plain")
        self.answer(404, "not found", "text/plain")

    def do_GET(self):
        args = self.server.args
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if q.get("Action") == "AssumeRole":
            key_id, secret = args.base_key.split(":", 1)
            ok, why = sigv4_ok(self, key_id, secret)
            log(args, {"service": "sts", "call": "AssumeRole", "role": q.get("RoleArn"), "external_id": q.get("ExternalId"),
                       "session": q.get("RoleSessionName"), "signed": ok, "why": None if ok else why})
            if not ok:
                return self.answer(403, sts_error("SignatureDoesNotMatch", why))
            return self.answer(200, sts_xml("AssumeRole", issue(args)))
        if q.get("Action") == "AssumeRoleWithWebIdentity":
            ok = q.get("WebIdentityToken") == args.web_token
            log(args, {"service": "sts", "call": "AssumeRoleWithWebIdentity", "role": q.get("RoleArn"), "token_ok": ok})
            if not ok:
                return self.answer(403, sts_error("InvalidIdentityToken", "the web identity token is not valid"))
            return self.answer(200, sts_xml("AssumeRoleWithWebIdentity", issue(args)))
        if url.path.startswith("/latest/meta-data/iam/security-credentials"):
            if self.headers.get("X-aws-ec2-metadata-token") != "imds-session-token":
                return self.answer(401, "IMDSv2 token missing", "text/plain")
            role = url.path.rstrip("/").rsplit("/", 1)[-1]
            if role == "security-credentials":
                return self.answer(200, "stub-instance-role", "text/plain")
            log(args, {"service": "imds", "call": "credentials", "role": role})
            c = issue(args)
            c.update({"Code": "Success", "Type": "AWS-HMAC", "LastUpdated": c["Expiration"]})
            return self.answer(200, json.dumps(c), "application/json")
        if url.path == "/msk-verify":
            token = q.get("token", "")
            try:
                principal, lifetime_ms, start_ms = msk_verify(args, token)
            except (ValueError, KeyError) as e:
                log(args, {"service": "msk", "call": "verify", "ok": False, "why": str(e)})
                return self.answer(403, str(e), "text/plain")
            log(args, {"service": "msk", "call": "verify", "ok": True, "key": principal, "start_ms": start_ms,
                       "lifetime_ms": lifetime_ms, "token": hashlib.sha256(token.encode()).hexdigest()[:16]})
            return self.answer(200, f"{principal} {lifetime_ms} {start_ms}", "text/plain")
        if url.path == "/container":
            ok = self.headers.get("Authorization") == args.container_token
            log(args, {"service": "container", "call": "credentials", "token_ok": ok})
            if not ok:
                return self.answer(401, "bad authorization token", "text/plain")
            return self.answer(200, json.dumps(issue(args)), "application/json")
        self.answer(404, "not found", "text/plain")


class Recorder(BaseHTTPRequestHandler):
    """Forwards to the S3 server and logs what it was sent."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def forward(self):
        args = self.server.args
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        auth = self.headers.get("Authorization", "")
        key = auth.split("Credential=", 1)[1].split("/", 1)[0] if "Credential=" in auth else None
        amz = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-amz-") and k.lower() not in ("x-amz-date", "x-amz-content-sha256")}
        signed = auth.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";") if "SignedHeaders=" in auth else []
        log(args, {"service": "s3", "method": self.command, "path": self.path, "key": key, "headers": amz, "signed": signed})
        host, port = args.target.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        if auth:
            key_id, secret = args.target_key.split(":", 1)
            headers = resign(self.command, self.path, headers, key_id, secret)
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        # A HEAD answers the object's length without a body.
        length = resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward


def serve(handler, port, args):
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    server.args = args
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--s3-port", type=int, required=True)
    ap.add_argument("--target", default="127.0.0.1:9000")
    ap.add_argument("--log", required=True)
    ap.add_argument("--lifetime", type=int, default=900)
    ap.add_argument("--target-key", default="minioadmin:minioadmin")
    ap.add_argument("--base-key", default="AKIABASEKEY00001:base-secret")
    ap.add_argument("--web-token", default="stub-web-identity-token")
    ap.add_argument("--container-token", default="stub-container-token")
    ap.add_argument("--msk-region", default="eu-west-1")
    args = ap.parse_args()
    serve(Credentials, args.port, args)
    serve(Recorder, args.s3_port, args)
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
