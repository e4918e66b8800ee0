//! Logging setup: tracing to stderr, `-v` debug, `-vv` trace, `-q` warnings only, `RUST_LOG`
//! overriding both. Log lines are written through the progress display's `suspend` so they never
//! tear a bar. Secrets are never logged: the client logs URLs only (credentials travel in headers).

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::progress::Progress;

/// Installs the global subscriber. Safe to call once per process.
pub fn init(verbose: u8, quiet: bool, progress: &Progress) {
    let default = if quiet {
        "warn"
    } else {
        match verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("senaite_sync={default},warn")));
    let writer = ProgressWriter {
        progress: progress.clone(),
    };
    // A second init (tests calling run twice) is harmless: the first subscriber stays.
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[derive(Clone)]
struct ProgressWriter {
    progress: Progress,
}

struct SuspendedStderr {
    progress: Progress,
}

impl Write for SuspendedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.progress
            .suspend(|| std::io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for ProgressWriter {
    type Writer = SuspendedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        SuspendedStderr {
            progress: self.progress.clone(),
        }
    }
}
