//! Meaning checks after figment has checked shape: every problem is collected, none stops the
//! rest. The top level is checked here; each component checks itself (`Component::validate`).

use super::report::{ConfigError, Problem, locate};
use super::{Component, Loaded};
use crate::template::Template;
use figment::Figment;
use regex::Regex;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::LazyLock;

static COMPONENT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_]*$").unwrap());
static OWNER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9_-]*$").unwrap());

/// Gathers problems, each with the origin of the value at its key.
pub struct Collector<'a> {
    figment: &'a Figment,
    unloaded: BTreeSet<String>,
    problems: Vec<Problem>,
}

impl<'a> Collector<'a> {
    /// An empty collector for the values of `figment`.
    pub fn new(figment: &'a Figment) -> Self {
        Self {
            figment,
            unloaded: BTreeSet::new(),
            problems: Vec::new(),
        }
    }

    /// Skips problems at or under these keys: their values could not be read, which is
    /// already reported (`Loaded::unloaded`).
    pub fn skipping(mut self, unloaded: &BTreeSet<String>) -> Self {
        self.unloaded = unloaded.clone();
        self
    }

    /// Whether the value at `key`, or one inside it, could not be read: a check that
    /// depends on it (a reference to a component, "none configured") would only guess.
    pub fn unloaded(&self, key: &str) -> bool {
        self.unloaded.iter().any(|u| {
            let inside = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}."));
            inside(key, u) || inside(u, key)
        })
    }

    /// Records a problem at `key` (dotted; list positions as numbers, `sources.0`).
    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        let under = |u: &String| key == *u || key.starts_with(&format!("{u}."));
        if self.unloaded.iter().any(under) {
            return;
        }
        let path: Vec<String> = if key.is_empty() {
            Vec::new()
        } else {
            key.split('.').map(str::to_string).collect()
        };
        let (key, origin) = locate(self.figment, &path);
        self.problems.push(Problem {
            key,
            message: message.into(),
            origin,
        });
    }

    /// A template that must compile.
    pub fn template(&mut self, key: String, src: &str) {
        if let Err(e) = Template::parse(src) {
            self.add(key, format!("malformed template {src:?}: {e}"));
        }
    }

    /// An `http://` or `https://` URL with a host and no credentials in it.
    pub fn http_url(&mut self, key: String, url: &str) {
        let shown = redact_userinfo(url);
        match reqwest::Url::parse(url) {
            Ok(u) if !u.username().is_empty() || u.password().is_some() => self.add(
                key,
                format!(
                    "{shown:?} holds credentials; set them in the component's access_key/secret_key, token or username/password instead"
                ),
            ),
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            Ok(_) => self.add(key, format!("{shown:?} must be an http:// or https:// URL")),
            Err(e) => self.add(key, format!("{shown:?} is not a URL: {e}")),
        }
    }

    /// A label prefix (the global one, or a source's override): a prefix that selects
    /// nothing would empty the source and deregister all it fed.
    pub fn label_prefix(&mut self, key: String, prefix: &str) {
        if prefix.is_empty()
            || prefix.contains(char::is_whitespace)
            || prefix.starts_with('.')
            || prefix.ends_with('.')
        {
            self.add(
                key,
                "must be non-empty, without spaces, and not start or end with `.` (labels are `<prefix>.X`)",
            );
        }
    }

    /// A file that must exist.
    pub fn file(&mut self, key: String, path: &Path) {
        if !path.is_file() {
            self.add(key, format!("{} does not exist", path.display()));
        }
    }

    /// Every problem found, or none.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }
}

/// `scheme://user:pass@host…` shown as `scheme://***@host…`.
pub fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// Checks what figment cannot: names, templates, references, files. Returns every problem.
pub fn validate<S: Component, B: Component>(loaded: &Loaded<S, B>) -> Result<(), ConfigError> {
    check(loaded).finish()
}

/// The problems of the top level and of every component; callers may add their own.
pub fn check<'a, S: Component, B: Component>(loaded: &'a Loaded<S, B>) -> Collector<'a> {
    let cfg = &loaded.config;
    let mut c = Collector::new(&loaded.figment).skipping(&loaded.unloaded);
    c.label_prefix("label_prefix".into(), &cfg.label_prefix);
    if !OWNER.is_match(&cfg.owner) {
        c.add(
            "owner",
            "must match ^[a-z0-9][a-z0-9_-]*$ (it becomes a tag)",
        );
    }
    if cfg.interval.as_millis() < 100 || cfg.interval.as_secs() > 7 * 86_400 {
        c.add("interval", "must be from 100ms to 7 days");
    }
    c.template("name".into(), &cfg.name);
    if cfg.name.trim().is_empty() {
        c.add(
            "name",
            "must not be empty: every service would be named \"\"",
        );
    }
    if !(0.0..=1.0).contains(&cfg.max_deregister_fraction) {
        c.add("max_deregister_fraction", "must be between 0.0 and 1.0");
    }
    if cfg.max_response_size < 64 << 10 {
        c.add("max_response_size", "must be at least 65536 (bytes)");
    }
    if cfg.shutdown_timeout.is_zero() {
        c.add("shutdown_timeout", "must be more than 0s");
    }
    if cfg.http.hangup_after.is_some_and(|d| d < cfg.interval) && !c.unloaded("interval") {
        c.add(
            "http.hangup_after",
            "must be at least `interval`, or /health fails between two healthy rounds",
        );
    }
    if let Some(l) = &cfg.leader {
        if let Some(u) = &l.url {
            c.http_url("leader.url".into(), u);
        }
        if !(10..=86_400).contains(&l.ttl.as_secs()) {
            c.add("leader.ttl", "Consul accepts session TTLs from 10s to 24h");
        }
        // Consul caps a session's lock-delay at 60s (`structs.MaxLockDelay`).
        if l.lock_delay.as_secs() > 60 {
            c.add("leader.lock_delay", "Consul caps lock-delay at 60s");
        }
        if l.key
            .as_deref()
            .is_some_and(|k| k.trim_matches('/').is_empty())
        {
            c.add("leader.key", "must not be empty");
        }
    }
    cfg.log.validate(&mut c);
    if cfg.sources.is_empty() && !c.unloaded("sources") {
        c.add(
            "sources",
            "no source configured: add a [sources.<name>] table (or set RANCHER_URL and CONSUL_HTTP_ADDR, with neither sources nor backends, for the zero-config start)",
        );
    }
    if cfg.backends.is_empty() && !c.unloaded("backends") {
        c.add(
            "backends",
            "no backend configured: add a [backends.<name>] table (or set RANCHER_URL and CONSUL_HTTP_ADDR, with neither sources nor backends, for the zero-config start)",
        );
    }
    let common = cfg.common();
    for (name, src) in &cfg.sources {
        let key = format!("sources.{name}");
        if !COMPONENT.is_match(name) {
            c.add(key.clone(), "component names must match ^[a-z][a-z0-9_]*$");
        }
        src.validate(&key, &common, &mut c);
    }
    for (name, be) in &cfg.backends {
        let key = format!("backends.{name}");
        if !COMPONENT.is_match(name) {
            c.add(key.clone(), "component names must match ^[a-z][a-z0-9_]*$");
        }
        if be.sources().is_some_and(<[String]>::is_empty) {
            c.add(
                format!("{key}.sources"),
                "is empty: this backend would read nothing and hold nothing; remove the key to read every source",
            );
        }
        for (i, s) in be.sources().unwrap_or_default().iter().enumerate() {
            if !cfg.sources.contains_key(s) && !c.unloaded(&format!("sources.{s}")) {
                c.add(
                    format!("{key}.sources.{i}"),
                    format!("names source {s:?}, which is not configured"),
                );
            }
        }
        be.validate(&key, &common, &mut c);
    }
    c
}
