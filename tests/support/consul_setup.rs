//! A temporary directory with a static services file and a config whose one backend is
//! `[backends.consul]`: the shape of every Consul pipeline test.

use rancon::config::{LoadOptions, load, validate::validate};
use rancon::engine::Pipeline;
use std::path::PathBuf;

/// (name, host, port, labels) of one static service.
pub type Service<'a> = (&'a str, &'a str, u16, &'a [(&'a str, &'a str)]);

pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the services file: (name, host, port, labels as `k=v` pairs), each selected.
    pub fn services(&self, list: &[Service]) {
        // An empty file reads as one caught mid-write; none on purpose is `services = []`.
        let mut s = if list.is_empty() {
            "services = []\n".to_string()
        } else {
            String::new()
        };
        for (name, host, port, labels) in list {
            s += &format!("[[services]]\nname = {name:?}\nhost = {host:?}\nport = {port}\n");
            s += "[services.labels]\nrancon = \"\"\n";
            for (k, v) in *labels {
                s += &format!("{k:?} = {v:?}\n");
            }
        }
        std::fs::write(self.path("services.toml"), s).unwrap();
    }

    /// Writes the config: static source `svc` reading services.toml, plus `backend` (TOML body
    /// of `[backends.consul]`) and top-level `extra` settings.
    pub fn config(&self, extra: &str, backend: &str) -> PathBuf {
        let cfg = format!(
            "{extra}\n[sources.svc]\ntype = \"static\"\nfile = {:?}\n\n[backends.consul]\ntype = \"consul\"\n{backend}\n",
            self.path("services.toml")
        );
        let file = self.path("rancon.toml");
        std::fs::write(&file, cfg).unwrap();
        file
    }

    /// The pipeline of `config(extra, backend)`, validated.
    pub fn pipeline(&self, extra: &str, backend: &str) -> Pipeline {
        let loaded = load(&LoadOptions {
            file: Some(self.config(extra, backend)),
            ..Default::default()
        })
        .unwrap();
        validate(&loaded).unwrap_or_else(|e| panic!("{e}"));
        rancon::app::build(&loaded.config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The config problems (`key: message` lines), or `None` when it validates.
    pub fn problems(&self, extra: &str, backend: &str) -> Option<String> {
        let loaded: rancon::build::Loaded = load(&LoadOptions {
            file: Some(self.config(extra, backend)),
            ..Default::default()
        })
        .unwrap();
        validate(&loaded).err().map(|e| e.to_string())
    }
}
