//! Progress reporting: a thin wrapper over one indicatif `MultiProgress`, created in `main` and
//! passed down. Bars draw only on a terminal (stderr); in CI and tests they are hidden and the
//! stages log plain lines at INFO instead. Library code never creates bars of its own.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// When to draw progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// On a terminal only.
    #[default]
    Auto,
    /// Always (even when stderr is not a terminal).
    Always,
    /// Never.
    Never,
}

/// The progress display of one run.
#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
    visible: bool,
}

impl Progress {
    /// Creates the display for `mode`.
    pub fn new(mode: ProgressMode) -> Self {
        use std::io::IsTerminal;
        let visible = match mode {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
        };
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            multi: MultiProgress::with_draw_target(target),
            visible,
        }
    }

    /// A display that draws nothing (tests, `--quiet`).
    pub fn hidden() -> Self {
        Progress::new(ProgressMode::Never)
    }

    /// Whether bars are drawn.
    pub fn is_visible(&self) -> bool {
        self.visible
    }

    /// A bar with a known total, counting `unit` (e.g. "objects").
    pub fn bar(&self, len: u64, prefix: &str, unit: &str) -> ProgressBar {
        let pb = self.multi.add(ProgressBar::new(len));
        let template = format!(
            "{{prefix:>12}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}} {{msg}}"
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_prefix(prefix.to_string());
        pb
    }

    /// A spinner for work of unknown size.
    pub fn spinner(&self, prefix: &str) -> ProgressBar {
        let pb = self.multi.add(ProgressBar::new_spinner());
        if let Ok(style) = ProgressStyle::with_template("{prefix:>12} {spinner} {msg}") {
            pb.set_style(style);
        }
        pb.set_prefix(prefix.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    }

    /// Runs `f` with the bars suspended, so a log line does not tear them.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }
}
