//! Writing to stdout: a reader that went away (`rancon check | head -1`) ends the command
//! quietly with status 141 (as a shell reports a process ended by SIGPIPE), never a panic.

use std::io::Write;

/// Writes `bytes` to stdout and flushes.
pub fn write(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        // Anything else (a full disk behind a redirect): say so once, on stderr.
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Writes formatted text to stdout (see `write`).
pub fn print(text: std::fmt::Arguments<'_>) {
    write(text.to_string().as_bytes());
}

/// `println!` that ends quietly on a closed stdout.
#[macro_export]
macro_rules! say {
    () => { $crate::output::write(b"\n") };
    ($($t:tt)*) => { $crate::output::print(format_args!("{}\n", format_args!($($t)*))) };
}

/// Text from servers, labels or files, safe to print on one line: control characters
/// (newlines, ANSI escapes) are shown escaped, so data cannot forge lines or colours.
pub fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::clean("web"), "web");
        assert_eq!(
            super::clean("a\nINFO fake\u{1b}[31m"),
            "a\\nINFO fake\\u{1b}[31m"
        );
    }
}
