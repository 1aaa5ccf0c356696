#!/usr/bin/env python3
"""Reads the lake back with an independent Parquet reader (pyarrow / Arrow C++).

  lake.py ping                      the bucket answers an authenticated listing
  lake.py ls   --prefix P           every object under P with its size
  lake.py show --prefix P [--rows N]  files, their schema and a few rows, for a person
  lake.py dump --prefix P [--duckdb]  JSON: per file its key, row count, codecs and the rows'
                                    Kafka coordinates, key fields and headers (what the tests
                                    compare); --duckdb also counts each file's rows with DuckDB

--endpoint file:// --bucket /abs/dir reads a local lake (the sink's output.url = file:///...);
--endpoint azurite://127.0.0.1:10000 --bucket CONTAINER reads Azure Blob Storage on the Azurite
of scripts/azurite.sh; --endpoint fakegcs://127.0.0.1:4443 --bucket BUCKET reads Google Cloud
Storage on the fake-gcs-server of scripts/fake-gcs.sh.
  lake.py digest --prefix P         JSON: every object under P with its size and SHA-256 (bytes
                                    as the store gives them back, whatever they hold)
  lake.py images --prefix P         JSON: every row's op, offset, txId and before/after images,
                                    each value rendered as PostgreSQL renders it as text
"""
import datetime
import decimal
import argparse
import hashlib
import json
import os
import sys

import pyarrow.fs as pafs
import pyarrow.parquet as pq


def fs_for(a):
    scheme, _, host = a.endpoint.partition("://")
    if scheme == "file":
        return pafs.LocalFileSystem()
    if scheme == "azurite":
        # Azure Blob Storage of the tests (scripts/azurite.sh); --bucket is the container.
        from azure_blob import ACCOUNT, KEY

        return pafs.AzureFileSystem(account_name=ACCOUNT, account_key=KEY, blob_storage_authority=host, blob_storage_scheme="http",
                                    dfs_storage_authority=host, dfs_storage_scheme="http")
    if scheme == "fakegcs":
        # Google Cloud Storage of the tests (scripts/fake-gcs.sh): no credentials, plain HTTP.
        import datetime

        return pafs.GcsFileSystem(anonymous=True, scheme="http", endpoint_override=host,
                                  retry_time_limit=datetime.timedelta(seconds=10))
    return pafs.S3FileSystem(
        endpoint_override=host,
        scheme=scheme,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID", "minioadmin"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "minioadmin"),
        region="us-east-1",
    )


def files(fs, bucket, prefix):
    sel = pafs.FileSelector(f"{bucket}/{prefix}".rstrip("/"), recursive=True, allow_not_found=True)
    return sorted((i for i in fs.get_file_info(sel) if i.type == pafs.FileType.File), key=lambda i: i.path)


def image_field(row, name):
    img = row.get("after") or row.get("before") or {}
    return img.get(name)


def dump(fs, a):
    out = []
    for info in files(fs, a.bucket, a.prefix):
        if not info.path.endswith(".parquet"):
            continue
        f = pq.ParquetFile(info.path, filesystem=fs)
        md = f.metadata
        codecs = sorted({md.row_group(g).column(c).compression for g in range(md.num_row_groups) for c in range(md.num_columns)})
        table = f.read()
        rows = []
        for r in table.to_pylist():
            rows.append({
                "topic": r["__kafka_topic"],
                "partition": r["__kafka_partition"],
                "offset": r["__kafka_offset"],
                "timestamp_ms": None if r.get("__kafka_timestamp") is None else int(r["__kafka_timestamp"].timestamp() * 1000),
                "op": r.get("op"),
                "__op": r.get("__op"),
                "__deleted": r.get("__deleted"),
                "__ts_ms": r.get("__ts_ms"),
                "key_id": (r.get("__kafka_key") or {}).get("id"),
                "id": image_field(r, "id"),
                "title": image_field(r, "title"),
                "category": image_field(r, "category"),
                "prio": image_field(r, "prio"),
                "completed": image_field(r, "completed"),
                "source_ts_ms": (r.get("source") or {}).get("ts_ms"),
                "headers": None if r.get("__kafka_headers") is None else [
                    [h["key"], None if h["value"] is None else h["value"].hex()] for h in r["__kafka_headers"]
                ],
            })
        duckdb_rows = None
        if a.duckdb:
            duckdb_rows = duckdb_count(fs, info.path)
        out.append({
            "duckdb_rows": duckdb_rows,
            "key": info.path.split("/", 1)[1],
            "size": info.size,
            "num_rows": md.num_rows,
            "codecs": codecs,
            "columns": table.schema.names,
            "rows": rows,
        })
    json.dump(out, sys.stdout)


def duckdb_count(fs, path):
    """Rows of one file as DuckDB's own Parquet reader counts them (from a local copy: DuckDB
    reaches S3 only through an extension it would download)."""
    import tempfile
    import duckdb
    with tempfile.NamedTemporaryFile(suffix=".parquet") as tmp:
        with fs.open_input_file(path) as src:
            tmp.write(src.read())
        tmp.flush()
        return duckdb.connect().execute(f"select count(*) from read_parquet('{tmp.name}')").fetchone()[0]


def canon(v):
    """A value as text the way the tests render PostgreSQL's (see tests/debezium_e2e.rs)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return v.strftime("%Y-%m-%dT%H:%M:%S.%f")
    if isinstance(v, datetime.time):
        # As PostgreSQL prints a time: no trailing zeros in the fraction.
        s = v.isoformat()
        return s.rstrip("0").rstrip(".") if "." in s else s
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, datetime.timedelta):
        return str(v // datetime.timedelta(microseconds=1))
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list):
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, (decimal.Decimal, int, float, str)):
        return str(v)
    return repr(v)


def images(fs, a):
    out = []
    for info in files(fs, a.bucket, a.prefix):
        if info.path.endswith(".parquet"):
            table_images(pq.ParquetFile(info.path, filesystem=fs).read(), out)
    json.dump(out, sys.stdout)


def table_images(table, out):
    """Appends the row images of one Arrow table (a file's, or a Delta table's) to `out`."""
    types = {f.name: str(f.type) for f in table.schema.field("after").type} if "after" in table.schema.names else {}
    flat = "after" not in table.schema.names
    if flat:
        types = {f.name: str(f.type) for f in table.schema if not f.name.startswith("__")}
    for r in table.to_pylist():
        img = lambda x: None if x is None else {k: canon(v) for k, v in x.items()}
        if flat:  # layout = "flatten": the row image is the top-level columns
            out.append({
                "offset": r["__kafka_offset"], "partition": r["__kafka_partition"], "op": r["__op"],
                "deleted": r["__deleted"], "tx_id": r.get("__source_txid"),
                "key_id": (r.get("__kafka_key") or {}).get("id"), "before": None,
                "after": {k: canon(v) for k, v in r.items() if not k.startswith("__")},
                "source_lsn": r.get("__source_lsn"), "types": types,
                "unavailable": r.get("__unavailable_columns"),
            })
            continue
        out.append({
            "offset": r["__kafka_offset"], "partition": r["__kafka_partition"], "op": r["op"],
            "deleted": r["__deleted"], "tx_id": (r.get("source") or {}).get("txId"),
            "key_id": (r.get("__kafka_key") or {}).get("id"),
            "before": img(r.get("before")), "after": img(r.get("after")), "types": types,
            "unavailable": r.get("__unavailable_columns"),
        })


def show(fs, a):
    infos = [i for i in files(fs, a.bucket, a.prefix) if i.path.endswith(".parquet")]
    print(f"{len(infos)} Parquet files under s3://{a.bucket}/{a.prefix}/")
    for i in infos:
        md = pq.ParquetFile(i.path, filesystem=fs).metadata
        codec = md.row_group(0).column(0).compression if md.num_row_groups else "-"
        print(f"  s3://{i.path}  {i.size:>9} B  {md.num_rows:>6} rows  {codec}")
    if not infos:
        return
    table = pq.ParquetFile(infos[0].path, filesystem=fs).read()
    print(f"\nschema of {infos[0].path.split('/')[-1]}:")
    for field in table.schema:
        print(f"  {field.name}: {field.type}")
    cols = ["__kafka_partition", "__kafka_offset", "__op", "__ts_ms", "__deleted"]
    print(f"\nfirst {a.rows} rows (with after.id and after.title):")
    for r in table.slice(0, a.rows).to_pylist():
        vals = "  ".join(f"{c}={r.get(c)}" for c in cols)
        print(f"  {vals}  id={image_field(r, 'id')}  title={image_field(r, 'title')!r}")


def count(fs, a):
    """Files, bytes, rows, and distinct (partition, offset) pairs: equal rows and pairs mean no
    duplicate; read from each file's two coordinate columns only."""
    n_files, n_bytes, rows, pairs = 0, 0, 0, set()
    for info in files(fs, a.bucket, a.prefix):
        if not info.path.endswith(".parquet"):
            continue
        t = pq.ParquetFile(info.path, filesystem=fs).read(columns=["__kafka_partition", "__kafka_offset"])
        n_files, n_bytes, rows = n_files + 1, n_bytes + info.size, rows + t.num_rows
        pairs.update(zip(t.column(0).to_pylist(), t.column(1).to_pylist()))
    json.dump({"files": n_files, "bytes": n_bytes, "rows": rows, "distinct_offsets": len(pairs)}, sys.stdout)


def digest(fs, a):
    out = []
    for info in files(fs, a.bucket, a.prefix):
        h = hashlib.sha256()
        with fs.open_input_stream(info.path) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        out.append({"key": info.path.removeprefix(f"{a.bucket}/"), "size": info.size, "sha256": h.hexdigest()})
    json.dump(out, sys.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", default=os.environ.get("S3_ENDPOINT", "http://127.0.0.1:9000"))
    ap.add_argument("--bucket", default="datalake")
    ap.add_argument("command", choices=["ping", "ls", "show", "dump", "images", "count", "digest"])
    ap.add_argument("--prefix", default="")
    ap.add_argument("--duckdb", action="store_true")
    ap.add_argument("--rows", type=int, default=5)
    a = ap.parse_args()
    fs = fs_for(a)
    if a.command == "ping":
        fs.get_file_info(pafs.FileSelector(a.bucket, allow_not_found=False))
        print(f"bucket {a.bucket} reachable at {a.endpoint}")
    elif a.command == "ls":
        for i in files(fs, a.bucket, a.prefix):
            print(f"{i.size:>10}  s3://{i.path}")
    elif a.command == "show":
        show(fs, a)
    elif a.command == "images":
        images(fs, a)
    elif a.command == "count":
        count(fs, a)
    elif a.command == "digest":
        digest(fs, a)
    else:
        dump(fs, a)


if __name__ == "__main__":
    main()
