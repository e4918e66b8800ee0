//! The one integration-test binary (ripgrep/xsv style): every integration module links once.

// Test helpers outside #[test] functions may unwrap too: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod diff;
mod e2e_load;
mod e2e_real;
mod extract;
mod formats;
mod load;
mod sandbox;
mod sandbox_receiver;
mod schemas;
mod util;
