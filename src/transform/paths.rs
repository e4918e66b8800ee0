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
}
