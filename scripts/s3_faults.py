#!/usr/bin/env python3
"""An HTTP proxy in front of the S3 server that makes it misbehave as real stores and networks do,
for tests of what the sink does then (tests/faulty_store.rs):

  --ignore-conditional   a conditional put (If-None-Match: *) of a key that exists is answered
                         200, as a store that ignores the header does (the server's 412 is not
                         passed on; the object itself is left as it was)
  --lose-every N         every Nth PUT (of those whose path matches --lose-pattern) reaches the
                         server, and then its answer is lost: the connection is closed instead
  --lose-pattern REGEX   which PUTs may lose their answer (default: every PUT)

Each lost answer is one JSON line in --log (`{"lost": "PUT", "path": ..., "status": 200}`);
"ready" is printed once it listens. Requests are signed by the client for the proxy's address:
the Host header is passed on as sent, so signatures hold.

    scripts/s3_faults.py --listen 19500 --target 127.0.0.1:9000 --lose-every 20 --log faults.jsonl
"""
import argparse
import http.client
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def serve(a):
    host, port = a.target.rsplit(":", 1)
    pattern = re.compile(a.lose_pattern)
    counter = {"puts": 0}
    lock = Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def read_body(self):
            """The request's body as sent: by its length, or its chunks as they came (passed on
            chunked, as signed)."""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                raw = b""
                while True:
                    line = self.rfile.readline()
                    raw += line
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    raw += self.rfile.read(size + 2)
                    if size == 0:
                        return raw
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else None

        def forward(self):
            body = self.read_body()
            chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
            up = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    if k.lower() not in HOP_BY_HOP:
                        up.putheader(k, v)
                if chunked:
                    up.putheader("Transfer-Encoding", "chunked")
                up.endheaders(body)
                resp = up.getresponse()
                data = resp.read()
                return resp.status, resp.reason, resp.getheaders(), data
            finally:
                up.close()

        def lose(self):
            if self.command != "PUT" or a.lose_every <= 0 or not pattern.search(self.path):
                return False
            with lock:
                counter["puts"] += 1
                return counter["puts"] % a.lose_every == 0

        def handle_any(self):
            lose = self.lose()
            status, reason, headers, data = self.forward()
            if lose:
                with lock, open(a.log, "a") as log:
                    log.write(json.dumps({"lost": self.command, "path": self.path, "status": status}) + "\n")
                self.close_connection = True
                return
            if a.ignore_conditional and status == 412 and self.headers.get("If-None-Match") == "*":
                status, reason, headers, data = 200, "OK", [("ETag", '"ignored-conditional"')], b""
            self.send_response(status, reason)
            for k, v in headers:
                if k.lower() in HOP_BY_HOP or (k.lower() == "content-length" and self.command != "HEAD"):
                    continue
                self.send_header(k, v)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", a.listen), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--target", default="127.0.0.1:9000")
    p.add_argument("--ignore-conditional", action="store_true")
    p.add_argument("--lose-every", type=int, default=0)
    p.add_argument("--lose-pattern", default="")
    p.add_argument("--log", default="/dev/null")
    serve(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
