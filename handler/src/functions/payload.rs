//! The custom-handler invocation payloads (azure-facts.md A4), parsed defensively: plain strings
//! may arrive JSON-encoded twice, numbers as strings, `ScheduleStatus` as null, keys missing.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InvokeRequest {
    #[serde(rename = "Data", default, deserialize_with = "object_or_null")]
    pub data: Map<String, Value>,
    #[serde(rename = "Metadata", default, deserialize_with = "object_or_null")]
    pub metadata: Map<String, Value>,
}

fn object_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct InvokeResponse {
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Option<Value>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct PayloadError(pub String);

impl InvokeRequest {
    /// Parses straight into the request (no intermediate `Value`: a blob payload is tens of
    /// megabytes); on failure, a second, allocation-free pass tells bad JSON from a bad shape.
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        // Only an object: serde would also fill the struct from an array.
        let parsed = if body.trim_ascii_start().starts_with(b"{") {
            serde_json::from_slice::<InvokeRequest>(body).ok()
        } else {
            None
        };
        parsed.ok_or_else(|| match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Err(e) => PayloadError(format!(
                "the invocation payload is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            )),
            Ok(_) if !body.trim_ascii_start().starts_with(b"{") => {
                PayloadError("the invocation payload must be an object with Data and Metadata".into())
            }
            Ok(_) => PayloadError("Data and Metadata must be JSON objects when present".into()),
        })
    }

    /// Moves `Data.<binding>` out of the request (same lookup as [`binding`](Self::binding), no
    /// decoding): for large values such as blob content, which must not be copied.
    pub fn take_binding(&mut self, name: &str) -> Option<Value> {
        let key = if self.data.contains_key(name) {
            name.to_owned()
        } else if let Some(k) = self.data.keys().find(|k| k.eq_ignore_ascii_case(name)) {
            k.clone()
        } else if self.data.len() == 1 {
            self.data.keys().next()?.clone()
        } else {
            return None;
        };
        self.data.remove(&key)
    }

    /// `Data.<binding>`, or the only entry when the binding name differs (tolerance for
    /// hand-written payloads), with double-encoded JSON undone.
    pub fn binding(&self, name: &str) -> Option<Value> {
        let raw = self
            .data
            .get(name)
            .or_else(|| self.data.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
            .or_else(|| (self.data.len() == 1).then(|| self.data.values().next()).flatten())?;
        Some(decode_nested(raw))
    }

    /// `Metadata.sys`, when the host sent it.
    pub fn sys(&self) -> SysMetadata {
        let sys = self.metadata.get("sys").map(decode_nested);
        let field = |key: &str| sys.as_ref().and_then(|s| s.get(key)).and_then(as_text);
        SysMetadata {
            method_name: field("MethodName"),
            utc_now: field("UtcNow").and_then(|t| parse_time(&t)),
            rand_guid: field("RandGuid"),
        }
    }

    /// A metadata value as text (binding data strings arrive JSON-encoded).
    pub fn metadata_text(&self, key: &str) -> Option<String> {
        self.metadata.get(key).and_then(as_text)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SysMetadata {
    pub method_name: Option<String>,
    pub utc_now: Option<DateTime<FixedOffset>>,
    pub rand_guid: Option<String>,
}

/// Undoes the host's extra JSON encoding: a string that is itself a JSON string, object or array
/// becomes that value. Other strings stay as they are.
pub fn decode_nested(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let t = s.trim_start();
            if (t.starts_with('"') || t.starts_with('{') || t.starts_with('['))
                && let Ok(inner) = serde_json::from_str::<Value>(s)
            {
                return inner;
            }
            v.clone()
        }
        other => other.clone(),
    }
}

/// A scalar as text: strings (decoded once more if double-encoded), numbers and booleans.
pub fn as_text(v: &Value) -> Option<String> {
    match decode_nested(v) {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Booleans, also as `"true"`/`"True"` strings.
pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        other => as_text(other).and_then(|s| match s.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }),
    }
}

/// Integers, also as numeric strings (`"1"`).
pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        other => as_text(other).and_then(|s| s.trim().parse().ok()),
    }
}

/// ISO 8601 times as .NET writes them (7 fractional digits, `Z` or an offset, or none = UTC).
/// `0001-01-01…` (.NET's default) means "never".
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    let s = s.trim();
    if s.starts_with("0001-01-01") {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok().or_else(|| {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc().fixed_offset())
    })
}

/// Blob content with `dataType: binary` arrives base64-encoded.
pub fn as_bytes(v: &Value) -> Result<Vec<u8>, PayloadError> {
    let decode = |text: &str| {
        STANDARD.decode(text.trim()).map_err(|_| PayloadError("the blob content is not valid base64".into()))
    };
    match v {
        // The usual case, decoded in place: base64 never starts with a quote, so this string
        // is not JSON-encoded twice.
        Value::String(s) if !s.trim_start().starts_with('"') => decode(s),
        other => {
            decode(&as_text(other).ok_or_else(|| PayloadError("the blob content must be a base64 string".into()))?)
        }
    }
}

/// The timer binding's value (`TimerInfo`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimerInfo {
    pub is_past_due: bool,
    pub last: Option<DateTime<FixedOffset>>,
    pub next: Option<DateTime<FixedOffset>>,
}

impl TimerInfo {
    /// Parses a `TimerInfo`; missing or null parts are simply absent.
    pub fn from_value(v: Option<&Value>) -> Result<Self, PayloadError> {
        let Some(v) = v else { return Ok(TimerInfo::default()) };
        let v = decode_nested(v);
        let obj = match &v {
            Value::Object(o) => o,
            Value::Null => return Ok(TimerInfo::default()),
            _ => return Err(PayloadError("the timer binding must be a TimerInfo object".into())),
        };
        let get = |k: &str| obj.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)).map(|(_, v)| v);
        let is_past_due = match get("IsPastDue") {
            None | Some(Value::Null) => false,
            Some(v) => as_bool(v).ok_or_else(|| PayloadError("IsPastDue must be true or false".into()))?,
        };
        let status = get("ScheduleStatus").map(decode_nested);
        let status_time = |k: &str| {
            status
                .as_ref()
                .and_then(|s| s.as_object())
                .and_then(|s| s.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)).map(|(_, v)| v))
                .and_then(as_text)
                .and_then(|t| parse_time(&t))
        };
        Ok(TimerInfo { is_past_due, last: status_time("Last"), next: status_time("Next") })
    }
}

impl InvokeResponse {
    pub fn with_logs(logs: Vec<String>) -> Self {
        InvokeResponse { logs, ..Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn double_encoded_strings_are_unwrapped_once() {
        assert_eq!(as_text(&json!("\"hello\"")).unwrap(), "hello");
        assert_eq!(as_text(&json!("hello")).unwrap(), "hello");
        assert_eq!(as_text(&json!("\"p123/scan.pdf\"")).unwrap(), "p123/scan.pdf");
        assert_eq!(as_i64(&json!("1")), Some(1));
        assert_eq!(as_i64(&json!("\"1\"")), Some(1));
        assert_eq!(decode_nested(&json!("{\"a\":1}")), json!({"a": 1}));
    }

    #[test]
    fn timer_info_with_and_without_status() {
        let full = json!({
            "Schedule": {"AdjustForDST": true},
            "ScheduleStatus": {"Last": "2025-07-01T06:00:00.0011+00:00", "Next": "2025-07-02T06:00:00+00:00",
                               "LastUpdated": "2025-07-01T06:00:00.0011+00:00"},
            "IsPastDue": false
        });
        let t = TimerInfo::from_value(Some(&full)).unwrap();
        assert!(!t.is_past_due);
        assert_eq!(t.next.unwrap().to_rfc3339(), "2025-07-02T06:00:00+00:00");
        let null_status = json!({"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": "True"});
        let t = TimerInfo::from_value(Some(&null_status)).unwrap();
        assert!(t.is_past_due);
        assert_eq!(t.last, None);
        let first_run = json!({"ScheduleStatus": {"Last": "0001-01-01T00:00:00", "Next": "2025-07-02T06:00:00"}});
        let t = TimerInfo::from_value(Some(&first_run)).unwrap();
        assert_eq!(t.last, None);
        assert!(t.next.is_some());
        assert_eq!(TimerInfo::from_value(None).unwrap(), TimerInfo::default());
        assert!(TimerInfo::from_value(Some(&json!(42))).is_err());
        assert!(TimerInfo::from_value(Some(&json!({"IsPastDue": "maybe"}))).is_err());
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        for body in [&b""[..], b"[]", b"42", b"{\"Data\": 5}", b"{\"Metadata\": []}", b"\xff\xfe"] {
            assert!(InvokeRequest::parse(body).is_err(), "{body:?}");
        }
        let ok = InvokeRequest::parse(b"{\"Data\": null}").unwrap();
        assert!(ok.data.is_empty());
    }

    #[test]
    fn sys_metadata_and_blob_bytes() {
        let req = InvokeRequest::parse(
            br#"{"Data":{"recordBlob":"JVBERi0xLjcK"},"Metadata":{"name":"\"p123/scan.pdf\"",
                "sys":{"MethodName":"RecordUploaded","UtcNow":"2025-07-02T06:00:00.004Z","RandGuid":"35e6"}}}"#,
        )
        .unwrap();
        assert_eq!(req.sys().method_name.as_deref(), Some("RecordUploaded"));
        assert!(req.sys().utc_now.is_some());
        assert_eq!(req.metadata_text("name").as_deref(), Some("p123/scan.pdf"));
        assert_eq!(as_bytes(&req.binding("recordBlob").unwrap()).unwrap(), b"%PDF-1.7\n");
        assert!(as_bytes(&json!("not base64!")).is_err());
        // Encoded twice, the content still decodes; taken out, it is gone from the request.
        assert_eq!(as_bytes(&json!("\"JVBERi0xLjcK\"")).unwrap(), b"%PDF-1.7\n");
        let mut req = req;
        assert_eq!(req.take_binding("RECORDBLOB"), Some(json!("JVBERi0xLjcK")));
        assert_eq!(req.take_binding("recordBlob"), None);
    }
}
