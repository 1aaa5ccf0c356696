#!/usr/bin/env python3
"""An OAuth 2 token endpoint for the tests of SASL OAUTHBEARER with `sasl.oauthbearer.method =
"oidc"` (client credentials), as an identity provider (Okta, Azure AD, Keycloak) answers librdkafka.

    scripts/oidc_stub.py --port P --client kps:kps-oidc-secret --log calls.jsonl [--lifetime 3600]

POST /token with grant_type=client_credentials and the client's id and secret (HTTP basic auth, as
librdkafka sends them, or in the form) answers {"access_token", "token_type", "expires_in"}. The
token is an unsecured JWS (alg "none") for subject = the client id with scope "kafka", which the
test broker's OAUTH listener (Kafka's unsecured validator, scope "kafka" required) accepts while it
has not expired. A wrong secret gets 401; with any secret, the client id "expired" gets a token
that expired an hour ago (which librdkafka refuses to send) and "noscope" one without the scope
(which the broker refuses). Each call is one JSON line in --log.
"""
import argparse
import base64
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class Token(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log(self, entry):
        with LOCK:
            with open(self.server.args.log, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def do_POST(self):
        args = self.server.args
        form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers.get("Content-Length", 0) or 0)).decode()))
        client, secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        want_client, want_secret = args.client.split(":", 1)
        if urllib.parse.urlsplit(self.path).path != "/token" or form.get("grant_type") != "client_credentials":
            self.log({"call": "token", "ok": False, "why": "not a client-credentials grant"})
            return self.answer(400, {"error": "unsupported_grant_type"})
        now = int(time.time())
        scope = "kafka"
        if client == "expired":
            exp = now - 3600
        elif client == "noscope":
            exp, scope = now + args.lifetime, ""
        elif (client, secret) == (want_client, want_secret):
            exp = now + args.lifetime
        else:
            self.log({"call": "token", "ok": False, "client": client, "why": "wrong client id or secret"})
            return self.answer(401, {"error": "invalid_client"})
        token = b64({"alg": "none"}) + "." + b64({"sub": client, "iat": min(now, exp - 1), "exp": exp, "scope": scope}) + "."
        self.log({"call": "token", "ok": True, "client": client, "exp": exp})
        self.answer(200, {"access_token": token, "token_type": "bearer", "expires_in": exp - now})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--client", default="kps:kps-oidc-secret")
    ap.add_argument("--lifetime", type=int, default=3600)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Token)
    server.daemon_threads = True
    server.args = args
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
