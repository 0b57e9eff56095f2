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
        };
        let loaded = rancon::app::load_valid(&args).map_err(|e| e.to_string())?;
        let raw = &loaded.raw;
        assert_eq!(
            raw.interval,
            std::time::Duration::from_secs(40),
            "CLI beats env"
        );
        assert_eq!(raw.owner, "from-env", "env beats file");
        assert_eq!(raw.label_prefix, "fileprefix", "file beats default");
        assert_eq!(raw.name, "%NAME%", "default kept");
        let rancon::config::BackendConfig::TraefikFile(t) = &raw.backends["b"];
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
        };
        rancon::app::load_valid(&args).map_err(|e| e.to_string())?;
        Ok(())
    });
}
