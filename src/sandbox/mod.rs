//! The in-process senaite.jsonapi 2.x test double ("sandbox"): a small HTTP/1.1 server on
//! loopback that serves one [`SiteData`] the way a real SENAITE 2.6 does over its v1 API and
//! plone.restapi, with scriptable faults. The tests, the `serve` command and the benchmark use
//! it; its answers are pinned against responses recorded from a real instance
//! (`data/fixtures/senaite/`). It only ever listens on loopback. With
//! [`SandboxOptions::receiver`] set it is also a load destination: it speaks the receiver
//! protocol (`companion/PROTOCOL.md`, module `receiver`) and changes its site accordingly.
//!
//! Everything a request can ask for is serialized once at start-up (see `site`), so the double
//! is never the bottleneck of an extraction.

pub mod bika;
pub mod data;
pub mod faults;
pub mod fixtures;
pub mod http;
pub mod load;
mod query;
pub mod receiver;
mod reply;
mod restapi;
mod rows;
mod search;
mod server;
mod site;
pub mod synth;
mod v1;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

pub use data::{BlobBody, SiteBlob, SiteData, SiteObject};
pub use faults::{FaultKind, FaultRule, Match};
pub use receiver::ReceiverOptions;

use crate::error::Error;
use server::Shared;
use site::Site;

/// Which plone.jsonapi.core error style the double speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framework {
    /// Released 0.7: unmatched routes and non-API exceptions answer HTTP 200 with
    /// `success:false`; no `type` key.
    V07,
    /// 0.8 (what the real 2.6 instances run): real 404/405/500 statuses and a `type` key.
    #[default]
    V08,
}

/// How to run a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Listen address; must be loopback. Port 0 picks a free port.
    pub addr: SocketAddr,
    /// Requests handled at once (the server's workers; idle connections hold none).
    pub threads: usize,
    /// Accepted basic-auth user.
    pub user: String,
    /// Accepted basic-auth password.
    pub password: String,
    /// Error style.
    pub framework: Framework,
    /// Faults scripted from the start.
    pub faults: Vec<FaultRule>,
    /// Serve the receiver protocol (`sync/*` routes) with these settings; `None`: the routes
    /// are unknown, as on a SENAITE without the receiver add-on.
    pub receiver: Option<ReceiverOptions>,
}

impl Default for SandboxOptions {
    fn default() -> SandboxOptions {
        SandboxOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            threads: 4,
            user: "admin".to_owned(),
            password: "admin".to_owned(),
            framework: Framework::V08,
            faults: Vec::new(),
            receiver: None,
        }
    }
}

impl SandboxOptions {
    /// These options with the receiver enabled (default [`ReceiverOptions`]).
    pub fn with_receiver(mut self) -> SandboxOptions {
        self.receiver = Some(ReceiverOptions::default());
        self
    }
}

/// A running sandbox. Dropping it stops the server threads.
pub struct Sandbox {
    shared: Arc<Shared>,
    server: http::Server,
}

impl Sandbox {
    /// Prepares `data` and starts serving it.
    ///
    /// # Errors
    /// [`Error::Sandbox`] when the address is not loopback or cannot be bound, or the server
    /// thread cannot be spawned.
    pub fn start(data: SiteData, opts: SandboxOptions) -> crate::Result<Sandbox> {
        let fail = |message: String| Error::Sandbox {
            addr: opts.addr.to_string(),
            message,
        };
        if !opts.addr.ip().is_loopback() {
            return Err(fail(
                "the sandbox only listens on loopback addresses".to_owned(),
            ));
        }
        let listener = http::nodelay_listener(opts.addr).map_err(|e| fail(e.to_string()))?;
        let addr = listener.local_addr().map_err(|e| fail(e.to_string()))?;
        let origin = format!("http://{addr}");
        let started = std::time::Instant::now();
        let objects = data.objects.len();
        let site = Site::build(data, &origin);
        tracing::info!(%addr, objects, elapsed = ?started.elapsed(), "Sandbox site prepared.");
        let shared = Arc::new(Shared {
            site: RwLock::new(site),
            faults: faults::FaultBook::new(opts.faults.clone()),
            hits: AtomicU64::new(0),
            hit_urls: Mutex::new(HashMap::new()),
            panics: AtomicU64::new(0),
            stopped: (Mutex::new(false), Condvar::new()),
            user: opts.user.clone(),
            password: opts.password.clone(),
            framework: opts.framework,
            origin,
            receiver: opts.receiver.clone(),
        });
        let handler_shared = Arc::clone(&shared);
        let handler: Arc<http::Handler> =
            Arc::new(move |request| server::serve_one(request, &handler_shared));
        let server = http::Server::start(listener, opts.threads, handler)
            .map_err(|e| fail(format!("starting the server thread: {e}")))?;
        Ok(Sandbox { shared, server })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT/<site_id>`.
    pub fn site_url(&self) -> String {
        let site = self.shared.site.read().unwrap_or_else(|p| p.into_inner());
        format!("{}/{}", self.shared.origin, site.site_id)
    }

    /// `site_url() + "/@@API/senaite/v1"`.
    pub fn api_url(&self) -> String {
        format!("{}/@@API/senaite/v1", self.site_url())
    }

    /// Requests received so far (faulted ones included).
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Requests so far whose `path?query` contains `path_substring`.
    pub fn hits_matching(&self, path_substring: &str) -> u64 {
        let urls = self
            .shared
            .hit_urls
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        urls.iter()
            .filter(|(url, _)| url.contains(path_substring))
            .map(|(_, n)| *n)
            .sum()
    }

    /// Handler panics so far (each was answered with HTTP 500); tests should assert 0.
    pub fn panics(&self) -> u64 {
        self.shared.panics.load(Ordering::SeqCst)
    }

    /// Scripts another fault (checked after the earlier ones).
    pub fn add_fault(&self, rule: FaultRule) {
        self.shared.faults.add(rule);
    }

    /// Adds (or replaces, by uid) an object of the live site.
    pub fn insert_object(&self, obj: SiteObject) {
        let mut site = self.shared.site.write().unwrap_or_else(|p| p.into_inner());
        site.insert(&obj);
    }

    /// Removes an object from the live site (unknown uids are ignored).
    pub fn remove_object(&self, uid: &str) {
        let mut site = self.shared.site.write().unwrap_or_else(|p| p.into_inner());
        site.remove(uid);
    }

    /// Sets an object's modification date, as an edit in the destination would (so the
    /// receiver's `lookup` reports `changed_since_apply`). Returns false for an unknown uid.
    pub fn touch(&self, uid: &str, modified: &str) -> bool {
        let mut site = self.shared.site.write().unwrap_or_else(|p| p.into_inner());
        let Some(mut obj) = site.site_object(uid) else {
            return false;
        };
        for body in [Some(&mut obj.record), obj.restapi.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(m) = body.as_object_mut()
                && m.contains_key("modified")
            {
                m.insert("modified".into(), serde_json::Value::from(modified));
            }
        }
        site.insert(&obj);
        true
    }

    /// The complete v1 record (with `workflow_info`) the sandbox serves for `uid`, URLs
    /// pointing at the sandbox; `None` for an unknown uid.
    pub fn object_record(&self, uid: &str) -> Option<serde_json::Value> {
        let site = self.shared.site.read().unwrap_or_else(|p| p.into_inner());
        site.site_object(uid).map(|o| o.record)
    }

    /// Objects the site holds.
    pub fn object_count(&self) -> usize {
        let site = self.shared.site.read().unwrap_or_else(|p| p.into_inner());
        site.by_uid.len()
    }

    /// The ID-server counters the receiver's `sync/finalize` set, by key
    /// (`AnalysisRequest-W`).
    pub fn id_counters(&self) -> std::collections::BTreeMap<String, i64> {
        let site = self.shared.site.read().unwrap_or_else(|p| p.into_inner());
        site.sync.counters.clone()
    }

    /// The `load_hash` the receiver stored on `uid` at its last complete apply.
    pub fn applied_hash(&self, uid: &str) -> Option<String> {
        let site = self.shared.site.read().unwrap_or_else(|p| p.into_inner());
        site.sync.applied.get(uid).map(|a| a.hash.clone())
    }

    /// Stops the server and waits for its threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Blocks until the sandbox is shut down (from another thread or by dropping it).
    pub fn wait(&self) {
        let (lock, signal) = &self.shared.stopped;
        let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !*stopped {
            stopped = signal.wait(stopped).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Stops the server and wakes `wait`ers.
    fn stop(&mut self) {
        self.server.shutdown();
        let (lock, signal) = &self.shared.stopped;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        signal.notify_all();
        let panics = self.panics();
        if panics > 0 {
            tracing::error!(panics, "Sandbox handlers panicked.");
        }
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}
