//! `rancon man`: a page for rancon and for every subcommand, each with ENVIRONMENT and EXIT
//! STATUS sections; one page to stdout, or all of them into a directory.

use assert_cmd::Command;
use std::collections::BTreeSet;

fn rancon() -> Command {
    let mut c = Command::cargo_bin("rancon").unwrap();
    c.env_clear();
    c
}

fn stdout(args: &[&str]) -> String {
    let out = rancon().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands `rancon --help` lists.
fn subcommands() -> BTreeSet<String> {
    let help = stdout(&["--help"]);
    help.split("Commands:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        // A command starts its line (two spaces in); wrapped descriptions are indented more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

fn assert_page(text: &str, name: &str) {
    assert!(
        text.starts_with(".ie") || text.starts_with(".TH"),
        "{name}: not roff"
    );
    assert!(
        text.contains(&format!(".TH {name} 1")),
        "{name}: title\n{text}"
    );
    let exit = text
        .find(".SH \"EXIT STATUS\"")
        .unwrap_or_else(|| panic!("{name}: no EXIT STATUS"));
    let env = text
        .find(".SH ENVIRONMENT")
        .unwrap_or_else(|| panic!("{name}: no ENVIRONMENT"));
    assert!(exit < env, "{name}");
    for code in ["\\fB0\\fR", "\\fB2\\fR", "\\fB78\\fR"] {
        assert!(text[exit..env].contains(code), "{name}: exit status {code}");
    }
    for var in [
        "RANCON_CONFIG",
        "RANCON_LOG",
        "RANCHER_URL",
        "CONSUL_HTTP_ADDR",
        "NO_COLOR",
    ] {
        assert!(text[env..].contains(var), "{name}: {var}");
    }
}

#[test]
fn one_page_per_subcommand_goes_to_stdout() {
    let subs = subcommands();
    assert!(subs.contains("run") && subs.contains("man"), "{subs:?}");
    assert_page(&stdout(&["man"]), "rancon");
    for sub in &subs {
        let page = stdout(&["man", sub]);
        assert_page(&page, &format!("rancon-{sub}"));
        assert!(page.contains(&format!("rancon {sub}")), "{sub}: synopsis");
    }
    // Each page says what its own statuses mean.
    assert!(stdout(&["man", "health"]).contains("answered /health with 200"));
    rancon().args(["man", "nope"]).assert().code(2);
}

#[test]
fn dir_writes_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let listed = stdout(&["man", "--dir", dir.path().to_str().unwrap()]);
    let files: BTreeSet<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut want: BTreeSet<String> = subcommands()
        .iter()
        .map(|s| format!("rancon-{s}.1"))
        .collect();
    want.insert("rancon.1".into());
    assert_eq!(files, want);
    assert_eq!(listed.lines().count(), want.len(), "{listed}");
    for f in &files {
        let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
        assert_page(&text, f.trim_end_matches(".1"));
    }
    // --dir writes every page: naming one as well is a usage error.
    rancon()
        .args(["man", "check", "--dir", dir.path().to_str().unwrap()])
        .assert()
        .code(2);
}
