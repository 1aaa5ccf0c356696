#!/usr/bin/env python3
"""The peer baseline of scripts/bench-e2e.sh: what a user would otherwise write by hand.

A confluent-kafka consumer decodes Confluent-framed Avro with fastavro (schemas fetched from the
registry by id, cached), buffers rows per partition, and every FLUSH records (or after ROTATE
seconds without one) writes a Snappy Parquet file with pyarrow to S3 under the same layout as
the sink (<prefix>/topics/<topic>/partition=<p>/<start offset>.parquet), then commits the offset
after it, synchronously. Tombstones are counted and committed past, as the sink does.

    peer_sink.py --bootstrap 127.0.0.1:9092 --registry http://127.0.0.1:8081 --topic T \\
        --group G --s3 http://127.0.0.1:9000 --bucket datalake --prefix bench/peer --flush 100000

`--null` only consumes and counts, as fast as librdkafka delivers: the broker's ceiling.
`--wait-committed` only waits until the group's committed offsets add up to --expect.
"""
import argparse
import io
import json
import os
import struct
import sys
import time
import urllib.request

import fastavro
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from confluent_kafka import Consumer, TopicPartition


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--registry", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--s3")
    p.add_argument("--bucket", default="datalake")
    p.add_argument("--prefix", default="bench/peer")
    p.add_argument("--flush", type=int, default=100000)
    p.add_argument("--rotate", type=float, default=2.0, help="seconds without a flush before open files flush")
    p.add_argument("--expect", type=int, required=True, help="stop once this many records are committed")
    p.add_argument("--null", action="store_true", help="consume and count only")
    p.add_argument("--wait-committed", action="store_true", help="wait for the group's commits to reach --expect")
    p.add_argument("--partitions", type=int, default=0, help="with --wait-committed: partitions of the topic")
    a = p.parse_args()
    if a.wait_committed:
        c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group, "enable.auto.commit": False})
        parts = [TopicPartition(a.topic, i) for i in range(a.partitions)]
        while True:
            done = sum(max(tp.offset, 0) for tp in c.committed(parts, timeout=10))
            if done >= a.expect:
                break
            time.sleep(0.2)
        c.close()
        print(json.dumps({"committed": done}))
        return

    consumer = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([a.topic])
    if a.null:
        n = 0
        while n < a.expect:
            for m in consumer.consume(num_messages=10000, timeout=1.0):
                if m.error() is None:
                    n += 1
        consumer.close()
        print(json.dumps({"consumed": n}))
        return

    fs = pafs.S3FileSystem(
        endpoint_override=a.s3.split("://", 1)[1], scheme=a.s3.split("://", 1)[0],
        access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ["AWS_SECRET_ACCESS_KEY"], region="us-east-1")
    schemas = {}

    def schema(schema_id):
        if schema_id not in schemas:
            with urllib.request.urlopen(f"{a.registry}/schemas/ids/{schema_id}") as r:
                schemas[schema_id] = fastavro.parse_schema(json.loads(json.load(r)["schema"]))
        return schemas[schema_id]

    rows = {}      # partition -> list of dicts
    first = {}     # partition -> first offset of the open file
    last = {}      # partition -> last offset handled
    committed = {}
    last_flush = time.monotonic()
    files = 0

    def flush(part):
        nonlocal files
        if part not in last:
            return
        batch = rows.pop(part, [])
        if batch:
            table = pa.Table.from_pylist(batch)
            key = f"{a.bucket}/{a.prefix}/topics/{a.topic}/partition={part}/{first[part]:020d}.parquet"
            pq.write_table(table, key, filesystem=fs, compression="snappy")
            files += 1
        consumer.commit(offsets=[TopicPartition(a.topic, part, last[part] + 1)], asynchronous=False)
        committed[part] = last[part] + 1
        first.pop(part, None)

    while sum(committed.values()) < a.expect:
        msgs = consumer.consume(num_messages=10000, timeout=0.5)
        for m in msgs:
            if m.error() is not None:
                continue
            part, off, value = m.partition(), m.offset(), m.value()
            first.setdefault(part, off)
            last[part] = off
            if value is not None:
                schema_id = struct.unpack(">I", value[1:5])[0]
                rec = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema(schema_id))
                rec["__kafka_topic"], rec["__kafka_partition"], rec["__kafka_offset"] = m.topic(), part, off
                rows.setdefault(part, []).append(rec)
            if off - first[part] + 1 >= a.flush:
                flush(part)
                last_flush = time.monotonic()
        if time.monotonic() - last_flush >= a.rotate:
            for part in list(first):
                flush(part)
            last_flush = time.monotonic()
    consumer.close()
    print(json.dumps({"committed": sum(committed.values()), "files": files}))


if __name__ == "__main__":
    sys.exit(main())
