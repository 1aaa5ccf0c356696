//! Google Cloud Storage (`output.url = "gs://bucket/path"`), end to end on fake-gcs-server
//! (`scripts/fake-gcs.sh`, with the shim that routes the XML API object_store speaks onto
//! fake-gcs-server's own storage): files read back by pyarrow's GCS filesystem (Google's C++
//! client, JSON API), tables by the `deltalake` package, never by the sink's code.
//!
//! Broker and registry: the local stack (Apache Kafka).

mod common;

use common::*;

#[test]
fn files_land_in_google_cloud_storage_once_each() -> TestResult {
    files_land_once_each(Emulator::FAKE_GCS.get()?, 2201)
}

#[test]
fn a_delta_table_lands_in_google_cloud_storage_exactly_once() -> TestResult {
    delta_table_lands_exactly_once(Emulator::FAKE_GCS.get()?, 2202)
}

#[test]
fn large_files_go_up_in_parts_to_google_cloud_storage() -> TestResult {
    large_files_upload_in_parts(Emulator::FAKE_GCS.get()?)
}
