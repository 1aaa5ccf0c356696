//! The output partitioner's settings parsed: the time format's tokens, the zone, the fields,
//! and (for tables) the columns the path's directories name. The partition stage
//! (`crate::partition`) formats paths from these.

use super::{Format, OutputConfig, Partitioner};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Text(String),
    Year,
    Month,
    Day,
    Hour,
    Minute,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Fixed(chrono::FixedOffset),
    /// An IANA zone with its daylight-saving rules (`Europe/Berlin`).
    Named(chrono_tz::Tz),
}

/// The configured partitioner.
#[derive(Debug, Clone, PartialEq)]
pub enum Scheme {
    Kafka,
    Time { tokens: Vec<Token>, zone: Zone, field: Option<String> },
    Field { fields: Vec<String> },
}

/// The partitioner `c` configures, checked: each error names its key. With
/// `output.format = "delta"` the path's directories must each name a table column.
pub fn parse(c: &OutputConfig) -> Result<Scheme, String> {
    let scheme = match c.partitioner {
        Partitioner::Kafka => Scheme::Kafka,
        Partitioner::Time => {
            let field = (!c.timestamp_field.is_empty()).then(|| c.timestamp_field.clone());
            if let Some(f) = &field {
                check_field_path("output.timestamp_field", f)?;
            }
            Scheme::Time { tokens: parse_format(&c.path_format)?, zone: parse_zone(&c.timezone)?, field }
        }
        Partitioner::Field => {
            if c.partition_fields.is_empty() {
                return Err("output.partition_fields: partitioner = \"field\" needs at least one field, e.g. [\"after.status\"]".into());
            }
            for f in &c.partition_fields {
                check_field_path("output.partition_fields", f)?;
            }
            let mut names: Vec<&str> = c.partition_fields.iter().map(|f| directory_name(f)).collect();
            names.sort_unstable();
            if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                return Err(format!("output.partition_fields: two fields would both be named {:?} in the path", w[0]));
            }
            Scheme::Field { fields: c.partition_fields.clone() }
        }
    };
    if c.format == Format::Delta {
        scheme.columns()?;
    }
    Ok(scheme)
}

impl Scheme {
    /// The columns a Delta table is partitioned by besides the Kafka partition: each directory
    /// of the path must name its column (`dt={YYYY}-{MM}-{DD}/hr={HH}` gives `dt`, `hr`; the
    /// field partitioner's `<name>=<value>` always does). An error names `output.path_format`.
    pub fn columns(&self) -> Result<Vec<String>, String> {
        match self {
            Scheme::Kafka => Ok(Vec::new()),
            Scheme::Field { fields } => Ok(fields.iter().map(|f| directory_name(f).to_string()).collect()),
            Scheme::Time { tokens, .. } => {
                // The format as text, each token a placeholder character no name can hold.
                let text: String = tokens.iter().map(|t| if let Token::Text(s) = t { s.clone() } else { "{}".to_string() }).collect();
                let mut names: Vec<String> = Vec::new();
                for dir in text.split('/') {
                    let name = dir.split_once('=').map(|(n, _)| n).filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                    match name {
                        Some(n) if !names.iter().any(|x| x == n) && !n.starts_with("__") => names.push(n.to_string()),
                        _ => {
                            return Err(format!(
                                "output.path_format: with output.format = \"delta\" every directory names its table column once (not one of the sink's `__` columns), like \"dt={{YYYY}}-{{MM}}-{{DD}}/hr={{HH}}\"; got {dir:?}"
                            ))
                        }
                    }
                }
                Ok(names)
            }
        }
    }
}

/// `after.status` is written `status=...`: the last segment names the directory.
pub fn directory_name(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

fn check_field_path(key: &str, f: &str) -> Result<(), String> {
    if f.split('.').any(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
        return Err(format!("{key}: dot-separated Avro field names like \"after.status\", got {f:?}"));
    }
    Ok(())
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

/// `UTC`, `Z`, a fixed offset `+HH:MM` / `-HH:MM`, or an IANA zone name (`Europe/Berlin`).
fn parse_zone(tz: &str) -> Result<Zone, String> {
    if tz == "UTC" || tz == "Z" {
        return Ok(Zone::Fixed(chrono::FixedOffset::east_opt(0).ok_or("UTC")?));
    }
    let bad = || format!("output.timezone: \"UTC\", a fixed offset like \"+02:00\" or a zone name like \"Europe/Berlin\", got {tz:?}");
    let (sign, rest) = match tz.as_bytes().first() {
        Some(b'+') => (1, &tz[1..]),
        Some(b'-') => (-1, &tz[1..]),
        _ => return tz.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60)).map(Zone::Fixed).ok_or_else(bad)
}

