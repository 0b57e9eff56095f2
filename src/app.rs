//! load → validate → build → run rounds until told to stop.

pub use crate::build::build;
use crate::build::{Config, Loaded};
use crate::cli::{CheckArgs, ConfigArgs, Output, RunArgs};
use crate::config::{self, ConfigError, LoadOptions};
use crate::engine::{Pipeline, RoundOptions, RoundReport};
use crate::output::clean;
use crate::serve::{self, Status};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit code for an invalid configuration (EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

fn load_options(args: &ConfigArgs) -> LoadOptions {
    LoadOptions {
        file: args.config.clone(),
        sets: args.sets.clone(),
    }
}

/// Loads and validates the configuration (the top level, each component, the leader).
pub fn load_valid(args: &ConfigArgs) -> Result<Loaded, ConfigError> {
    let loaded = config::load(&load_options(args))?;
    validate(&loaded)?;
    Ok(loaded)
}

fn validate(loaded: &Loaded) -> Result<(), ConfigError> {
    let mut c = config::validate::check(loaded);
    crate::leader::check(&loaded.config, &mut c);
    c.finish()
}

/// `rancon schema`: the JSON Schema of the configuration.
pub fn schema() -> String {
    let schema = schemars::schema_for!(Config);
    serde_json::to_string_pretty(&schema).expect("a schema always serializes") + "\n"
}

/// `rancon check`: prints a ✓/✗ report; 0 when valid, 78 when not.
pub async fn check(args: &CheckArgs) -> ExitCode {
    let loaded: Loaded = match config::load(&load_options(&args.config)) {
        Ok(l) => l,
        Err(e) => return config_failed("load", &e),
    };
    crate::say!("✓ loaded");
    if let Err(e) = validate(&loaded) {
        return config_failed("validate", &e);
    }
    crate::say!(
        "✓ validated: {} source(s), {} backend(s)",
        loaded.config.sources.len(),
        loaded.config.backends.len()
    );
    let pipeline = match build(&loaded.config) {
        Ok(p) => p,
        Err(e) => return config_failed("build", &e),
    };
    crate::say!("✓ built");
    let mut ok = true;
    if args.connect {
        // The endpoints tell backends with one agent per host (`%HOST%`) where to look.
        let mut endpoints = Vec::new();
        for s in &pipeline.sources {
            match s.fetch().await {
                Ok((eps, skipped)) => {
                    crate::say!(
                        "✓ source {}: {} endpoint(s), {} skipped",
                        s.name(),
                        eps.len(),
                        skipped.len()
                    );
                    endpoints.extend(eps);
                }
                Err(e) => {
                    ok = false;
                    crate::say!("✗ source {}: {}", s.name(), clean(&e.to_string()))
                }
            }
        }
        for b in &pipeline.backends {
            let desired = crate::engine::desired(b.as_ref(), &endpoints).0;
            match b.list(&desired).await {
                Ok(l) if !l.partial.is_empty() => {
                    ok = false;
                    crate::say!(
                        "✗ backend {}: {}",
                        b.name(),
                        clean(&crate::error::joined(&l.partial))
                    )
                }
                Ok(l) => crate::say!(
                    "✓ backend {}: {} owned registration(s)",
                    b.name(),
                    l.regs.len()
                ),
                Err(e) => {
                    ok = false;
                    crate::say!("✗ backend {}: {}", b.name(), clean(&e.to_string()))
                }
            }
        }
    }
    crate::say!("\nresolved configuration:\n{}", resolved(&loaded.config));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The resolved configuration as TOML (secrets are masked by their types).
pub fn resolved(raw: &Config) -> String {
    toml::to_string(raw).unwrap_or_else(|e| format!("<cannot render: {e}>"))
}

fn config_failed(stage: &str, e: &ConfigError) -> ExitCode {
    crate::say!("✗ {stage}");
    eprintln!("error: {e}");
    ExitCode::from(EXIT_CONFIG)
}

/// `rancon run`: one round with --once, else rounds every `interval` until SIGINT/SIGTERM.
pub async fn run(args: &RunArgs) -> ExitCode {
    let built = load_valid(&args.config).and_then(|l| build(&l.config).map(|p| (l, p)));
    let (loaded, mut pipeline) = match built {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let leader = match leader(&loaded.config) {
        Ok(l) => l.map(Arc::new),
        Err(e) => {
            eprintln!("error: leader: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(l) = &leader {
        pipeline.write_gate = Some(l.gate.clone());
        // Elect before the first round, so a lone replica writes from its first round on.
        l.tick().await;
    }
    let mut opts = RoundOptions {
        dry_run: args.dry_run,
        force: args.force,
    };
    if args.once || args.dry_run {
        let report = one_round(&pipeline, opts, args.output).await;
        if let Some(l) = &leader {
            l.release().await;
        }
        return if report.failed() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    let raw = &loaded.config;
    let status = Arc::new(Status::new(
        raw.http.hangup_after.unwrap_or(
            raw.interval
                .saturating_mul(3)
                .saturating_add(Duration::from_secs(60)),
        ),
    ));
    if raw.http.enabled
        && let Err(e) = serve::spawn(raw.http.listen, status.clone()).await
    {
        eprintln!(
            "error: cannot listen on {} (http.listen): {e}",
            raw.http.listen
        );
        return ExitCode::FAILURE;
    }
    let elector = leader.clone().map(|l| {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(l.period()).await;
                l.tick().await;
            }
        })
    });
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        // The round in flight finishes (up to shutdown_timeout); the signal is otherwise only
        // looked at between rounds, and rounds never overlap.
        let started = Instant::now();
        let round = one_round(&pipeline, opts, args.output);
        tokio::pin!(round);
        let report = tokio::select! {
            r = &mut round => r,
            _ = &mut stop => {
                tracing::info!("signal received; finishing the round in flight");
                if tokio::time::timeout(raw.shutdown_timeout, round).await.is_err() {
                    tracing::warn!(timeout = ?raw.shutdown_timeout, "round still running at shutdown_timeout; exiting");
                }
                break;
            }
        };
        // --force lifts the guard for one round, not for the life of the daemon.
        opts.force = false;
        status.metrics.record(&report, started.elapsed());
        status.round_completed(!report.failed());
        tokio::select! {
            _ = tokio::time::sleep(jittered(raw.interval)) => {}
            _ = &mut stop => break,
        }
    }
    if let (Some(task), Some(l)) = (elector, &leader) {
        task.abort();
        l.release().await;
    }
    tracing::info!("stopped by signal");
    ExitCode::SUCCESS
}

/// The leader election the config asks for, if any.
fn leader(raw: &Config) -> anyhow::Result<Option<crate::leader::Leader>> {
    let Some(cfg) = &raw.leader else {
        return Ok(None);
    };
    match raw.backends.get(&cfg.backend) {
        Some(crate::backend::BackendConfig::Consul(c)) => Ok(Some(crate::leader::Leader::new(
            cfg,
            c,
            &raw.owner,
            raw.max_response_size,
        )?)),
        _ => anyhow::bail!("{:?} is not a consul backend", cfg.backend),
    }
}

/// `interval` ± up to 10 %, so replicas and restarts do not hit the servers in lockstep.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + fastrand::f64() * 0.2)
}

async fn one_round(pipeline: &Pipeline, opts: RoundOptions, output: Output) -> RoundReport {
    let report = pipeline.round(opts).await;
    let t = report.totals();
    tracing::info!(
        registered = t.registered,
        updated = t.updated,
        deregistered = t.deregistered,
        unchanged = t.unchanged,
        failed = t.failed,
        dry_run = opts.dry_run,
        "round done"
    );
    if opts.dry_run {
        print_plan(&report, output);
    }
    report
}

fn print_plan(report: &RoundReport, output: Output) {
    if output == Output::Json {
        crate::say!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
        return;
    }
    for b in &report.backends {
        crate::say!("backend {}:", b.backend);
        if let Some(e) = b.error_text() {
            crate::say!("  ! {}", clean(&e));
        }
        for s in &b.skipped {
            crate::say!(
                "  ? {} ({}): {}",
                clean(&s.endpoint),
                s.kind.as_str(),
                clean(&s.reason)
            );
        }
        let Some(p) = &b.plan else { continue };
        for r in p.register.values() {
            crate::say!("  + {}", describe(r));
        }
        for r in p.update.values() {
            crate::say!("  ~ {}", describe(r));
        }
        for id in &p.deregister {
            crate::say!("  - {}", clean(id));
        }
        crate::say!("  = {} unchanged", p.unchanged);
    }
}

/// `id name address:port`, printable whatever the data holds.
pub fn describe(r: &crate::model::Registration) -> String {
    clean(&format!("{} {} {}:{}", r.id, r.name, r.address, r.port)).into_owned()
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed now, not on first poll, so a
/// signal that arrives while the first round runs is never lost to the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => std::future::pending().await,
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
