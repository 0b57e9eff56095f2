//! Printing a round's report: the dry-run plan (text or JSON) and one registration's line.

use crate::cli::Output;
use crate::engine::RoundReport;
use crate::output::clean;

/// Prints the plan of a dry run to stdout.
pub fn print_plan(report: &RoundReport, output: Output) {
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
