//! The exact etcd keys the Traefik layout writes for one name, and which keys under a name
//! have the shapes rancon writes.

use crate::backend::traefik_route::Route;

/// The exact keys rancon writes for one name.
pub(super) struct Keys {
    /// `…/routers/<name>/`: every router key is below.
    pub router: String,
    pub rule: String,
    pub service: String,
    /// `…/services/<name>/loadbalancer/servers/`: each server is `<i>/url` below.
    pub servers: String,
}

impl Keys {
    pub fn new(root: &str, name: &str) -> Self {
        Self {
            router: format!("{root}/http/routers/{name}/"),
            rule: format!("{root}/http/routers/{name}/rule"),
            service: format!("{root}/http/routers/{name}/service"),
            servers: format!("{root}/http/services/{name}/loadbalancer/servers/"),
        }
    }

    pub fn server(&self, i: usize) -> String {
        format!("{}{i}/url", self.servers)
    }

    /// The router keys a route asks for besides `rule` and `service` (Traefik's KV provider
    /// reference: `entrypoints/<i>`, `middlewares/<i>`, `tls`, `tls/certresolver`). TLS with
    /// a resolver is the resolver's key alone: a `tls` key beside its own children is not a
    /// shape the KV decoder is documented to take.
    pub fn extras(&self, route: &Route) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, e) in route.entry_points.iter().enumerate() {
            out.push((format!("{}entrypoints/{i}", self.router), e.clone()));
        }
        for (i, m) in route.middlewares.iter().enumerate() {
            out.push((format!("{}middlewares/{i}", self.router), m.clone()));
        }
        match route.tls.as_ref().map(|t| &t.cert_resolver) {
            None => {}
            Some(None) => out.push((format!("{}tls", self.router), "true".into())),
            Some(Some(r)) => out.push((format!("{}tls/certresolver", self.router), r.clone())),
        }
        out
    }

    /// Whether `key` has the shape of a router key `extras` writes.
    pub fn is_extra(&self, key: &str) -> bool {
        let Some(rest) = key.strip_prefix(&self.router) else {
            return false;
        };
        let indexed = |p: &str| {
            rest.strip_prefix(p)
                .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
        };
        matches!(rest, "tls" | "tls/certresolver")
            || indexed("entrypoints/")
            || indexed("middlewares/")
    }

    /// The `i` of a `servers/<i>/url` key rancon could have written.
    pub fn server_index(&self, key: &str) -> Option<usize> {
        let (i, rest) = key.strip_prefix(&self.servers)?.split_once('/')?;
        (rest == "url" && i.bytes().all(|b| b.is_ascii_digit()))
            .then(|| i.parse().ok())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_router_keys_of_the_shapes_rancon_writes_are_its_extras() {
        let k = Keys::new("traefik", "web");
        let r = "traefik/http/routers/web/";
        for ours in ["entrypoints/0", "middlewares/12", "tls", "tls/certresolver"] {
            assert!(k.is_extra(&format!("{r}{ours}")), "{ours}");
        }
        for other in [
            "rule",
            "service",
            "entrypoints/",
            "middlewares/x",
            "tls/options",
            "tls/domains/0/main",
            "priority",
        ] {
            assert!(!k.is_extra(&format!("{r}{other}")), "{other}");
        }
        assert!(!k.is_extra("traefik/http/routers/webx/tls"));
        let route = Route {
            entry_points: vec!["a".into(), "b".into()],
            middlewares: vec!["m@file".into()],
            tls: Some(crate::backend::traefik_route::Tls::default()),
            ..Default::default()
        };
        let extras: Vec<String> = k
            .extras(&route)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            extras,
            [
                format!("{r}entrypoints/0=a"),
                format!("{r}entrypoints/1=b"),
                format!("{r}middlewares/0=m@file"),
                format!("{r}tls=true"),
            ]
        );
        assert!(
            extras
                .iter()
                .all(|e| k.is_extra(e.split('=').next().unwrap()))
        );
    }

    #[test]
    fn only_the_server_url_keys_rancon_writes_are_taken_for_servers() {
        let k = Keys::new("traefik", "web");
        let s = "traefik/http/services/web/loadbalancer/servers/";
        assert_eq!(k.server_index(&format!("{s}12/url")), Some(12));
        assert_eq!(k.server(12), format!("{s}12/url"));
        for other in [
            format!("{s}1/weight"),
            format!("{s}x/url"),
            format!("{s}/url"),
            format!("{s}-1/url"),
            format!("{s}1/url/x"),
            format!("{s}99999999999999999999999999/url"),
            "traefik/http/services/webx/loadbalancer/servers/1/url".into(),
            "traefik/http/routers/web/rule".into(),
        ] {
            assert_eq!(k.server_index(&other), None, "{other}");
        }
    }
}
