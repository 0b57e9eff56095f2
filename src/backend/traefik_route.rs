//! What an endpoint's labels ask of Traefik v3: the router's protocol, rule, entry points,
//! middlewares and TLS, and its server's scheme. Shared by the `traefik_file` backend and the
//! etcd `traefik` layout, so a label means the same to both.
//!
//! Label values are hostile: names (entry points, middlewares, cert resolvers) must be plain
//! names, a rule may not hold control characters other than tab and newline, and a scheme or
//! protocol outside the known words skips the endpoint with its reason. The values travel
//! through serde (or etcd's JSON) and never through text templates, so quotes and newlines
//! cannot break the file; the checks keep Traefik from receiving a router it would refuse or
//! one that silently lost a middleware.

use crate::model::{Endpoint, Meta};
use crate::template::Template;

/// Router protocol (`rancon.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// An HTTP router and a load balancer of `url`s.
    #[default]
    Http,
    /// A TCP router (`HostSNI`) and a load balancer of `address`es.
    Tcp,
}

/// TLS of a router (`rancon.tls`, `rancon.tls.certresolver`, `rancon.tls.passthrough`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tls {
    /// Certificate resolver (ACME) name.
    pub cert_resolver: Option<String>,
    /// TCP only: pass the TLS connection through to the server undecrypted.
    pub passthrough: bool,
}

/// One endpoint's router and server, as its labels and the backend's defaults say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    /// HTTP or TCP.
    pub protocol: Protocol,
    /// HTTP: the server speaks HTTPS (`rancon.scheme`; ports 443 and 8443 unless set).
    pub https: bool,
    /// The router rule.
    pub rule: String,
    /// Entry points (empty: all of Traefik's).
    pub entry_points: Vec<String>,
    /// Middlewares, in order (`name` or `name@provider`).
    pub middlewares: Vec<String>,
    /// TLS, when the router terminates (or passes through) TLS.
    pub tls: Option<Tls>,
}

/// What a backend uses when labels say nothing.
pub struct Defaults<'a> {
    /// HTTP rule template (``Host(`%NAME%`)``).
    pub rule: &'a Template,
    /// TCP rule template (``HostSNI(`*`)``).
    pub tcp_rule: &'a Template,
    /// Entry points.
    pub entry_points: &'a [String],
}

// Keys in `Registration.private.attrs`. Absent means the default, so a registration written
// before a key existed compares equal while its labels ask for nothing new.
/// The router rule.
pub const RULE: &str = "rule";
const PROTOCOL: &str = "protocol";
const SCHEME: &str = "scheme";
const ENTRY_POINTS: &str = "entry_points";
const MIDDLEWARES: &str = "middlewares";
const TLS: &str = "tls";
const CERT_RESOLVER: &str = "tls_certresolver";
const PASSTHROUGH: &str = "tls_passthrough";

impl Route {
    /// The route `ep`'s labels ask for; `Err` is the reason to skip it (a label's value).
    pub fn from_endpoint(ep: &Endpoint, port: u16, d: &Defaults<'_>) -> Result<Route, String> {
        let label = |k: &str| ep.props.get(k).map(|v| v.trim());
        let protocol = match label("protocol").map(str::to_ascii_lowercase).as_deref() {
            None | Some("http") => Protocol::Http,
            Some("tcp") => Protocol::Tcp,
            Some(other) => {
                return Err(format!(
                    "label protocol={:?}: must be http or tcp",
                    cut(other)
                ));
            }
        };
        let https = match label("scheme").map(str::to_ascii_lowercase).as_deref() {
            None => protocol == Protocol::Http && matches!(port, 443 | 8443),
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(format!(
                    "label scheme={:?}: must be http or https",
                    cut(other)
                ));
            }
        };
        let https = https && protocol == Protocol::Http;
        let rule = match ep.props.get("rule") {
            Some(r) => r.clone(),
            None => {
                let tpl = match protocol {
                    Protocol::Http => d.rule,
                    Protocol::Tcp => d.tcp_rule,
                };
                tpl.render(&ep.props)
                    .map_err(|e| format!("default rule: {e}"))?
            }
        };
        if rule.trim().is_empty() {
            return Err("the router rule is empty".into());
        }
        if rule
            .chars()
            .any(|c| c.is_control() && c != '\t' && c != '\n')
        {
            return Err("the router rule holds control characters".into());
        }
        let entry_points = match ep.props.get("entrypoints") {
            Some(v) => names("entrypoints", v, false)?,
            None => d.entry_points.to_vec(),
        };
        let middlewares = match ep.props.get("middlewares") {
            Some(v) => names("middlewares", v, true)?,
            None => vec![],
        };
        let on = match label("tls") {
            None => None,
            Some(v) if crate::labels::is_true(v) => Some(true),
            Some(v) if crate::labels::is_false(v) => Some(false),
            Some(v) => return Err(format!("label tls={:?}: must be true or false", cut(v))),
        };
        let cert_resolver = match ep.props.get("tls_certresolver") {
            Some(v) => Some(name("tls.certresolver", v.trim(), false)?),
            None => None,
        };
        let passthrough = match label("tls_passthrough") {
            None => false,
            Some(v) if crate::labels::is_true(v) => true,
            Some(v) if crate::labels::is_false(v) => false,
            Some(v) => {
                return Err(format!(
                    "label tls.passthrough={:?}: must be true or false",
                    cut(v)
                ));
            }
        };
        if passthrough && protocol == Protocol::Http {
            return Err("label tls.passthrough: only TCP routers pass TLS through".into());
        }
        let implied = cert_resolver.is_some() || passthrough;
        let tls = match on {
            Some(false) if implied => {
                return Err(
                    "label tls=false contradicts tls.certresolver / tls.passthrough".into(),
                );
            }
            Some(true) => true,
            _ => implied,
        };
        Ok(Route {
            protocol,
            https,
            rule,
            entry_points,
            middlewares,
            tls: tls.then_some(Tls {
                cert_resolver,
                passthrough,
            }),
        })
    }

    /// The route as private attributes; only what differs from the defaults is present.
    pub fn attrs(&self) -> Meta {
        let mut m = Meta::new();
        m.insert(RULE.into(), self.rule.clone());
        if self.protocol == Protocol::Tcp {
            m.insert(PROTOCOL.into(), "tcp".into());
        }
        if self.https {
            m.insert(SCHEME.into(), "https".into());
        }
        if !self.entry_points.is_empty() {
            m.insert(ENTRY_POINTS.into(), self.entry_points.join(","));
        }
        if !self.middlewares.is_empty() {
            m.insert(MIDDLEWARES.into(), self.middlewares.join(","));
        }
        if let Some(t) = &self.tls {
            m.insert(TLS.into(), "true".into());
            if let Some(r) = &t.cert_resolver {
                m.insert(CERT_RESOLVER.into(), r.clone());
            }
            if t.passthrough {
                m.insert(PASSTHROUGH.into(), "true".into());
            }
        }
        m
    }

    /// The route `attrs` wrote (names never hold commas: `names` refuses them).
    pub fn from_attrs(attrs: &Meta) -> Route {
        let get = |k: &str| attrs.get(k).map(String::as_str);
        let list = |k: &str| {
            get(k)
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        Route {
            protocol: if get(PROTOCOL) == Some("tcp") {
                Protocol::Tcp
            } else {
                Protocol::Http
            },
            https: get(SCHEME) == Some("https"),
            rule: get(RULE).unwrap_or("").to_string(),
            entry_points: list(ENTRY_POINTS),
            middlewares: list(MIDDLEWARES),
            tls: (get(TLS) == Some("true")).then(|| Tls {
                cert_resolver: get(CERT_RESOLVER).map(str::to_string),
                passthrough: get(PASSTHROUGH) == Some("true"),
            }),
        }
    }

    /// The server's scheme word.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }
}

/// A comma-separated list of names; an empty list is an error (an empty label is a mistake,
/// and silently routing without a middleware could expose what it guards).
fn names(label: &str, value: &str, provider: bool) -> Result<Vec<String>, String> {
    let list: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|n| name(label, n, provider))
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        return Err(format!("label {label} is empty"));
    }
    Ok(list)
}

/// A Traefik object name: letters, digits, `-`, `_`, `.`, at most 128; with `provider`, an
/// `@provider` suffix of the same characters may follow (a middleware of another provider).
fn name(label: &str, n: &str, provider: bool) -> Result<String, String> {
    let plain = |s: &str| {
        (1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    let ok = match n.split_once('@') {
        Some((a, p)) if provider => plain(a) && plain(p),
        Some(_) => false,
        None => plain(n),
    };
    if ok {
        Ok(n.to_string())
    } else {
        Err(format!(
            "label {label}: {:?} is not a name (letters, digits, `-`, `_`, `.`{})",
            cut(n),
            if provider { ", and `@provider`" } else { "" }
        ))
    }
}

/// At most 40 characters of a value, for a reason.
fn cut(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: &str, labels: &[(&str, &str)]) -> Endpoint {
        let mut props: crate::template::Props = [("name", "web"), ("host", "10.0.0.1")]
            .iter()
            .chain(labels)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        props.insert("port".into(), port.into());
        Endpoint {
            source: "s".into(),
            props,
        }
    }

    fn route(port: u16, labels: &[(&str, &str)]) -> Result<Route, String> {
        let rule = Template::parse("Host(`%NAME%`)").unwrap();
        let tcp = Template::parse("HostSNI(`*`)").unwrap();
        let eps = ["web".to_string()];
        let d = Defaults {
            rule: &rule,
            tcp_rule: &tcp,
            entry_points: &eps,
        };
        Route::from_endpoint(&ep(&port.to_string(), labels), port, &d)
    }

    #[test]
    fn ports_443_and_8443_imply_https_unless_the_label_says() {
        assert!(!route(80, &[]).unwrap().https);
        assert!(route(443, &[]).unwrap().https);
        assert!(route(8443, &[]).unwrap().https);
        assert!(!route(443, &[("scheme", "http")]).unwrap().https);
        assert!(route(8080, &[("scheme", "HTTPS")]).unwrap().https);
        assert!(!route(443, &[("protocol", "tcp")]).unwrap().https);
    }

    #[test]
    fn an_unknown_scheme_or_protocol_is_a_reason_to_skip() {
        let e = route(80, &[("scheme", "ftp")]).unwrap_err();
        assert!(e.contains("scheme"), "{e}");
        let e = route(80, &[("protocol", "udp")]).unwrap_err();
        assert!(e.contains("protocol"), "{e}");
    }

    #[test]
    fn tcp_routers_default_to_every_sni_and_take_tls_labels() {
        let r = route(5432, &[("protocol", "tcp")]).unwrap();
        assert_eq!(r.protocol, Protocol::Tcp);
        assert_eq!(r.rule, "HostSNI(`*`)");
        assert_eq!(r.tls, None);
        let r = route(
            5432,
            &[
                ("protocol", "tcp"),
                ("rule", "HostSNI(`db.example.com`)"),
                ("tls_passthrough", "true"),
            ],
        )
        .unwrap();
        assert_eq!(
            r.tls,
            Some(Tls {
                cert_resolver: None,
                passthrough: true
            })
        );
        assert!(route(80, &[("tls_passthrough", "true")]).is_err());
    }

    #[test]
    fn names_are_checked_and_lists_keep_their_order() {
        let r = route(
            80,
            &[
                ("entrypoints", "websecure, web"),
                ("middlewares", "auth@file,compress"),
                ("tls_certresolver", "le"),
            ],
        )
        .unwrap();
        assert_eq!(r.entry_points, vec!["websecure", "web"]);
        assert_eq!(r.middlewares, vec!["auth@file", "compress"]);
        assert_eq!(r.tls.unwrap().cert_resolver.as_deref(), Some("le"));
        for bad in ["a\nb", "a\"b", "a b", "x@y@z", ",", ""] {
            assert!(route(80, &[("middlewares", bad)]).is_err(), "{bad:?}");
        }
        assert!(route(80, &[("entrypoints", "web@file")]).is_err());
        assert!(route(80, &[("tls", "false"), ("tls_certresolver", "le")]).is_err());
        assert!(route(80, &[("rule", "Host(`a`)\u{0}")]).is_err());
        assert!(route(80, &[("rule", "Host(`a`) &&\n\tPath(`/`)")]).is_ok());
    }

    #[test]
    fn attrs_round_trip_and_the_defaults_add_nothing() {
        let plain = route(80, &[("entrypoints", "")]);
        assert!(plain.is_err(), "an empty entrypoints label is a mistake");
        let r = Route {
            rule: "Host(`x`)".into(),
            ..Default::default()
        };
        assert_eq!(r.attrs().len(), 1, "only the rule: old indexes stay equal");
        let full = route(
            443,
            &[
                ("middlewares", "a,b@file"),
                ("tls", "true"),
                ("tls_certresolver", "le"),
            ],
        )
        .unwrap();
        assert_eq!(Route::from_attrs(&full.attrs()), full);
        let tcp = route(
            1,
            &[
                ("protocol", "tcp"),
                ("tls_passthrough", "yes"),
                ("tls", "1"),
            ],
        )
        .unwrap();
        assert_eq!(Route::from_attrs(&tcp.attrs()), tcp);
    }
}
