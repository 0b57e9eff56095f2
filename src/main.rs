//! Thin edge: parse the CLI, set up logging, hand over to the library.

use clap::{CommandFactory, Parser};
use rancon::cli::{Cli, Command, ConfigArgs, LogArgs};
use std::process::ExitCode;

/// jemalloc, configured to hold little: one arena (two worker threads do not need more) and
/// freed pages handed back at once. glibc's per-thread arenas kept a 20,000-service round's
/// fragments resident: peak RSS 104 MiB and 93 MiB after it, for 57 MiB of peak heap and
/// 15 MiB live (`cargo bench --bench steady`; with this, 68 and 40).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's `malloc_conf` (a C string it reads at start-up, before `main`); the `_rjem_`
/// prefix is tikv-jemalloc-sys's.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: MallocConf =
    MallocConf(c"narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0".as_ptr());

/// A C string pointer jemalloc reads; never written.
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a static, immutable C string.
unsafe impl Sync for MallocConf {}

/// Sets up logging; a bad `RANCON_LOG`/`RANCON_LOG_FORMAT` ends the command (exit 78).
fn init_logging(log: &LogArgs, config: Option<&ConfigArgs>) -> Result<(), ExitCode> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match rancon::logging::settings(log, config, &var) {
        Ok(s) => {
            rancon::logging::init(&s);
            Ok(())
        }
        Err(e) => {
            rancon::logging::fatal_config(&e);
            Err(ExitCode::from(rancon::app::EXIT_CONFIG))
        }
    }
}

/// The configuration a command reads (its `[log]` keys choose the log format and level).
fn config_args(command: &Command) -> Option<&ConfigArgs> {
    match command {
        Command::Run(a) => Some(&a.config),
        Command::Check(a) => Some(&a.config),
        Command::Purge(a) => Some(&a.config),
        Command::Health(a) => Some(&a.config),
        Command::Schema | Command::Completions { .. } | Command::Man(_) => None,
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
            Ok((run, log)) => match init_logging(&log, Some(&run.config)) {
                Ok(()) => block_on(rancon::app::run(&run)),
                Err(code) => code,
            },
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let cli = Cli::parse();
    let log = cli.log.clone();
    let command = cli.into_command().unwrap_or_else(|e| e.exit());
    if let Err(code) = init_logging(&log, config_args(&command)) {
        return code;
    }
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
            Command::Man(args) => rancon::man::run(args),
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
