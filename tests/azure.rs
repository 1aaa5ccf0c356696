//! Azure Blob Storage (`output.url = "az://container/path"`), end to end on Azurite, the
//! emulator Microsoft publishes (`scripts/azurite.sh`): files read back by pyarrow's Azure
//! filesystem, tables by the `deltalake` package, never by the sink's code.
//!
//! Broker and registry: the local stack (Apache Kafka).

mod common;

use common::*;

#[test]
fn files_land_in_azure_blob_storage_once_each() -> TestResult {
    files_land_once_each(Emulator::AZURITE.get()?, 2101)
}

#[test]
fn a_delta_table_lands_in_azure_blob_storage_exactly_once() -> TestResult {
    delta_table_lands_exactly_once(Emulator::AZURITE.get()?, 2102)
}

#[test]
fn large_files_go_up_in_parts_to_azure_blob_storage() -> TestResult {
    large_files_upload_in_parts(Emulator::AZURITE.get()?)
}
