//! Building a sandbox site from a snapshot (in progress).
use std::path::Path;

use crate::error::Result;
use crate::sandbox::data::SiteData;

/// Loads the site a snapshot describes.
///
/// # Errors
/// When the snapshot cannot be opened.
pub fn site_from_snapshot(dir: &Path) -> Result<SiteData> {
    let _snap = crate::snapshot::Snapshot::open(dir)?;
    Ok(SiteData::default())
}
