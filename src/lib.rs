//! kafka-parquet-sink: Debezium Avro topics → Parquet in an object store, offsets committed only
//! after the upload. See DESIGN.md for the stages, the offset protocol and the flush policy.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod buffer;
pub mod commit;
pub mod config;
pub mod decode;
pub mod doctor;
pub mod encode;
pub mod error;
pub mod flush;
pub mod health;
pub mod import;
pub mod metrics;
pub mod mirror;
pub mod partition;
pub mod pipeline;
pub mod preflight;
pub mod report;
pub mod source;
pub mod store;
pub mod table;
pub mod testkit;
