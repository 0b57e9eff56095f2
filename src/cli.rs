//! The command line (clap). Exit codes: 0 ok, 1 a round had failures, 2 usage, 78 invalid config.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Keeps a service registry in step with an orchestrator.
#[derive(Debug, Parser)]
#[command(
    name = "rancon",
    version,
    after_help = "The original tool's form works too: rancon [-c] [-w N] [-d N] [-v] [-s K=V]... [-b K=V]... rancher consul\n\nExit codes: 0 ok, 1 a round had failures, 2 usage error, 78 invalid configuration."
)]
pub struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Where the configuration comes from: options of every command, before or after it.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Options of the default `run` command.
    #[command(flatten)]
    pub run: RunArgs,
    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
}

impl Cli {
    /// The command to run (`run` when none is named), carrying the configuration options
    /// wherever they were given. `run`'s own options before another command are an error.
    pub fn into_command(self) -> Result<Command, clap::Error> {
        let run_given = self.run.once || self.run.dry_run || self.run.force;
        let mut command = match self.command {
            None => Command::Run(self.run),
            Some(_) if run_given || self.run.output != Output::Text => {
                return Err(<Self as clap::CommandFactory>::command().error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--once, --dry-run, --force and --output belong to `run` (give them after it, or without a command)",
                ));
            }
            Some(c) => c,
        };
        let config = self.config;
        match &mut command {
            Command::Run(a) => a.config = config,
            Command::Check(a) => a.config = config,
            Command::Purge(a) => a.config = config,
            Command::Health(a) => a.config = config,
            Command::Schema | Command::Completions { .. } | Command::Man(_) => {}
        }
        Ok(command)
    }
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
    /// Print a man page (roff), e.g. `rancon man > rancon.1`, `rancon man check`; or write
    /// every page with `--dir /usr/local/share/man/man1`.
    Man(ManArgs),
}

/// Options of `man`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// The subcommand whose page to print (default: rancon's own page).
    #[arg(value_name = "COMMAND", conflicts_with = "dir")]
    pub command: Option<String>,
    /// Write every page (rancon.1, rancon-<command>.1, …) into this directory instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Options of `health`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Configuration sources (`http.listen` tells where to ask): the global options.
    #[arg(skip)]
    pub config: ConfigArgs,
    /// Ask this URL instead, e.g. `http://127.0.0.1:9090/health`.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// Options of `purge`.
#[derive(Debug, Clone, Args)]
pub struct PurgeArgs {
    /// Configuration sources: the global options.
    #[arg(skip)]
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

/// Where the configuration comes from.
#[derive(Debug, Clone, Args, Default)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "RANCON_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Override one key, e.g. `--set interval=10s` (repeatable; wins over file and env).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub sets: Vec<String>,
    /// Set by the original command line, whose own variables (`RANCON_WAIT`, …) are then
    /// expected in the environment.
    #[arg(skip)]
    pub legacy: bool,
}

impl ConfigArgs {
    /// Where configuration loading reads from.
    pub fn load_options(&self) -> crate::config::LoadOptions {
        crate::config::LoadOptions {
            file: self.config.clone(),
            sets: self.sets.clone(),
            legacy: self.legacy,
        }
    }
}

/// Options of `run`.
#[derive(Debug, Clone, Args, Default)]
pub struct RunArgs {
    /// Configuration sources: the global options.
    #[arg(skip)]
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
    /// Format of the dry-run plan (only with --dry-run: a usage error without it).
    #[arg(long, value_enum, default_value_t = Output::Text, requires = "dry_run")]
    pub output: Output,
}

/// Options of `check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Configuration sources: the global options.
    #[arg(skip)]
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
    /// More log output: -v rancon's decisions (debug), -vv trace; dependencies stay at warn
    /// until -vvv (debug) and -vvvv (trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output (warnings and errors only).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log line format (default: `RANCON_LOG_FORMAT`, then the `log.format` key, then text).
    #[arg(long, value_enum, global = true)]
    pub log_format: Option<LogFormat>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
