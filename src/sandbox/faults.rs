//! Scriptable failures of the sandbox: a [`FaultRule`] says which requests misbehave
//! ([`Match`]), how ([`FaultKind`]) and how many times. Rules are checked in the order they were
//! added; the first live rule that matches a request fires and uses up one of its `times`.
//! This module only decides; `server` carries the fault out.

use std::sync::Mutex;
use std::time::Duration;

use super::data::SiteObject;

/// Which requests a fault rule applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// Every request.
    Any,
    /// Requests whose URL path contains this text.
    PathContains(String),
    /// Requests whose query string contains this text (e.g. `b_start=50`).
    QueryContains(String),
}

impl Match {
    /// Whether a request with this path and query string is matched.
    pub fn is_match(&self, path: &str, query: &str) -> bool {
        match self {
            Match::Any => true,
            Match::PathContains(text) => path.contains(text.as_str()),
            Match::QueryContains(text) => query.contains(text.as_str()),
        }
    }
}

/// How a matched request misbehaves.
#[derive(Debug, Clone)]
pub enum FaultKind {
    /// Answer this HTTP status with a JSON error body (`{"success": false, "message": ...}`).
    Status(u16),
    /// Answer 429 with a `Retry-After` header.
    TooManyRequests {
        /// The `Retry-After` value in seconds.
        retry_after_secs: u64,
    },
    /// Close the connection without writing any response.
    Drop,
    /// Sleep this long, then answer normally.
    Slow(Duration),
    /// Answer 500 with Zope's HTML error page (not JSON).
    Html500,
    /// Answer HTTP 200 with `{"success": false, "message": ...}` (plone.jsonapi.core 0.7 style).
    ApiError200 {
        /// The error message.
        message: String,
    },
    /// Answer normally, then change the site so that the next page shifts.
    ShiftAfter {
        /// An object to add after answering.
        insert: Option<SiteObject>,
        /// The uid of an object to remove after answering.
        remove_uid: Option<String>,
    },
}

/// One scripted fault.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// Which requests it applies to.
    pub matcher: Match,
    /// What happens to them.
    pub kind: FaultKind,
    /// How many matching requests it fires for.
    pub times: u32,
}

impl FaultRule {
    /// A rule that fires `times` times for requests matching `matcher`.
    pub fn new(matcher: Match, kind: FaultKind, times: u32) -> FaultRule {
        FaultRule {
            matcher,
            kind,
            times,
        }
    }
}

/// The live fault rules of one sandbox with their remaining counts.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    rules: Mutex<Vec<FaultRule>>,
}

impl FaultBook {
    /// A book holding these rules.
    pub(crate) fn new(rules: Vec<FaultRule>) -> FaultBook {
        FaultBook {
            rules: Mutex::new(rules),
        }
    }

    /// Adds a rule after the existing ones.
    pub(crate) fn add(&self, rule: FaultRule) {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        rules.push(rule);
    }

    /// The fault for this request, if a live rule matches; uses up one firing of that rule.
    pub(crate) fn take(&self, path: &str, query: &str) -> Option<FaultKind> {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let index = rules
            .iter()
            .position(|r| r.times > 0 && r.matcher.is_match(path, query))?;
        let rule = &mut rules[index];
        rule.times -= 1;
        let kind = rule.kind.clone();
        rules.retain(|r| r.times > 0);
        Some(kind)
    }
}

/// The HTML page Zope answers with when an error escapes the JSON API's handler.
pub(crate) const ZOPE_HTML_500: &str = "<!DOCTYPE html>\n<html>\n  <head>\n    \
<title>Site Error</title>\n  </head>\n  <body>\n    <h1>Site Error</h1>\n    \
<p>An error was encountered while publishing this resource.</p>\n    \
<p><strong>Error Type: TypeError</strong><br />\n    \
<strong>Error Value: Object of type datetime is not JSON serializable</strong></p>\n    \
<p>Troubleshooting Suggestions</p>\n  </body>\n</html>\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fire_in_order_and_expire() {
        let book = FaultBook::new(vec![
            FaultRule::new(
                Match::QueryContains("b_start=2".into()),
                FaultKind::Html500,
                1,
            ),
            FaultRule::new(Match::Any, FaultKind::Status(503), 2),
        ]);
        assert!(matches!(
            book.take("/x", "b_start=2"),
            Some(FaultKind::Html500)
        ));
        assert!(matches!(
            book.take("/x", "b_start=2"),
            Some(FaultKind::Status(503))
        ));
        assert!(matches!(book.take("/y", ""), Some(FaultKind::Status(503))));
        assert!(book.take("/y", "").is_none());
    }

    #[test]
    fn path_matcher_ignores_query() {
        let m = Match::PathContains("search".into());
        assert!(m.is_match("/senaite/@@API/senaite/v1/search", ""));
        assert!(!m.is_match("/senaite/@@API/senaite/v1/client", "search=1"));
    }
}
