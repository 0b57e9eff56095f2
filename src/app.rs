//! load → validate → build → run rounds until told to stop.

pub use crate::build::build;
use crate::build::{Config, Loaded};
use crate::cli::{CheckArgs, ConfigArgs, Output, RunArgs};
use crate::config::{self, ConfigError, Problem};
use crate::engine::{Pipeline, RoundOptions, RoundReport, Scope};
use crate::implied::ImpliedComponent;
use crate::output::clean;
use crate::serve::{self, Status};
use crate::wakes::{DEBOUNCE, EventBook, start_watches};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit code for an invalid configuration (EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// Loads what can be read (with the shape problems of the rest, see `config::load_partial`),
/// plus the components the environment implies (the zero-config start).
pub fn load(
    args: &ConfigArgs,
) -> Result<(Loaded, Vec<Problem>, Vec<ImpliedComponent>), ConfigError> {
    let (mut loaded, problems) = config::load_partial(&args.load_options())?;
    let implied = crate::implied::zero_config(&mut loaded, &crate::implied::env_var);
    Ok((loaded, problems, implied))
}

/// Loads and validates the configuration (the top level, each component, the leader). Every
/// problem is reported: shape problems do not hide the meaning problems of the rest.
pub fn load_valid(args: &ConfigArgs) -> Result<Loaded, ConfigError> {
    let (loaded, mut problems, _) = load(args)?;
    if let Err(e) = validate(&loaded) {
        problems.extend(e.problems);
    }
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigError { problems })
    }
}

fn validate(loaded: &Loaded) -> Result<(), ConfigError> {
    let mut c = config::validate::check(loaded);
    crate::leader::check(&loaded.config, &mut c);
    c.finish()
}

/// `rancon schema`: the JSON Schema of the configuration.
pub fn schema() -> String {
    let schema = config::schema::schema_for::<Config>();
    serde_json::to_string_pretty(&schema).expect("a schema always serializes") + "\n"
}

/// `rancon check`: prints a ✓/✗ report; 0 when valid, 78 when not.
pub async fn check(args: &CheckArgs) -> ExitCode {
    let (loaded, mut problems, implied) = match load(&args.config) {
        Ok(l) => l,
        Err(e) => return config_failed("load", &e),
    };
    crate::say!(
        "{}",
        if problems.is_empty() {
            "✓ loaded"
        } else {
            "✗ load"
        }
    );
    for i in &implied {
        crate::say!(
            "· implied {} (type {}) by {} (zero-config start: no source or backend configured)",
            i.key,
            i.kind,
            i.because.join(", ")
        );
    }
    for (key, origin) in crate::implied::conventional_origins(&loaded) {
        crate::say!("· {key} from {origin}");
    }
    // The rest is validated even when part could not be read: one run shows every problem.
    if let Err(e) = validate(&loaded) {
        problems.extend(e.problems);
        return config_failed("validate", &ConfigError { problems });
    }
    if !problems.is_empty() {
        return config_error(&ConfigError { problems });
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
            match b.probe(&desired).await {
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
    config_error(e)
}

fn config_error(e: &ConfigError) -> ExitCode {
    crate::logging::fatal_config(e);
    ExitCode::from(EXIT_CONFIG)
}

/// `rancon health`: asks a running instance's `/health`; 0 when it answers 200, 1 otherwise,
/// 78 when the configuration does not say where it listens.
pub async fn health(args: &crate::cli::HealthArgs) -> ExitCode {
    let url = match &args.url {
        Some(u) => u.clone(),
        None => {
            let loaded: Loaded = match load(&args.config) {
                Ok((l, problems, _)) if problems.is_empty() => l,
                Ok((_, problems, _)) => {
                    crate::logging::fatal_config(&ConfigError { problems });
                    return ExitCode::from(EXIT_CONFIG);
                }
                Err(e) => {
                    crate::logging::fatal_config(&e);
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let Some(mut addr) = loaded.config.http.serve_on() else {
                crate::logging::fatal(
                    "http.listen is not set: this configuration serves no /health",
                    &[],
                );
                return ExitCode::from(EXIT_CONFIG);
            };
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}/health")
        }
    };
    let client = match crate::http::client(Duration::from_secs(5), &Default::default()) {
        Ok(c) => c,
        Err(e) => {
            crate::logging::fatal(&e.to_string(), &[]);
            return ExitCode::FAILURE;
        }
    };
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => {
            crate::say!("healthy ({url})");
            ExitCode::SUCCESS
        }
        Ok(r) => {
            crate::say!("unhealthy: {} ({url})", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            crate::say!("unreachable: {} ({url})", crate::http::describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// `rancon run`: one round with --once, else rounds every `interval` until SIGINT/SIGTERM.
pub async fn run(args: &RunArgs) -> ExitCode {
    // Loading reads files (the config, a services file): off the runtime's workers.
    let built =
        blocking(|| load_valid(&args.config).and_then(|l| build(&l.config).map(|p| (l, p))));
    let (loaded, mut pipeline) = match built {
        Ok(b) => b,
        Err(e) => {
            crate::logging::fatal_config(&e);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let leader = match leader(&loaded.config) {
        Ok(l) => l.map(Arc::new),
        Err(e) => {
            crate::logging::fatal(&format!("leader: {e}"), &[]);
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
    let mut config = loaded.config;
    let status = Arc::new(Status::new(hangup_after(&config)));
    adopt(&status, &config);
    if let Some(addr) = config.http.serve_on()
        && let Err(e) = serve::spawn(addr, status.clone()).await
    {
        crate::logging::fatal(&format!("cannot listen on {addr} (http.listen): {e}"), &[]);
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
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            crate::logging::fatal(&format!("cannot install signal handlers: {e}"), &[]);
            return ExitCode::FAILURE;
        }
    };
    let mut code = ExitCode::SUCCESS;
    let (wake_tx, mut wake_rx) = crate::watch::channel();
    let mut watches = start_watches(&pipeline, &wake_tx);
    let mut events = EventBook::default();
    // The first round lists everything; later ones are full every `interval`, and in between
    // a round runs for what a watch reported (its backends only, from the watched views).
    let mut scope = Scope::full();
    let mut next_full = Instant::now();
    'rounds: loop {
        // Rounds never overlap. A stop signal lets the round in flight finish (up to
        // shutdown_timeout; a second signal exits at once); a reload waits for it.
        let started = Instant::now();
        let full = scope == Scope::full();
        if full {
            next_full = started + jittered(config.interval);
        }
        let mut reload = false;
        let report = {
            let round = one_round_in(&pipeline, opts, args.output, &scope);
            tokio::pin!(round);
            loop {
                tokio::select! {
                    r = &mut round => break r,
                    sig = signals.next() => match sig {
                        Sig::Reload => reload = true,
                        Sig::Stop => {
                            tracing::info!("signal received; finishing the round in flight (a second one exits at once)");
                            tokio::select! {
                                done = tokio::time::timeout(config.shutdown_timeout, &mut round) => {
                                    if done.is_err() {
                                        tracing::warn!(timeout = ?config.shutdown_timeout, "round still running at shutdown_timeout; exiting");
                                    }
                                }
                                _ = signals.stop() => {
                                    tracing::warn!("second signal: exiting without finishing the round");
                                    code = ExitCode::FAILURE;
                                }
                            }
                            break 'rounds;
                        }
                    },
                }
            }
        };
        // --force lifts the guard for one round, not for the life of the daemon.
        opts.force = false;
        status.metrics.record(&report, started.elapsed());
        if full {
            status.metrics.events.full_resync();
        }
        events.applied(&status.metrics.events);
        status.round_completed(!report.failed());
        let sleep = tokio::time::sleep_until(next_full.into());
        tokio::pin!(sleep);
        scope = loop {
            if std::mem::take(&mut reload) {
                if let Some((c, p)) = blocking(|| reloaded(&args.config, &config)) {
                    let gate = pipeline.write_gate.take();
                    pipeline = p;
                    pipeline.write_gate = gate;
                    config = c;
                    adopt(&status, &config);
                    // The old pipeline's watches stop; the new ones resync on connect.
                    watches = start_watches(&pipeline, &wake_tx);
                    // The new configuration applies now, not an `interval` later.
                    break Scope::full();
                }
            }
            // Biased: a full round that is due runs before any wake-up, and a stop signal is
            // seen before one, so a constant stream of events neither postpones the periodic
            // listing nor the shutdown (an unbiased select picks a ready branch at random).
            tokio::select! {
                biased;
                _ = &mut sleep => break Scope::full(),
                sig = signals.next() => match sig {
                    Sig::Reload => reload = true,
                    Sig::Stop => break 'rounds,
                },
                Some(first) = wake_rx.recv() => {
                    // A burst of events becomes one round.
                    let mut wakes = vec![first];
                    let window = tokio::time::sleep(DEBOUNCE);
                    tokio::pin!(window);
                    loop {
                        tokio::select! {
                            _ = &mut window => break,
                            Some(w) = wake_rx.recv() => wakes.push(w),
                        }
                    }
                    // What is queued now, not what keeps arriving: a watch that sends faster
                    // than this drains must not hold the loop (and grow `wakes`) for ever.
                    for _ in 0..wake_rx.len() {
                        match wake_rx.try_recv() {
                            Ok(w) => wakes.push(w),
                            Err(_) => break,
                        }
                    }
                    if let Some(s) = events.scope(&pipeline, wakes, &status.metrics.events) {
                        break s;
                    }
                }
            }
        };
    }
    drop(watches);
    if let (Some(task), Some(l)) = (elector, &leader) {
        task.abort();
        l.release().await;
    }
    tracing::info!("stopped by signal");
    code
}

/// Runs blocking work (file reads) where the runtime allows it: moved off the async workers on
/// the multi-thread runtime the binary uses; inline elsewhere (a current-thread test runtime).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// What the status endpoint takes from the running configuration, at start and on every
/// reload: its components, and how long `/health` waits for a round (a reload that lengthens
/// `interval` must not leave `/health` failing between two healthy rounds).
fn adopt(status: &Status, config: &Config) {
    status
        .metrics
        .declare(config.sources.keys(), config.backends.keys());
    status.set_hangup_after(hangup_after(config));
}

/// `/health` fails after this long without a completed round.
fn hangup_after(config: &Config) -> Duration {
    config.http.hangup_after.unwrap_or(
        config
            .interval
            .saturating_mul(3)
            .saturating_add(Duration::from_secs(60)),
    )
}

/// SIGHUP: the configuration loaded, validated and built anew; on any error the running one
/// stays (and the error is logged). Settings read only at start-up are named if they changed.
fn reloaded(args: &ConfigArgs, running: &Config) -> Option<(Config, Pipeline)> {
    let fresh = load_valid(args).and_then(|l| build(&l.config).map(|p| (l.config, p)));
    match fresh {
        Ok((c, p)) => {
            // `http.hangup_after` applies (`adopt`); where and whether it listens does not.
            let serving = |h: &crate::config::HttpConfig| (h.enabled, h.listen);
            for (what, changed) in [
                ("http", serving(&c.http) != serving(&running.http)),
                ("leader", c.leader != running.leader),
                (
                    "shutdown_timeout",
                    c.shutdown_timeout != running.shutdown_timeout,
                ),
            ] {
                if changed {
                    tracing::warn!(
                        key = what,
                        "changed, but only read at start-up: restart to apply it"
                    );
                }
            }
            tracing::info!("configuration reloaded");
            Some((c, p))
        }
        Err(e) => {
            tracing::error!(error = %crate::output::clean(&e.to_string()), "reload failed; keeping the running configuration");
            None
        }
    }
}

/// What a signal asks for.
enum Sig {
    /// SIGINT or SIGTERM.
    Stop,
    /// SIGHUP.
    Reload,
}

/// The handlers, installed before the first round so no signal meets the default action
/// (which for SIGHUP is to die silently).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Sig {
        tokio::select! {
            _ = self.term.recv() => Sig::Stop,
            _ = self.int.recv() => Sig::Stop,
            _ = self.hup.recv() => Sig::Reload,
        }
    }

    /// The next stop signal (reloads are moot while stopping).
    async fn stop(&mut self) {
        loop {
            if let Sig::Stop = self.next().await {
                return;
            }
        }
    }
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
    one_round_in(pipeline, opts, output, &Scope::full()).await
}

async fn one_round_in(
    pipeline: &Pipeline,
    opts: RoundOptions,
    output: Output,
    scope: &Scope,
) -> RoundReport {
    let report = pipeline.round_in(opts, scope).await;
    crate::report_print::log_decisions(&report);
    let t = report.totals();
    if report.failed() {
        // A failed listing writes nothing, so `failed_writes` can be 0: say the round failed.
        tracing::warn!(
            registered = t.registered,
            updated = t.updated,
            deregistered = t.deregistered,
            unchanged = t.unchanged,
            failed_writes = t.failed,
            write_ms = t.write_ms,
            dry_run = opts.dry_run,
            "round failed (see the errors above)"
        );
    } else {
        tracing::info!(
            registered = t.registered,
            updated = t.updated,
            deregistered = t.deregistered,
            unchanged = t.unchanged,
            failed_writes = t.failed,
            write_ms = t.write_ms,
            dry_run = opts.dry_run,
            "round done"
        );
    }
    if opts.dry_run {
        crate::report_print::print_plan(&report, output);
    }
    report
}
