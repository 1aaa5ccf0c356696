#!/usr/bin/env python3
"""Reads a Delta table the sink wrote with DuckDB's delta_scan (the delta extension, built on
delta-kernel-rs's C API), a second reader beside the deltalake package.

  delta_duckdb.py dump --table PATH     JSON: every row's Kafka partition and offset
  delta_duckdb.py images --table PATH   JSON: every row's images as `lake.py images` gives them
                                        (the reader of tables whose types widened, which the
                                        deltalake package 1.6 cannot read)

DuckDB's extensions download at run time, which an offline machine cannot; the extensions come
from PyPI wheels (duckdb-extension-delta, -httpfs 1.5.5) that pin duckdb 1.5.5, so
scripts/stack.sh installs the three into .stack/duckdb-delta/ and this script runs with that
directory first on its path (DUCKDB_DELTA_DIR).
"""
import argparse
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("DUCKDB_DELTA_DIR", os.path.join(here, "..", ".stack", "duckdb-delta")))

import duckdb  # noqa: E402
import duckdb_extension_delta  # noqa: E402
import duckdb_extension_httpfs  # noqa: E402


def extension(module, name):
    base = os.path.join(os.path.dirname(module.__file__), "extensions", f"v{duckdb.__version__}")
    return os.path.join(base, f"{name}.duckdb_extension")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default=os.environ.get("S3_ENDPOINT", "http://127.0.0.1:9000"))
    ap.add_argument("--bucket", default="datalake")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--table", required=True)
    i = sub.add_parser("images")
    i.add_argument("--table", required=True)
    a = ap.parse_args()
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{extension(duckdb_extension_httpfs, 'httpfs')}'")
    con.execute(f"LOAD '{extension(duckdb_extension_delta, 'delta')}'")
    if a.table.startswith("file://"):
        uri = a.table[len("file://"):]
    else:
        scheme, _, host = a.endpoint.partition("://")
        q = lambda v: "'" + v.replace("'", "''") + "'"
        con.execute(
            f"CREATE SECRET lake (TYPE S3, KEY_ID {q(os.environ.get('AWS_ACCESS_KEY_ID', 'minioadmin'))}, "
            f"SECRET {q(os.environ.get('AWS_SECRET_ACCESS_KEY', 'minioadmin'))}, ENDPOINT {q(host)}, "
            f"URL_STYLE 'path', USE_SSL {'true' if scheme == 'https' else 'false'}, REGION 'us-east-1')"
        )
        uri = f"s3://{a.bucket}/{a.table}"
    if a.cmd == "images":
        sys.path.insert(1, here)
        import lake  # noqa: E402  (this directory's lake.py: one rendering of row images)

        out = []
        lake.table_images(con.execute(f"SELECT * FROM delta_scan('{uri}')").to_arrow_table(), out)
        json.dump(out, sys.stdout)
        return
    rows = con.execute(f"SELECT __kafka_partition, __kafka_offset FROM delta_scan('{uri}')").fetchall()
    json.dump({"rows": [[p, o] for p, o in rows]}, sys.stdout)


if __name__ == "__main__":
    main()
