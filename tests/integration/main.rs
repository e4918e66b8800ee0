//! The one integration-test binary (ripgrep/xsv style): every integration module links once.

// Test helpers outside #[test] functions may unwrap too: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bika;
mod diff;
mod e2e_bika;
mod e2e_bika_load;
mod e2e_delta;
mod e2e_load;
mod e2e_real;
mod e2e_senaite1;
mod extract;
mod extract_since;
mod formats;
mod load;
mod load_delta;
mod review;
mod sandbox;
mod sandbox_receiver;
mod schemas;
mod transform;
mod util;
