#!/usr/bin/env python3
"""The demo's verdict: PostgreSQL against the lake, read back with pyarrow, and the time each
change took from its commit in PostgreSQL to a readable file in the bucket.

  demo_report.py --prefix P --pg PG.json --tag TAG [--deleted IDS.json] [--wait 120]

PG.json: {id: title} of the rows of public.tasks whose title starts with TAG, as PostgreSQL has
them now; IDS.json: the ids of the rows of this run that were deleted. The lake's newest image of
each key (by partition and offset) must agree: every PostgreSQL row there with its title, every
deleted id's newest image a delete. With --wait it polls until they agree (or gives up, exit 1).
Time to lake, per change of this run: the bucket's LastModified of the file holding it minus
Debezium's source.ts_ms (the commit in PostgreSQL).
"""
import argparse
import json
import os
import sys
import time

import pyarrow.fs as pafs
import pyarrow.parquet as pq


def lake_rows(fs, bucket, prefix):
    sel = pafs.FileSelector(f"{bucket}/{prefix}".rstrip("/"), recursive=True, allow_not_found=True)
    for info in fs.get_file_info(sel):
        if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
            continue
        table = pq.ParquetFile(info.path, filesystem=fs).read(columns=["__kafka_partition", "__kafka_offset", "__kafka_key", "op", "after", "source"])
        landed_ms = info.mtime.timestamp() * 1000
        for r in table.to_pylist():
            yield {
                "pos": (r["__kafka_partition"], r["__kafka_offset"]),
                "id": (r.get("__kafka_key") or {}).get("id"),
                "op": r["op"],
                "title": (r.get("after") or {}).get("title"),
                "ts_ms": (r.get("source") or {}).get("ts_ms"),
                "landed_ms": landed_ms,
                "file": info.path,
            }


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def compare(rows, pg, deleted):
    newest = {}
    for r in sorted(rows, key=lambda r: r["pos"]):
        newest[r["id"]] = r
    missing = [i for i, title in pg.items() if i not in newest or newest[i]["op"] == "d" or newest[i]["title"] != title]
    undeleted = [i for i in deleted if i not in newest or newest[i]["op"] != "d"]
    return newest, missing, undeleted


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", default=os.environ.get("S3_ENDPOINT", "http://127.0.0.1:9000"))
    ap.add_argument("--bucket", default="datalake")
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--pg", required=True)
    ap.add_argument("--deleted")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--wait", type=float, default=0)
    a = ap.parse_args()
    host = a.endpoint.partition("://")[2]
    fs = pafs.S3FileSystem(endpoint_override=host, scheme="http", access_key=os.environ.get("AWS_ACCESS_KEY_ID", "minioadmin"),
                           secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "minioadmin"), region="us-east-1")
    pg = json.load(open(a.pg))
    deleted = json.load(open(a.deleted)) if a.deleted else []
    deadline = time.time() + a.wait
    while True:
        rows = list(lake_rows(fs, a.bucket, a.prefix))
        newest, missing, undeleted = compare(rows, pg, deleted)
        if (not missing and not undeleted) or time.time() >= deadline:
            break
        time.sleep(1)
    mine = [r for r in rows if r["id"] in pg or r["id"] in deleted]
    kinds = {"c": "inserts", "u": "updates", "d": "deletes", "r": "snapshot reads"}
    print(f"changes of this run in the lake (s3://{a.bucket}/{a.prefix}/), read back with pyarrow:")
    for op, name in kinds.items():
        n = sum(1 for r in mine if r["op"] == op)
        if n:
            print(f"  {name:<8} {n:>5}")
    live = sum(1 for i in pg if i in newest and newest[i]["op"] != "d")
    gone = sum(1 for i in deleted if i in newest and newest[i]["op"] == "d")
    print(f"PostgreSQL rows of this run: {len(pg)}; the lake's newest image per key: {live} with the same title")
    print(f"rows deleted in PostgreSQL: {len(deleted)}; the lake's newest image a delete: {gone}")
    for i in list(pg)[:3]:
        r = newest.get(i)
        if r:
            print(f"  {r['op']} id={i} title={r['title']!r} at partition {r['pos'][0]} offset {r['pos'][1]}")
    # LastModified has whole seconds here: a file that lands within the commit's second reads 0.
    waits = [max(0.0, (r["landed_ms"] - r["ts_ms"]) / 1000) for r in mine if r["ts_ms"]]
    if waits:
        print(f"time to lake (commit in PostgreSQL -> file readable in the bucket), {len(waits)} changes: "
              f"p50 {percentile(waits, 50):.1f} s, p90 {percentile(waits, 90):.1f} s, max {max(waits):.1f} s "
              f"(the seed's line: under 10 s; LastModified counts whole seconds)")
    if missing or undeleted:
        print(f"DISAGREE: {len(missing)} PostgreSQL rows not in the lake as they are (e.g. {missing[:3]}), "
              f"{len(undeleted)} deletes not in the lake (e.g. {undeleted[:3]})", file=sys.stderr)
        sys.exit(1)
    print("PostgreSQL and the lake agree")


if __name__ == "__main__":
    main()
