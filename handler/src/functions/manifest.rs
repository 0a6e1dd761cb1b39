//! The function.json files, as bindings the handler can act on.

use serde::Deserialize;

include!(concat!(env!("OUT_DIR"), "/functions.rs"));

#[derive(Debug, Clone, Deserialize)]
pub struct FunctionJson {
    pub bindings: Vec<Binding>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type")]
pub enum Binding {
    #[serde(rename = "httpTrigger", rename_all = "camelCase")]
    HttpTrigger {
        name: String,
        direction: String,
        #[serde(default = "default_auth_level")]
        auth_level: String,
        #[serde(default)]
        methods: Vec<String>,
        route: Option<String>,
    },
    #[serde(rename = "http")]
    Http { name: String, direction: String },
    #[serde(rename = "timerTrigger", rename_all = "camelCase")]
    TimerTrigger {
        name: String,
        direction: String,
        schedule: String,
        #[serde(default)]
        run_on_startup: bool,
        use_monitor: Option<bool>,
    },
    #[serde(rename = "blobTrigger", rename_all = "camelCase")]
    BlobTrigger {
        name: String,
        direction: String,
        path: String,
        connection: Option<String>,
        data_type: Option<String>,
        source: Option<String>,
    },
    #[serde(other)]
    Other,
}

fn default_auth_level() -> String {
    "function".into()
}

#[derive(Debug, Clone)]
pub struct Function {
    pub name: &'static str,
    pub bindings: Vec<Binding>,
}

#[derive(Debug, thiserror::Error)]
#[error("functions/{name}/function.json: {problem}")]
pub struct ManifestError {
    pub name: String,
    pub problem: String,
}

/// Parses one function.json text.
pub fn parse(name: &'static str, text: &str) -> Result<Function, ManifestError> {
    let json: FunctionJson =
        serde_json::from_str(text).map_err(|e| ManifestError { name: name.into(), problem: e.to_string() })?;
    Ok(Function { name, bindings: json.bindings })
}

/// Every embedded function.json, parsed.
pub fn all() -> Result<Vec<Function>, ManifestError> {
    FUNCTION_JSON.iter().map(|(name, text)| parse(name, text)).collect()
}

/// The name of `function`'s trigger binding in its function.json (its value arrives under
/// `Data.<name>`), or `fallback` if the manifest cannot say.
pub fn trigger_binding_of(function: &str, fallback: &str) -> String {
    all()
        .ok()
        .and_then(|fs| fs.into_iter().find(|f| f.name == function))
        .and_then(|f| f.trigger_binding().map(str::to_owned))
        .unwrap_or_else(|| fallback.to_owned())
}

/// A timer function's schedule and options.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerSpec {
    pub function: &'static str,
    pub binding: String,
    pub schedule: String,
    pub run_on_startup: bool,
}

impl Function {
    pub fn timer(&self) -> Option<TimerSpec> {
        self.bindings.iter().find_map(|b| match b {
            Binding::TimerTrigger { name, schedule, run_on_startup, .. } => Some(TimerSpec {
                function: self.name,
                binding: name.clone(),
                schedule: schedule.clone(),
                run_on_startup: *run_on_startup,
            }),
            _ => None,
        })
    }

    /// The HTTP trigger, if this is an HTTP function.
    pub fn http_trigger(&self) -> Option<(&str, &[String], &str)> {
        self.bindings.iter().find_map(|b| match b {
            Binding::HttpTrigger { auth_level, methods, route, .. } => {
                Some((auth_level.as_str(), methods.as_slice(), route.as_deref().unwrap_or(self.name)))
            }
            _ => None,
        })
    }

    /// The name of the trigger binding, whose value arrives under `Data.<name>`.
    pub fn trigger_binding(&self) -> Option<&str> {
        self.bindings.iter().find_map(|b| match b {
            Binding::HttpTrigger { name, .. }
            | Binding::TimerTrigger { name, .. }
            | Binding::BlobTrigger { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }
}

/// Expands `%AppSetting%` in a schedule, as the host does.
pub fn expand_settings(value: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else {
            return Err(format!("unclosed % in `{value}`"));
        };
        let name = &after[..end];
        out.push_str(&lookup(name).ok_or_else(|| format!("app setting {name} is not set"))?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_function_json_parses() {
        let all = all().unwrap();
        assert!(!all.is_empty());
        for f in &all {
            assert!(f.trigger_binding().is_some(), "{} has a trigger", f.name);
            assert!(!f.bindings.contains(&Binding::Other), "{} has only known bindings", f.name);
        }
    }

    #[test]
    fn app_settings_expand() {
        let lookup = |n: &str| (n == "SWEEP").then(|| "0 */5 * * * *".to_owned());
        assert_eq!(expand_settings("%SWEEP%", lookup).unwrap(), "0 */5 * * * *");
        assert_eq!(expand_settings("0 0 6 * * *", lookup).unwrap(), "0 0 6 * * *");
        assert!(expand_settings("%MISSING%", lookup).is_err());
        assert!(expand_settings("%SWEEP", lookup).is_err());
    }
}
