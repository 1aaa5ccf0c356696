//! The flush policy: one type that decides when an open file closes.

use std::fmt;
use std::time::Duration;

use crate::config::FlushConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlushReason {
    /// `flush.max_records` records (rows and skipped tombstones) are in the file.
    Size,
    /// The encoded file reached `flush.max_file_bytes`.
    Bytes,
    /// The file is older than `flush.rotate_interval_ms` by the wall clock.
    Time,
    /// A record with another schema id arrived.
    Schema,
    /// The service is stopping.
    Shutdown,
    /// A record needs one more path than `flush.max_open_files` (time or field partitioner).
    Path,
    /// All open files together reached `flush.max_buffered_bytes`; this was the largest.
    Memory,
}

impl FlushReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::Size => "size",
            FlushReason::Bytes => "bytes",
            FlushReason::Time => "time",
            FlushReason::Schema => "schema",
            FlushReason::Shutdown => "shutdown",
            FlushReason::Memory => "memory",
            FlushReason::Path => "path",
        }
    }
}

impl fmt::Display for FlushReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the policy looks at in an open file.
#[derive(Debug, Clone, Copy)]
pub struct FileStats {
    pub records: u64,
    pub encoded_bytes: u64,
    pub age: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    pub max_records: u64,
    pub max_file_bytes: u64,
    pub rotate_interval: Duration,
}

impl FlushPolicy {
    pub fn from_config(c: &FlushConfig) -> Self {
        Self { max_records: c.max_records, max_file_bytes: c.max_file_bytes, rotate_interval: Duration::from_millis(c.rotate_interval_ms) }
    }

    /// The reason to close a file now, if any. Size wins over bytes over time when several hold.
    pub fn check(&self, s: FileStats) -> Option<FlushReason> {
        if s.records >= self.max_records {
            Some(FlushReason::Size)
        } else if s.encoded_bytes >= self.max_file_bytes {
            Some(FlushReason::Bytes)
        } else if s.records > 0 && s.age >= self.rotate_interval {
            Some(FlushReason::Time)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: FlushPolicy = FlushPolicy { max_records: 1000, max_file_bytes: 1 << 20, rotate_interval: Duration::from_secs(60) };

    fn stats(records: u64, encoded_bytes: u64, age_s: u64) -> FileStats {
        FileStats { records, encoded_bytes, age: Duration::from_secs(age_s) }
    }

    #[test]
    fn each_trigger_fires_alone() {
        assert_eq!(P.check(stats(999, 0, 0)), None);
        assert_eq!(P.check(stats(1000, 0, 0)), Some(FlushReason::Size));
        assert_eq!(P.check(stats(1, 1 << 20, 0)), Some(FlushReason::Bytes));
        assert_eq!(P.check(stats(1, 0, 59)), None);
        assert_eq!(P.check(stats(1, 0, 60)), Some(FlushReason::Time));
    }

    #[test]
    fn empty_file_never_rotates_and_size_wins() {
        assert_eq!(P.check(stats(0, 0, 3600)), None);
        assert_eq!(P.check(stats(1000, 1 << 21, 3600)), Some(FlushReason::Size));
    }
}
