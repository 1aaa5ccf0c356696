//! `kafka-parquet-sink status`: the running service's `/status`, for a person.

use serde_json::Value;

/// Fetches `<url>/status` and renders it; `Ok((text, running))`.
pub async fn status(url: &str) -> Result<(String, bool), String> {
    let url = format!("{}/status", url.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .get(&url)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("no answer from {url}: {e} (is the sink running, and metrics.listen set?)"))?;
    let doc: Value = resp.json().await.map_err(|e| format!("{url} did not answer JSON: {e}"))?;
    Ok((render(&doc), doc["state"] == "RUNNING"))
}

/// The status document as aligned text: service state, dependencies, one line per partition.
pub fn render(doc: &Value) -> String {
    let s = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = format!("service: {}\n", s(&doc["state"]));
    let deps: Vec<String> = doc["dependencies"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    let up = if d["up"] == true { "up" } else { "DOWN" };
                    match d["last_error"].as_str() {
                        Some(e) => format!("{} {up} ({e})", s(&d["dependency"])),
                        None => format!("{} {up}", s(&d["dependency"])),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&format!("dependencies: {}\n", deps.join(", ")));
    if let Some(location) = doc["object_store"]["location"].as_str().filter(|l| !l.is_empty()) {
        out.push_str(&format!("object store: {location}"));
        if let Some(c) = doc["object_store"]["credentials"].as_str() {
            out.push_str(&format!(", credentials: {c}"));
        }
        out.push('\n');
    }
    let rows: Vec<[String; 6]> = doc["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let flushed = p["last_flush_ms"].as_i64().map_or("-".to_string(), ago);
                    [s(&p["topic"]), s(&p["partition"]), s(&p["state"]), s(&p["committed_offset"]), flushed, s(&p["last_error"])]
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        out.push_str("partitions: none assigned\n");
        return out;
    }
    let head = ["TOPIC", "PARTITION", "STATE", "COMMITTED", "LAST FLUSH", "LAST ERROR"].map(String::from);
    let mut widths = head.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&head).chain(&rows) {
        let cells: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn ago(unix_ms: i64) -> String {
    let now = crate::health::now_ms();
    format!("{}s ago", (now - unix_ms).max(0) / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_states_and_errors() {
        let doc = serde_json::json!({
            "state": "DEGRADED",
            "dependencies": [{"dependency": "kafka", "up": true, "last_error": null}, {"dependency": "object_store", "up": false, "last_error": "connection refused"}],
            "partitions": [{"topic": "t", "partition": 0, "state": "FAILED", "committed_offset": 10, "last_flush_ms": null, "last_error": "offset 10: corrupt"}]
        });
        let text = render(&doc);
        assert!(text.starts_with("service: DEGRADED\n"), "{text}");
        assert!(text.contains("object_store DOWN (connection refused)"), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("t ") && l.contains("FAILED") && l.contains("10") && l.ends_with("offset 10: corrupt")),
            "{text}"
        );
    }
}
