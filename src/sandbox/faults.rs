//! Scriptable failures of the sandbox: a [`FaultRule`] says which requests misbehave
//! ([`Match`]), how ([`FaultKind`]) and how many times. Rules are checked in the order they were
//! added; the first live rule that matches a request fires and uses up one of its `times`
//! (a rule with `skip` first lets that many matching requests through: "the 3rd apply fails").
//! Record faults ([`FaultKind::RejectRecord`], [`FaultKind::RejectField`]) are not request
//! faults: the receiver's `sync/apply` consults them per record, whatever request carries it.
//! This module only decides; `server` and the receiver carry the fault out.

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
    /// Answer normally (the receiver commits the request's changes), then drop the connection
    /// instead of writing the answer: the client cannot tell whether anything happened.
    DropAfterCommit,
    /// `sync/apply` fails the record with this uid (status `failed`, nothing written), whichever
    /// request carries it; the rest of the batch is applied. The matcher is not consulted.
    RejectRecord {
        /// The record's uid.
        uid: String,
        /// The reason given in the item's `error`.
        message: String,
    },
    /// `sync/apply` rejects one field of the record with this uid (status `partial`, the field
    /// listed in `field_errors`, the rest written). The matcher is not consulted.
    RejectField {
        /// The record's uid.
        uid: String,
        /// The field name.
        field: String,
        /// The reason given in `field_errors`.
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
    /// How many matching requests it lets through before it starts firing (0: fires at once).
    pub skip: u32,
}

impl FaultRule {
    /// A rule that fires `times` times for requests matching `matcher`.
    pub fn new(matcher: Match, kind: FaultKind, times: u32) -> FaultRule {
        FaultRule {
            matcher,
            kind,
            times,
            skip: 0,
        }
    }

    /// The same rule, firing only after `skip` matching requests went through untouched
    /// (`skip = 2`: the third matching request is the first to fail).
    pub fn after(mut self, skip: u32) -> FaultRule {
        self.skip = skip;
        self
    }

    /// A record fault: `sync/apply` fails the record `uid` with `message`, `times` times.
    pub fn reject_record(uid: &str, message: &str, times: u32) -> FaultRule {
        let kind = FaultKind::RejectRecord {
            uid: uid.to_owned(),
            message: message.to_owned(),
        };
        FaultRule::new(Match::Any, kind, times)
    }

    /// A record fault: `sync/apply` rejects `field` of the record `uid` with `message`,
    /// `times` times.
    pub fn reject_field(uid: &str, field: &str, message: &str, times: u32) -> FaultRule {
        let kind = FaultKind::RejectField {
            uid: uid.to_owned(),
            field: field.to_owned(),
            message: message.to_owned(),
        };
        FaultRule::new(Match::Any, kind, times)
    }

    /// Whether this rule is consulted per apply record rather than per request.
    fn is_record_fault(&self) -> bool {
        matches!(
            self.kind,
            FaultKind::RejectRecord { .. } | FaultKind::RejectField { .. }
        )
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
    /// Every matching rule still skipping counts the request.
    pub(crate) fn take(&self, path: &str, query: &str) -> Option<FaultKind> {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let mut fire = None;
        for (i, rule) in rules.iter_mut().enumerate() {
            if rule.times == 0 || rule.is_record_fault() || !rule.matcher.is_match(path, query) {
                continue;
            }
            if rule.skip > 0 {
                rule.skip -= 1;
            } else if fire.is_none() {
                fire = Some(i);
            }
        }
        let rule = &mut rules[fire?];
        rule.times -= 1;
        let kind = rule.kind.clone();
        rules.retain(|r| r.times > 0);
        Some(kind)
    }

    /// The record faults scripted for `uid`: the rejection message of the whole record, if
    /// any, and the rejected fields. Uses up one firing of each rule returned.
    pub(crate) fn take_record(&self, uid: &str) -> RecordFaults {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = RecordFaults::default();
        for rule in rules.iter_mut().filter(|r| r.times > 0) {
            match &rule.kind {
                FaultKind::RejectRecord { uid: u, message } if u == uid && out.record.is_none() => {
                    out.record = Some(message.clone());
                    rule.times -= 1;
                }
                FaultKind::RejectField {
                    uid: u,
                    field,
                    message,
                } if u == uid => {
                    out.fields.insert(field.clone(), message.clone());
                    rule.times -= 1;
                }
                _ => {}
            }
        }
        rules.retain(|r| r.times > 0);
        out
    }
}

/// Record faults that fire for one record of `sync/apply`.
#[derive(Debug, Default)]
pub(crate) struct RecordFaults {
    /// Fail the whole record with this message.
    pub(crate) record: Option<String>,
    /// Reject these fields (field -> reason).
    pub(crate) fields: std::collections::BTreeMap<String, String>,
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
    fn skipping_rules_count_matching_requests() {
        let book = FaultBook::new(vec![
            FaultRule::new(Match::PathContains("apply".into()), FaultKind::Drop, 1).after(2),
        ]);
        assert!(book.take("/sync/apply", "").is_none());
        assert!(book.take("/sync/lookup", "").is_none());
        assert!(book.take("/sync/apply", "").is_none());
        assert!(matches!(
            book.take("/sync/apply", ""),
            Some(FaultKind::Drop)
        ));
        assert!(book.take("/sync/apply", "").is_none());
    }

    #[test]
    fn record_faults_fire_per_uid_not_per_request() {
        let book = FaultBook::new(vec![
            FaultRule::reject_record("u1", "no", 1),
            FaultRule::reject_field("u2", "Title", "bad", 2),
        ]);
        assert!(book.take("/sync/apply", "").is_none());
        assert!(book.take_record("u0").record.is_none());
        assert_eq!(book.take_record("u1").record.as_deref(), Some("no"));
        assert!(book.take_record("u1").record.is_none());
        assert_eq!(book.take_record("u2").fields["Title"], "bad");
        assert_eq!(book.take_record("u2").fields.len(), 1);
        assert!(book.take_record("u2").fields.is_empty());
    }

    #[test]
    fn path_matcher_ignores_query() {
        let m = Match::PathContains("search".into());
        assert!(m.is_match("/senaite/@@API/senaite/v1/search", ""));
        assert!(!m.is_match("/senaite/@@API/senaite/v1/client", "search=1"));
    }
}
