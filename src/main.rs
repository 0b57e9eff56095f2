//! Thin edge: parse the CLI, set up logging, hand over to the library.

use clap::{CommandFactory, Parser};
use rancon::cli::{Cli, Command, LogArgs, LogFormat};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;

fn init_logging(log: &LogArgs) {
    let default = match (log.quiet, log.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("RANCON_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only for a person at a terminal, and never with NO_COLOR (no-color.org).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match log.log_format {
        // JSON escapes every string itself.
        LogFormat::Json => builder.json().init(),
        // Text: values from servers, labels and files may hold newlines or ANSI escapes;
        // escaped, they cannot forge a log line or recolour a terminal.
        LogFormat::Text => builder
            .fmt_fields(
                tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                    let text = format!("{value:?}");
                    let text = rancon::output::clean(&text);
                    if field.name() == "message" {
                        write!(w, "{text}")
                    } else {
                        write!(w, "{field}={text}")
                    }
                })
                .delimited(" "),
            )
            .init(),
    }
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let env = |k: &str| std::env::var(k).ok();
    if rancon::legacy::detect(&args, &env) {
        let legacy = rancon::legacy::LegacyCli::parse_from(
            std::iter::once(std::ffi::OsString::from("rancon")).chain(args),
        );
        return match legacy.to_run(&env) {
            Ok((run, log)) => {
                init_logging(&log);
                block_on(rancon::app::run(&run))
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let cli = Cli::parse();
    let log = cli.log.clone();
    let command = cli.into_command().unwrap_or_else(|e| e.exit());
    init_logging(&log);
    block_on(async {
        match &command {
            Command::Run(args) => rancon::app::run(args).await,
            Command::Check(args) => rancon::app::check(args).await,
            Command::Purge(args) => rancon::purge::run(args).await,
            Command::Health(args) => rancon::app::health(args).await,
            Command::Completions { shell } => {
                let mut cmd = Cli::command();
                let mut buf = Vec::new();
                clap_complete::generate(*shell, &mut cmd, "rancon", &mut buf);
                rancon::output::write(&buf);
                ExitCode::SUCCESS
            }
            Command::Man => {
                let mut buf = Vec::new();
                match clap_mangen::Man::new(Cli::command()).render(&mut buf) {
                    Ok(()) => {
                        rancon::output::write(&buf);
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Schema => {
                rancon::output::write(rancon::app::schema().as_bytes());
                ExitCode::SUCCESS
            }
        }
    })
}

/// Runs a command on a multi-thread runtime.
fn block_on(command: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(command);
    // Do not wait for blocking reads still in flight (a source stuck in a file read when a
    // second signal asked to exit at once).
    runtime.shutdown_background();
    code
}
