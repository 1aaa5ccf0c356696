//! Output partitioning: where under `<prefix>/topics/<topic>/` a record's file goes.
//!
//! `kafka` (default): `partition=<p>/`. `time`: `<path>/partition=<p>/`, the path formatted from
//! the record's Kafka timestamp (what the Confluent sink calls the `Record` timestamp extractor;
//! Debezium's producer stamps each record when it sends it) in a fixed UTC offset. The path is a
//! pure function of the record, so a replay puts every record where it was before.

use crate::config::{OutputConfig, Partitioner};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Text(String),
    Year,
    Month,
    Day,
    Hour,
    Minute,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathScheme {
    Kafka,
    Time { tokens: Vec<Token>, offset_minutes: i64 },
}

impl PathScheme {
    pub fn from_config(c: &OutputConfig) -> Result<Self, String> {
        match c.partitioner {
            Partitioner::Kafka => Ok(PathScheme::Kafka),
            Partitioner::Time => Ok(PathScheme::Time { tokens: parse_format(&c.path_format)?, offset_minutes: parse_offset(&c.timezone)? }),
        }
    }

    /// The directory between the topic and `partition=<p>` for a record with this timestamp
    /// (Unix ms); `None` with the Kafka partitioner. A record without a timestamp takes the
    /// wall clock.
    pub fn path(&self, timestamp_ms: Option<i64>) -> Option<String> {
        let PathScheme::Time { tokens, offset_minutes } = self else {
            return None;
        };
        let ms = timestamp_ms
            .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64));
        let local_minutes = ms.div_euclid(60_000) + offset_minutes;
        let (days, minute_of_day) = (local_minutes.div_euclid(1440), local_minutes.rem_euclid(1440));
        let (y, m, d) = civil_from_days(days);
        let mut out = String::new();
        for t in tokens {
            match t {
                Token::Text(s) => out.push_str(s),
                Token::Year => out.push_str(&format!("{y:04}")),
                Token::Month => out.push_str(&format!("{m:02}")),
                Token::Day => out.push_str(&format!("{d:02}")),
                Token::Hour => out.push_str(&format!("{:02}", minute_of_day / 60)),
                Token::Minute => out.push_str(&format!("{:02}", minute_of_day % 60)),
            }
        }
        Some(out)
    }
}

/// `dt={YYYY}-{MM}-{DD}/hr={HH}` into tokens; only `{YYYY} {MM} {DD} {HH} {mm}` are known.
fn parse_format(f: &str) -> Result<Vec<Token>, String> {
    if f.is_empty() || f.starts_with('/') || f.ends_with('/') || f.contains("//") || f.split('/').any(|s| s == "." || s == "..") {
        return Err(format!("output.path_format: a relative path without empty, \".\" or \"..\" segments, got {f:?}"));
    }
    let mut tokens = Vec::new();
    let mut rest = f;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            tokens.push(Token::Text(rest[..open].to_string()));
        }
        let close = rest[open..].find('}').ok_or_else(|| format!("output.path_format: unclosed '{{' in {f:?}"))? + open;
        tokens.push(match &rest[open + 1..close] {
            "YYYY" => Token::Year,
            "MM" => Token::Month,
            "DD" => Token::Day,
            "HH" => Token::Hour,
            "mm" => Token::Minute,
            other => return Err(format!("output.path_format: unknown field {{{other}}}; known: {{YYYY}} {{MM}} {{DD}} {{HH}} {{mm}}")),
        });
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        tokens.push(Token::Text(rest.to_string()));
    }
    if tokens.iter().any(|t| matches!(t, Token::Text(s) if s.contains('}'))) {
        return Err(format!("output.path_format: stray '}}' in {f:?}"));
    }
    Ok(tokens)
}

/// `UTC`, `Z` or a fixed offset `+HH:MM` / `-HH:MM`, in minutes east of UTC.
fn parse_offset(tz: &str) -> Result<i64, String> {
    if tz == "UTC" || tz == "Z" {
        return Ok(0);
    }
    let bad = || {
        format!(
            "output.timezone: \"UTC\" or a fixed offset like \"+02:00\", got {tz:?} (named zones with daylight saving are not supported)"
        )
    };
    let (sign, rest) = match tz.as_bytes().first() {
        Some(b'+') => (1, &tz[1..]),
        Some(b'-') => (-1, &tz[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 60 + m))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme(format: &str, tz: &str) -> Result<PathScheme, String> {
        PathScheme::from_config(&OutputConfig {
            partitioner: Partitioner::Time,
            path_format: format.into(),
            timezone: tz.into(),
            ..OutputConfig::default()
        })
    }

    #[test]
    fn formats_record_time_in_a_fixed_offset() -> Result<(), String> {
        let s = scheme("dt={YYYY}-{MM}-{DD}/hr={HH}", "UTC")?;
        // 2026-11-24T01:30:00Z
        let t = 1_795_483_800_000;
        assert_eq!(s.path(Some(t)).as_deref(), Some("dt=2026-11-24/hr=01"));
        let berlin = scheme("dt={YYYY}-{MM}-{DD}/hr={HH}/min={mm}", "+02:00")?;
        assert_eq!(berlin.path(Some(t)).as_deref(), Some("dt=2026-11-24/hr=03/min=30"));
        let west = scheme("{YYYY}/{MM}/{DD}", "-05:00")?;
        assert_eq!(west.path(Some(t)).as_deref(), Some("2026/11/23"), "crosses midnight backwards");
        assert_eq!(scheme("{YYYY}-{MM}-{DD}", "UTC")?.path(Some(951_782_400_000)).as_deref(), Some("2000-02-29"), "leap day");
        assert_eq!(scheme("{YYYY}-{MM}-{DD}", "UTC")?.path(Some(-1)).as_deref(), Some("1969-12-31"), "before the epoch");
        assert_eq!(PathScheme::from_config(&OutputConfig::default())?.path(Some(t)), None);
        Ok(())
    }

    #[test]
    fn bad_formats_and_zones_name_their_key() {
        for (f, tz) in [
            ("dt={YYY}", "UTC"),
            ("/dt={YYYY}", "UTC"),
            ("a/../b", "UTC"),
            ("dt={YYYY", "UTC"),
            ("dt={YYYY}", "Europe/Berlin"),
            ("x", "+25:00"),
        ] {
            let e = scheme(f, tz).err().unwrap_or_default();
            assert!(e.starts_with("output.path_format") || e.starts_with("output.timezone"), "{f:?} {tz:?}: {e:?}");
        }
    }
}
