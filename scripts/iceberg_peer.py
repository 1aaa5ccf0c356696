#!/usr/bin/env python3
"""Reads what Apache Iceberg's Kafka Connect sink wrote (scripts/bench-peers.sh), with pyiceberg
0.12.0 and pyarrow, never with the sink's own code: the table's metadata file is found in the
JdbcCatalog's SQLite database the connector commits to, and read as a static table.

  iceberg_peer.py --catalog-db DB --table NS.NAME rows
      the current snapshot's total-records (0 before the first commit)
  iceberg_peer.py --catalog-db DB --table NS.NAME wait --rows N --timeout S
      polls every 200 ms until the current snapshot holds N rows or more
  iceberg_peer.py --catalog-db DB --table NS.NAME count
      one JSON line: rows, distinct (partition, offset) pairs, data files, bytes, snapshots; rows
      are told apart by the KafkaMetadataTransform's _kafka_metadata_partition and _offset
"""
import argparse
import json
import os
import sqlite3
import sys
import time


def metadata_location(db, table):
    namespace, name = table.rsplit(".", 1)
    if not os.path.exists(db):
        return None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute(
            "select metadata_location from iceberg_tables where table_namespace = ? and table_name = ?", (namespace, name)
        ).fetchone()
    except sqlite3.OperationalError:  # the catalog's tables are not created yet
        return None
    finally:
        con.close()
    return row[0] if row else None


def load(args):
    from pyiceberg.table import StaticTable

    location = metadata_location(args.catalog_db, args.table)
    if location is None:
        return None
    props = {
        "s3.endpoint": args.endpoint,
        "s3.access-key-id": os.environ.get("AWS_ACCESS_KEY_ID", "minioadmin"),
        "s3.secret-access-key": os.environ.get("AWS_SECRET_ACCESS_KEY", "minioadmin"),
        "s3.region": "us-east-1",
    }
    return StaticTable.from_metadata(location, properties=props)


def total_records(args):
    table = load(args)
    snapshot = table.current_snapshot() if table else None
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary.get("total-records", "0"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--catalog-db", required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--endpoint", default=os.environ.get("S3_ENDPOINT", "http://127.0.0.1:9000"))
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("rows")
    w = sub.add_parser("wait")
    w.add_argument("--rows", type=int, required=True)
    w.add_argument("--timeout", type=float, default=600)
    sub.add_parser("count")
    args = ap.parse_args()

    if args.command == "rows":
        print(total_records(args))
    elif args.command == "wait":
        deadline = time.monotonic() + args.timeout
        seen = 0
        while time.monotonic() < deadline:
            seen = total_records(args)
            if seen >= args.rows:
                print(seen)
                return 0
            time.sleep(0.2)
        print(f"the table held {seen} rows of {args.rows} after {args.timeout} s", file=sys.stderr)
        return 1
    else:
        import pyarrow.compute as pc

        table = load(args)
        if table is None:
            print(json.dumps({"rows": 0, "distinct_offsets": 0, "files": 0, "bytes": 0, "snapshots": 0}))
            return 0
        data = table.scan(selected_fields=("_kafka_metadata_partition", "_kafka_metadata_offset")).to_arrow()
        pairs = pc.add(pc.multiply(pc.cast(data["_kafka_metadata_partition"], "int64"), 1 << 40), data["_kafka_metadata_offset"])
        files = list(table.scan().plan_files())
        print(
            json.dumps(
                {
                    "rows": data.num_rows,
                    "distinct_offsets": len(pc.unique(pairs)),
                    "files": len(files),
                    "bytes": sum(f.file.file_size_in_bytes for f in files),
                    "snapshots": len(table.metadata.snapshots),
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
