//! The original tool's command line and environment (rancon 0.17.1, Python argparse), kept so
//! its users' stacks run unchanged: `rancon [-c] [-w N] [-d N] [-v…] [-s K=V…] [-b K=V…]
//! rancher consul`, options before or after the two words, and `RANCON_SOURCE`,
//! `RANCON_REGISTRY`, `RANCON_FRONTEND_OPTIONS`, `RANCON_BACKEND_OPTIONS`, `RANCON_FOREGROUND`,
//! `RANCON_WAIT`, `RANCON_HANGUP_SECONDS`, `RANCON_VERBOSE`.

use crate::cli::{ConfigArgs, LogArgs, Output, RunArgs};
use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;

/// The original command line (argparse accepted options anywhere among the two words).
#[derive(Debug, Parser)]
#[command(
    name = "rancon",
    about = "The original rancon command line: rancon [options] rancher consul",
    disable_version_flag = true
)]
pub struct LegacyCli {
    /// The source type (the original tool's only one: rancher). Default: $RANCON_SOURCE.
    #[arg(value_parser = ["rancher"])]
    pub source: Option<String>,
    /// The registry type (the original tool's only one: consul). Default: $RANCON_REGISTRY.
    #[arg(value_parser = ["consul"])]
    pub backend: Option<String>,
    /// Source option KEY=VALUE: url, accesskey, secretkey (or any rancher source key);
    /// default_name_scheme is accepted and ignored, as it was. Default:
    /// $RANCON_FRONTEND_OPTIONS (`K=V,K=V`).
    #[arg(short = 's', long = "source-option", value_name = "KEY=VALUE")]
    pub source_opts: Vec<String>,
    /// Backend option KEY=VALUE: url, id_schema, cleanup_id (or any consul backend key).
    /// Added to $RANCON_BACKEND_OPTIONS (`K=V,K=V`).
    #[arg(short = 'b', long = "backend-option", value_name = "KEY=VALUE")]
    pub backend_opts: Vec<String>,
    /// Keep running, a round every --wait seconds. Default: set when $RANCON_FOREGROUND is.
    #[arg(short = 'c', long)]
    pub continuous: bool,
    /// Seconds between rounds with --continuous. Default: $RANCON_WAIT or 5.
    #[arg(short = 'w', long, value_name = "SECONDS")]
    pub wait: Option<u64>,
    /// Seconds without a finished round before /health reports a hang. Default:
    /// $RANCON_HANGUP_SECONDS or 30.
    #[arg(short = 'd', long = "hangup-detection", value_name = "SECONDS")]
    pub hangup: Option<u64>,
    /// More output (repeatable). No -v at all is -vvv (warnings). Default: $RANCON_VERBOSE.
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// One round and exit (the default of this form; accepted for symmetry).
    #[arg(long, conflicts_with = "continuous")]
    pub once: bool,
    /// Compute and print the plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Deregister even when the max_deregister_fraction guard would stop it.
    #[arg(long)]
    pub force: bool,
    /// Optional TOML file underneath the options given here.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Whether `args` (without the program name) are the original form: the first word that is
/// not an option (or an option's value) is `rancher`, or there is none and $RANCON_SOURCE is
/// set (the original tool configured by environment alone).
pub fn detect(args: &[OsString], env: &dyn Fn(&str) -> Option<String>) -> bool {
    // Options of the original form that take a separate value.
    const VALUED: &[&str] = &[
        "-s",
        "-b",
        "-w",
        "-d",
        "--source-option",
        "--backend-option",
        "--wait",
        "--hangup-detection",
        "--config",
    ];
    let mut words = args.iter().map(|a| a.to_string_lossy());
    while let Some(a) = words.next() {
        if VALUED.contains(&a.as_ref()) {
            words.next();
        } else if !a.starts_with('-') {
            return a == "rancher";
        }
    }
    env("RANCON_SOURCE").is_some() && args.iter().all(|a| a.to_string_lossy().starts_with('-'))
}

/// The options of an environment variable holding `K=V,K=V`.
fn env_opts(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Vec<String> {
    env(name)
        .map(|v| {
            v.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl LegacyCli {
    /// The `run` arguments and logging this form stands for: its options become `--set`
    /// overrides of one source `rancher` and one backend `consul`, with the original
    /// defaults where the new ones differ.
    pub fn to_run(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(RunArgs, LogArgs), String> {
        let source = self.source.clone().or_else(|| env("RANCON_SOURCE"));
        let backend = self.backend.clone().or_else(|| env("RANCON_REGISTRY"));
        if source.as_deref() != Some("rancher") || backend.as_deref() != Some("consul") {
            return Err(
                "the original form needs the words `rancher consul` (or RANCON_SOURCE=rancher and RANCON_REGISTRY=consul)".into(),
            );
        }
        let number = |name: &str, given: Option<u64>, default: u64| -> Result<u64, String> {
            match (given, env(name)) {
                (Some(n), _) => Ok(n),
                (None, Some(v)) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name}={v:?} is not a whole number of seconds")),
                (None, None) => Ok(default),
            }
        };
        let wait = number("RANCON_WAIT", self.wait, 5)?.max(1);
        let hangup = number("RANCON_HANGUP_SECONDS", self.hangup, 30)?;
        let continuous = self.continuous || env("RANCON_FOREGROUND").is_some();
        let quote = |v: &str| toml::Value::String(v.to_string()).to_string();
        let mut sets = vec![
            "sources.rancher.type=rancher".to_string(),
            "backends.consul.type=consul".to_string(),
            // The original tool lower-cased every tag, as it did names and ids…
            "backends.consul.lowercase_tags=true".to_string(),
            // …and wrote no meta: without ours, its registrations are already what we want.
            "backends.consul.marker_meta=false".to_string(),
            format!("interval={wait}s"),
        ];
        let source_opts = if self.source_opts.is_empty() {
            env_opts(env, "RANCON_FRONTEND_OPTIONS")
        } else {
            self.source_opts.clone()
        };
        // argparse's `append` action adds -b options to its default, the variable's list, so
        // both apply (the command line's last). Its source default named
        // "RANCON_FRONTEND_OPTIONS " (trailing space) and was never read: with any -s the
        // variable stays ignored, as it was.
        let mut backend_opts = env_opts(env, "RANCON_BACKEND_OPTIONS");
        backend_opts.extend(self.backend_opts.iter().cloned());
        let mut consul_url = false;
        for (opts, prefix) in [
            (&source_opts, "sources.rancher"),
            (&backend_opts, "backends.consul"),
        ] {
            for opt in opts {
                let (k, v) = opt
                    .split_once('=')
                    .filter(|(k, _)| !k.trim().is_empty())
                    .ok_or_else(|| {
                        // The argument may be a secret typed with the wrong separator.
                        "an -s/-b option is not KEY=VALUE (e.g. url=http://…); its text is not shown, it may hold a secret".to_string()
                    })?;
                // rancon 0.17.1 accepted `default_name_scheme` and never used it
                // (sources/rancher.py stores it; `get_services` names a service by its
                // `rancon.name` label or its own name): honouring it now would rename, so
                // re-register and deregister, every service on upgrade.
                if (prefix, k.trim()) == ("sources.rancher", "default_name_scheme") {
                    continue;
                }
                // The original tool's names; any other key is rancon's own, given as is.
                sets.push(match (prefix, k.trim()) {
                    ("sources.rancher", "accesskey") => format!("{prefix}.access_key={}", quote(v)),
                    ("sources.rancher", "secretkey") => format!("{prefix}.secret_key={}", quote(v)),
                    ("backends.consul", "id_schema") => format!("{prefix}.id={}", quote(v)),
                    // The original tool lower-cased the cleanup id (its tag `rancon-<id>`).
                    ("backends.consul", "cleanup_id") => {
                        format!("owner={}", quote(&v.to_lowercase()))
                    }
                    (p, "url") => {
                        consul_url |= p == "backends.consul";
                        format!("{prefix}.url={}", quote(v))
                    }
                    (_, key) => format!("{prefix}.{key}={v}"),
                });
            }
        }
        // The original default: the agent on each service's own host.
        if !consul_url && env("CONSUL_HTTP_ADDR").is_none() {
            sets.push(format!(
                "backends.consul.url={}",
                quote("http://%HOST%:8500")
            ));
        }
        if continuous {
            // The original tool always served /health and /metrics here in continuous mode,
            // and existing Rancher health checks probe it.
            sets.push(format!("http.listen={}", quote("0.0.0.0:8000")));
            sets.push(format!(
                "http.hangup_after={}",
                quote(&format!("{hangup}s"))
            ));
        }
        // argparse counted from $RANCON_VERBOSE (default 3 = warnings); each -v adds one.
        let base: u8 = match env("RANCON_VERBOSE") {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("RANCON_VERBOSE={v:?} is not a count"))?,
            None => 3,
        };
        let level = base.saturating_add(self.verbose);
        let log = LogArgs {
            verbose: level.saturating_sub(4),
            quiet: level <= 3,
            log_format: None,
        };
        let run = RunArgs {
            config: ConfigArgs {
                config: self.config.clone(),
                sets,
                legacy: true,
            },
            once: !continuous,
            dry_run: self.dry_run,
            force: self.force,
            output: Output::Text,
        };
        Ok((run, log))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn detection_skips_option_values() {
        let none = |_: &str| None;
        assert!(detect(&args(&["rancher", "consul"]), &none));
        assert!(detect(
            &args(&["-c", "-w", "10", "rancher", "consul"]),
            &none
        ));
        assert!(detect(&args(&["-w10", "-s", "url=x", "rancher"]), &none));
        assert!(!detect(&args(&["--config", "rancher", "check"]), &none));
        assert!(!detect(&args(&["check"]), &none));
        assert!(!detect(&args(&["--once"]), &none));
        let env = |k: &str| (k == "RANCON_SOURCE").then(|| "rancher".to_string());
        assert!(detect(&args(&["-c"]), &env));
        assert!(!detect(&args(&["check"]), &env));
    }

    #[test]
    fn the_original_defaults_where_they_differ() {
        let none = |_: &str| None;
        let cli = LegacyCli::parse_from(["rancon", "-c", "-d", "90", "rancher", "consul"]);
        let (run, log) = cli.to_run(&none).unwrap();
        let sets = run.config.sets.join(" ");
        assert!(!run.once);
        assert!(
            sets.contains("backends.consul.url=\"http://%HOST%:8500\""),
            "{sets}"
        );
        assert!(sets.contains("http.listen=\"0.0.0.0:8000\""), "{sets}");
        assert!(sets.contains("http.hangup_after=\"90s\""), "{sets}");
        assert!(sets.contains("interval=5s"), "{sets}");
        assert!(log.quiet, "no -v is the original's -vvv: warnings");
        // CONSUL_HTTP_ADDR, when set, wins over the original default; one round, no server.
        let env = |k: &str| (k == "CONSUL_HTTP_ADDR").then(|| "10.0.0.1:8500".to_string());
        let cli = LegacyCli::parse_from(["rancon", "rancher", "consul", "-vv"]);
        let (run, log) = cli.to_run(&env).unwrap();
        let sets = run.config.sets.join(" ");
        assert!(
            !sets.contains("%HOST%") && !sets.contains("http.listen"),
            "{sets}"
        );
        assert!(run.once && !log.quiet && log.verbose == 1);
    }

    #[test]
    fn backend_options_from_the_environment_and_the_command_line_both_apply() {
        // rancon 0.17.1 (settings.py): `-b` uses action="append" with the variable's list as
        // default, so `-b id_schema=…` adds to RANCON_BACKEND_OPTIONS, it does not replace it.
        let env = |k: &str| {
            (k == "RANCON_BACKEND_OPTIONS").then(|| "url=http://consul.example:8500".to_string())
        };
        let cli = LegacyCli::parse_from(["rancon", "-b", "id_schema=%NAME%", "rancher", "consul"]);
        let (run, _) = cli.to_run(&env).unwrap();
        let sets = run.config.sets.join(" ");
        assert!(
            sets.contains("backends.consul.url=\"http://consul.example:8500\""),
            "{sets}"
        );
        assert!(!sets.contains("%HOST%:8500"), "{sets}");
        assert!(sets.contains("backends.consul.id=\"%NAME%\""), "{sets}");
    }

    #[test]
    fn default_name_scheme_is_accepted_and_ignored_as_the_old_tool_did() {
        // rancon 0.17.1 sources/rancher.py keeps `default_name_scheme` but `get_services`
        // never reads it: names stay the label's or the service's own.
        let none = |_: &str| None;
        let cli = LegacyCli::parse_from([
            "rancon",
            "-s",
            "url=http://r",
            "-s",
            "default_name_scheme=%NAME%-%STACK%",
            "rancher",
            "consul",
        ]);
        let (run, _) = cli.to_run(&none).unwrap();
        let sets = run.config.sets.join(" ");
        assert!(!sets.contains("%STACK%"), "{sets}");
        assert!(!sets.contains("sources.rancher.name"), "{sets}");
    }
}
