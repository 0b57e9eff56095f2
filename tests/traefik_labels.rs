//! The Traefik labels (`rancon.scheme`, `.entrypoints`, `.middlewares`, `.tls`,
//! `.tls.certresolver`, `.tls.passthrough`, `.protocol=tcp`) in the file backend, in the
//! shapes of Traefik v3's dynamic configuration (traefik/traefik
//! `pkg/config/dynamic/http_config.go` and `tcp_config.go`), and hostile label values.

use assert_cmd::Command;
use proptest::prelude::*;
use rancon::backend::BackendConfig;
use rancon::model::{Endpoint, RegistrationMap};
use serde_json::{Value, json};
use std::fs;
use std::path::Path;

const SERVICES: &str = r#"
[[services]]
name = "shop"
host = "10.0.0.10"
port = 8080
[services.labels]
"rancon.entrypoints" = "websecure"
"rancon.middlewares" = "auth@file, compress"
"rancon.tls.certresolver" = "le"
"rancon.rule" = "Host(`shop.example.com`) && PathPrefix(`/`)"

[[services]]
name = "admin"
host = "10.0.0.11"
port = 443
[services.labels]
"rancon.tls" = "true"

[[services]]
name = "legacy"
host = "10.0.0.12"
port = 8443
[services.labels]
"rancon.scheme" = "http"

[[services]]
name = "db"
host = "10.0.0.5"
port = 5432
[services.labels]
"rancon.protocol" = "tcp"

[[services]]
name = "mail"
host = "10.0.0.6"
port = 993
[services.labels]
"rancon.protocol" = "TCP"
"rancon.rule" = "HostSNI(`mail.example.com`)"
"rancon.tls.passthrough" = "true"
"rancon.entrypoints" = "imaps"

[[services]]
name = "bad-scheme"
host = "10.0.0.7"
port = 80
[services.labels]
"rancon.scheme" = "gopher"

[[services]]
name = "bad-protocol"
host = "10.0.0.8"
port = 80
[services.labels]
"rancon.protocol" = "udp"

[[services]]
name = "bad-middleware"
host = "10.0.0.9"
port = 80
[services.labels]
"rancon.middlewares" = "auth\"\n[http.routers.evil]\nrule = \"PathPrefix(`/`)\""
"#;

fn config(dir: &Path, out: &str) -> String {
    let services = dir.join("services.toml");
    fs::write(&services, SERVICES).unwrap();
    let p = dir.join("rancon.toml");
    fs::write(
        &p,
        format!(
            r#"
owner = "t"
[sources.apps]
type = "static"
file = {services:?}
[backends.traefik]
type = "traefik_file"
path = {out:?}
default_rule = "Host(`%NAME%.example.com`)"
entry_points = ["web"]
"#,
            out = dir.join(out).display().to_string(),
            services = services.display().to_string()
        ),
    )
    .unwrap();
    p.display().to_string()
}

fn run_once(cfg: &str) -> String {
    let out = Command::cargo_bin("rancon")
        .unwrap()
        .args(["--config", cfg, "--once"])
        .env_remove("RANCON_CONFIG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    text
}

fn check_shapes(v: &Value) {
    let http = &v["http"];
    assert_eq!(
        http["routers"]["shop"],
        json!({
            "rule": "Host(`shop.example.com`) && PathPrefix(`/`)",
            "service": "shop",
            "entryPoints": ["websecure"],
            "middlewares": ["auth@file", "compress"],
            "tls": {"certResolver": "le"}
        })
    );
    assert_eq!(
        http["services"]["shop"],
        json!({"loadBalancer": {"servers": [{"url": "http://10.0.0.10:8080"}]}})
    );
    // Port 443 implies https; `tls: {}` turns TLS on with the default certificate.
    assert_eq!(
        http["routers"]["admin"],
        json!({
            "rule": "Host(`admin.example.com`)",
            "service": "admin",
            "entryPoints": ["web"],
            "tls": {}
        })
    );
    assert_eq!(
        http["services"]["admin"]["loadBalancer"]["servers"][0]["url"],
        "https://10.0.0.11:443"
    );
    // The label wins over the port.
    assert_eq!(
        http["services"]["legacy"]["loadBalancer"]["servers"][0]["url"],
        "http://10.0.0.12:8443"
    );
    let tcp = &v["tcp"];
    assert_eq!(
        tcp["routers"]["db"],
        json!({"rule": "HostSNI(`*`)", "service": "db", "entryPoints": ["web"]})
    );
    assert_eq!(
        tcp["services"]["db"],
        json!({"loadBalancer": {"servers": [{"address": "10.0.0.5:5432"}]}})
    );
    assert_eq!(
        tcp["routers"]["mail"],
        json!({
            "rule": "HostSNI(`mail.example.com`)",
            "service": "mail",
            "entryPoints": ["imaps"],
            "tls": {"passthrough": true}
        })
    );
    assert!(http["routers"].get("db").is_none(), "tcp only");
    // Invalid values skip their endpoint; nothing of them reaches the file.
    for skipped in ["bad-scheme", "bad-protocol", "bad-middleware", "evil"] {
        assert!(http["routers"].get(skipped).is_none(), "{skipped}");
        assert!(tcp["routers"].get(skipped).is_none(), "{skipped}");
    }
    assert_eq!(http["routers"].as_object().unwrap().len(), 3);
}

#[test]
fn labels_shape_routers_in_toml_and_steady_rounds_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "dynamic.toml");
    let log = run_once(&cfg);
    for reason in [
        "scheme=\"gopher\": must be http or https",
        "protocol=\"udp\": must be http or tcp",
        "is not a name",
    ] {
        assert!(log.contains(reason), "{reason}: {log}");
    }
    let out = dir.path().join("dynamic.toml");
    let parsed: toml::Value = toml::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
    check_shapes(&serde_json::to_value(parsed).unwrap());
    use std::os::unix::fs::MetadataExt;
    let before = fs::metadata(&out).unwrap().ino();
    run_once(&cfg);
    assert_eq!(fs::metadata(&out).unwrap().ino(), before, "rewritten");
}

#[test]
fn labels_shape_routers_in_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "dynamic.yml");
    run_once(&cfg);
    let text = fs::read_to_string(dir.path().join("dynamic.yml")).unwrap();
    let v: Value = serde_yaml_ng::from_str(&text).unwrap();
    check_shapes(&v);
}

/// Without TCP endpoints the file has no `tcp` section, as before TCP existed.
#[test]
fn no_tcp_section_without_tcp_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rancon.toml");
    fs::write(
        &p,
        format!(
            "[sources.s]\ntype = \"static\"\nservices = [{{ name = \"a\", host = \"10.0.0.1\", port = 80 }}]\n[backends.t]\ntype = \"traefik_file\"\npath = {:?}\n",
            dir.path().join("d.toml").display().to_string()
        ),
    )
    .unwrap();
    run_once(&p.display().to_string());
    let text = fs::read_to_string(dir.path().join("d.toml")).unwrap();
    assert!(!text.contains("tcp"), "{text}");
}

/// Renders `endpoints` through a traefik_file backend writing `file`, applies them to an
/// empty file, and lists it back.
fn round_trip(file: &Path, endpoints: &[Endpoint]) -> (RegistrationMap, RegistrationMap) {
    let cfg: BackendConfig = toml::from_str(&format!(
        "type = \"traefik_file\"\npath = {:?}\nentry_points = [\"web\"]",
        file.display().to_string()
    ))
    .unwrap();
    let common = rancon::build::Config::default().common();
    let backend = rancon::backend::build("t", &cfg, &common).unwrap();
    let desired: RegistrationMap = endpoints
        .iter()
        .filter_map(|ep| backend.render(ep).ok())
        .map(|r| (r.id.clone(), r))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let empty = RegistrationMap::new();
        let plan = rancon::plan::plan(&desired, &empty);
        let report = backend.apply(&empty, &empty, &plan).await;
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        let listed = backend
            .list(&desired)
            .await
            .unwrap_or_else(|e| panic!("the file does not parse back: {e}"));
        (desired, listed.regs)
    })
}

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z@.,\"'`\\n\\r\\t\\\\ \\[\\]=#{}:-]{0,24}",
        Just("auth\"\n[http.routers.evil]\nrule = \"x\"".to_string()),
        Just("a: b\n- c".to_string()),
    ]
}

/// Mostly values a label could mean, often hostile ones.
fn or_hostile(valid: impl Strategy<Value = String> + 'static) -> BoxedStrategy<String> {
    prop_oneof![2 => valid, 1 => hostile()].boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the label values, the file parses back and holds exactly what was rendered
    /// (so a steady round writes nothing), in TOML and YAML.
    #[test]
    fn hostile_label_values_never_break_the_file(
        values in proptest::collection::vec(
            (
                hostile(),
                or_hostile("Host\\(`[a-z.\"'\\n]{1,12}`\\)"),
                or_hostile("[a-z]{1,6}(@file)?(,[a-z]{1,6}){0,2}"),
                or_hostile("[a-z]{1,6}(, ?[a-z]{1,6}){0,2}"),
                or_hostile(prop_oneof![Just("http".to_string()), Just("HTTPS".to_string())]),
                or_hostile(prop_oneof![Just("tcp".to_string()), Just("http".to_string())]),
                1u16..=65535,
            ),
            1..6,
        ),
        yaml in any::<bool>(),
    ) {
        let endpoints: Vec<Endpoint> = values
            .iter()
            .enumerate()
            .map(|(i, (name, rule, mws, eps, scheme, proto, port))| {
                let mut props = rancon::template::Props::new();
                props.insert("name".into(), format!("e{i}-{name}"));
                props.insert("host".into(), format!("10.0.0.{}", i + 1));
                props.insert("port".into(), port.to_string());
                props.insert("rule".into(), rule.clone());
                props.insert("middlewares".into(), mws.clone());
                props.insert("entrypoints".into(), eps.clone());
                if i % 2 == 0 {
                    props.insert("scheme".into(), scheme.clone());
                    props.insert("protocol".into(), proto.clone());
                    props.insert("tls_certresolver".into(), eps.clone());
                } else {
                    props.insert("tls".into(), "true".into());
                }
                if proto == "tcp" && i % 3 == 0 {
                    props.insert("tls_passthrough".into(), "true".into());
                }
                Endpoint { source: "s".into(), props }
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(if yaml { "d.yaml" } else { "d.toml" });
        let (desired, listed) = round_trip(&file, &endpoints);
        prop_assert_eq!(desired.len(), listed.len());
        for (id, d) in &desired {
            let l = listed.get(id);
            prop_assert!(l.is_some_and(|l| l.same(d)), "{id}: {d:?} vs {l:?}");
        }
    }
}

/// A plain rule with quotes and a newline is kept verbatim (serde escapes it), not skipped.
#[test]
fn quotes_and_newlines_in_a_rule_are_kept_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let mut props = rancon::template::Props::new();
    for (k, v) in [
        ("name", "web"),
        ("host", "10.0.0.1"),
        ("port", "80"),
        ("rule", "Host(\"a.example\") &&\n\tPath(`/x'y`)"),
    ] {
        props.insert(k.into(), v.into());
    }
    let ep = Endpoint {
        source: "s".into(),
        props,
    };
    for f in ["d.toml", "d.yaml"] {
        let file = dir.path().join(f);
        let (desired, listed) = round_trip(&file, std::slice::from_ref(&ep));
        assert_eq!(desired.len(), 1, "{f}");
        assert_eq!(listed.len(), 1, "{f}");
        let text = fs::read_to_string(&file).unwrap();
        let v: Value = if f.ends_with("toml") {
            serde_json::to_value(toml::from_str::<toml::Value>(&text).unwrap()).unwrap()
        } else {
            serde_yaml_ng::from_str(&text).unwrap()
        };
        assert_eq!(
            v["http"]["routers"]["web"]["rule"],
            "Host(\"a.example\") &&\n\tPath(`/x'y`)"
        );
    }
}
