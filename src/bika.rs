//! BIKA LIMS 3.1 as a source. No senaite.jsonapi release runs on bika.lims 3.1.x, so a 3.1 site
//! is read through the channels it has: bika.lims' own legacy JSON API (`@@API/read` over every
//! catalog, `@@API/getusers`), plone.jsonapi.routes 0.9.3 (users, file names) and Archetypes'
//! `at_download` (file bytes). The result is a snapshot of the same format as a SENAITE
//! extract (`source.kind = "bika"`), with what the source cannot give stated in its notes.
//! `extract --source-kind auto` (the default) takes this path when the site has no
//! senaite.jsonapi but answers the legacy read.

pub mod dates;
pub mod extract;
pub mod legacy;
pub mod record;

/// Which kind of site `extract` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceKind {
    /// SENAITE when senaite.jsonapi answers, else BIKA when the legacy read answers.
    #[default]
    Auto,
    /// A SENAITE site (senaite.jsonapi).
    Senaite,
    /// A BIKA LIMS 3.1 site (bika.lims' legacy API).
    Bika,
}
