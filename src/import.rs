//! `kafka-parquet-sink import-connector <connector.json>`: a Confluent S3 sink connector config,
//! as users keep it (`minio-s3-sink.json`, either `{"name", "config": {...}}` or the bare config),
//! turned into this service's TOML. Keys that cannot be carried over get a `# warning:` line.

use serde_json::Value;
use toml::Table;

/// The TOML (warnings first, as comments) for a connector config.
pub fn import(json: &str) -> Result<String, String> {
    let doc: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let name = doc.get("name").and_then(Value::as_str).map(str::to_string);
    let config = doc.get("config").unwrap_or(&doc).as_object().ok_or("expected a JSON object (the connector or its \"config\")")?;
    let get = |k: &str| config.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
    let mut out = Out::default();
    let name = name.or_else(|| get("name"));

    if let Some(class) = get("connector.class") {
        if !class.ends_with("S3SinkConnector") {
            out.warn(format!("connector.class {class} is not the S3 sink connector"));
        }
    }
    if let Some(n) = &name {
        // Kafka Connect's group for a sink connector: offsets continue where the connector stopped.
        out.set("kafka", "group_id", format!("connect-{n}").into());
    }
    match (get("topics"), get("topics.regex")) {
        (Some(t), _) => out.set("kafka", "topics", toml::Value::Array(t.split(',').map(|s| s.trim().to_string().into()).collect())),
        // Java's Pattern.matches() is anchored at both ends; librdkafka's is not unless told.
        (None, Some(r)) => {
            out.set("kafka", "topics", toml::Value::Array(vec![format!("^({})$", r.trim_start_matches('^').trim_end_matches('$')).into()]))
        }
        (None, None) => out.warn("neither topics nor topics.regex: kafka.topics keeps its default".to_string()),
    }
    if let Some(v) = get("flush.size") {
        out.set_int("flush", "max_records", "flush.size", &v);
    }
    match (get("rotate.schedule.interval.ms"), get("rotate.interval.ms")) {
        (Some(v), other) => {
            out.set_int("flush", "rotate_interval_ms", "rotate.schedule.interval.ms", &v);
            if other.is_some() {
                out.warn("rotate.interval.ms (record-time rotation) is not carried: rotate.schedule.interval.ms (wall clock) is used, which also flushes idle partitions".into());
            }
        }
        (None, Some(v)) => {
            out.set_int("flush", "rotate_interval_ms", "rotate.interval.ms", &v);
            out.warn(
                "rotate.interval.ms rotates by record time; flush.rotate_interval_ms rotates by the wall clock (idle partitions flush too)"
                    .into(),
            );
        }
        (None, None) => {}
    }
    if let Some(v) = get("s3.bucket.name") {
        out.set("s3", "bucket", v.into());
    }
    if let Some(v) = get("s3.region") {
        out.set("s3", "region", v.into());
    }
    if let Some(v) = get("store.url") {
        if v.starts_with("http://") {
            out.set("s3", "allow_http", true.into());
        }
        out.set("s3", "endpoint", v.into());
    }
    if let Some(v) = get("s3.path.style.access.enabled") {
        out.set("s3", "path_style", (v == "true").into());
    }
    if get("aws.access.key.id").is_some() || get("aws.secret.access.key").is_some() {
        out.warn("aws.access.key.id / aws.secret.access.key are not copied into the file (a secret does not belong in it): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the service's environment".into());
    }
    if let Some(dir) = get("topics.dir") {
        // The connector writes <topics.dir>/<topic>/partition=<p>/; the sink <prefix>/topics/<topic>/partition=<p>/.
        match dir.trim_end_matches('/').strip_suffix("/topics") {
            Some(prefix) => out.set("output", "prefix", prefix.to_string().into()),
            None if dir == "topics" => out.set("output", "prefix", String::new().into()),
            None => {
                out.set("output", "prefix", dir.trim_end_matches('/').to_string().into());
                out.warn(format!("topics.dir {dir:?}: files go under {dir}/topics/<topic>/ instead of {dir}/<topic>/"));
            }
        }
    }
    // Debezium's unwrap SMT makes the row image the value: our flatten layout. Field names the
    // connector reads from the row are then under `after.` in the envelope we read.
    let unwrap_transforms = unwrap_transforms(config);
    let field_prefix = if unwrap_transforms.is_empty() { "" } else { "after." };
    if !unwrap_transforms.is_empty() {
        out.set("output", "layout", "flatten".into());
    }
    match get("partitioner.class").as_deref() {
        None => {}
        Some(p) if p.ends_with("DefaultPartitioner") => {}
        Some(p) if p.ends_with("TimeBasedPartitioner") || p.ends_with("HourlyPartitioner") || p.ends_with("DailyPartitioner") => {
            import_time_partitioner(&mut out, p, &get, field_prefix);
        }
        Some(p) if p.ends_with("FieldPartitioner") => match get("partition.field.name") {
            Some(names) => {
                let fields: Vec<toml::Value> = names.split(',').map(|n| format!("{field_prefix}{}", n.trim()).into()).collect();
                out.set("output", "partitioner", "field".into());
                out.set("output", "partition_fields", toml::Value::Array(fields));
            }
            None => out.warn(format!("partitioner.class {p} without partition.field.name: not carried")),
        },
        Some(p) => out.warn(format!("partitioner.class {p}: only the Kafka-partition, time-based and field layouts are supported")),
    }
    if let Some(f) = get("format.class") {
        if !f.ends_with("ParquetFormat") {
            out.warn(format!("format.class {f}: the sink writes Parquet only"));
        }
    }
    match get("parquet.codec").as_deref() {
        None => {}
        Some(c @ ("snappy" | "zstd" | "lz4" | "gzip")) => out.set("output", "compression", c.into()),
        Some("none" | "uncompressed") => out.set("output", "compression", "none".into()),
        Some(c) => out.warn(format!("parquet.codec {c}: not one of snappy, zstd, lz4, gzip, none; output.compression stays snappy")),
    }
    import_names(&mut out, &get);
    import_object_settings(&mut out, &get);
    if let Some(v) = get("store.kafka.headers") {
        out.set("output", "headers", (v == "true").into());
    }
    // The connector keeps a file across versions it can project to one schema; NONE rolls.
    match get("schema.compatibility").as_deref() {
        None => {}
        Some("NONE") => out.set("output", "schema_change", "roll".into()),
        Some(c @ ("BACKWARD" | "FORWARD" | "FULL")) => {
            out.set("output", "schema_change", "merge".into());
            if c != "BACKWARD" {
                out.warn(format!(
                    "schema.compatibility {c}: the connector projects to the newest schema; the sink's files take the union of the versions (output.schema_change = \"merge\")"
                ));
            }
        }
        Some(c) => out.warn(format!("schema.compatibility {c}: not known, output.schema_change stays merge")),
    }
    for k in ["key.converter", "value.converter"] {
        if let Some(c) = get(k).filter(|c| !c.ends_with("AvroConverter")) {
            out.warn(format!("{k} {c}: the sink reads Confluent Avro (magic byte, schema id) only"));
        }
    }
    match get("behavior.on.null.values").as_deref() {
        Some("ignore") => out.set("output", "tombstones", "skip".into()),
        Some("fail") => out.set("output", "tombstones", "fail".into()),
        Some("write") => out.set("output", "tombstones", "write".into()),
        Some(other) => out.warn(format!("behavior.on.null.values {other}: not known")),
        None => {}
    }
    for k in ["value.converter.schema.registry.url", "key.converter.schema.registry.url", "schema.registry.url"] {
        if let Some(url) = get(k) {
            out.set("schema_registry", "url", url.into());
            break;
        }
    }
    if let Some(t) = get("errors.tolerance") {
        out.set("errors", "tolerance", (if t == "all" { "all" } else { "none" }).into());
    }
    if let Some(t) = get("errors.deadletterqueue.topic.name") {
        out.set("errors", "dead_letter_topic", t.into());
    }
    if let Some(n) = get("tasks.max") {
        if n != "1" {
            out.warn(format!("tasks.max {n}: run that many replicas in one group (kafka.group_instance_id per replica)"));
        }
    }
    let carried = [
        "name",
        "connector.class",
        "topics",
        "topics.regex",
        "flush.size",
        "rotate.interval.ms",
        "rotate.schedule.interval.ms",
        "s3.bucket.name",
        "s3.region",
        "store.url",
        "s3.path.style.access.enabled",
        "aws.access.key.id",
        "aws.secret.access.key",
        "topics.dir",
        "partitioner.class",
        "path.format",
        "partition.duration.ms",
        "timezone",
        "locale",
        "timestamp.extractor",
        "timestamp.field",
        "partition.field.name",
        "format.class",
        "parquet.codec",
        "behavior.on.null.values",
        "value.converter.schema.registry.url",
        "key.converter.schema.registry.url",
        "schema.registry.url",
        "errors.tolerance",
        "errors.deadletterqueue.topic.name",
        "tasks.max",
        "filename.offset.zero.pad.width",
        "file.delim",
        "directory.delim",
        "s3.part.size",
        "s3.ssea.name",
        "s3.sse.kms.key.id",
        "s3.sse.customer.key",
        "s3.acl.canned",
        "s3.object.tagging",
        "s3.credentials.provider.class",
        "s3.credentials.provider.sts.role.arn",
        "s3.credentials.provider.sts.role.external.id",
        "s3.credentials.provider.sts.role.session.name",
        "store.kafka.headers",
        "schema.compatibility",
        "key.converter",
        "value.converter",
        // Equivalent by design, nothing to carry:
        "storage.class",
        "errors.log.enable",
        "errors.log.include.messages",
        "errors.deadletterqueue.context.headers.enable",
        "errors.deadletterqueue.topic.replication.factor",
        "key.converter.schemas.enable",
        "value.converter.schemas.enable",
    ];
    // The unwrap SMT is carried as the flatten layout; other transforms are not.
    let only_unwrap = !unwrap_transforms.is_empty() && config_transforms(config).len() == unwrap_transforms.len();
    let mut transform_keys: Vec<String> = unwrap_transforms.iter().map(|t| format!("transforms.{t}.type")).collect();
    if only_unwrap {
        transform_keys.push("transforms".into());
    }
    for k in config.keys() {
        if let Some(t) = unwrap_transforms.iter().find(|t| k.starts_with(&format!("transforms.{t}.")) && !transform_keys.contains(k)) {
            out.warn(format!(
                "{k}: the flatten layout (what transform {t} did) has its own columns (__op, __deleted, __source_*); not carried"
            ));
            continue;
        }
        if !carried.contains(&k.as_str()) && !transform_keys.contains(k) {
            out.warn(format!("{k}: no equivalent, not carried"));
        }
    }
    out.render()
}

/// The connector's file names: `<topic><file.delim><partition><file.delim><padded offset>`, so
/// a migrated connector keeps its layout.
fn import_names(out: &mut Out, get: &impl Fn(&str) -> Option<String>) {
    out.set("output", "file_naming", "confluent".into());
    match get("filename.offset.zero.pad.width").map(|w| w.parse::<i64>()) {
        None => out.set("output", "offset_pad_width", 10.into()),
        Some(Ok(w)) if (1..=19).contains(&w) => out.set("output", "offset_pad_width", w.into()),
        Some(_) => out.warn("filename.offset.zero.pad.width: not a width of 1 .. 19, output.offset_pad_width stays 10".into()),
    }
    if let Some(d) = get("file.delim") {
        out.set("output", "file_delim", d.into());
    }
    if let Some(d) = get("directory.delim").filter(|d| d != "/") {
        out.warn(format!("directory.delim {d:?}: the sink writes '/' between directories"));
    }
}

/// Multipart part size, encryption, ACL and credentials of the connector's S3 client.
fn import_object_settings(out: &mut Out, get: &impl Fn(&str) -> Option<String>) {
    if let Some(v) = get("s3.part.size") {
        out.set_int("s3", "multipart_part_bytes", "s3.part.size", &v);
    }
    match get("s3.ssea.name").as_deref() {
        None | Some("") => {}
        Some(v @ ("AES256" | "aws:kms")) => out.set("s3", "sse", v.into()),
        Some(v) => out.warn(format!("s3.ssea.name {v}: not AES256 or aws:kms, not carried")),
    }
    if let Some(k) = get("s3.sse.kms.key.id").filter(|k| !k.is_empty()) {
        out.set("s3", "sse_kms_key_id", k.into());
    }
    if get("s3.sse.customer.key").is_some_and(|k| !k.is_empty()) {
        out.set("s3", "sse", "sse-c".into());
        out.warn("s3.sse.customer.key is not copied into the file (a secret): set KPS__S3__SSE_CUSTOMER_KEY in the service's environment".into());
    }
    if let Some(acl) = get("s3.acl.canned").filter(|a| !a.is_empty()) {
        out.set("s3", "acl", acl.into());
    }
    if get("s3.object.tagging").as_deref() == Some("true") {
        out.warn("s3.object.tagging: the connector tags each object with its offsets and record count; the sink's s3.tags are fixed tags".into());
    }
    if let Some(class) = get("s3.credentials.provider.class") {
        let short = class.rsplit('.').next().unwrap_or(&class);
        let source = match short {
            "DefaultAWSCredentialsProviderChain" | "DefaultCredentialsProvider" => Some("auto"),
            "EnvironmentVariableCredentialsProvider" => Some("environment"),
            "WebIdentityTokenCredentialsProvider" => Some("web_identity"),
            "ProfileCredentialsProvider" => Some("profile"),
            "InstanceProfileCredentialsProvider" => Some("instance"),
            "ContainerCredentialsProvider" | "EC2ContainerCredentialsProviderWrapper" => Some("container"),
            "AwsAssumeRoleCredentialsProvider" => Some("auto"),
            _ => None,
        };
        match source {
            Some(s) => out.set("s3", "credentials", s.into()),
            None => out.warn(format!("s3.credentials.provider.class {class}: no equivalent, the default chain (s3.credentials = \"auto\") is used")),
        }
    }
    for (from, to) in [
        ("s3.credentials.provider.sts.role.arn", "role_arn"),
        ("s3.credentials.provider.sts.role.external.id", "external_id"),
        ("s3.credentials.provider.sts.role.session.name", "session_name"),
    ] {
        if let Some(v) = get(from).filter(|v| !v.is_empty()) {
            out.set("s3", to, v.into());
        }
    }
}

/// The names in `transforms`.
fn config_transforms(config: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    let list = config.get("transforms").and_then(|v| v.as_str()).unwrap_or_default();
    list.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// The transforms that are Debezium's `ExtractNewRecordState` (the unwrap SMT).
fn unwrap_transforms(config: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    config_transforms(config)
        .into_iter()
        .filter(|t| {
            config.get(&format!("transforms.{t}.type")).and_then(|v| v.as_str()).is_some_and(|ty| ty.ends_with("ExtractNewRecordState"))
        })
        .collect()
}

/// TimeBasedPartitioner (and its Hourly/Daily presets) with the Record extractor: the path
/// format in Joda syntax becomes ours, the time zone a fixed offset.
fn import_time_partitioner(out: &mut Out, class: &str, get: &impl Fn(&str) -> Option<String>, field_prefix: &str) {
    let format = if class.ends_with("HourlyPartitioner") {
        Some("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH".to_string())
    } else if class.ends_with("DailyPartitioner") {
        Some("'year'=YYYY/'month'=MM/'day'=dd".to_string())
    } else {
        get("path.format")
    };
    let Some(format) = format else {
        out.warn(format!("partitioner.class {class} without path.format: not carried"));
        return;
    };
    match (get("timestamp.extractor").as_deref(), get("timestamp.field")) {
        (Some("Record"), _) => {}
        (Some("RecordField"), Some(field)) => out.set("output", "timestamp_field", format!("{field_prefix}{field}").into()),
        (Some(other), _) => out.warn(format!("timestamp.extractor {other}: the sink partitions by the record's Kafka timestamp (Record)")),
        (None, _) => out.warn("timestamp.extractor missing (the connector's default is Wallclock): the sink partitions by the record's Kafka timestamp (Record)".into()),
    }
    let path = match joda_to_path(&format) {
        Ok(p) => p,
        Err(e) => {
            out.warn(format!("path.format {format:?}: {e}; not carried"));
            return;
        }
    };
    out.set("output", "partitioner", "time".into());
    out.set("output", "path_format", path.into());
    match get("timezone").as_deref() {
        None | Some("UTC") | Some("Etc/UTC") | Some("GMT") => out.set("output", "timezone", "UTC".into()),
        Some(tz) if tz.starts_with('+') || tz.starts_with('-') || tz.parse::<chrono_tz::Tz>().is_ok() => {
            out.set("output", "timezone", tz.into())
        }
        Some(tz) => out.warn(format!("timezone {tz}: not a fixed offset or a zone name; output.timezone stays UTC")),
    }
}

/// `'dt'=YYYY-MM-dd/'hr'=HH` → `dt={YYYY}-{MM}-{DD}/hr={HH}`.
fn joda_to_path(joda: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = joda.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            for q in chars.by_ref() {
                if q == '\'' {
                    break;
                }
                out.push(q);
            }
            continue;
        }
        if c.is_ascii_alphabetic() {
            let mut run = c.to_string();
            while chars.peek() == Some(&c) {
                run.push(c);
                chars.next();
            }
            out.push_str(match run.as_str() {
                "YYYY" | "yyyy" => "{YYYY}",
                "MM" => "{MM}",
                "dd" => "{DD}",
                "HH" => "{HH}",
                "mm" => "{mm}",
                other => return Err(format!("the pattern {other:?} has no equivalent")),
            });
            continue;
        }
        out.push(c);
    }
    Ok(out)
}

#[derive(Default)]
struct Out {
    table: Table,
    warnings: Vec<String>,
}

impl Out {
    fn set(&mut self, section: &str, key: &str, value: toml::Value) {
        let s = self.table.entry(section).or_insert_with(|| toml::Value::Table(Table::new()));
        if let toml::Value::Table(t) = s {
            t.insert(key.to_string(), value);
        }
    }

    fn set_int(&mut self, section: &str, key: &str, from: &str, raw: &str) {
        match raw.trim_matches('"').parse::<i64>() {
            Ok(n) if n > 0 => self.set(section, key, n.into()),
            _ => self.warn(format!("{from} {raw:?}: not a positive integer, not carried")),
        }
    }

    fn warn(&mut self, w: String) {
        self.warnings.push(w);
    }

    fn render(self) -> Result<String, String> {
        let body = toml::to_string_pretty(&self.table).map_err(|e| e.to_string())?;
        let mut out = String::from("# kafka-parquet-sink configuration imported from a Confluent S3 sink connector\n");
        for w in &self.warnings {
            out.push_str(&format!("# warning: {w}\n"));
        }
        out.push('\n');
        out.push_str(&body);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_connector_becomes_a_valid_config() -> Result<(), Box<dyn std::error::Error>> {
        let json = r#"{"name": "minio-s3-sink", "config": {
            "connector.class": "io.confluent.connect.s3.S3SinkConnector", "tasks.max": "1",
            "topics": "supabase-habit.public.tasks", "s3.bucket.name": "datalake", "s3.region": "us-east-1",
            "store.url": "http://minio:9000", "s3.path.style.access.enabled": "true", "topics.dir": "bronze/cdc/tasks/topics",
            "flush.size": "100", "rotate.interval.ms": "60000", "rotate.schedule.interval.ms": "60000",
            "storage.class": "io.confluent.connect.s3.storage.S3Storage", "format.class": "io.confluent.connect.s3.format.parquet.ParquetFormat",
            "parquet.codec": "snappy", "partitioner.class": "io.confluent.connect.storage.partitioner.DefaultPartitioner",
            "behavior.on.null.values": "ignore", "aws.access.key.id": "minioadmin", "aws.secret.access.key": "minioadmin",
            "value.converter": "io.confluent.connect.avro.AvroConverter", "value.converter.schema.registry.url": "http://schema-registry:8087",
            "s3.compression.type": "gzip"}}"#;
        let toml_text = import(json)?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.toml");
        std::fs::write(&path, &toml_text)?;
        let c = crate::config::Config::load_from(Some(&path), Vec::<(String, String)>::new())?;
        assert_eq!(c.kafka.group_id, "connect-minio-s3-sink");
        assert_eq!(c.flush.max_records, 100);
        assert_eq!(c.flush.rotate_interval_ms, 60_000);
        assert_eq!((c.s3.endpoint.as_str(), c.s3.allow_http, c.output.prefix.as_str()), ("http://minio:9000", true, "bronze/cdc/tasks"));
        assert_eq!(c.schema_registry.url, "http://schema-registry:8087");
        assert!(!toml_text.contains("secret_access_key"), "secret copied:\n{toml_text}");
        assert!(toml_text.contains("# warning: aws.access.key.id / aws.secret.access.key"), "{toml_text}");
        assert!(!toml_text.contains("minioadmin"), "credentials copied:\n{toml_text}");
        assert!(toml_text.contains("# warning: s3.compression.type: no equivalent"), "{toml_text}");
        assert!(toml_text.contains("# warning: rotate.interval.ms"), "{toml_text}");
        assert_eq!((c.output.file_naming, c.output.offset_pad_width), (crate::config::FileNaming::Confluent, 10), "the connector's names");
        Ok(())
    }

    #[test]
    fn names_codecs_encryption_credentials_and_headers_are_carried() -> Result<(), Box<dyn std::error::Error>> {
        let json = r##"{"topics": "t", "parquet.codec": "zstd", "filename.offset.zero.pad.width": "12", "file.delim": "_",
            "directory.delim": "#", "s3.part.size": "26214400", "s3.ssea.name": "aws:kms", "s3.sse.kms.key.id": "arn:aws:kms:k",
            "s3.acl.canned": "bucket-owner-full-control", "s3.object.tagging": "true", "store.kafka.headers": "true",
            "s3.credentials.provider.class": "io.confluent.connect.s3.auth.AwsAssumeRoleCredentialsProvider",
            "s3.credentials.provider.sts.role.arn": "arn:aws:iam::1:role/sink", "s3.credentials.provider.sts.role.external.id": "x1",
            "schema.compatibility": "BACKWARD", "value.converter": "org.apache.kafka.connect.json.JsonConverter"}"##;
        let toml_text = import(json)?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.toml");
        std::fs::write(&path, &toml_text)?;
        let c = crate::config::Config::load_from(Some(&path), Vec::<(String, String)>::new())?;
        let o = &c.output;
        assert_eq!((o.compression, o.offset_pad_width, o.file_delim.as_str(), o.headers), (crate::config::Codec::Zstd, 12, "_", true), "{toml_text}");
        assert_eq!((c.s3.sse, c.s3.sse_kms_key_id.as_str(), c.s3.acl.as_str()), (crate::config::Sse::Kms, "arn:aws:kms:k", "bucket-owner-full-control"));
        assert_eq!((c.s3.multipart_part_bytes, c.s3.role_arn.as_str(), c.s3.external_id.as_str()), (26_214_400, "arn:aws:iam::1:role/sink", "x1"));
        assert_eq!(c.output.schema_change, crate::config::SchemaChange::Merge, "BACKWARD merges");
        for w in ["directory.delim \"#\"", "s3.object.tagging", "value.converter org.apache.kafka.connect.json.JsonConverter"] {
            assert!(toml_text.contains(&format!("# warning: {w}")), "no warning for {w}:\n{toml_text}");
        }
        Ok(())
    }

    #[test]
    fn regexes_and_time_partitioners_are_carried() -> Result<(), Box<dyn std::error::Error>> {
        let json = r#"{"topics.regex": "supabase-habit\\.public\\..*", "partitioner.class": "io.confluent.connect.storage.partitioner.TimeBasedPartitioner",
            "path.format": "'dt'=YYYY-MM-dd", "partition.duration.ms": "3600000", "timezone": "UTC", "topics.dir": "lake",
            "behavior.on.null.values": "fail", "flush.size": "zero"}"#;
        let t = import(json)?;
        let parsed: toml::Table = toml::from_str(&t)?;
        let topics = parsed.get("kafka").and_then(|k| k.get("topics")).and_then(|v| v.as_array()).ok_or("no kafka.topics")?;
        assert_eq!(topics[0].as_str(), Some(r"^(supabase-habit\.public\..*)$"), "topics.regex carried anchored:\n{t}");
        let output = parsed.get("output").ok_or("no [output]")?;
        assert_eq!(output.get("partitioner").and_then(|v| v.as_str()), Some("time"), "{t}");
        assert_eq!(output.get("path_format").and_then(|v| v.as_str()), Some("dt={YYYY}-{MM}-{DD}"), "{t}");
        for w in ["timestamp.extractor missing", "topics.dir \"lake\"", "flush.size \"zero\""] {
            assert!(t.contains(&format!("# warning: {w}")), "no warning for {w}:\n{t}");
        }
        assert!(t.contains("tombstones = \"fail\""), "{t}");
        assert_eq!(joda_to_path("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH")?, "year={YYYY}/month={MM}/day={DD}/hour={HH}");
        assert!(joda_to_path("YYYY-ww").is_err(), "week numbers have no equivalent");
        let field = import(
            r#"{"partitioner.class": "io.confluent.connect.storage.partitioner.FieldPartitioner", "partition.field.name": "after.user_id",
            "partitioner.class2": "x"}"#,
        )?;
        assert!(field.contains(r#"partition_fields = ["after.user_id"]"#), "{field}");
        let by_time = import(
            r#"{"partitioner.class": "io.confluent.connect.storage.partitioner.TimeBasedPartitioner", "path.format": "YYYY",
            "timestamp.extractor": "RecordField", "timestamp.field": "source.ts_ms", "timezone": "America/New_York"}"#,
        )?;
        assert!(
            by_time.contains(r#"timestamp_field = "source.ts_ms""#) && by_time.contains(r#"timezone = "America/New_York""#),
            "{by_time}"
        );
        let unknown_zone = import(
            r#"{"partitioner.class": "io.confluent.connect.storage.partitioner.DailyPartitioner", "timezone": "Mars/Base",
            "timestamp.extractor": "Record"}"#,
        )?;
        assert!(unknown_zone.contains("# warning: timezone Mars/Base"), "{unknown_zone}");
        Ok(())
    }
}
