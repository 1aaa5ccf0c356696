//! Object keys of data files: `<prefix>/topics/<topic>[/<path>]/partition=<p>/<name>`, the name
//! a pure function of (topic, partition, start offset), so a replay writes the same key.

use crate::config::{FileNaming, OutputConfig};

const OFFSET_WIDTH: usize = 20;
const SUFFIX: &str = ".parquet";
/// Replaced by the topic in `output.prefix` (and `output.url`'s path).
pub const TOPIC_VARIABLE: &str = "${topic}";

/// How data files are named (`output.file_naming`, `offset_pad_width`, `file_delim`, and the
/// codec's extension for Confluent names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    scheme: FileNaming,
    pad: usize,
    delim: String,
    codec_ext: &'static str,
}

impl Default for Naming {
    /// `<start offset, 20 digits>.parquet`
    fn default() -> Self {
        Self { scheme: FileNaming::Offset, pad: OFFSET_WIDTH, delim: "+".into(), codec_ext: "" }
    }
}

impl Naming {
    pub fn new(o: &OutputConfig) -> Self {
        match o.file_naming {
            FileNaming::Offset => Self::default(),
            FileNaming::Confluent => {
                Self { scheme: FileNaming::Confluent, pad: o.offset_pad_width, delim: o.file_delim.clone(), codec_ext: o.compression.extension() }
            }
        }
    }

    /// Whether names sort by start offset as strings (then a listing can start after a key).
    pub fn sorts_by_offset(&self) -> bool {
        self.scheme == FileNaming::Offset
    }

    /// `00000000000000000042.parquet`, or `tasks+3+0000000042.snappy.parquet`.
    pub fn file_name(&self, topic: &str, partition: i32, start_offset: i64) -> String {
        let pad = self.pad;
        match self.scheme {
            FileNaming::Offset => format!("{start_offset:0pad$}{SUFFIX}"),
            FileNaming::Confluent => {
                let d = &self.delim;
                format!("{topic}{d}{partition}{d}{start_offset:0pad$}{}{SUFFIX}", self.codec_ext)
            }
        }
    }

    /// The start offset of a data file named by this naming (any codec's extension), or `None`
    /// for any other object.
    pub fn start_offset(&self, key: &str) -> Option<i64> {
        let name = key.rsplit('/').next()?.strip_suffix(SUFFIX)?;
        match self.scheme {
            FileNaming::Offset => {
                (name.len() == OFFSET_WIDTH && name.bytes().all(|b| b.is_ascii_digit())).then(|| name.parse().ok()).flatten()
            }
            FileNaming::Confluent => {
                let mut parts = name.rsplitn(3, self.delim.as_str());
                let (last, partition, _topic) = (parts.next()?, parts.next()?, parts.next()?);
                let (digits, ext) = last.split_once('.').map_or((last, ""), |(d, e)| (d, e));
                let known_ext = ext.is_empty() || [".snappy", ".zstd", ".lz4raw", ".gz"].iter().any(|x| &x[1..] == ext);
                let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                (known_ext && numeric(digits) && numeric(partition)).then(|| digits.parse().ok()).flatten()
            }
        }
    }
}

/// The prefix with `${topic}` replaced.
pub fn topic_prefix(prefix: &str, topic: &str) -> String {
    prefix.replace(TOPIC_VARIABLE, topic)
}

/// `<prefix>/topics/<topic>[/<path>]/partition=<p>`; the path comes from the partitioner.
pub fn partition_dir(prefix: &str, topic: &str, path: Option<&str>, partition: i32) -> String {
    let mut dir = topic_dir(prefix, topic);
    if let Some(p) = path {
        dir.push('/');
        dir.push_str(p);
    }
    format!("{dir}/partition={partition}")
}

/// `<prefix>/topics/<topic>`
pub fn topic_dir(prefix: &str, topic: &str) -> String {
    let prefix = topic_prefix(prefix, topic);
    if prefix.is_empty() { format!("topics/{topic}") } else { format!("{prefix}/topics/{topic}") }
}

/// `<prefix>/topics/<topic>/partition=<p>/<start offset, 20 digits>.parquet`.
pub fn object_key(prefix: &str, topic: &str, partition: i32, start_offset: i64) -> String {
    format!("{}/{}", partition_dir(prefix, topic, None, partition), Naming::default().file_name(topic, partition, start_offset))
}

/// The start offset of a file named by [`object_key`], or `None` for any other object.
pub fn start_offset_of(key: &str) -> Option<i64> {
    Naming::default().start_offset(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Codec;

    #[test]
    fn offset_names_are_deterministic_and_sort_by_offset() {
        let k = object_key("bronze/cdc/tasks", "supabase-habit.public.tasks", 3, 42);
        assert_eq!(k, "bronze/cdc/tasks/topics/supabase-habit.public.tasks/partition=3/00000000000000000042.parquet");
        let mut keys: Vec<String> = [1000, 9, 100].iter().map(|o| object_key("p", "t", 0, *o)).collect();
        keys.sort();
        let offsets: Vec<i64> = keys.iter().filter_map(|k| start_offset_of(k)).collect();
        assert_eq!(offsets, vec![9, 100, 1000]);
        assert_eq!(start_offset_of("p/topics/t/partition=0/notes.txt"), None);
        assert_eq!(object_key("", "t", 0, 1), "topics/t/partition=0/00000000000000000001.parquet");
    }

    #[test]
    fn confluent_names_carry_topic_partition_padded_offset_and_codec() {
        let o = OutputConfig { file_naming: FileNaming::Confluent, ..OutputConfig::default() };
        let n = Naming::new(&o);
        let name = n.file_name("supabase-habit.public.tasks", 3, 42);
        assert_eq!(name, "supabase-habit.public.tasks+3+0000000042.snappy.parquet");
        assert_eq!(n.start_offset(&format!("a/b/partition=3/{name}")), Some(42));
        // Past the pad width the name grows, as the connector's does.
        assert_eq!(n.file_name("t", 0, 123_456_789_012), "t+0+123456789012.snappy.parquet");
        assert_eq!(n.start_offset("t+0+123456789012.snappy.parquet"), Some(123_456_789_012));
        // A file written before a codec change is still a data file.
        assert_eq!(n.start_offset("t+0+0000000007.zstd.parquet"), Some(7));
        assert_eq!(n.start_offset("t+0+0000000007.parquet"), Some(7));
        for other in ["notes.parquet", "t+0+00x7.snappy.parquet", "t+0+0000000007.snappy.json", "t+x+0000000007.snappy.parquet", "00000000000000000007.parquet"] {
            assert_eq!(n.start_offset(other), None, "{other}");
        }
        let o = OutputConfig { file_naming: FileNaming::Confluent, offset_pad_width: 4, file_delim: "_".into(), compression: Codec::None, ..o };
        let n = Naming::new(&o);
        assert_eq!(n.file_name("tasks", 1, 5), "tasks_1_0005.parquet");
        assert_eq!(n.start_offset("x/tasks_1_0005.parquet"), Some(5));
        assert!(!n.sorts_by_offset());
    }

    #[test]
    fn the_prefix_may_name_the_topic() {
        assert_eq!(partition_dir("bronze/cdc/${topic}", "tasks", Some("dt=2026-11-30"), 2), "bronze/cdc/tasks/topics/tasks/dt=2026-11-30/partition=2");
        assert_eq!(topic_dir("", "t"), "topics/t");
    }
}
