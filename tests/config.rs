//! Layering precedence (figment::Jail) and every shipped config file loads.
#![allow(clippy::result_large_err)] // figment::Jail closures return figment::Error by value.

use figment::Jail;
use rancon::cli::ConfigArgs;

#[test]
fn precedence_is_defaults_then_file_then_env_then_cli() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "r.toml",
            r#"
            interval = "10s"
            owner = "from-file"
            label_prefix = "fileprefix"
            [sources.s]
            type = "static"
            services = [{ name = "a", host = "h", port = 1 }]
            [backends.b]
            type = "traefik_file"
            path = "out.toml"
            "#,
        )?;
        jail.set_env("RANCON_INTERVAL", "20s");
        jail.set_env("RANCON_OWNER", "from-env");
        jail.set_env("RANCON_BACKENDS__B__DEFAULT_RULE", "Host(`%NAME%.env`)");
        let args = ConfigArgs {
            config: Some("r.toml".into()),
            sets: vec!["interval=40s".into()],
            legacy: false,
        };
        let loaded = rancon::app::load_valid(&args).map_err(|e| e.to_string())?;
        let raw = &loaded.config;
        assert_eq!(
            raw.interval,
            std::time::Duration::from_secs(40),
            "CLI beats env"
        );
        assert_eq!(raw.owner, "from-env", "env beats file");
        assert_eq!(raw.label_prefix, "fileprefix", "file beats default");
        assert_eq!(raw.name, "%NAME%", "default kept");
        let rancon::backend::BackendConfig::TraefikFile(t) = &raw.backends["b"] else {
            panic!("backend b is traefik_file")
        };
        assert_eq!(t.default_rule, "Host(`%NAME%.env`)", "env nests with __");
        Ok(())
    });
}

#[test]
fn rancon_config_is_not_a_config_key() {
    Jail::expect_with(|jail| {
        jail.create_file("r.toml", "[sources.s]\ntype = \"static\"\nservices = [{ name = \"a\", host = \"h\", port = 1 }]\n[backends.b]\ntype = \"traefik_file\"\npath = \"o.toml\"\n")?;
        jail.set_env("RANCON_CONFIG", "r.toml");
        jail.set_env("RANCON_LOG", "debug");
        let args = ConfigArgs {
            config: Some("r.toml".into()),
            sets: vec![],
            legacy: false,
        };
        rancon::app::load_valid(&args).map_err(|e| e.to_string())?;
        Ok(())
    });
}

#[test]
fn consul_conventional_variables_fill_what_the_file_leaves_unset() {
    Jail::expect_with(|jail| {
        jail.create_file("ca.pem", "")?;
        jail.create_file(
            "r.toml",
            r#"
            [sources.s]
            type = "static"
            services = [{ name = "a", host = "h", port = 1 }]
            [backends.c]
            type = "consul"
            [backends.d]
            type = "consul"
            url = "http://from-file:8500"
            token = "file-token"
            "#,
        )?;
        jail.set_env("CONSUL_HTTP_ADDR", "127.0.0.5:8501");
        jail.set_env("CONSUL_HTTP_SSL", "true");
        jail.set_env("CONSUL_HTTP_TOKEN", "env-token");
        jail.set_env("CONSUL_CACERT", "ca.pem");
        jail.set_env("CONSUL_TLS_SERVER_NAME", "server.dc1.consul:8501");
        jail.set_env("CONSUL_HTTP_SSL_VERIFY", "0");
        jail.set_env("RANCON_BACKENDS__D__DATACENTER", "dc2");
        let args = ConfigArgs {
            config: Some("r.toml".into()),
            sets: vec![],
            legacy: false,
        };
        let loaded = rancon::app::load_valid(&args).map_err(|e| e.to_string())?;
        let consul = |name: &str| match &loaded.config.backends[name] {
            rancon::backend::BackendConfig::Consul(c) => c.clone(),
            _ => panic!("{name} is consul"),
        };
        let c = consul("c");
        assert_eq!(c.url, "https://127.0.0.5:8501");
        assert_eq!(c.token.as_ref().map(|t| t.expose()), Some("env-token"));
        assert_eq!(
            c.tls.ca_file.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
        assert_eq!(c.tls.server_name.as_deref(), Some("server.dc1.consul"));
        assert!(c.tls.insecure);
        let d = consul("d");
        assert_eq!(
            d.url, "http://from-file:8500",
            "the file beats CONSUL_HTTP_ADDR"
        );
        assert_eq!(d.token.as_ref().map(|t| t.expose()), Some("file-token"));
        assert_eq!(d.datacenter.as_deref(), Some("dc2"));
        Ok(())
    });
}
