//! Output partitioning: where under `<prefix>/topics/<topic>/` a record's file goes.
//!
//! `kafka` (default): `partition=<p>/`. `time`: `<path>/partition=<p>/`, the path formatted from
//! the record's time in a time zone: its Kafka timestamp (the Confluent sink's `Record`
//! extractor; Debezium's producer stamps each record when it sends it), or a field of the value
//! such as Debezium's `ts_ms` or `source.ts_ms` (`RecordField`). `field`: `<name>=<value>/...`
//! from fields of the value, as the Confluent `FieldPartitioner`. The path is a pure function
//! of the record, so a replay puts every record where it was before.

use std::collections::HashMap;

use chrono::{Datelike, TimeZone, Timelike};

use crate::config::paths::{directory_name, Scheme, Token, Zone};
use crate::config::OutputConfig;
use crate::decode::field::{FieldReader, FieldValue, TimeUnit};

/// The directory of a null or empty field value, as Hive, Spark and DuckDB name it.
pub const NULL_DIRECTORY: &str = "__HIVE_DEFAULT_PARTITION__";

/// The configured scheme, and the field readers compiled per writer schema id.
#[derive(Debug)]
pub struct PathScheme {
    scheme: Scheme,
    readers: HashMap<u32, Vec<FieldReader>>,
}

impl PathScheme {
    pub fn from_config(c: &OutputConfig) -> Result<Self, String> {
        Ok(Self { scheme: crate::config::paths::parse(c)?, readers: HashMap::new() })
    }

    /// The columns a Delta table is partitioned by besides the Kafka partition (see
    /// [`Scheme::columns`]).
    pub fn columns(&self) -> Result<Vec<String>, String> {
        self.scheme.columns()
    }

    /// Whether records go under a path of their own (time or field partitioner).
    pub fn has_paths(&self) -> bool {
        !matches!(self.scheme, Scheme::Kafka)
    }

    /// The fields read from a value body, in the order their readers are kept.
    fn fields(&self) -> &[String] {
        match &self.scheme {
            Scheme::Kafka => &[],
            Scheme::Time { field, .. } => field.as_slice(),
            Scheme::Field { fields } => fields,
        }
    }

    /// Whether [`PathScheme::learn`] must see this writer schema before [`PathScheme::path`]
    /// can read its bodies.
    pub fn needs_schema(&self, schema_id: u32) -> bool {
        !self.fields().is_empty() && !self.readers.contains_key(&schema_id)
    }

    /// Compiles the configured fields against a writer schema; an error names the key.
    pub fn learn(&mut self, schema_id: u32, schema: &str) -> Result<(), String> {
        let key = match self.scheme {
            Scheme::Time { .. } => "output.timestamp_field",
            _ => "output.partition_fields",
        };
        let readers = self
            .fields()
            .iter()
            .map(|f| FieldReader::compile(schema, f).map_err(|e| format!("{key}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        self.readers.insert(schema_id, readers);
        Ok(())
    }

    /// The directory between the topic and `partition=<p>` of a record (`None` with the Kafka
    /// partitioner). `value` is the writer schema id and Avro body (`None` for a tombstone);
    /// `timestamp_ms` the Kafka timestamp. A record without a time (no field value, no Kafka
    /// timestamp) takes the wall clock; a tombstone's fields are null.
    pub fn path(&self, value: Option<(u32, &[u8])>, timestamp_ms: Option<i64>) -> Result<Option<String>, PathError> {
        let read = |i: usize| -> Result<FieldValue<'_>, PathError> {
            let Some((id, body)) = value else { return Ok(FieldValue::Null) };
            let reader = self.readers.get(&id).and_then(|r| r.get(i)).ok_or(PathError::Unlearned(id))?;
            reader.read(body).map_err(PathError::Body)
        };
        match &self.scheme {
            Scheme::Kafka => Ok(None),
            Scheme::Time { tokens, zone, field } => {
                let from_field = match field {
                    Some(name) => field_millis(name, read(0)?)?,
                    None => None,
                };
                let ms = from_field.or(timestamp_ms).unwrap_or_else(|| {
                    crate::health::now_ms()
                });
                Ok(Some(format_time(tokens, *zone, ms)))
            }
            Scheme::Field { fields } => {
                let mut out = String::new();
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push('/');
                    }
                    out.push_str(directory_name(f));
                    out.push('=');
                    escape_into(&mut out, read(i)?);
                }
                Ok(Some(out))
            }
        }
    }
}

/// The column values of a path this scheme made (`dt=2026-12-02/status=open%2Fnew`): each
/// directory's name and its value unescaped, `None` for Hive's null directory.
pub fn values_of(path: &str) -> Vec<(String, Option<String>)> {
    path.split('/')
        .filter_map(|dir| dir.split_once('='))
        .map(|(name, value)| (name.to_string(), (value != NULL_DIRECTORY).then(|| unescape(value))))
        .collect()
}

/// The inverse of [`escape_into`]'s `%XX` escapes.
fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a record's path cannot be made; each is a bad record, never retryable.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("schema id {0} was not compiled for the partitioner")]
    Unlearned(u32),
    #[error("cannot read the partitioning field: {0}")]
    Body(String),
    #[error("output.timestamp_field {field}: {reason}")]
    NotATime { field: String, reason: String },
}

/// A time field's value in Unix milliseconds: a long (milliseconds, or the unit of its logical
/// type) or an ISO-8601 string with an offset (Debezium's `ZonedTimestamp`); null gives `None`.
fn field_millis(field: &str, v: FieldValue<'_>) -> Result<Option<i64>, PathError> {
    let bad = |reason: String| PathError::NotATime { field: field.to_string(), reason };
    Ok(Some(match v {
        FieldValue::Null => return Ok(None),
        FieldValue::Long(v, TimeUnit::Plain | TimeUnit::Millis) => v,
        FieldValue::Long(v, TimeUnit::Micros) => v.div_euclid(1_000),
        FieldValue::Long(v, TimeUnit::Nanos) => v.div_euclid(1_000_000),
        FieldValue::Str(s) => {
            chrono::DateTime::parse_from_rfc3339(s).map_err(|e| bad(format!("{s:?} is not an ISO-8601 time: {e}")))?.timestamp_millis()
        }
        other => return Err(bad(format!("{other:?} is not a time (a long in milliseconds or an ISO-8601 string)"))),
    }))
}

/// A value as a path segment, escaped as Hive escapes partition values (`/` → `%2F`).
fn escape_into(out: &mut String, v: FieldValue<'_>) {
    use std::fmt::Write as _;
    let text = match v {
        FieldValue::Null => return out.push_str(NULL_DIRECTORY),
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::Long(n, _) => n.to_string(),
        FieldValue::Double(d) => d.to_string(),
        FieldValue::Str(s) => s.to_string(),
    };
    if text.is_empty() {
        return out.push_str(NULL_DIRECTORY);
    }
    for c in text.chars() {
        if c.is_control() || "\"#%'*/:=?\\{[]^".contains(c) {
            let mut b = [0; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

fn format_time(tokens: &[Token], zone: Zone, ms: i64) -> String {
    let utc = chrono::Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
    let local = match zone {
        Zone::Fixed(o) => utc.with_timezone(&o).naive_local(),
        Zone::Named(tz) => utc.with_timezone(&tz).naive_local(),
    };
    let mut out = String::new();
    for t in tokens {
        match t {
            Token::Text(s) => out.push_str(s),
            Token::Year => out.push_str(&format!("{:04}", local.year())),
            Token::Month => out.push_str(&format!("{:02}", local.month())),
            Token::Day => out.push_str(&format!("{:02}", local.day())),
            Token::Hour => out.push_str(&format!("{:02}", local.hour())),
            Token::Minute => out.push_str(&format!("{:02}", local.minute())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Partitioner;

    fn scheme(format: &str, tz: &str) -> Result<PathScheme, String> {
        PathScheme::from_config(&OutputConfig {
            partitioner: Partitioner::Time,
            path_format: format.into(),
            timezone: tz.into(),
            ..OutputConfig::default()
        })
    }

    fn at(s: &PathScheme, ms: i64) -> Option<String> {
        s.path(None, Some(ms)).ok().flatten()
    }

    #[test]
    fn formats_record_time_in_a_fixed_offset() -> Result<(), String> {
        let s = scheme("dt={YYYY}-{MM}-{DD}/hr={HH}", "UTC")?;
        // 2026-11-24T01:30:00Z
        let t = 1_795_483_800_000;
        assert_eq!(at(&s, t).as_deref(), Some("dt=2026-11-24/hr=01"));
        let east = scheme("dt={YYYY}-{MM}-{DD}/hr={HH}/min={mm}", "+02:00")?;
        assert_eq!(at(&east, t).as_deref(), Some("dt=2026-11-24/hr=03/min=30"));
        let west = scheme("{YYYY}/{MM}/{DD}", "-05:00")?;
        assert_eq!(at(&west, t).as_deref(), Some("2026/11/23"), "crosses midnight backwards");
        assert_eq!(at(&scheme("{YYYY}-{MM}-{DD}", "UTC")?, 951_782_400_000).as_deref(), Some("2000-02-29"), "leap day");
        assert_eq!(at(&scheme("{YYYY}-{MM}-{DD}", "UTC")?, -1).as_deref(), Some("1969-12-31"), "before the epoch");
        assert_eq!(at(&PathScheme::from_config(&OutputConfig::default())?, t), None);
        Ok(())
    }

    #[test]
    fn named_zones_follow_daylight_saving() -> Result<(), String> {
        let berlin = scheme("{YYYY}-{MM}-{DD}/hr={HH}", "Europe/Berlin")?;
        // 2026-07-01T10:00Z is summer time (+02:00); 2026-01-15T10:00Z is winter time (+01:00).
        assert_eq!(at(&berlin, 1_782_900_000_000).as_deref(), Some("2026-07-01/hr=12"));
        assert_eq!(at(&berlin, 1_768_471_200_000).as_deref(), Some("2026-01-15/hr=11"));
        // 2026-10-25T00:30Z and 01:30Z are both 02:30 local: the hour repeats when clocks go back.
        assert_eq!(at(&berlin, 1_792_888_200_000), at(&berlin, 1_792_891_800_000), "the repeated hour is one directory");
        let ny = scheme("{YYYY}-{MM}-{DD}/hr={HH}", "America/New_York")?;
        assert_eq!(at(&ny, 1_782_900_000_000).as_deref(), Some("2026-07-01/hr=06"));
        Ok(())
    }

    #[test]
    fn field_paths_are_hive_directories() -> Result<(), String> {
        let s = PathScheme::from_config(&OutputConfig {
            partitioner: Partitioner::Field,
            partition_fields: vec!["after.status".into(), "op".into()],
            ..OutputConfig::default()
        })?;
        assert!(s.needs_schema(7));
        assert!(matches!(s.path(Some((7, b"")), None), Err(PathError::Unlearned(7))));
        assert_eq!(
            s.path(None, None).ok().flatten().as_deref(),
            Some("status=__HIVE_DEFAULT_PARTITION__/op=__HIVE_DEFAULT_PARTITION__"),
            "a tombstone"
        );
        let mut out = String::new();
        escape_into(&mut out, FieldValue::Str("a/b=c d%"));
        assert_eq!(out, "a%2Fb%3Dc d%25");
        Ok(())
    }

    #[test]
    fn time_fields_in_each_unit_become_milliseconds() -> Result<(), PathError> {
        let f = |v| field_millis("ts", v);
        assert_eq!(f(FieldValue::Long(1_700_000_000_123, TimeUnit::Plain))?, Some(1_700_000_000_123));
        assert_eq!(f(FieldValue::Long(1_700_000_000_123_456, TimeUnit::Micros))?, Some(1_700_000_000_123));
        assert_eq!(f(FieldValue::Long(-1, TimeUnit::Nanos))?, Some(-1), "before the epoch rounds down");
        assert_eq!(f(FieldValue::Str("2023-11-14T22:13:20.123+01:00"))?, Some(1_699_996_400_123));
        assert_eq!(f(FieldValue::Null)?, None);
        assert!(f(FieldValue::Bool(true)).is_err());
        Ok(())
    }

    #[test]
    fn a_delta_table_takes_the_paths_directory_names_as_columns_and_their_values_unescaped() -> Result<(), String> {
        let delta = |format: &str| OutputConfig {
            format: crate::config::Format::Delta,
            partitioner: Partitioner::Time,
            path_format: format.into(),
            ..OutputConfig::default()
        };
        assert_eq!(PathScheme::from_config(&delta("dt={YYYY}-{MM}-{DD}/hr={HH}"))?.columns()?, ["dt", "hr"]);
        for bad in ["{YYYY}/{MM}", "dt={YYYY}/dt={MM}", "x-{YYYY}=1", "__kafka_partition={HH}"] {
            let e = PathScheme::from_config(&delta(bad)).err().unwrap_or_default();
            assert!(e.starts_with("output.path_format: with output.format = \"delta\""), "{bad}: {e}");
        }
        let field = OutputConfig { partitioner: Partitioner::Field, partition_fields: vec!["after.status".into()], ..delta("") };
        assert_eq!(PathScheme::from_config(&field)?.columns()?, ["status"]);
        assert_eq!(
            values_of("dt=2026-12-02/status=open%2Fnew/x=__HIVE_DEFAULT_PARTITION__"),
            [("dt".to_string(), Some("2026-12-02".to_string())), ("status".into(), Some("open/new".into())), ("x".into(), None)]
        );
        Ok(())
    }

    #[test]
    fn bad_formats_zones_and_fields_name_their_key() {
        let cases: [(&str, &str, &[&str], &str); 8] = [
            ("dt={YYY}", "UTC", &[], ""),
            ("/dt={YYYY}", "UTC", &[], ""),
            ("a/../b", "UTC", &[], ""),
            ("dt={YYYY", "UTC", &[], ""),
            ("dt={YYYY}", "Mars/Olympus", &[], ""),
            ("x", "+25:00", &[], ""),
            ("x", "UTC", &[], "source..ts_ms"),
            ("x", "UTC", &["after.status", "before.status"], ""),
        ];
        for (f, tz, fields, ts) in cases {
            let c = OutputConfig {
                partitioner: if fields.is_empty() { Partitioner::Time } else { Partitioner::Field },
                path_format: f.into(),
                timezone: tz.into(),
                partition_fields: fields.iter().map(|s| s.to_string()).collect(),
                timestamp_field: ts.into(),
                ..OutputConfig::default()
            };
            let e = PathScheme::from_config(&c).err().unwrap_or_default();
            assert!(e.starts_with("output."), "{f:?} {tz:?} {fields:?} {ts:?}: {e:?}");
        }
        let none = OutputConfig { partitioner: Partitioner::Field, ..OutputConfig::default() };
        assert!(PathScheme::from_config(&none).is_err_and(|e| e.starts_with("output.partition_fields")));
    }
}
