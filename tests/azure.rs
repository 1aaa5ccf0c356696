//! Azure Blob Storage (`output.url = "az://container/path"`), end to end on Azurite, the
//! emulator Microsoft publishes (`scripts/azurite.sh`): files read back by pyarrow's Azure
//! filesystem, tables by the `deltalake` package, never by the sink's code.
//!
//! Broker and registry: the local stack (Apache Kafka).

mod common;

use std::time::Duration;

use common::*;

const FLUSH: &str = "max_records = 100\nrotate_interval_ms = 1000";

/// The start-up probe found Azure's conditional create (`If-None-Match: *`) refusing a second
/// put: data files and log versions are put-if-absent there too.
fn assert_conditional(log: &str) {
    assert!(!log.contains("does not refuse a conditional put"), "Azurite took a second conditional put of one key:\n{log}");
}

fn sink<'a>(stack: &'a Stack, azurite: &Azurite, topic: &'a str, group: &'a str, url: &'a str) -> SinkSpec<'a> {
    azurite.env().iter().fold(SinkSpec::new(stack, topic, group, url, FLUSH), |spec, (k, v)| spec.env(k, v))
}

#[test]
fn files_land_in_azure_blob_storage_once_each() -> TestResult {
    let (stack, azurite) = (Stack::get()?, Azurite::get()?);
    let (topic, group) = (unique("it-azure-files"), unique("it-group"));
    let url = format!("az://datalake/{}", unique("it/azure-files"));
    let produced = produce(&stack, &topic, 2, 500, None, 2101)?;
    let mut sink = sink(&stack, &azurite, &topic, &group, &url).start()?;
    let audit = drain_and_audit(&stack, &mut sink, (&group, &topic, &url), &produced).map_err(|e| format!("{e}\n{}", sink.log()))?;
    let files = read_lake(&stack, &url)?;
    for f in &files {
        for r in &f.rows {
            let dir = format!("/topics/{topic}/partition={}/", r.partition);
            assert!(f.key.contains(&dir), "{} holds row {}/{}, expected under {dir}", f.key, r.partition, r.offset);
        }
    }
    assert!(audit.files >= 2, "files of two partitions: {audit}");
    assert_conditional(&sink.log());
    Ok(())
}

#[test]
fn a_delta_table_lands_in_azure_blob_storage_exactly_once() -> TestResult {
    let (stack, azurite) = (Stack::get()?, Azurite::get()?);
    let (topic, group) = (unique("it-azure-delta"), unique("it-group"));
    let url = format!("az://datalake/{}", unique("it/azure-delta"));
    let partitions = 2;
    let produced = produce(&stack, &topic, partitions, 500, None, 2102)?;
    let mut sink = sink(&stack, &azurite, &topic, &group, &url).output("format = \"delta\"").tables("[table]\ncommit_interval_ms = 1000\ncheckpoint_interval = 3").start()?;
    let ends = log_ends(produced.iter().map(|(p, _)| (p.partition, p.offset)));
    wait_committed(&stack, &group, &topic, &ends, Duration::from_secs(90)).map_err(|e| format!("{e}\n{}", sink.log()))?;
    assert!(sink.terminate(Duration::from_secs(30))?.success(), "exit status\n{}", sink.log());
    assert_conditional(&sink.log());
    let table = read_delta(&stack, &url, &topic, partitions)?;
    table.exactly_once(&produced)?;
    let txn: std::collections::BTreeMap<String, Option<i64>> = ends.iter().map(|(p, e)| (p.to_string(), Some(*e))).collect();
    assert_eq!(table.txn, txn, "txn versions: each partition's next offset");
    assert!(table.files.iter().all(|f| f.starts_with("az://datalake/") && f.contains("/__kafka_partition=")), "data files in the container, by partition: {:?}", table.files);
    Ok(())
}
