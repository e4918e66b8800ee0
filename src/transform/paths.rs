//! Path rewriting for `move` and `prefix_ids`: an object's own identity (path, parent, id) and
//! every path string in its fields (reference `url`s, `get*URL`, download links,
//! `getPhysicalPath` segment lists), with the row and the fields' identity keys kept consistent.
//! Pure functions over one object; no I/O.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::ops::{Context, Obj};

/// The objects `prefix_ids` renames: their input paths and ids.
#[derive(Debug, Default)]
pub(crate) struct PrefixSet {
    pub prefix: String,
    pub paths: HashSet<String>,
    pub ids: HashSet<String>,
    /// Whether groups named after a selected id are renamed too.
    pub groups: bool,
}

impl PrefixSet {
    /// The new name of a group, when groups are renamed and it is named after a selected id.
    pub fn group(&self, id: &str) -> Option<String> {
        (self.groups && self.ids.contains(id)).then(|| format!("{}{id}", self.prefix))
    }

    /// A path with every segment that names a selected object prefixed.
    pub fn rewrite(&self, path: &str) -> Option<String> {
        if !path.starts_with('/') {
            return None;
        }
        let mut out = String::with_capacity(path.len() + 8);
        let mut changed = false;
        let mut end = 0;
        for seg in path.split('/').skip(1) {
            end += 1 + seg.len();
            out.push('/');
            if self.paths.contains(&path[..end]) {
                out.push_str(&self.prefix);
                changed = true;
            }
            out.push_str(seg);
        }
        changed.then_some(out)
    }
}

/// Whether `path` is `prefix` or lies under it.
pub(super) fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || (path.len() > prefix.len()
            && path.starts_with(prefix)
            && path.as_bytes()[prefix.len()] == b'/')
}

/// Rewrites every string (at any depth) for which `f` answers, and `getPhysicalPath` segment
/// lists as the path they spell. Returns whether anything changed.
fn rewrite_strings(v: &mut Value, f: &dyn Fn(&str) -> Option<String>) -> bool {
    match v {
        Value::String(s) => match f(s) {
            Some(n) => {
                *s = n;
                true
            }
            None => false,
        },
        Value::Array(a) => {
            let mut changed = false;
            for x in a {
                changed |= rewrite_strings(x, f);
            }
            changed
        }
        Value::Object(m) => {
            let mut changed = false;
            for (k, x) in m.iter_mut() {
                if k == "getPhysicalPath"
                    && let Value::Array(segs) = x
                    && segs.iter().all(Value::is_string)
                {
                    let joined: Vec<&str> = segs.iter().filter_map(Value::as_str).collect();
                    if let Some(n) = f(&joined.join("/")) {
                        *segs = n.split('/').map(Value::from).collect();
                        changed = true;
                    }
                    continue;
                }
                changed |= rewrite_strings(x, f);
            }
            changed
        }
        _ => false,
    }
}

pub(super) fn parent_of(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

pub(super) fn move_object(o: &mut Obj, from: &str, to: &str, ctx: &Context) -> Result<(), String> {
    let re = |p: &str| under(p, from).then(|| format!("{to}{}", &p[from.len()..]));
    let moved_self = o.path == from;
    let mut identity = false;
    if let Some(n) = re(&o.path) {
        o.path = n;
        identity = true;
    }
    if let Some(pp) = o.parent_path.as_deref().and_then(re) {
        o.parent_path = Some(pp);
        identity = true;
    }
    if moved_self {
        let (parent, id) = parent_of(to);
        o.parent_path = Some(parent.to_string());
        o.parent_uid = ctx.move_parents.get(parent).cloned();
        o.id = id.to_string();
    }
    if !identity && o.fields.is_none() {
        // The common case on a large lab: a sample or analysis whose references point into a
        // moved setup folder. Rewritten in the canonical text, without parsing.
        match move_in_text(&o.fields_text, from, to) {
            TextMove::Unchanged => return Ok(()),
            TextMove::Rewritten(text) => {
                o.fields_text = text;
                o.dirty = true;
                return Ok(());
            }
            TextMove::NeedsParse => {}
        }
    }
    if identity || o.fields_text.contains(from) || o.fields.is_some() {
        let f = o.fields()?;
        if rewrite_strings_in(f, &re) {
            o.dirty = true;
        }
    }
    if identity {
        sync_identity(o)?;
    }
    Ok(())
}

/// What [`move_in_text`] did.
#[derive(Debug, PartialEq)]
enum TextMove {
    /// No string value is `from` or lies under it.
    Unchanged,
    /// The new canonical text.
    Rewritten(String),
    /// A case the text alone cannot decide (escapes in a matching string, `getPhysicalPath`
    /// segment lists, a `to` JSON would escape): parse the fields.
    NeedsParse,
}

/// Rewrites, in canonical (compact, `serde_json`-serialized) fields text, every string value
/// that is `from` or lies under it, exactly as parsing, [`rewrite_strings`] and serializing again
/// would. In compact JSON a quote followed by `/` can only open a string (a closing quote is
/// followed by `,`, `:`, `}` or `]`), unless it is escaped inside another string; a string
/// followed by `:` is a key, which `rewrite_strings` leaves alone.
fn move_in_text(text: &str, from: &str, to: &str) -> TextMove {
    if !text.contains(from) {
        return TextMove::Unchanged;
    }
    if text.contains("\"getPhysicalPath\"")
        || !from.starts_with('/')
        || to.chars().any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return TextMove::NeedsParse;
    }
    let b = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut at = 0;
    while let Some(pos) = text[at..].find(from) {
        let start = at + pos;
        at = start + from.len();
        if start == 0 || b[start - 1] != b'"' {
            continue;
        }
        let backslashes = b[..start - 1]
            .iter()
            .rev()
            .take_while(|&&c| c == b'\\')
            .count();
        if backslashes % 2 == 1 {
            continue; // an escaped quote inside another string
        }
        if !matches!(b.get(at), Some(b'/') | Some(b'"')) {
            continue; // a sibling path sharing the prefix (`.../bika_setup-old`)
        }
        let Some(len) = text[start..].find('"') else {
            return TextMove::NeedsParse;
        };
        let end = start + len;
        if text[start..end].contains('\\') {
            return TextMove::NeedsParse;
        }
        if b.get(end + 1) == Some(&b':') {
            continue; // a key
        }
        out.push_str(&text[copied..start]);
        out.push_str(to);
        copied = at;
        at = end;
    }
    if copied == 0 {
        return TextMove::Unchanged;
    }
    out.push_str(&text[copied..]);
    TextMove::Rewritten(out)
}

fn rewrite_strings_in(f: &mut Map<String, Value>, re: &dyn Fn(&str) -> Option<String>) -> bool {
    let mut changed = false;
    for (k, v) in f.iter_mut() {
        if k == "getPhysicalPath" {
            let mut wrap = Map::new();
            wrap.insert(k.clone(), std::mem::take(v));
            let mut w = Value::Object(wrap);
            changed |= rewrite_strings(&mut w, re);
            if let Value::Object(mut m) = w {
                *v = m.remove(k.as_str()).unwrap_or(Value::Null);
            }
        } else {
            changed |= rewrite_strings(v, re);
        }
    }
    changed
}

/// Writes the row's identity into the identity keys the fields hold.
fn sync_identity(o: &mut Obj) -> Result<(), String> {
    let parent_id = o.parent_path.as_deref().map(|p| parent_of(p).1.to_string());
    let pairs: [(&str, Value); 7] = [
        ("path", Value::from(o.path.as_str())),
        (
            "parent_path",
            o.parent_path.clone().map_or(Value::Null, Value::from),
        ),
        (
            "parent_uid",
            o.parent_uid.clone().map_or(Value::Null, Value::from),
        ),
        ("parent_id", parent_id.map_or(Value::Null, Value::from)),
        ("id", Value::from(o.id.as_str())),
        ("getId", Value::from(o.id.as_str())),
        ("portal_type", Value::from(o.portal_type.as_str())),
    ];
    let segs_new: Vec<Value> = o.path.split('/').map(Value::from).collect();
    let f = o.fields()?;
    let mut changed = false;
    for (k, v) in pairs {
        if let Some(slot) = f.get_mut(k)
            && *slot != v
        {
            *slot = v;
            changed = true;
        }
    }
    if let Some(Value::Array(segs)) = f.get_mut("getPhysicalPath")
        && *segs != segs_new
    {
        *segs = segs_new;
        changed = true;
    }
    o.dirty |= changed;
    Ok(())
}

pub(super) fn prefix_object(
    o: &mut Obj,
    p: &PrefixSet,
    types: &[String],
    id_fields: &[String],
) -> Result<(), String> {
    let old_id = o.id.clone();
    let selected = types.contains(&o.portal_type) && p.paths.contains(&o.path);
    if let Some(n) = p.rewrite(&o.path) {
        o.path = n;
    }
    if let Some(n) = o.parent_path.as_deref().and_then(|pp| p.rewrite(pp)) {
        o.parent_path = Some(n);
    }
    if selected {
        o.id = format!("{}{}", p.prefix, old_id);
        if o.title.as_deref() == Some(old_id.as_str()) {
            o.title = Some(o.id.clone());
        }
    }
    let new_id = o.id.clone();
    let f = o.fields()?;
    let mut changed = rewrite_strings_in(f, &|s: &str| p.rewrite(s));
    for name in id_fields {
        if let Some(Value::String(v)) = f.get_mut(name)
            && p.ids.contains(v.as_str())
        {
            *v = format!("{}{}", p.prefix, v);
            changed = true;
        }
    }
    if selected && f.get("title").and_then(Value::as_str) == Some(old_id.as_str()) {
        f.insert("title".into(), Value::from(new_id));
        changed = true;
    }
    o.dirty |= changed;
    sync_identity(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(pt: &str, path: &str, fields: Value) -> Obj {
        let (parent, id) = parent_of(path);
        Obj {
            uid: "u".repeat(32),
            portal_type: pt.into(),
            path: path.into(),
            parent_uid: Some("p".repeat(32)),
            parent_path: Some(parent.into()),
            id: id.into(),
            title: Some(id.into()),
            created: None,
            modified: None,
            review_state: None,
            content_hash: String::new(),
            fields_text: fields.to_string(),
            sources: "{}".into(),
            fields: None,
            dirty: false,
        }
    }

    #[test]
    fn prefix_rewrites_selected_segments_only() {
        let p = PrefixSet {
            prefix: "A-".into(),
            paths: [
                "/s/clients/client-1".to_string(),
                "/s/clients/client-1/W-1".into(),
            ]
            .into_iter()
            .collect(),
            ids: HashSet::new(),
            groups: false,
        };
        assert_eq!(
            p.rewrite("/s/clients/client-1/W-1/Ca").as_deref(),
            Some("/s/clients/A-client-1/A-W-1/Ca")
        );
        assert_eq!(p.rewrite("/s/clients/client-10"), None);
    }

    #[test]
    fn move_rewrites_the_folder_its_children_and_references() {
        let ctx = Context {
            move_parents: [("/s/setup".to_string(), "S".repeat(32))].into(),
            ..Context::default()
        };
        let mut folder = obj(
            "SampleTypes",
            "/s/bika_setup/bika_sampletypes",
            serde_json::json!({
            "id": "bika_sampletypes", "path": "/s/bika_setup/bika_sampletypes",
            "parent_path": "/s/bika_setup", "parent_id": "bika_setup"}),
        );
        move_object(
            &mut folder,
            "/s/bika_setup/bika_sampletypes",
            "/s/setup/sampletypes",
            &ctx,
        )
        .unwrap();
        assert_eq!(folder.path, "/s/setup/sampletypes");
        assert_eq!(folder.id, "sampletypes");
        assert_eq!(folder.parent_uid.as_deref(), Some("S".repeat(32).as_str()));
        let f = folder.fields().unwrap().clone();
        assert_eq!(f["parent_id"], "setup");
        assert_eq!(f["id"], "sampletypes");
        let mut sample = obj(
            "AnalysisRequest",
            "/s/clients/c/W-1",
            serde_json::json!({
            "SampleType": {"uid": "x", "url": "/s/bika_setup/bika_sampletypes/st-1"}}),
        );
        move_object(
            &mut sample,
            "/s/bika_setup/bika_sampletypes",
            "/s/setup/sampletypes",
            &ctx,
        )
        .unwrap();
        assert_eq!(
            sample.fields().unwrap()["SampleType"]["url"],
            "/s/setup/sampletypes/st-1"
        );
        let row = sample.into_row();
        assert_eq!(
            row[10].as_str().unwrap(),
            crate::jsonx::sha256_hex(row[11].as_str().unwrap().as_bytes())
        );
    }

    /// The parsed path's answer for `text`: parse, rewrite every string, serialize.
    fn parsed(text: &str, from: &str, to: &str) -> String {
        let mut v: Value = serde_json::from_str(text).unwrap();
        let re = |p: &str| under(p, from).then(|| format!("{to}{}", &p[from.len()..]));
        rewrite_strings(&mut v, &re);
        String::from_utf8(crate::jsonx::canonical(&v)).unwrap()
    }

    #[test]
    fn text_move_equals_parse_rewrite_serialize() {
        let (from, to) = ("/s/bika_setup/bika_sampletypes", "/s/setup/sampletypes");
        let cases = [
            serde_json::json!({"SampleType": {"uid": "x", "url": "/s/bika_setup/bika_sampletypes/st-1"}}),
            serde_json::json!({"a": "/s/bika_setup/bika_sampletypes", "b": ["/s/bika_setup/bika_sampletypes/x", 1, null]}),
            // Look-alikes that must stay: a sibling prefix, an inner occurrence, a key.
            serde_json::json!({"a": "/s/bika_setup/bika_sampletypes-old/x", "b": "see /s/bika_setup/bika_sampletypes/x",
                "/s/bika_setup/bika_sampletypes/k": "v"}),
            serde_json::json!({"a": "q\"/s/bika_setup/bika_sampletypes/x", "b": "\\", "c": "/s/bika_setup/bika_sampletypes"}),
            serde_json::json!({"n": 1.5, "e": "", "u": "Ünïcode /s/bika_setup/bika_sampletypes/x"}),
        ];
        for case in cases {
            let text = String::from_utf8(crate::jsonx::canonical(&case)).unwrap();
            let want = parsed(&text, from, to);
            match move_in_text(&text, from, to) {
                TextMove::Unchanged => assert_eq!(want, text, "{text}"),
                TextMove::Rewritten(got) => {
                    assert_ne!(got, text);
                    assert_eq!(got, want, "{text}");
                }
                TextMove::NeedsParse => panic!("{text}: the text path gave up"),
            }
        }
        // Escapes inside a matching string, and segment lists, go the parsed way.
        let esc = r#"{"a":"/s/bika_setup/bika_sampletypes/x\"y"}"#;
        assert_eq!(move_in_text(esc, from, to), TextMove::NeedsParse);
        let segs = r#"{"a":"/s/bika_setup/bika_sampletypes/x","getPhysicalPath":["","s","bika_setup","bika_sampletypes","x"]}"#;
        assert_eq!(move_in_text(segs, from, to), TextMove::NeedsParse);
    }
}
