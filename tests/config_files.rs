//! Every shipped file in config/ loads, validates and builds (own process: it needs the repo as cwd).

use rancon::cli::ConfigArgs;

#[test]
fn every_file_in_config_loads_and_validates() {
    // The demo writes under target/; make sure it exists for a fresh clone's test run.
    std::fs::create_dir_all("target").unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir("config").unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if path.extension().is_some_and(|e| e == "toml") && text.contains("[backends.") {
            let args = ConfigArgs {
                config: Some(path.clone()),
                sets: vec![],
                legacy: false,
            };
            let loaded = rancon::app::load_valid(&args)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            rancon::app::build(&loaded.config)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        } else if path.extension().is_some_and(|e| e == "toml") {
            // Service lists for the static source.
            rancon::source::static_file::read_services_file(&path).unwrap();
        }
    }
    assert!(
        n >= 3,
        "expected demo, minimal and example configs, found {n}"
    );
}
