//! Paths of data files as the log holds them. The protocol makes `add.path` and `remove.path`
//! URIs relative to the table's root, which readers decode before they open a file: Spark's
//! Delta writes `new Path(dir, name).toUri.toString`, so a Hive-escaped directory
//! (`title=a%2Fb c`) is spelled `title=a%252Fb%20c` in the log. We write and read the same:
//! [`DataFile::path`](super::DataFile) and everything this crate compares are object keys
//! relative to the root; the log's spelling exists only in the add actions written and in the
//! paths a scan returns.

use std::borrow::Cow;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

/// What Hadoop's `Path.toUri()` encodes in a path: `%`, the space and the ASCII characters a
/// URI path cannot hold; every non-ASCII byte is encoded too (readers decode it as UTF-8).
const URI_PATH: &AsciiSet =
    &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'%').add(b'<').add(b'>').add(b'?').add(b'[').add(b'\\').add(b']').add(b'^').add(b'`').add(b'{').add(b'|').add(b'}');

/// A key relative to the table's root as the log spells it.
pub fn to_log(key: &str) -> Cow<'_, str> {
    utf8_percent_encode(key, URI_PATH).into()
}

/// A path of the log (an add's or a remove's) as the key relative to the table's root. A path
/// whose escapes are not UTF-8 is left as it is (no writer we know makes one).
pub fn from_log(path: &str) -> Cow<'_, str> {
    percent_decode_str(path).decode_utf8().unwrap_or(Cow::Borrowed(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hive_escaped_directories_are_encoded_once_more_as_spark_writes_them() {
        let cases = [
            ("__kafka_partition=0/00000000000000000000-a.parquet", "__kafka_partition=0/00000000000000000000-a.parquet"),
            ("title=a%2Fb c%25d/__kafka_partition=1/x.parquet", "title=a%252Fb%20c%2525d/__kafka_partition=1/x.parquet"),
            ("title=100%25 done%3F/x.parquet", "title=100%2525%20done%253F/x.parquet"),
            ("title=M\u{fc}nchen/x.parquet", "title=M%C3%BCnchen/x.parquet"),
            ("dt=2026-12-07/hour=09/x.parquet", "dt=2026-12-07/hour=09/x.parquet"),
        ];
        for (key, log) in cases {
            assert_eq!(to_log(key), log, "the log's spelling of {key:?}");
            assert_eq!(from_log(log), key, "the key of the log's {log:?}");
        }
    }
}
