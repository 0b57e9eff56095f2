//! The compose example (own process: figment::Jail changes the working directory).
#![allow(clippy::result_large_err)] // figment::Jail closures return figment::Error by value.

use rancon::cli::ConfigArgs;

/// config/compose.yaml configures rancon with environment variables only: they must form a
/// valid configuration.
#[test]
fn the_compose_example_environment_is_a_valid_configuration() {
    let text = std::fs::read_to_string("config/compose.yaml").unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let env = doc["services"]["rancon"]["environment"]
        .as_mapping()
        .unwrap()
        .clone();
    figment::Jail::expect_with(|jail| {
        for (k, v) in &env {
            let (k, v) = (k.as_str().unwrap(), v.as_str().unwrap());
            // Compose substitutes ${VAR}; stand in a value.
            let v = if v.starts_with("${") { "from-env" } else { v };
            jail.set_env(k, v);
        }
        let loaded = rancon::app::load_valid(&ConfigArgs::default()).map_err(|e| e.to_string())?;
        assert_eq!(loaded.config.owner, "prod");
        assert!(loaded.config.leader.is_some());
        assert_eq!(loaded.config.backends.len(), 1);
        rancon::app::build(&loaded.config).map_err(|e| e.to_string())?;
        Ok(())
    });
}
