# Multi-stage: build with the Rust toolchain, run on a slim image as a non-root user.
# librdkafka links Debian's OpenSSL (TLS, SCRAM), Cyrus SASL (GSSAPI) and libcurl (OIDC): the
# build stage has their -dev packages (scripts/build-deps.sh installs the same on a machine), the
# runtime stage their libraries; `kafka-parquet-sink version` prints the features built in.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev libsasl2-dev libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY testdata testdata
RUN cargo build --release --locked --bin kafka-parquet-sink

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libssl3 libsasl2-2 libsasl2-modules-gssapi-mit libcurl4 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home sink
COPY --from=build /src/target/release/kafka-parquet-sink /usr/local/bin/kafka-parquet-sink
COPY config/sink.toml /etc/kafka-parquet-sink/sink.toml
USER sink
# glibc malloc: two arenas, blocks over 128 KiB mmapped and returned at once. Measured by
# scripts/bench-memory.sh: about 10 MiB less peak RSS under a burst, same throughput.
ENV MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=131072
EXPOSE 9102
HEALTHCHECK --interval=15s --timeout=3s CMD curl -sf http://localhost:9102/healthz || exit 1
ENTRYPOINT ["kafka-parquet-sink"]
CMD ["run", "--config", "/etc/kafka-parquet-sink/sink.toml"]
