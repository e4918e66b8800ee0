//! Everything that talks to a SENAITE site over HTTP: the client (auth, retries, answer
//! checks), paging, credentials. Only this module and (later) `load` use reqwest.

pub mod client;
pub mod credentials;
pub mod paging;
pub mod retry;

pub use client::{ClientOptions, SenaiteClient};
pub use credentials::{Credentials, Secret};
