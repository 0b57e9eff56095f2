//! Meaning checks after figment has checked shape: every problem is collected, none stops the rest.

use super::report::{ConfigError, Problem, origin_of};
use super::{
    BackendConfig, ClientTls, ConsulBackendConfig, ConsulMode, Loaded, RancherSourceConfig,
    SourceConfig, StaticSourceConfig, TraefikFileConfig,
};
use crate::source::static_file::read_services_file;
use crate::template::Template;
use regex::Regex;
use std::sync::LazyLock;

static COMPONENT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_]*$").unwrap());
static OWNER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9_-]*$").unwrap());

struct Collector<'a> {
    loaded: &'a Loaded,
    problems: Vec<Problem>,
}

impl Collector<'_> {
    fn add(&mut self, key: String, message: impl Into<String>) {
        let origin = origin_of(&self.loaded.figment, &key);
        self.problems.push(Problem {
            key,
            message: message.into(),
            origin,
        });
    }

    fn template(&mut self, key: String, src: &str) {
        if let Err(e) = Template::parse(src) {
            self.add(key, format!("malformed template {src:?}: {e}"));
        }
    }
}

/// Checks what figment cannot: names, templates, references, files. Returns every problem.
pub fn validate(loaded: &Loaded) -> Result<(), ConfigError> {
    let raw = &loaded.raw;
    let mut c = Collector {
        loaded,
        problems: Vec::new(),
    };
    if raw.label_prefix.is_empty() || raw.label_prefix.contains(char::is_whitespace) {
        c.add(
            "label_prefix".into(),
            "must be non-empty and without spaces",
        );
    }
    if !OWNER.is_match(&raw.owner) {
        c.add(
            "owner".into(),
            "must match ^[a-z0-9][a-z0-9_-]*$ (it becomes a tag)",
        );
    }
    if raw.interval.as_millis() < 100 {
        c.add("interval".into(), "must be at least 100ms");
    }
    c.template("name".into(), &raw.name);
    if !(0.0..=1.0).contains(&raw.max_deregister_fraction) {
        c.add(
            "max_deregister_fraction".into(),
            "must be between 0.0 and 1.0",
        );
    }
    if raw.shutdown_timeout.is_zero() {
        c.add("shutdown_timeout".into(), "must be more than 0s");
    }
    if raw.http.hangup_after.is_some_and(|d| d < raw.interval) {
        c.add(
            "http.hangup_after".into(),
            "must be at least `interval`, or /health fails between two healthy rounds",
        );
    }
    if let Some(l) = &raw.leader {
        if let Some(u) = &l.url {
            check_http_url(&mut c, "leader.url".into(), u);
        }
        match raw.backends.get(&l.backend) {
            Some(BackendConfig::Consul(_)) if l.url.is_some() => {}
            Some(BackendConfig::Consul(k))
                if Template::parse(&k.url).is_ok_and(|t| t.is_literal()) => {}
            Some(BackendConfig::Consul(_)) => c.add(
                "leader.backend".into(),
                format!(
                    "backend {:?} has placeholders in its url; set leader.url to one agent",
                    l.backend
                ),
            ),
            _ => c.add(
                "leader.backend".into(),
                format!(
                    "names {:?}, which is not a configured consul backend",
                    l.backend
                ),
            ),
        }
        if !(10..=86_400).contains(&l.ttl.as_secs()) {
            c.add(
                "leader.ttl".into(),
                "Consul accepts session TTLs from 10s to 24h",
            );
        }
        if l.key
            .as_deref()
            .is_some_and(|k| k.trim_matches('/').is_empty())
        {
            c.add("leader.key".into(), "must not be empty");
        }
    }
    if raw.sources.is_empty() {
        c.add(
            "sources".into(),
            "no source configured: add a [sources.<name>] table",
        );
    }
    if raw.backends.is_empty() {
        c.add(
            "backends".into(),
            "no backend configured: add a [backends.<name>] table",
        );
    }
    for (name, src) in &raw.sources {
        let key = format!("sources.{name}");
        if !COMPONENT.is_match(name) {
            c.add(key.clone(), "component names must match ^[a-z][a-z0-9_]*$");
        }
        match src {
            SourceConfig::Static(s) => check_static(&mut c, &key, s),
            SourceConfig::Rancher(r) => check_rancher(&mut c, &key, r),
        }
    }
    for (name, be) in &raw.backends {
        let key = format!("backends.{name}");
        if !COMPONENT.is_match(name) {
            c.add(key.clone(), "component names must match ^[a-z][a-z0-9_]*$");
        }
        for (i, s) in be.sources().unwrap_or_default().iter().enumerate() {
            if !raw.sources.contains_key(s) {
                c.add(
                    format!("{key}.sources.{i}"),
                    format!("names source {s:?}, which is not configured"),
                );
            }
        }
        match be {
            BackendConfig::TraefikFile(t) => check_traefik(&mut c, &key, t),
            BackendConfig::Consul(k) => check_consul(&mut c, &key, k),
            BackendConfig::Etcd(e) => check_etcd(&mut c, &key, e),
        }
    }
    if c.problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError {
            problems: c.problems,
        })
    }
}

fn check_static(c: &mut Collector, key: &str, s: &StaticSourceConfig) {
    if let Some(t) = &s.name {
        c.template(format!("{key}.name"), t);
    }
    if let Some(p) = &s.label_prefix
        && p.is_empty()
    {
        c.add(format!("{key}.label_prefix"), "must not be empty");
    }
    for (i, svc) in s.services.iter().enumerate() {
        if svc.name.is_empty() || svc.host.is_empty() || svc.port == 0 {
            c.add(
                format!("{key}.services.{i}"),
                "needs a non-empty name and host and a non-zero port",
            );
        }
    }
    if let Some(file) = &s.file
        && let Err(e) = read_services_file(file)
    {
        c.add(format!("{key}.file"), e.to_string());
    }
    if s.services.is_empty() && s.file.is_none() {
        c.add(
            key.to_string(),
            "declares no services: set `services` or `file`",
        );
    }
}

fn check_traefik(c: &mut Collector, key: &str, t: &TraefikFileConfig) {
    c.template(format!("{key}.default_rule"), &t.default_rule);
    let ext = t.path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(ext, "toml" | "yaml" | "yml") {
        c.add(
            format!("{key}.path"),
            format!("{} must end in .toml, .yaml or .yml", t.path.display()),
        );
    }
    let parent = t.path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent
        && !dir.is_dir()
    {
        c.add(
            format!("{key}.path"),
            format!("directory {} does not exist", dir.display()),
        );
    }
}

fn check_rancher(c: &mut Collector, key: &str, r: &RancherSourceConfig) {
    match reqwest::Url::parse(&r.url) {
        _ if r.url.is_empty() => c.add(format!("{key}.url"), "missing: set it or RANCHER_URL"),
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        Ok(_) => c.add(
            format!("{key}.url"),
            format!("{:?} must be an http:// or https:// URL", r.url),
        ),
        Err(e) => c.add(
            format!("{key}.url"),
            format!("{:?} is not a URL: {e}", r.url),
        ),
    }
    if r.timeout.is_zero() {
        c.add(format!("{key}.timeout"), "must be more than 0s");
    }
    let has_secret = r.secret_key.is_some() || r.secret_key_file.is_some();
    if r.access_key.is_some() != has_secret {
        c.add(
            format!("{key}.access_key"),
            "access_key and secret_key (or secret_key_file) go together",
        );
    }
    if let Some(f) = &r.secret_key_file
        && !f.is_file()
    {
        c.add(
            format!("{key}.secret_key_file"),
            format!("{} does not exist", f.display()),
        );
    }
    check_tls(c, &format!("{key}.tls"), &r.tls);
    for (field, globs) in [
        ("include_stacks", &r.include_stacks),
        ("exclude_stacks", &r.exclude_stacks),
        ("include_environments", &r.include_environments),
        ("exclude_environments", &r.exclude_environments),
    ] {
        for (i, g) in globs.iter().enumerate() {
            if let Err(e) = globset::Glob::new(g) {
                c.add(format!("{key}.{field}.{i}"), format!("bad glob {g:?}: {e}"));
            }
        }
    }
    if let Some(t) = &r.name {
        c.template(format!("{key}.name"), t);
    }
}

fn check_tls(c: &mut Collector, key: &str, tls: &ClientTls) {
    for (field, file) in [
        ("ca_file", &tls.ca_file),
        ("cert_file", &tls.cert_file),
        ("key_file", &tls.key_file),
    ] {
        if let Some(f) = file
            && !f.is_file()
        {
            c.add(
                format!("{key}.{field}"),
                format!("{} does not exist", f.display()),
            );
        }
    }
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        c.add(
            format!("{key}.cert_file"),
            "cert_file and key_file go together",
        );
    }
    if let Some(n) = &tls.server_name
        && rustls_pki_types::ServerName::try_from(n.as_str()).is_err()
    {
        c.add(
            format!("{key}.server_name"),
            format!("{n:?} is not a DNS name or IP address"),
        );
    }
}

fn check_http_url(c: &mut Collector, key: String, url: &str) {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        Ok(_) => c.add(key, format!("{url:?} must be an http:// or https:// URL")),
        Err(e) => c.add(key, format!("{url:?} is not a URL: {e}")),
    }
}

fn check_consul(c: &mut Collector, key: &str, k: &ConsulBackendConfig) {
    match Template::parse(&k.url) {
        Err(e) => c.add(format!("{key}.url"), format!("malformed template: {e}")),
        Ok(t) => {
            // Placeholders stand for host names; check the rest with a stand-in.
            let sample = t
                .render_with(|_| Some("placeholder.invalid"))
                .unwrap_or_default();
            check_http_url(c, format!("{key}.url"), &sample);
            if !t.is_literal() && k.mode == ConsulMode::Catalog {
                c.add(
                    format!("{key}.url"),
                    "catalog mode writes through one agent: the URL cannot hold placeholders",
                );
            }
        }
    }
    if let Some(u) = &k.discovery_url {
        check_http_url(c, format!("{key}.discovery_url"), u);
    }
    if let Some(f) = &k.token_file
        && !f.is_file()
    {
        c.add(
            format!("{key}.token_file"),
            format!("{} does not exist", f.display()),
        );
    }
    c.template(format!("{key}.id"), &k.id);
    for (i, t) in k.tags.iter().enumerate() {
        c.template(format!("{key}.tags.{i}"), t);
    }
    for (m, t) in &k.meta {
        c.template(format!("{key}.meta.{m}"), t);
        let clean = crate::backend::consul::meta_key(m);
        if clean.is_empty() || crate::backend::consul::RESERVED_META.contains(&clean.as_str()) {
            c.add(
                format!("{key}.meta.{m}"),
                "meta key is empty after sanitising or reserved for rancon's ownership marker",
            );
        }
    }
    if !(1..=1024).contains(&k.concurrency) {
        c.add(format!("{key}.concurrency"), "must be from 1 to 1024");
    }
    if k.timeout.is_zero() {
        c.add(format!("{key}.timeout"), "must be more than 0s");
    }
    if k.node.trim().is_empty() {
        c.add(format!("{key}.node"), "must not be empty");
    }
    if k.check_ttl.is_some_and(|t| t.as_secs() < 1) {
        c.add(format!("{key}.check_ttl"), "must be at least 1s");
    }
    if k.check_deregister_after.is_some_and(|t| t.as_secs() < 60) {
        c.add(
            format!("{key}.check_deregister_after"),
            "Consul's minimum is 1m",
        );
    }
    check_tls(c, &format!("{key}.tls"), &k.tls);
}

fn check_etcd(c: &mut Collector, key: &str, e: &super::EtcdBackendConfig) {
    if e.endpoints.is_empty() {
        c.add(format!("{key}.endpoints"), "needs at least one URL");
    }
    for (i, u) in e.endpoints.iter().enumerate() {
        check_http_url(c, format!("{key}.endpoints.{i}"), u);
    }
    let has_password = e.password.is_some() || e.password_file.is_some();
    if e.username.is_some() != has_password {
        c.add(
            format!("{key}.username"),
            "username and password (or password_file) go together",
        );
    }
    if let Some(f) = &e.password_file
        && !f.is_file()
    {
        c.add(
            format!("{key}.password_file"),
            format!("{} does not exist", f.display()),
        );
    }
    if e.ttl.is_some_and(|t| t.as_secs() < 2) {
        c.add(format!("{key}.ttl"), "must be at least 2s");
    }
    if e.timeout.is_zero() {
        c.add(format!("{key}.timeout"), "must be more than 0s");
    }
    if e.domain.split('.').any(|l| l.is_empty()) {
        c.add(
            format!("{key}.domain"),
            format!("{:?} is not a DNS domain", e.domain),
        );
    }
    check_tls(c, &format!("{key}.tls"), &e.tls);
}
