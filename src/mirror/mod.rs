//! The mirror (`[mirror]`, issue 31): beside bronze, a Delta table per captured topic holding
//! the current row of every primary key, kept merge-on-write: a change adds the key's new row
//! to a file of its commit and marks the row it replaces (or deletes) in that file's deletion
//! vector, found through a key index, so a commit costs what changed, not the table's size.
//!
//! Built so far, each tested on its own: the keys rows are known by ([`keys`]: a hash of the
//! Debezium key, and the index from key to file and row) and what a run of changes leaves
//! per key ([`changes`]: the newest image, deletes, truncates, and where a TOASTed column the
//! change did not carry is taken from). The commit itself is the Delta format's, with
//! deletion vectors (`table::delta`, `Staged::deletes`).

pub mod changes;
pub mod images;
pub mod keys;

/// What the mirror cannot do with a batch or a table.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The decoded rows lack what the mirror needs (a key, `__op`), or a column is of a type
    /// it cannot compare.
    #[error("mirror of {topic}: {reason}")]
    Rows { topic: String, reason: String },
}
