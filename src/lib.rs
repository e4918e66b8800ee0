//! senaite-sync moves a laboratory's data from one SENAITE LIMS to another through snapshot
//! directories: `extract` reads a source over senaite.jsonapi (and plone.restapi where the v1 API
//! loses values) into a snapshot, `inspect` checks and summarises one, `plan`, `load` and `verify`
//! write a snapshot into a destination through its receiver add-on (`companion/`) and prove the
//! result, and `serve` runs an in-process senaite.jsonapi double over a snapshot for tests and demos.
//!
//! Layers depend in one direction: `cli` uses the stages (`extract`, `inspect`, `plan`, `load`,
//! `verify`); stages use `snapshot` and, for the network stages only, `source`. `compare` and
//! `snapshot` know nothing about HTTP; `extract` never uses `load` (it cannot write).

#![warn(missing_docs)]

pub mod bika;
pub mod cli;
pub mod compare;
pub mod diff;
pub mod error;
pub mod extract;
pub mod inspect;
pub mod jsonx;
pub mod load;
pub mod logging;
pub mod plan;
pub mod progress;
pub mod review;
pub mod sandbox;
pub mod snapshot;
pub mod source;
pub mod transform;
pub mod verify;

pub use error::{Error, Result};
