#!/usr/bin/env python3
"""Reads a Delta table the sink wrote with Apache Spark and Delta Lake (pyspark 4.2.0,
delta-spark 4.4.0, `local[1]`), the reference reader, beside the deltalake package and DuckDB.

  delta_spark.py dump --table PATH [--stream]
      JSON: every row's Kafka partition and offset as a batch read sees the latest version
      (`rows`), and with --stream as a Spark stream from version 0 sees them (`stream`: every
      version's added data in order; compaction's rewrites carry dataChange = false and are
      not read twice)
  delta_spark.py images --table PATH
      JSON: every row's images as `lake.py images` gives them (the same renderer), as a batch
      read of the latest version sees them

PATH is the table's root under the bucket (bronze/cdc/tasks/topics/<topic>) or file:///dir. A
table in the S3 server is copied object for object (keys as file names, so `title=a%2Fb c`
stays that directory) to a local directory first: Spark's S3 client (hadoop-aws and the AWS
SDK bundle, ~600 MB) is not installed for the tests; the log and the files Spark reads are the
bytes the sink wrote.

scripts/stack.sh installs pyspark and delta-spark into .stack/spark (SPARK_DIR); the Delta jars
come from Maven Central through Spark's own resolver on the first run.
"""
import argparse
import json
import os
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("SPARK_DIR", os.path.join(here, "..", ".stack", "spark")))

DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"


def local_copy(a, into):
    """The table's objects under `into`, keys as paths; the local path to read."""
    if a.table.startswith("file://"):
        return a.table[len("file://"):]
    import pyarrow.fs as fs

    scheme, _, host = a.endpoint.partition("://")
    s3 = fs.S3FileSystem(
        endpoint_override=host, scheme=scheme, region="us-east-1",
        access_key=os.environ.get("AWS_ACCESS_KEY_ID", "minioadmin"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "minioadmin"),
    )
    root = f"{a.bucket}/{a.table.strip('/')}"
    for info in s3.get_file_info(fs.FileSelector(root, recursive=True)):
        if info.type != fs.FileType.File:
            continue
        dest = os.path.join(into, os.path.relpath(info.path, root))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with s3.open_input_stream(info.path) as src, open(dest, "wb") as out:
            out.write(src.read())
    return into


def session():
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[1]").appName("kps-delta-reader")
        .config("spark.jars.packages", DELTA_PACKAGE)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default=os.environ.get("S3_ENDPOINT", "http://127.0.0.1:9000"))
    ap.add_argument("--bucket", default="datalake")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--table", required=True)
    d.add_argument("--stream", action="store_true")
    i = sub.add_parser("images")
    i.add_argument("--table", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kps-spark-") as tmp:
        path = local_copy(a, os.path.join(tmp, "table"))
        spark = session()
        spark.sparkContext.setLogLevel("ERROR")
        if a.cmd == "images":
            sys.path.insert(1, here)
            import lake  # noqa: E402  (this directory's lake.py: one rendering of row images)

            import pyarrow as pa

            # Spark's batches as they come: toArrow() then casts them to a schema whose struct
            # children are NOT NULL, which a null struct (a delete's `after`) cannot pass.
            batches = spark.read.format("delta").load(path)._collect_as_arrow()
            out = []
            lake.table_images(pa.Table.from_batches(batches), out)
            spark.stop()
            json.dump(out, sys.stdout)
            return
        cols = ["__kafka_partition", "__kafka_offset"]
        out = {"rows": [[r[0], r[1]] for r in spark.read.format("delta").load(path).select(*cols).collect()]}
        if a.stream:
            seen = []
            stream = (
                spark.readStream.format("delta").option("startingVersion", 0).load(path).select(*cols)
                .writeStream.foreachBatch(lambda df, _: seen.extend([r[0], r[1]] for r in df.collect()))
                .option("checkpointLocation", os.path.join(tmp, "stream-checkpoint"))
                .trigger(availableNow=True).start()
            )
            stream.awaitTermination()
            out["stream"] = seen
        spark.stop()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
