//! Log set-up: format and filter from the flags, `RANCON_LOG`/`RANCON_LOG_FORMAT` and the
//! `[log]` keys; JSON lines with unique keys; fatal errors in the chosen format.

use crate::cli::{ConfigArgs, LogArgs, LogFormat};
use crate::config::log::{self as log_config, LogConfig};
use crate::config::{ConfigError, Problem};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::OnceLock;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The variable holding a tracing filter; it wins over `-v`/`-q` and `log.level`.
pub const FILTER_ENV: &str = "RANCON_LOG";
/// The variable holding the line format when `--log-format` is not given.
pub const FORMAT_ENV: &str = "RANCON_LOG_FORMAT";

/// How logs are written, once decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Text or JSON lines.
    pub json: bool,
    /// The tracing filter, e.g. `warn,rancon=info`.
    pub filter: String,
}

/// The format chosen at start, for `fatal`; text until `init` ran.
static JSON: OnceLock<bool> = OnceLock::new();

/// Decides the format and filter. Highest first: the flags, then `RANCON_LOG_FORMAT` /
/// `RANCON_LOG`, then the `[log]` keys of the configuration (read leniently here: a broken
/// `[log]` falls back to the defaults, and the full load reports it), then text at `info`.
/// An invalid `RANCON_LOG` or `RANCON_LOG_FORMAT` is a configuration error (exit 78).
pub fn settings(
    args: &LogArgs,
    config: Option<&ConfigArgs>,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let keys = config.map(configured).unwrap_or_default();
    let env_format = match var(FORMAT_ENV).as_deref().map(str::trim) {
        None => None,
        Some(v) if v.eq_ignore_ascii_case("json") => Some(LogFormat::Json),
        Some(v) if v.eq_ignore_ascii_case("text") => Some(LogFormat::Text),
        Some(_) => {
            return Err(env_problem(FORMAT_ENV, "must be `text` or `json`".into()));
        }
    };
    let json = match args.log_format.or(env_format) {
        Some(f) => f == LogFormat::Json,
        None => keys.format == log_config::LogFormat::Json,
    };
    let filter = if let Some(f) = var(FILTER_ENV) {
        log_config::parse_filter(&f)
            .map_err(|e| env_problem(FILTER_ENV, format!("invalid tracing filter: {e}")))?;
        f
    } else if args.quiet {
        "warn".into()
    } else if args.verbose > 0 {
        match args.verbose {
            1 => "warn,rancon=debug",
            2 => "warn,rancon=trace",
            3 => "debug,rancon=trace",
            _ => "trace",
        }
        .into()
    } else {
        keys.filter()
            .filter(|f| log_config::parse_filter(f).is_ok())
            .unwrap_or_else(|| "warn,rancon=info".into())
    };
    Ok(Settings { json, filter })
}

/// The `[log]` keys as the layers set them, or the defaults when they cannot be read.
fn configured(args: &ConfigArgs) -> LogConfig {
    crate::config::load::figment::<crate::source::SourceConfig, crate::backend::BackendConfig>(
        &args.load_options(),
    )
    .ok()
    .and_then(|f| f.extract_inner::<LogConfig>("log").ok())
    .unwrap_or_default()
}

fn env_problem(var: &str, message: String) -> ConfigError {
    ConfigError {
        problems: vec![Problem {
            key: String::new(),
            message,
            origin: Some(format!("env {var}")),
        }],
    }
}

/// Dependency targets that log what they carry, with the most verbose level each may log at
/// whatever the filter says: bollard writes every response body at debug (an inspect holds
/// the container's environment, where passwords live), tungstenite the WebSocket upgrade
/// request (Rancher's `Authorization` header) and every frame (a container's `environment`)
/// at trace. A cap only lowers: a filter quieter than it stays quieter.
const CAPS: [(&str, tracing::Level); 2] = [
    ("bollard", tracing::Level::INFO),
    ("tungstenite", tracing::Level::DEBUG),
];

/// Whether an event or span passes `CAPS`.
pub fn within_caps(meta: &tracing::Metadata<'_>) -> bool {
    let target = meta.target();
    CAPS.iter().all(|(prefix, most)| {
        let under = target
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
        !under || meta.level() <= most
    })
}

/// Installs the subscriber on stderr.
pub fn init(s: &Settings) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = JSON.set(s.json);
    let filter = log_config::parse_filter(&s.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rancon=info"));
    // Colour only for a person at a terminal, and never with NO_COLOR (no-color.org).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if s.json {
        builder
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .finish()
            .with(tracing_subscriber::filter::filter_fn(within_caps))
            .init();
    } else {
        use tracing_subscriber::field::MakeExt;
        // Text: values from servers, labels and files may hold newlines or ANSI escapes;
        // escaped, they cannot forge a log line or recolour a terminal.
        builder
            .with_ansi(ansi)
            .fmt_fields(
                tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                    let text = format!("{value:?}");
                    let text = crate::output::clean(&text);
                    if field.name() == "message" {
                        write!(w, "{text}")
                    } else {
                        write!(w, "{field}={text}")
                    }
                })
                .delimited(" "),
            )
            .finish()
            .with(tracing_subscriber::filter::filter_fn(within_caps))
            .init();
    }
}

/// Reports an error that ends the command on stderr, in the chosen format whatever the filter:
/// `error: …` as text, or one JSON line (`level` `ERROR`) whose `fields.problems` lists a
/// configuration error's problems with key, message and origin.
pub fn fatal(message: &str, problems: &[Problem]) {
    if !JSON.get().copied().unwrap_or(false) {
        eprintln!("error: {message}");
        return;
    }
    let mut fields = Map::new();
    fields.insert("message".into(), Value::String(message.into()));
    if !problems.is_empty() {
        let list = problems
            .iter()
            .map(|p| {
                let mut m = Map::new();
                m.insert("key".into(), Value::String(p.key.clone()));
                m.insert("message".into(), Value::String(p.message.clone()));
                if let Some(o) = &p.origin {
                    m.insert("origin".into(), Value::String(o.clone()));
                }
                Value::Object(m)
            })
            .collect();
        fields.insert("problems".into(), Value::Array(list));
    }
    eprintln!("{}", line("ERROR", "rancon", fields, Vec::new()));
}

/// `fatal` for a configuration error.
pub fn fatal_config(e: &ConfigError) {
    if JSON.get().copied().unwrap_or(false) {
        let n = e.problems.len();
        let head = format!(
            "invalid configuration ({n} problem{})",
            if n == 1 { "" } else { "s" }
        );
        fatal(&head, &e.problems);
    } else {
        fatal(&e.to_string(), &[]);
    }
}

/// One JSON log line: `timestamp`, `level`, `target`, `fields` (the event's, `message`
/// included) and `spans` (root first, each `{name, fields}`). Span fields sit in their own
/// object, so a span field called `name` cannot clash with the span's name.
fn line(level: &str, target: &str, fields: Map<String, Value>, spans: Vec<Value>) -> String {
    let mut time = String::new();
    let _ = tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut time));
    let mut m = Map::new();
    m.insert("timestamp".into(), Value::String(time));
    m.insert("level".into(), Value::String(level.into()));
    m.insert("target".into(), Value::String(target.into()));
    m.insert("fields".into(), Value::Object(fields));
    if !spans.is_empty() {
        m.insert("spans".into(), Value::Array(spans));
    }
    Value::Object(m).to_string()
}

/// The JSON event format (see `line`).
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        let spans = ctx
            .event_scope()
            .into_iter()
            .flat_map(|scope| scope.from_root())
            .map(|span| {
                let ext = span.extensions();
                // Span fields were formatted by `JsonFields`: a JSON object.
                let fields = ext
                    .get::<FormattedFields<N>>()
                    .and_then(|f| serde_json::from_str::<Map<String, Value>>(f).ok())
                    .unwrap_or_default();
                let mut m = Map::new();
                m.insert("name".into(), Value::String(span.name().into()));
                m.insert("fields".into(), Value::Object(fields));
                Value::Object(m)
            })
            .collect();
        let meta = event.metadata();
        writeln!(
            writer,
            "{}",
            line(meta.level().as_str(), meta.target(), fields, spans)
        )
    }
}

/// Collects an event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(verbose: u8, quiet: bool, format: Option<LogFormat>) -> LogArgs {
        LogArgs {
            verbose,
            quiet,
            log_format: format,
        }
    }

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn verbosity_raises_rancon_before_its_dependencies() {
        let f = |v| settings(&args(v, false, None), None, &none).unwrap().filter;
        assert_eq!(f(0), "warn,rancon=info");
        assert_eq!(f(1), "warn,rancon=debug");
        assert_eq!(f(2), "warn,rancon=trace");
        assert_eq!(f(3), "debug,rancon=trace");
        assert_eq!(f(9), "trace");
    }

    #[test]
    fn the_flag_wins_over_the_variable() {
        let env = |k: &str| (k == FORMAT_ENV).then(|| "json".to_string());
        assert!(settings(&args(0, false, None), None, &env).unwrap().json);
        let text = settings(&args(0, false, Some(LogFormat::Text)), None, &env).unwrap();
        assert!(!text.json);
    }

    #[test]
    fn bad_variables_are_configuration_errors_naming_them() {
        let env = |k: &str| (k == FILTER_ENV).then(|| "rancon=loud".to_string());
        let e = settings(&args(0, false, None), None, &env).unwrap_err();
        assert_eq!(e.problems[0].origin.as_deref(), Some("env RANCON_LOG"));
        let env = |k: &str| (k == FORMAT_ENV).then(|| "xml".to_string());
        let e = settings(&args(0, false, None), None, &env).unwrap_err();
        assert_eq!(
            e.problems[0].origin.as_deref(),
            Some("env RANCON_LOG_FORMAT")
        );
    }
}
