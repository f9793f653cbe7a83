//! Progress bars on stderr for the long steps (hidden when stderr is not a terminal).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` units.
pub fn bar(len: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_prefix(prefix.to_string());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// A spinner for a step of unknown length; `{msg}` carries its progress (e.g. bytes written).
pub fn spinner(prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_prefix(prefix.to_string());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {msg} ({elapsed})")
            .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
