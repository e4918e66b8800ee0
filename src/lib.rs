//! senaite-sync moves a laboratory's data from one SENAITE LIMS to another through snapshot
//! directories: `extract` reads a source over senaite.jsonapi (and plone.restapi where the v1 API
//! loses values) into a snapshot, `inspect` checks and summarises one, and `serve` runs an
//! in-process senaite.jsonapi double over a snapshot for tests and demos.
//!
//! Layers depend in one direction: `cli` uses the stages (`extract`, `inspect`); stages use
//! `snapshot` and, for the network stages only, `source`. `snapshot` knows nothing about HTTP.

#![warn(missing_docs)]

pub mod cli;
pub mod error;
pub mod extract;
pub mod inspect;
pub mod jsonx;
pub mod logging;
pub mod progress;
pub mod sandbox;
pub mod snapshot;
pub mod source;

pub use error::{Error, Result};
