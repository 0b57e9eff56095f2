//! Secrets: a string that never shows itself (`Debug`, `Display` and serialization all print
//! `***`), and the one way every component reads a secret given inline or in a file.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A secret value (Rancher secret key, Consul token, etcd password).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the value replaced by `***` (a server's error body
    /// may echo the request's headers).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Text only: a value given as a variable or `--set` is read as text for a text key.
        String::deserialize(d).map(Secret)
    }
}

impl JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "writeOnly": true })
    }
}

/// A secret given inline or in a file. The file wins and is re-read each round
/// (`refresh`), so a rotated token or password needs no restart; a file that cannot be read
/// keeps the previous value (and says so).
#[derive(Debug, Default)]
pub struct SecretSource {
    file: Option<std::path::PathBuf>,
    current: std::sync::RwLock<Option<Secret>>,
}

impl SecretSource {
    /// The inline value, replaced by the file's content from the first `refresh` on.
    pub fn new(inline: Option<Secret>, file: Option<std::path::PathBuf>) -> Self {
        Self {
            file,
            current: std::sync::RwLock::new(inline),
        }
    }

    /// Re-reads the file, if any (without blocking the runtime).
    pub async fn refresh(&self, component: &str) {
        let Some(path) = &self.file else { return };
        match tokio::fs::read_to_string(path).await {
            Ok(t) => {
                let t = t.trim();
                *self.current.write().unwrap_or_else(|p| p.into_inner()) =
                    (!t.is_empty()).then(|| Secret::new(t));
            }
            Err(e) => {
                tracing::warn!(component, file = %path.display(), error = %e, "cannot read the secret's file; keeping the previous value")
            }
        }
    }

    /// The current value.
    pub fn get(&self) -> Option<Secret> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
