//! `rancon purge`: deregister everything one owner registered in one backend (uninstalling).

use crate::app::{EXIT_CONFIG, build, load_valid};
use crate::backend::{ApplyReport, Backend};
use crate::cli::PurgeArgs;
use crate::engine::{Pipeline, desired};
use crate::error::BackendError;
use crate::model::RegistrationMap;
use crate::plan::{Plan, plan};
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
    let built = load_valid(&config).and_then(|l| build(&l.config).map(|p| (l, p)));
    let (loaded, pipeline) = match built {
        Ok(b) => b,
        Err(e) => {
            crate::logging::fatal_config(&e);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let owner = &loaded.config.owner;
    let Some(backend) = pipeline.backends.iter().find(|b| b.name() == args.backend) else {
        eprintln!("error: no backend named {:?} is configured", args.backend);
        return ExitCode::FAILURE;
    };
    let plan = match purge_plan(&pipeline, backend.as_ref()).await {
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
        crate::say!(
            "backend {}: nothing registered by owner {owner:?}",
            args.backend
        );
        return exit(plan.partial.is_empty());
    }
    crate::say!(
        "backend {}: {} registration(s) of owner {owner:?}:",
        args.backend,
        plan.actual.len()
    );
    for r in plan.actual.values() {
        crate::say!("  - {}", crate::report_print::describe(r));
    }
    if !args.yes && !confirm() {
        eprintln!("not confirmed; nothing deregistered (use --yes to skip the question)");
        return ExitCode::from(2);
    }
    let report: ApplyReport = backend
        .apply(&RegistrationMap::new(), &plan.actual, &plan.plan)
        .await;
    for f in &report.failed {
        eprintln!(
            "error: {}",
            crate::output::clean(&format!("{}: {}", f.id, f.error))
        );
    }
    crate::say!(
        "deregistered {}, failed {}",
        report.done,
        report.failed.len()
    );
    exit(report.failed.is_empty() && plan.partial.is_empty())
}

/// What `rancon purge` would remove from one backend.
pub struct PurgePlan {
    /// The owned registrations found.
    pub actual: RegistrationMap,
    /// Deregister every one of them.
    pub plan: Plan,
    /// Parts that could not be listed (they keep their registrations).
    pub partial: Vec<BackendError>,
}

/// Lists everything this owner holds in `be` and plans its removal. The sources are read
/// only to tell a backend with one agent per host where to look.
pub async fn purge_plan(pipeline: &Pipeline, be: &dyn Backend) -> Result<PurgePlan, BackendError> {
    let mut endpoints = Vec::new();
    for s in &pipeline.sources {
        match s.fetch().await {
            Ok((eps, _)) => endpoints.extend(eps),
            Err(e) => {
                tracing::warn!(source = s.name(), error = %e, "source failed; purge looks only where the backend already knows")
            }
        }
    }
    let listing = be.list(&desired(be, &endpoints).0).await?;
    let plan = plan(&RegistrationMap::new(), &listing.regs);
    Ok(PurgePlan {
        actual: listing.regs,
        plan,
        partial: listing.partial,
    })
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
    crate::output::print(format_args!("Deregister them all? [y/N] "));
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    stdin.lock().read_line(&mut line).is_ok()
        && matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
