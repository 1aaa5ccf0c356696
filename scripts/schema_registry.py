#!/usr/bin/env python3
"""A small Confluent-compatible Schema Registry for tests and the local stack.

The subset of the REST API that producers (Confluent's AvroConverter and serializers, our test
kit) and the sink use:

  POST /subjects/{subject}/versions      register (idempotent per subject + schema) -> {"id": N}
  POST /subjects/{subject}               look up a schema in a subject -> {subject, id, version, schema}
  GET  /schemas/ids/{id}                 -> {"schema": "..."}
  GET  /subjects                         -> ["subject", ...]
  GET  /subjects/{subject}/versions      -> [1, 2, ...]
  GET  /subjects/{subject}/versions/{v}  v = number or "latest" -> {subject, id, version, schema}
  GET  /config, PUT /config[/{subject}]  compatibility (accepted, not enforced)

Schemas are kept in memory and, with --data FILE, persisted as JSON so a restart keeps ids.
Ids are global and the same schema text always gets the same id, as in Confluent's registry.
"""
import argparse
import base64
import ssl
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CT = "application/vnd.schemaregistry.v1+json"


class State:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.schemas = {}   # id -> schema text
        self.subjects = {}  # subject -> [id, ...] (version = index + 1)
        if path and os.path.exists(path):
            with open(path) as f:
                d = json.load(f)
            self.schemas = {int(k): v for k, v in d["schemas"].items()}
            self.subjects = d["subjects"]

    def save(self):
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"schemas": self.schemas, "subjects": self.subjects}, f)
        os.replace(tmp, self.path)

    @staticmethod
    def canonical(schema):
        try:
            return json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))
        except ValueError:
            return None

    def register(self, subject, schema):
        canon = self.canonical(schema)
        if canon is None:
            return None
        with self.lock:
            sid = next((i for i, s in self.schemas.items() if self.canonical(s) == canon), None)
            if sid is None:
                sid = max(self.schemas, default=0) + 1
                self.schemas[sid] = schema
            versions = self.subjects.setdefault(subject, [])
            if sid not in versions:
                versions.append(sid)
            self.save()
            return sid


class Handler(BaseHTTPRequestHandler):
    state = None
    auth = None  # expected Authorization header, when --basic-auth or --bearer is given
    protocol_version = "HTTP/1.1"

    def authorized(self):
        if self.auth is None or self.headers.get("Authorization") == self.auth:
            return True
        self.error(401, 40101, "Unauthorized")
        return False

    def log_message(self, fmt, *args):
        if os.environ.get("REGISTRY_VERBOSE"):
            super().log_message(fmt, *args)

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", CT)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, code, error_code, message):
        self.reply(code, {"error_code": error_code, "message": message})

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            return None

    def version_body(self, subject, version, sid):
        return {"subject": subject, "version": version, "id": sid, "schema": self.state.schemas[sid]}

    def do_GET(self):
        if not self.authorized():
            return
        st = self.state
        path = self.path.split("?")[0].rstrip("/")
        if path in ("", "/"):
            return self.reply(200, {})
        if path == "/subjects":
            return self.reply(200, sorted(st.subjects))
        if path == "/config":
            return self.reply(200, {"compatibilityLevel": "BACKWARD"})
        m = re.fullmatch(r"/schemas/ids/(\d+)", path)
        if m:
            sid = int(m.group(1))
            if sid not in st.schemas:
                return self.error(404, 40403, f"Schema {sid} not found")
            return self.reply(200, {"schema": st.schemas[sid]})
        m = re.fullmatch(r"/subjects/([^/]+)/versions", path)
        if m:
            if m.group(1) not in st.subjects:
                return self.error(404, 40401, f"Subject '{m.group(1)}' not found.")
            return self.reply(200, list(range(1, len(st.subjects[m.group(1)]) + 1)))
        m = re.fullmatch(r"/subjects/([^/]+)/versions/(latest|-1|\d+)", path)
        if m:
            subject, v = m.group(1), m.group(2)
            versions = st.subjects.get(subject)
            if not versions:
                return self.error(404, 40401, f"Subject '{subject}' not found.")
            n = len(versions) if v in ("latest", "-1") else int(v)
            if not 1 <= n <= len(versions):
                return self.error(404, 40402, f"Version {v} not found.")
            return self.reply(200, self.version_body(subject, n, versions[n - 1]))
        return self.error(404, 404, f"no route for GET {path}")

    def do_POST(self):
        if not self.authorized():
            return
        st = self.state
        path = self.path.split("?")[0].rstrip("/")
        body = self.body()
        if body is None or not isinstance(body.get("schema"), str):
            return self.error(422, 42201, "Invalid schema: body must be JSON with a string field 'schema'")
        if body.get("schemaType", "AVRO") != "AVRO":
            return self.error(422, 42201, "Only AVRO schemas are supported")
        m = re.fullmatch(r"/subjects/([^/]+)/versions", path)
        if m:
            sid = st.register(m.group(1), body["schema"])
            if sid is None:
                return self.error(422, 42201, "Invalid schema: not JSON")
            return self.reply(200, {"id": sid})
        m = re.fullmatch(r"/subjects/([^/]+)", path)
        if m:
            subject = m.group(1)
            canon = st.canonical(body["schema"])
            for i, sid in enumerate(st.subjects.get(subject, [])):
                if st.canonical(st.schemas[sid]) == canon:
                    return self.reply(200, self.version_body(subject, i + 1, sid))
            return self.error(404, 40403, "Schema not found")
        return self.error(404, 404, f"no route for POST {path}")

    def do_PUT(self):
        if not self.authorized():
            return
        body = self.body() or {}
        return self.reply(200, {"compatibility": body.get("compatibility", "BACKWARD")})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--data", help="JSON file to persist schemas in")
    ap.add_argument("--basic-auth", metavar="USER:PASSWORD", help="require HTTP basic auth")
    ap.add_argument("--certfile", help="serve HTTPS with this PEM certificate (chain)")
    ap.add_argument("--keyfile", help="private key of --certfile")
    ap.add_argument("--bearer", metavar="TOKEN", help="require Authorization: Bearer TOKEN")
    ap.add_argument("--client-ca", help="with --certfile: require a client certificate signed by this CA (mutual TLS)")
    a = ap.parse_args()
    Handler.state = State(a.data)
    if a.basic_auth:
        Handler.auth = "Basic " + base64.b64encode(a.basic_auth.encode()).decode()
    if a.bearer:
        Handler.auth = "Bearer " + a.bearer
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    scheme = "http"
    if a.certfile:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.certfile, a.keyfile)
        if a.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(a.client_ca)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        scheme = "https"
    print(f"schema registry on {scheme}://{a.host}:{a.port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
