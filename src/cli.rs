//! The command line (clap). Exit codes: 0 ok, 1 a round had failures, 2 usage, 78 invalid config.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Keeps a service registry in step with an orchestrator.
#[derive(Debug, Parser)]
#[command(
    name = "rancon",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Exit codes: 0 ok, 1 a round had failures, 2 usage error, 78 invalid configuration."
)]
pub struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the default `run` command.
    #[command(flatten)]
    pub run: RunArgs,
    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sync continuously (or one round with --once).
    Run(RunArgs),
    /// Validate the configuration and print it resolved, secrets masked.
    Check(CheckArgs),
    /// Print the configuration's JSON Schema.
    Schema,
    /// Deregister everything one owner registered in one backend (for uninstalling).
    Purge(PurgeArgs),
    /// Ask a running rancon's `/health` (a container HEALTHCHECK): exit 0 healthy, 1 not.
    Health(HealthArgs),
    /// Print a shell completion script, e.g. `rancon completions bash > /etc/bash_completion.d/rancon`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `rancon man > rancon.1`.
    Man,
    /// The original tool's form: `rancon rancher consul -s url=URL -b url=URL` (one round
    /// unless -c).
    Rancher(LegacyArgs),
}

/// Options of `health`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Configuration sources (`http.listen` tells where to ask).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Ask this URL instead, e.g. `http://127.0.0.1:9090/health`.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// Options of `purge`.
#[derive(Debug, Clone, Args)]
pub struct PurgeArgs {
    /// Configuration sources.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The backend to empty (a `[backends.<name>]` name).
    #[arg(long, value_name = "NAME")]
    pub backend: String,
    /// Whose registrations to remove (default: the configured `owner`).
    #[arg(long, value_name = "ID")]
    pub owner: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// The original tool's command line, kept for its users' scripts.
#[derive(Debug, Clone, Args)]
pub struct LegacyArgs {
    /// The backend type (the original tool's only one: consul).
    #[arg(value_parser = ["consul"])]
    pub backend: String,
    /// Source option KEY=VALUE: url, accesskey, secretkey, default_name_scheme (or any
    /// rancher source key).
    #[arg(short = 's', long = "source-option", value_name = "KEY=VALUE")]
    pub source: Vec<String>,
    /// Backend option KEY=VALUE: url, id_schema, cleanup_id (or any consul backend key).
    #[arg(short = 'b', long = "backend-option", value_name = "KEY=VALUE")]
    pub backend_opts: Vec<String>,
    /// Keep running, a round every --wait seconds.
    #[arg(short = 'c', long)]
    pub continuous: bool,
    /// Seconds between rounds with --continuous.
    #[arg(short = 'w', long, default_value_t = 5, value_name = "SECONDS")]
    pub wait: u64,
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

impl LegacyArgs {
    /// The `run` arguments this form stands for: its options become `--set` overrides of one
    /// source `rancher` and one backend `consul`.
    pub fn to_run_args(&self) -> Result<RunArgs, String> {
        let quote = |v: &str| toml::Value::String(v.to_string()).to_string();
        let mut sets = vec![
            "sources.rancher.type=rancher".to_string(),
            "backends.consul.type=consul".to_string(),
            format!("interval={}s", self.wait.max(1)),
        ];
        for (opts, prefix) in [
            (&self.source, "sources.rancher"),
            (&self.backend_opts, "backends.consul"),
        ] {
            for opt in opts {
                let (k, v) = opt
                    .split_once('=')
                    .filter(|(k, _)| !k.trim().is_empty())
                    .ok_or_else(|| {
                        // The argument may be a secret typed with the wrong separator: never echo it.
                        "an -s/-b option is not KEY=VALUE (e.g. url=http://…); its text is not shown, it may hold a secret".to_string()
                    })?;
                // The original tool's names; any other key is rancon's own, given as is.
                sets.push(match (prefix, k.trim()) {
                    ("sources.rancher", "accesskey") => format!("{prefix}.access_key={}", quote(v)),
                    ("sources.rancher", "secretkey") => format!("{prefix}.secret_key={}", quote(v)),
                    ("sources.rancher", "default_name_scheme") => {
                        format!("{prefix}.name={}", quote(v))
                    }
                    ("backends.consul", "id_schema") => format!("{prefix}.id={}", quote(v)),
                    ("backends.consul", "cleanup_id") => format!("owner={}", quote(v)),
                    (_, "url") => format!("{prefix}.url={}", quote(v)),
                    (_, key) => format!("{prefix}.{key}={v}"),
                });
            }
        }
        Ok(RunArgs {
            config: ConfigArgs {
                config: self.config.clone(),
                sets,
            },
            once: !self.continuous,
            dry_run: self.dry_run,
            force: self.force,
            output: Output::Text,
        })
    }
}

/// Where the configuration comes from.
#[derive(Debug, Clone, Args, Default)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "RANCON_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one key, e.g. `--set interval=10s` (repeatable; wins over file and env).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

/// Options of `run`.
#[derive(Debug, Clone, Args, Default)]
pub struct RunArgs {
    /// Configuration sources.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Run one round and exit (exit 1 if it had failures).
    #[arg(long)]
    pub once: bool,
    /// Compute and print the plans; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Deregister even when the max_deregister_fraction guard would stop it.
    #[arg(long)]
    pub force: bool,
    /// Format of the dry-run plan.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Options of `check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Configuration sources.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Also contact every source and backend once (read-only).
    #[arg(long)]
    pub connect: bool,
}

/// Output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// For machines.
    Json,
}

/// Logging options.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output (warnings and errors only).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
