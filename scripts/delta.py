#!/usr/bin/env python3
"""Reads a Delta table the sink wrote with an independent reader: the `deltalake` package
(delta-rs), never the sink's own code.

  delta.py dump --table PATH [--partitions N] [--column C ...]
      JSON: the table's version, its data files, every row's Kafka partition and offset (and
      its values of the columns C, timestamps in Unix ms), and the txn version (next offset) of
      partitions 0 .. N-1 under the sink's app ids
  delta.py count --table PATH
      JSON: the table's version, files, bytes, rows and distinct (partition, offset) pairs (equal
      rows and pairs: no duplicate), and the sizes of its files (as lake.py count, for tables)
  delta.py watch --table PATH --seconds S [--every MS]
      a reader polling the table every MS (200) for S seconds: the first time a poll sees a row
      (in a file a new version names) minus its Kafka timestamp is its time to visible; JSON:
      rows seen and the p50, p90, p99 and max of that time in ms
  delta.py show --table PATH [--rows N]
      the table's schema, version and a few rows, for a person
  delta.py append --table PATH --rows N --offset-base B [--below O]
      another writer: appends N of the table's rows (of those with an offset below O) again,
      their __kafka_offset moved up by B, in one commit of its own (a test's outside writer);
      prints the version it wrote and the rows appended

PATH is the table's root under the bucket (bronze/cdc/tasks/topics/<topic>), file:///dir for
a local table, az://container/path on the Azurite of scripts/azurite.sh, or gs://bucket/path on
the fake-gcs-server of scripts/fake-gcs.sh (GOOGLE_SERVICE_ACCOUNT names its key file). --endpoint and --bucket name the S3 server (the local stack's by default).
"""
import argparse
import json
import os
import sys

from deltalake import DeltaTable

APP_ID = "kafka-parquet-sink:{topic}:{partition}"


def open_table(a):
    if a.table.startswith("file://"):
        return DeltaTable(a.table)
    if a.table.startswith("az://"):
        # Azure Blob Storage of the tests (scripts/azurite.sh): the emulator's account and key.
        return DeltaTable(a.table, storage_options={"azure_storage_use_emulator": "true"})
    if a.table.startswith("gs://"):
        # Google Cloud Storage of the tests (scripts/fake-gcs.sh): its key file carries the
        # emulator's URL and turns OAuth off.
        return DeltaTable(a.table, storage_options={"google_service_account": os.environ["GOOGLE_SERVICE_ACCOUNT"]})
    opts = {
        "AWS_ENDPOINT_URL": a.endpoint,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "minioadmin"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "minioadmin"),
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }
    return DeltaTable(f"s3://{a.bucket}/{a.table}", storage_options=opts)


def topic_of(path):
    return path.rstrip("/").rsplit("/", 1)[-1]


def json_values(column):
    """A column's values as JSON takes them: timestamps as Unix milliseconds."""
    import pyarrow as pa

    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("ms", tz=column.type.tz)).cast(pa.int64())
    return column.to_pylist()


def dump(a):
    dt = open_table(a)
    rows = dt.to_pyarrow_table(columns=["__kafka_partition", "__kafka_offset"] + a.column)
    parts = rows.column("__kafka_partition").to_pylist()
    offsets = rows.column("__kafka_offset").to_pylist()
    topic = topic_of(a.table)
    txn = {}
    for p in range(a.partitions):
        v = dt.transaction_version(APP_ID.format(topic=topic, partition=p))
        txn[str(p)] = v
    out = {
        "version": dt.version(),
        "files": sorted(dt.file_uris()),
        "partition_columns": dt.metadata().partition_columns,
        "columns": [f.name for f in dt.schema().fields],
        "rows": [[p, o] for p, o in zip(parts, offsets)],
        "txn": txn,
        "values": {c: json_values(rows.column(c)) for c in a.column},
    }
    json.dump(out, sys.stdout)


def count(a):
    dt = open_table(a)
    rows = dt.to_pyarrow_table(columns=["__kafka_partition", "__kafka_offset"])
    pairs = set(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist()))
    actions = dt.get_add_actions(flatten=True)
    sizes = actions.column("size_bytes").to_pylist()
    parts = actions.column("partition.__kafka_partition").to_pylist()
    by_partition = {}
    for p, size in zip(parts, sizes):
        by_partition.setdefault(str(p), []).append(size)
    json.dump({"version": dt.version(), "files": len(sizes), "bytes": sum(sizes), "rows": rows.num_rows,
               "distinct_offsets": len(pairs), "file_bytes": {p: sorted(s) for p, s in sorted(by_partition.items())}}, sys.stdout)


def watch(a):
    import time

    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    scheme, _, host = a.endpoint.partition("://")
    fs = pafs.S3FileSystem(endpoint_override=host, scheme=scheme, region="us-east-1",
                           access_key=os.environ.get("AWS_ACCESS_KEY_ID", "minioadmin"),
                           secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "minioadmin"))
    seen_files, seen_rows, latencies = set(), set(), []
    dt = None
    deadline = time.time() + a.seconds
    while time.time() < deadline:
        polled = time.time()
        try:
            if dt is None:
                dt = open_table(a)
            else:
                dt.update_incremental()
        except Exception:  # no table yet
            time.sleep(a.every / 1000)
            continue
        for uri in dt.file_uris():
            if uri in seen_files:
                continue
            seen_files.add(uri)
            t = pq.read_table(uri.split("://", 1)[1], filesystem=fs, columns=["__kafka_partition", "__kafka_offset", "__kafka_timestamp"])
            stamps = t.column(2).cast("int64").to_pylist()  # ms since the epoch
            for p, o, ts in zip(t.column(0).to_pylist(), t.column(1).to_pylist(), stamps):
                # A compacted file holds rows seen before: each row counts once, when first seen.
                if (p, o) not in seen_rows and ts is not None:
                    seen_rows.add((p, o))
                    latencies.append(polled * 1000 - ts)
        time.sleep(max(0.0, a.every / 1000 - (time.time() - polled)))
    latencies.sort()
    pct = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))]) if latencies else None
    json.dump({"rows": len(latencies), "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99), "max_ms": pct(1.0)}, sys.stdout)


def show(a):
    dt = open_table(a)
    print(f"version {dt.version()}, {len(dt.file_uris())} files, partitioned by {dt.metadata().partition_columns}")
    print(dt.schema().to_arrow())
    for row in dt.to_pyarrow_table().slice(0, a.rows).to_pylist():
        print(row)


def append(a):
    from deltalake import write_deltalake
    import pyarrow.compute as pc

    dt = open_table(a)
    rows = dt.to_pyarrow_table()
    if a.below is not None:
        rows = rows.filter(pc.less(rows.column("__kafka_offset"), a.below))
    rows = rows.slice(0, a.rows)
    i = rows.schema.get_field_index("__kafka_offset")
    rows = rows.set_column(i, rows.schema.field(i), pc.add(rows.column(i), a.offset_base))
    write_deltalake(dt, rows, mode="append")
    dt.update_incremental()
    json.dump({"version": dt.version(), "rows": rows.num_rows}, sys.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default=os.environ.get("S3_ENDPOINT", "http://127.0.0.1:9000"))
    ap.add_argument("--bucket", default="datalake")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--table", required=True)
    d.add_argument("--partitions", type=int, default=0)
    d.add_argument("--column", action="append", default=[], help="also each row's value of this column (repeatable)")
    w2 = sub.add_parser("watch")
    w2.add_argument("--table", required=True)
    w2.add_argument("--seconds", type=float, required=True)
    w2.add_argument("--every", type=int, default=200)
    c = sub.add_parser("count")
    c.add_argument("--table", required=True)
    s = sub.add_parser("show")
    s.add_argument("--table", required=True)
    s.add_argument("--rows", type=int, default=5)
    w = sub.add_parser("append")
    w.add_argument("--table", required=True)
    w.add_argument("--rows", type=int, required=True)
    w.add_argument("--offset-base", type=int, required=True)
    w.add_argument("--below", type=int)
    a = ap.parse_args()
    {"dump": dump, "show": show, "append": append, "count": count, "watch": watch}[a.cmd](a)
    # deltalake 1.6's runtime threads and pyarrow's sometimes abort the interpreter's teardown
    # ("terminate called without an active exception") after the work is done: leave without it.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
