//! senaite-sync binary: parse the command line, run it, map the outcome to an exit code
//! (0 success, 1 differences, 2 error) and print errors with their chain of causes.

use std::process::ExitCode;

use clap::Parser;

/// Extract allocates and frees many small JSON nodes; mimalloc is markedly faster at that than
/// the system allocator (see Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = senaite_sync::cli::Cli::parse();
    match senaite_sync::cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err}");
            let mut cause = std::error::Error::source(&err);
            while let Some(c) = cause {
                eprintln!("  caused by: {c}");
                cause = c.source();
            }
            ExitCode::from(2)
        }
    }
}
