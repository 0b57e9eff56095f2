//! Thin edge: parse the CLI, set up logging, hand over to the library.

use clap::{CommandFactory, Parser};
use rancon::cli::{Cli, Command, LogArgs, LogFormat};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn init_logging(log: &LogArgs) {
    let default = match (log.quiet, log.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("RANCON_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match &cli.command {
            None => rancon::app::run(&cli.run).await,
            Some(Command::Run(args)) => rancon::app::run(args).await,
            Some(Command::Check(args)) => rancon::app::check(args).await,
            Some(Command::Purge(args)) => rancon::purge::run(args).await,
            Some(Command::Rancher(legacy)) => match legacy.to_run_args() {
                Ok(args) => rancon::app::run(&args).await,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            },
            Some(Command::Completions { shell }) => {
                let mut cmd = Cli::command();
                clap_complete::generate(*shell, &mut cmd, "rancon", &mut std::io::stdout());
                ExitCode::SUCCESS
            }
            Some(Command::Man) => {
                match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Some(Command::Schema) => {
                print!("{}", rancon::app::schema());
                ExitCode::SUCCESS
            }
        }
    })
}
