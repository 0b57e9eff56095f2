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
