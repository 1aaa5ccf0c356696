//! The mirror (issue 31): beside bronze, a Delta table per captured topic holding the current
//! row of every primary key, kept merge-on-write: a change adds the key's new row to a file of
//! its commit and marks the row it replaces (or deletes) in that file's deletion vector, found
//! through a key index, so a commit costs what changed, not the table's size.
//!
//! Built so far, and tested on object_store's InMemory (not yet reachable from the config):
//! [`keys`] (a hash of the primary key, and the index from key to file and row), [`changes`]
//! (what a run of one partition's changes leaves per key), [`images`] (the new rows, TOASTed
//! columns kept), and [`partition`] (a partition's commit prepared from its changes, the index
//! following it once it lands, and rebuilt from the table at start-up). The commit itself is
//! the Delta format's, with its deletion vectors and the partition's `txn` in one version
//! (`table::delta`, `Staged::deletes`).

pub mod changes;
pub mod images;
pub mod keys;
pub mod partition;
#[cfg(test)]
mod tests;

/// What the mirror cannot do with a batch or a table.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The decoded rows lack what the mirror needs (a key, `__op`), or a column is of a type
    /// it cannot compare.
    #[error("mirror of {topic}: {reason}")]
    Rows { topic: String, reason: String },
    /// The table's files cannot be read or written.
    #[error("mirror table {table}: {what}")]
    Store {
        table: String,
        what: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}
