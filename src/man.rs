//! `rancon man`: roff man pages for rancon and each subcommand, from the clap definitions, with
//! ENVIRONMENT and EXIT STATUS sections (clap_mangen renders the rest).

use clap::CommandFactory;
use roff::{Roff, bold, roman};

/// The variables rancon reads, for every page: (name, what it does).
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("RANCON_CONFIG", "The TOML configuration file, as --config."),
    (
        "RANCON_<KEY>",
        "Any configuration key, above the file and below --set; __ nests: RANCON_INTERVAL=10s, RANCON_BACKENDS__CONSUL__URL=http://consul:8500, RANCON_LOG__FORMAT=json.",
    ),
    (
        "RANCON_LOG",
        "A tracing filter (rancon=debug, warn,rancon::engine=trace); wins over -v, -q and log.level. An invalid filter exits 78.",
    ),
    (
        "RANCON_LOG_FORMAT",
        "text or json, as --log-format (which wins); above the log.format key.",
    ),
    (
        "NO_COLOR",
        "When set and not empty, text logs carry no colour (they carry none unless stderr is a terminal anyway).",
    ),
    (
        "RANCHER_URL, RANCHER_ACCESS_KEY, RANCHER_SECRET_KEY",
        "Fill a rancher source's url and key pair where no file, RANCON_* variable or --set did.",
    ),
    (
        "CATTLE_URL, CATTLE_ACCESS_KEY, CATTLE_SECRET_KEY",
        "Injected by Rancher into a service with agent labels; below RANCHER_*.",
    ),
    (
        "CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_SSL, CONSUL_HTTP_SSL_VERIFY, CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME",
        "Fill a consul backend as the consul command reads them.",
    ),
    (
        "RANCHER_URL (or CATTLE_URL) with CONSUL_HTTP_ADDR",
        "With no source and no backend configured: the zero-config start, a rancher source named rancher into a consul backend named consul.",
    ),
    (
        "RANCON_SOURCE, RANCON_REGISTRY, RANCON_FRONTEND_OPTIONS, RANCON_BACKEND_OPTIONS, RANCON_FOREGROUND, RANCON_WAIT, RANCON_HANGUP_SECONDS, RANCON_VERBOSE",
        "The original tool's settings, honoured with its command line (rancon rancher consul) and an error with the new one.",
    ),
];

/// Exit statuses every command shares.
const COMMON_STATUS: &[(&str, &str)] = &[
    ("2", "Usage error: an unknown option or a bad argument."),
    (
        "78",
        "Invalid configuration (EX_CONFIG): every problem is named with its key and where the value came from.",
    ),
    (
        "141",
        "Standard output was closed by its reader (as a shell reports SIGPIPE).",
    ),
];

/// What statuses 0 and 1 mean for one command (`""`: rancon itself, which runs `run`).
fn own_status(command: &str) -> [(&'static str, &'static str); 2] {
    match command {
        "" | "run" => [
            (
                "0",
                "Stopped by SIGINT or SIGTERM after finishing the round in flight; with --once or --dry-run, a round without failures.",
            ),
            (
                "1",
                "With --once or --dry-run, the round had failures (a source, a listing, a write, or the deregistration guard); or a second stop signal ended a round early; or the http endpoint could not listen.",
            ),
        ],
        "check" => [
            (
                "0",
                "The configuration is valid (and with --connect every source and backend answered).",
            ),
            (
                "1",
                "With --connect, a source or backend could not be listed.",
            ),
        ],
        "purge" => [
            (
                "0",
                "Every registration of the owner was removed, or there was none.",
            ),
            (
                "1",
                "A removal failed, part of the backend could not be listed, or no backend has that name (status 2 as well when not confirmed).",
            ),
        ],
        "health" => [
            ("0", "The running instance answered /health with 200."),
            ("1", "It answered otherwise, or could not be reached."),
        ],
        _ => [("0", "Success."), ("1", "The output could not be written.")],
    }
}

/// The ENVIRONMENT and EXIT STATUS sections of `command`'s page.
fn extra_sections(command: &str) -> String {
    let mut r = Roff::default();
    r.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in own_status(command).iter().chain(COMMON_STATUS) {
        r.control("TP", [])
            .text([bold(*code)])
            .text([roman(*meaning)]);
    }
    r.control("SH", ["ENVIRONMENT"]);
    r.text([roman(
        "Configuration is layered, later wins: defaults, the variables other tools read (below), the file, RANCON_* variables, --set.",
    )]);
    for (name, meaning) in ENVIRONMENT {
        r.control("TP", [])
            .text([bold(*name)])
            .text([roman(*meaning)]);
    }
    r.to_roff()
}

/// The page of `command` (`""`: the top-level `rancon` page) as roff, or `None` when rancon
/// has no such subcommand.
pub fn page(command: &str) -> Option<Vec<u8>> {
    let mut top = crate::cli::Cli::command().disable_help_subcommand(true);
    top.build();
    let cmd = if command.is_empty() {
        top
    } else {
        top.find_subcommand(command)?
            .clone()
            .display_name(format!("rancon-{command}"))
            .bin_name(format!("rancon {command}"))
    };
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .source(concat!("rancon ", env!("CARGO_PKG_VERSION")))
        .manual("rancon manual")
        .render(&mut buf)
        .expect("rendering into memory cannot fail");
    let text = String::from_utf8(buf).expect("roff from UTF-8 input is UTF-8");
    // The sections go before EXTRA/VERSION/AUTHORS, where man pages keep them.
    let at = ["\n.SH EXTRA\n", "\n.SH VERSION\n", "\n.SH AUTHORS\n"]
        .iter()
        .filter_map(|h| text.find(h).map(|i| i + 1))
        .min()
        .unwrap_or(text.len());
    let mut out = text[..at].to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out += &extra_sections(command);
    out += &text[at..];
    Some(out.into_bytes())
}

/// Every page: `("rancon.1", …)` then `("rancon-<sub>.1", …)` for each subcommand.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let top = crate::cli::Cli::command();
    let subs = top
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string());
    std::iter::once(String::new())
        .chain(subs)
        .filter_map(|name| {
            let file = if name.is_empty() {
                "rancon.1".to_string()
            } else {
                format!("rancon-{name}.1")
            };
            page(&name).map(|p| (file, p))
        })
        .collect()
}

/// `rancon man`: one page to stdout, or every page into a directory.
pub fn run(args: &crate::cli::ManArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let Some(dir) = &args.dir else {
        let name = args.command.as_deref().unwrap_or("");
        return match page(name) {
            Some(p) => {
                crate::output::write(&p);
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("error: no subcommand {name:?} (see rancon --help)");
                ExitCode::from(2)
            }
        };
    };
    for (file, text) in pages() {
        let path = dir.join(&file);
        if let Err(e) = std::fs::write(&path, text) {
            crate::logging::fatal(&format!("cannot write {}: {e}", path.display()), &[]);
            return ExitCode::FAILURE;
        }
        crate::say!("{}", path.display());
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_page_has_the_two_sections_before_version() {
        let pages = super::pages();
        assert!(
            pages.len() >= 8,
            "{:?}",
            pages.iter().map(|p| &p.0).collect::<Vec<_>>()
        );
        for (file, text) in pages {
            let text = String::from_utf8(text).unwrap();
            let env = text
                .find(".SH ENVIRONMENT")
                .unwrap_or_else(|| panic!("{file}"));
            let exit = text
                .find(".SH \"EXIT STATUS\"")
                .unwrap_or_else(|| panic!("{file}\n{text}"));
            let version = text.find(".SH VERSION").unwrap_or(text.len());
            assert!(exit < env && env < version, "{file}");
        }
    }
}
