//! A format double: tables held in memory, with the seam's rules (each partition's offset in
//! the commit that holds its files; a range whose start is not the table's offset is fenced).
//! It tests the stage apart from any format; the formats test themselves on object_store's
//! InMemory.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::*;

/// Every topic's table: each partition's offset, and the files each commit named.
#[derive(Default)]
struct Log {
    offsets: BTreeMap<(String, i32), i64>,
    files: Vec<(String, String)>,
    versions: u64,
}

struct Double(Arc<Mutex<Log>>);

struct DoubleTable {
    topic: String,
    log: Arc<Mutex<Log>>,
}

impl Format for Double {
    fn kind(&self) -> &'static str {
        "Double"
    }

    fn open(&self, topic: &str) -> Result<Box<dyn Table>, TableError> {
        Ok(Box::new(DoubleTable { topic: topic.to_string(), log: self.0.clone() }))
    }

    fn transform(&self) -> crate::encode::Transform {
        crate::encode::Transform { batch: Ok, schema: |s| s.clone(), stats: |_| None }
    }
}

impl DoubleTable {
    fn log(&self) -> Result<std::sync::MutexGuard<'_, Log>, TableError> {
        self.log.lock().map_err(|e| TableError::Task { table: self.topic.clone(), reason: e.to_string() })
    }
}

impl Table for DoubleTable {
    fn name(&self) -> String {
        format!("double://{}", self.topic)
    }

    fn versions(&mut self, partitions: &[i32]) -> Result<BTreeMap<i32, Option<i64>>, TableError> {
        let log = self.log()?;
        Ok(partitions.iter().map(|p| (*p, log.offsets.get(&(self.topic.clone(), *p)).copied())).collect())
    }

    fn commit(&mut self, staged: Vec<Staged>) -> Result<Outcome, TableError> {
        let topic = self.topic.clone();
        let mut log = self.log()?;
        let mut outcome = Outcome::default();
        for s in staged {
            let at = log.offsets.get(&(topic.clone(), s.partition)).copied();
            if at != s.start {
                outcome.fenced.push((s.partition, at));
                continue;
            }
            log.offsets.insert((topic.clone(), s.partition), s.next);
            log.files.extend(s.files.iter().map(|f| (topic.clone(), f.path.clone())));
            outcome.committed.push((s.partition, s.next));
        }
        if !outcome.committed.is_empty() {
            log.versions += 1;
            outcome.version = Some(log.versions);
        }
        Ok(outcome)
    }

    fn maintain(&mut self, _due: &Due, _stop: &AtomicBool) -> Maintenance {
        Maintenance::default()
    }

    fn summary(&mut self) -> Result<Option<Summary>, TableError> {
        let log = self.log()?;
        Ok((log.versions > 0).then(|| Summary { version: log.versions, files: log.files.len() }))
    }
}

fn file(path: &str) -> DataFile {
    DataFile { path: path.into(), size: 1, rows: 1, modification_time: 0, schema: Arc::new(arrow_schema::Schema::empty()), partition_values: Vec::new(), stats: None }
}

fn stage(log: &Arc<Mutex<Log>>) -> Tables {
    Tables::new(Arc::new(Double(log.clone())), std::time::Duration::ZERO, &Settings::default())
}

async fn commit_all(tables: &mut Tables) -> Result<Vec<Committed>, Box<dyn std::error::Error>> {
    tables.start_due(true)?;
    let mut answers = Vec::new();
    while let Some(c) = tables.next_committed().await {
        answers.push(c);
    }
    Ok(answers)
}

/// Files that land out of order wait for the durable prefix; the commit carries the prefix's
/// files with its offset, and the answer says where the table now resumes.
#[tokio::test(flavor = "multi_thread")]
async fn the_durable_prefix_is_committed_with_its_files_and_its_offset() -> Result<(), Box<dyn std::error::Error>> {
    let log = Arc::new(Mutex::new(Log::default()));
    let mut tables = stage(&log);
    let tp = ("t".to_string(), 0);
    assert!(tables.assigned(&tp, Some(None), None), "a partition the table does not know is positioned at once");
    tables.land(&tp, 10, vec![file("b")]);
    tables.land(&tp, 0, vec![file("a")]);
    tables.stage_through(&tp, 10);
    let answers = commit_all(&mut tables).await?;
    let committed: Vec<(i32, i64)> = answers.into_iter().map(|c| c.result.map(|o| o.committed)).collect::<Result<Vec<_>, _>>()?.concat();
    assert_eq!(committed, [(0, 10)], "the prefix up to 10 committed");
    assert!(tables.holds(&tp), "the group at 10 has landed and is not in the table yet");
    tables.stage_through(&tp, 20);
    commit_all(&mut tables).await?;
    assert!(!tables.holds(&tp), "everything landed is in the table");
    let log = log.lock().map_err(|e| e.to_string())?;
    assert_eq!(log.files, [("t".to_string(), "a".to_string()), ("t".to_string(), "b".to_string())], "files in commit order");
    assert_eq!(log.offsets.get(&tp), Some(&20), "the table's offset of the partition");
    Ok(())
}

/// Another writer moved the partition on: the commit reports it fenced with the table's offset
/// and names none of its files; a partition revoked while its commit ran is left out of the
/// answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_fenced_partition_names_none_of_its_files_and_a_revoked_one_is_not_reported() -> Result<(), Box<dyn std::error::Error>> {
    let log = Arc::new(Mutex::new(Log::default()));
    let mut tables = stage(&log);
    let (a, b) = (("t".to_string(), 0), ("t".to_string(), 1));
    tables.assigned(&a, Some(Some(5)), None);
    tables.assigned(&b, Some(None), None);
    log.lock().map_err(|e| e.to_string())?.offsets.insert(a.clone(), 8); // another member committed 5..8
    tables.land(&a, 5, vec![file("zombie")]);
    tables.stage_through(&a, 9);
    tables.land(&b, 0, vec![file("ours")]);
    tables.stage_through(&b, 4);
    let answers = commit_all(&mut tables).await?;
    let outcome = answers.into_iter().next().ok_or("no answer")?.result?;
    assert_eq!((outcome.committed, outcome.fenced), (vec![(1, 4)], vec![(0, Some(8))]), "(committed, fenced with the table's offset)");
    assert!(!log.lock().map_err(|e| e.to_string())?.files.iter().any(|(_, f)| f == "zombie"), "the fenced range's file is never named");

    tables.land(&b, 4, vec![file("late")]);
    tables.stage_through(&b, 6);
    tables.start_due(true)?;
    tables.revoked(&b);
    let answer = tables.next_committed().await.ok_or("no answer")?.result?;
    assert_eq!(answer.committed, Vec::<(i32, i64)>::new(), "a partition revoked while its commit ran is not reported");
    Ok(())
}

/// `output.format` picks the format; files mode has none, whatever its path format (a
/// directory that names no column is fine there), and Delta takes the partitioner's columns.
#[test]
fn files_mode_has_no_table_format_and_delta_takes_the_path_columns() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = crate::metrics::Metrics::new()?;
    let store = crate::store::Store::new(Arc::new(object_store::memory::InMemory::new()), "bronze", &Default::default(), metrics);
    let mut config = crate::config::Config::default();
    config.output.partitioner = crate::config::Partitioner::Time;
    config.output.path_format = "{YYYY}/{MM}/{DD}".into();
    let paths = crate::partition::PathScheme::from_config(&config.output)?;
    assert!(format(&config, &store, &paths)?.is_none(), "files mode with a path of plain directories");
    config.output.format = crate::config::Format::Delta;
    config.output.path_format = "dt={YYYY}-{MM}-{DD}/hr={HH}".into();
    let paths = crate::partition::PathScheme::from_config(&config.output)?;
    let (f, settings) = format(&config, &store, &paths)?.ok_or("no format for output.format = \"delta\"")?;
    assert_eq!((f.kind(), settings.path_columns), ("Delta", vec!["dt".to_string(), "hr".to_string()]), "(format, partition columns)");
    Ok(())
}
