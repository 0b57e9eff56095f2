//! `rancon purge`: deregister everything one owner registered in one backend (uninstalling).

use crate::app::{EXIT_CONFIG, build, load_valid};
use crate::cli::PurgeArgs;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Runs `rancon purge`. Exit 0 when everything listed was removed (or nothing was there),
/// 1 when a listing or a deregistration failed, 2 when not confirmed, 78 for bad config.
pub async fn run(args: &PurgeArgs) -> ExitCode {
    let mut config = args.config.clone();
    if let Some(owner) = &args.owner {
        config
            .sets
            .push(format!("owner={}", toml::Value::String(owner.clone())));
    }
    let built = load_valid(&config).and_then(|l| build(&l.raw).map(|p| (l, p)));
    let (loaded, pipeline) = match built {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let owner = &loaded.raw.owner;
    let plan = match pipeline.purge_plan(&args.backend).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for e in &plan.partial {
        eprintln!("warning: not listed, left in place: {e}");
    }
    if plan.actual.is_empty() {
        println!(
            "backend {}: nothing registered by owner {owner:?}",
            args.backend
        );
        return exit(plan.partial.is_empty());
    }
    println!(
        "backend {}: {} registration(s) of owner {owner:?}:",
        args.backend,
        plan.actual.len()
    );
    for r in plan.actual.values() {
        println!("  - {} {} {}:{}", r.id, r.name, r.address, r.port);
    }
    if !args.yes && !confirm() {
        eprintln!("not confirmed; nothing deregistered (use --yes to skip the question)");
        return ExitCode::from(2);
    }
    let report = pipeline.purge(&args.backend, &plan).await;
    for (id, e) in &report.failed {
        eprintln!("error: {id}: {e}");
    }
    println!(
        "deregistered {}, failed {}",
        report.done,
        report.failed.len()
    );
    exit(report.failed.is_empty() && plan.partial.is_empty())
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Asks on the terminal; without one (a script) the answer is no.
fn confirm() -> bool {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        eprintln!("stdin is not a terminal and --yes was not given");
        return false;
    }
    print!("Deregister them all? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    stdin.lock().read_line(&mut line).is_ok()
        && matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
