//! `split_partitions`: BIKA LIMS 3.1 keeps a sample's physical containers as SamplePartition
//! objects inside its Sample (`W-0006/W-0006-P1`, `-P2`), and each analysis names its partition
//! (`SamplePartition`); SENAITE 2.x makes each partition an AnalysisRequest of its own beside
//! the primary (`W-0006-R01-P01`, senaite.core's `{parent_ar_id}-P{partition_count:02d}`), with
//! `ParentAnalysisRequest` naming the primary and the partition's analyses moved into it
//! (senaite.core `create_partition` copies the primary's fields, less a skip list, and sets the
//! partition's SampleType, Container and Preservation; the partition starts in the primary's
//! state and then follows its own analyses).
//!
//! The plan is made before the data pass from the input ([`PlanBuilder`]: one pass for the
//! partitions and primaries, one for the chosen primaries' fields and their members), then each
//! object is rewritten on its own ([`apply`]): a partition of a container with `min` or more
//! partitions becomes the new object (same uid, so a later delta lines up), a member moves under
//! it, a primary's member list keeps only its own; a lone partition is merged into its primary.
//! A partition's state is its primary's, or with `member_states` its members' least advanced
//! one when all are listed.
//! Pure functions over one object given the plan; no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::ops::{Obj, Outcome};
use super::spec::SplitPartitions;

/// Fields that date the object itself: a new partition keeps its own, never the primary's.
const OWN_DATES: &[&str] = &["created", "creation_date", "modified", "modification_date"];

/// One partition that becomes an object of its own.
#[derive(Debug, Clone)]
struct Part {
    /// The primary's uid.
    primary: String,
    id: String,
    path: String,
    /// The partition's `fields` (source names), as read.
    own: Map<String, Value>,
    /// Its members' states: the least advanced one's index in `member_states`, and whether a
    /// member's state is not in that list.
    least: Option<usize>,
    unlisted: bool,
}

/// A primary with partitions of its own.
#[derive(Debug)]
struct Primary {
    portal_type: String,
    id: String,
    path: String,
    parent_uid: Option<String>,
    parent_path: Option<String>,
    review_state: Option<String>,
    /// Its fields less `skip_fields`, shared by its partitions.
    fields: Arc<Map<String, Value>>,
    /// Its `list_field` as read (split between it and its partitions).
    list: Arc<Vec<Value>>,
}

/// What one `split_partitions` step does, by uid.
#[derive(Debug, Default)]
pub(crate) struct PartitionPlan {
    /// Partitions that become objects.
    parts: HashMap<String, Part>,
    /// Their primaries.
    primaries: HashMap<String, Primary>,
    /// Members that move: member uid -> partition uid.
    members: HashMap<String, String>,
    /// Lone partitions: partition uid -> its primary's uid.
    merged: HashMap<String, String>,
    /// Primaries of lone partitions: primary uid -> the partition's `fields`.
    merge_into: HashMap<String, Map<String, Value>>,
}

impl PartitionPlan {
    /// Partitions that become objects of their own.
    #[cfg(test)]
    pub fn split_count(&self) -> usize {
        self.parts.len()
    }
}

/// A partition seen in the first pass.
struct SeenPart {
    uid: String,
    container: String,
    id: String,
    own: Map<String, Value>,
}

/// A primary seen in the first pass.
struct SeenPrimary {
    uid: String,
    container: String,
    id: String,
}

/// Builds a [`PartitionPlan`] from the input objects: every object through [`Self::first`],
/// then [`Self::chosen`], then every object through [`Self::second`].
pub(crate) struct PlanBuilder {
    spec: SplitPartitions,
    parts: Vec<SeenPart>,
    primaries: Vec<SeenPrimary>,
    /// After the first pass: uids of the primaries that get partitions.
    wanted: HashSet<String>,
    plan: PartitionPlan,
}

/// The uid a reference value names: a `{"uid": ...}` dict, a one-item list of one, or a bare
/// uid string.
fn reference_uid(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Object(m) => m.get("uid").and_then(Value::as_str),
        Value::Array(a) if a.len() == 1 => reference_uid(&a[0]),
        _ => None,
    }
}

/// The number a partition id ends with (`W-0006-P2` -> 2), for ordering.
fn trailing_number(id: &str) -> u64 {
    let digits: String = id
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap_or(u64::MAX)
}

impl PlanBuilder {
    /// Starts a plan for one step.
    pub fn new(spec: &SplitPartitions) -> PlanBuilder {
        PlanBuilder {
            spec: spec.clone(),
            parts: Vec::new(),
            primaries: Vec::new(),
            wanted: HashSet::new(),
            plan: PartitionPlan::default(),
        }
    }

    /// Whether the first pass reads objects of this (input) type.
    pub fn first_reads(&self, portal_type: &str) -> bool {
        self.spec.types.iter().any(|t| t == portal_type)
            || self.spec.primary_types.iter().any(|t| t == portal_type)
    }

    /// First pass: partitions (their container is their parent) and primaries (their
    /// container is what `via` references).
    ///
    /// # Errors
    /// When the object's fields are not a JSON object (naming the uid).
    pub fn first(&mut self, o: &mut Obj) -> Result<(), String> {
        if self.spec.types.contains(&o.portal_type) {
            let Some(container) = o.parent_uid.clone() else {
                return Ok(());
            };
            let f = o.fields()?;
            let own: Map<String, Value> = self
                .spec
                .fields
                .iter()
                .filter_map(|(from, _)| f.get(from).map(|v| (from.clone(), v.clone())))
                .collect();
            self.parts.push(SeenPart {
                uid: o.uid.clone(),
                container,
                id: o.id.clone(),
                own,
            });
        } else if self.spec.primary_types.contains(&o.portal_type) {
            let via = self.spec.via.clone();
            let container = o
                .fields()?
                .get(&via)
                .and_then(reference_uid)
                .map(str::to_string);
            if let Some(container) = container {
                self.primaries.push(SeenPrimary {
                    uid: o.uid.clone(),
                    container,
                    id: o.id.clone(),
                });
            }
        }
        Ok(())
    }

    /// Between the passes: each container's partitions, in the order of the numbers their
    /// ids end with, go to the primary of the container whose id sorts first (a secondary
    /// request sharing the container keeps its members).
    pub fn chosen(&mut self) {
        let mut primary_of: HashMap<&str, (&str, &str)> = HashMap::new();
        for p in &self.primaries {
            let e = primary_of
                .entry(p.container.as_str())
                .or_insert((p.id.as_str(), p.uid.as_str()));
            if p.id.as_str() < e.0 {
                *e = (p.id.as_str(), p.uid.as_str());
            }
        }
        let mut by_container: BTreeMap<&str, Vec<&SeenPart>> = BTreeMap::new();
        for p in &self.parts {
            by_container.entry(&p.container).or_default().push(p);
        }
        for (container, mut parts) in by_container {
            let Some((_, primary)) = primary_of.get(container) else {
                continue;
            };
            parts.sort_by(|a, b| {
                (trailing_number(&a.id), &a.id).cmp(&(trailing_number(&b.id), &b.id))
            });
            if parts.len() < self.spec.min {
                for p in parts {
                    self.plan.merged.insert(p.uid.clone(), primary.to_string());
                    let into = self.plan.merge_into.entry(primary.to_string()).or_default();
                    for (k, v) in &p.own {
                        into.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                continue;
            }
            self.wanted.insert(primary.to_string());
            for (n, p) in parts.into_iter().enumerate() {
                self.plan.parts.insert(
                    p.uid.clone(),
                    Part {
                        primary: primary.to_string(),
                        // the id and path are completed in the second pass
                        id: format!("{}{:0w$}", self.spec.suffix, n + 1, w = self.spec.digits),
                        path: String::new(),
                        own: p.own.clone(),
                        least: None,
                        unlisted: false,
                    },
                );
            }
        }
        self.parts.clear();
        self.primaries.clear();
    }

    /// Whether the second pass reads objects of this (input) type.
    pub fn second_reads(&self, portal_type: &str) -> bool {
        self.spec.primary_types.iter().any(|t| t == portal_type)
            || self.spec.members.iter().any(|t| t == portal_type)
    }

    /// Second pass: the chosen primaries' fields, and the members under them that name one of
    /// their partitions.
    ///
    /// # Errors
    /// When the object's fields are not a JSON object (naming the uid).
    pub fn second(&mut self, o: &mut Obj) -> Result<(), String> {
        if self.spec.primary_types.contains(&o.portal_type) && self.wanted.contains(&o.uid) {
            let mut fields = o.fields()?.clone();
            let list = match self.spec.list_field.as_ref().and_then(|l| fields.get(l)) {
                Some(Value::Array(a)) => a.clone(),
                _ => Vec::new(),
            };
            for k in &self.spec.skip_fields {
                fields.remove(k);
            }
            self.plan.primaries.insert(
                o.uid.clone(),
                Primary {
                    portal_type: o.portal_type.clone(),
                    id: o.id.clone(),
                    path: o.path.clone(),
                    parent_uid: o.parent_uid.clone(),
                    parent_path: o.parent_path.clone(),
                    review_state: o.review_state.clone(),
                    fields: Arc::new(fields),
                    list: Arc::new(list),
                },
            );
        } else if self.spec.members.contains(&o.portal_type)
            && o.parent_uid
                .as_deref()
                .is_some_and(|p| self.wanted.contains(p))
        {
            let field = self.spec.member_field.clone();
            let part = o
                .fields()?
                .get(&field)
                .and_then(reference_uid)
                .map(str::to_string);
            let order = &self.spec.member_states;
            if let Some(part) = part
                && let Some(p) = self.plan.parts.get_mut(&part)
                && Some(p.primary.as_str()) == o.parent_uid.as_deref()
            {
                match o
                    .review_state
                    .as_ref()
                    .and_then(|st| order.iter().position(|x| x == st))
                {
                    Some(i) => p.least = Some(p.least.map_or(i, |l| l.min(i))),
                    None => p.unlisted = true,
                }
                self.plan.members.insert(o.uid.clone(), part);
            }
        }
        Ok(())
    }

    /// The plan: partitions get their ids and paths (the primary's id and suffix, beside it).
    pub fn finish(mut self) -> PartitionPlan {
        let primaries = &self.plan.primaries;
        self.plan
            .parts
            .retain(|_, p| primaries.contains_key(&p.primary));
        for p in self.plan.parts.values_mut() {
            if let Some(pr) = primaries.get(&p.primary) {
                p.id = format!("{}{}", pr.id, p.id);
                p.path = match &pr.parent_path {
                    Some(parent) => format!("{parent}/{}", p.id),
                    None => match pr.path.rsplit_once('/') {
                        Some((parent, _)) => format!("{parent}/{}", p.id),
                        None => p.id.clone(),
                    },
                };
            }
        }
        self.plan
    }
}

/// `s` rebased from `from` to `to` when it is `from` or lies under it.
fn rebase(s: &str, from: &str, to: &str) -> Option<String> {
    if s == from {
        Some(to.to_string())
    } else if s.len() > from.len() && s.starts_with(from) && s.as_bytes()[from.len()] == b'/' {
        Some(format!("{to}{}", &s[from.len()..]))
    } else {
        None
    }
}

/// Path rewrites of one object's fields: strings (at any depth) equal to `exact.0` become
/// `exact.1`, strings at or under `under.0` are rebased onto `under.1`, and top-level strings
/// equal to `id.0` (the request id copied into `id`, `title`, `RequestID`, `getRequestID`)
/// become `id.1`.
struct Rewrite<'a> {
    exact: (&'a str, &'a str),
    under: Option<(&'a str, &'a str)>,
    id: (&'a str, &'a str),
}

impl Rewrite<'_> {
    fn deep(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                if s == self.exact.0 {
                    *s = self.exact.1.to_string();
                } else if let Some((from, to)) = self.under
                    && let Some(n) = rebase(s, from, to)
                {
                    *s = n;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.deep(x)),
            Value::Object(m) => m.values_mut().for_each(|x| self.deep(x)),
            _ => {}
        }
    }

    fn fields(&self, fields: &mut Map<String, Value>) {
        for v in fields.values_mut() {
            if !self.id.0.is_empty() && v.as_str() == Some(self.id.0) {
                *v = Value::from(self.id.1);
            } else {
                self.deep(v);
            }
        }
    }
}

/// The uid of a list entry (a reference dict or a bare uid).
fn entry_uid(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(m) => m
            .get("uid")
            .or_else(|| m.get("UID"))
            .and_then(Value::as_str),
        _ => None,
    }
}

/// Applies one `split_partitions` step to one object.
///
/// # Errors
/// When the object's fields are not a JSON object (naming the uid).
pub(crate) fn apply(
    spec: &SplitPartitions,
    plan: &PartitionPlan,
    o: &mut Obj,
    out: &mut Outcome,
) -> Result<(), String> {
    if let Some(part) = plan.parts.get(&o.uid) {
        if let Some(primary) = plan.primaries.get(&part.primary) {
            become_partition(spec, plan, part, primary, o)?;
        }
    } else if let Some(primary) = plan.merged.get(&o.uid) {
        out.keep = false;
        out.merged_into = Some(primary.clone());
    } else if let Some(part_uid) = plan.members.get(&o.uid) {
        if let Some(part) = plan.parts.get(part_uid) {
            move_member(part_uid, part, o)?;
        }
    } else if plan.primaries.contains_key(&o.uid) {
        if let Some(list) = &spec.list_field
            && let Some(Value::Array(entries)) = o.fields()?.get_mut(list)
        {
            let before = entries.len();
            entries.retain(|e| entry_uid(e).is_none_or(|u| !plan.members.contains_key(u)));
            if entries.len() != before {
                o.dirty = true;
            }
        }
    } else if let Some(own) = plan.merge_into.get(&o.uid) {
        merge_fields(spec, own, o)?;
    }
    Ok(())
}

/// A partition of a container with several: the primary's copy with its own identity.
fn become_partition(
    spec: &SplitPartitions,
    plan: &PartitionPlan,
    part: &Part,
    primary: &Primary,
    o: &mut Obj,
) -> Result<(), String> {
    let mut fields = (*primary.fields).clone();
    let own_dates: Vec<(String, Value)> = {
        let f = o.fields()?;
        OWN_DATES
            .iter()
            .filter_map(|k| f.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect()
    };
    Rewrite {
        exact: (&primary.path, &part.path),
        under: None,
        id: (&primary.id, &part.id),
    }
    .fields(&mut fields);
    for k in OWN_DATES {
        fields.remove(*k);
    }
    fields.extend(own_dates);
    for key in ["uid", "UID"] {
        if fields.contains_key(key) {
            fields.insert(key.into(), Value::from(o.uid.as_str()));
        }
    }
    for (from, to) in &spec.fields {
        if let Some(v) = part.own.get(from) {
            fields.insert(to.clone(), v.clone());
        }
    }
    let mut reference = Map::new();
    reference.insert("title".into(), Value::from(primary.id.as_str()));
    reference.insert("uid".into(), Value::from(part.primary.as_str()));
    reference.insert("url".into(), Value::from(primary.path.as_str()));
    fields.insert(spec.parent_field.clone(), Value::Object(reference));
    if let Some(list) = &spec.list_field {
        let moved = Rewrite {
            exact: (&primary.path, &part.path),
            under: Some((&primary.path, &part.path)),
            id: ("", ""),
        };
        let mine: Vec<Value> = primary
            .list
            .iter()
            .filter(|e| entry_uid(e).and_then(|u| plan.members.get(u)) == Some(&o.uid))
            .map(|e| {
                let mut e = e.clone();
                moved.deep(&mut e);
                e
            })
            .collect();
        fields.insert(list.clone(), Value::Array(mine));
    }
    o.portal_type = primary.portal_type.clone();
    o.id = part.id.clone();
    o.path = part.path.clone();
    o.parent_uid = primary.parent_uid.clone();
    o.parent_path = primary.parent_path.clone();
    o.title = Some(part.id.clone());
    let state = partition_state(spec, part, primary);
    if let Some(st) = &state
        && fields.contains_key("review_state")
    {
        fields.insert("review_state".into(), Value::from(st.as_str()));
    }
    o.review_state = state;
    o.fields = Some(fields);
    o.dirty = true;
    Ok(())
}

/// A partition's state: its least advanced member's, when `member_states` lists it, every
/// other member's and the primary's (a partition whose analyses are all verified is verified
/// while its primary waits for another partition, as SENAITE 2.x rolls states up); else the
/// primary's (what senaite.core's create_partition gives a new partition).
fn partition_state(spec: &SplitPartitions, part: &Part, primary: &Primary) -> Option<String> {
    let listed = primary
        .review_state
        .as_ref()
        .is_some_and(|st| spec.member_states.contains(st));
    match part.least {
        Some(i) if listed && !part.unlisted => spec.member_states.get(i).cloned(),
        _ => primary.review_state.clone(),
    }
}

/// A member of a partition: under the partition, its paths and request id following.
fn move_member(part_uid: &str, part: &Part, o: &mut Obj) -> Result<(), String> {
    let Some(old_parent) = o.parent_path.clone() else {
        return Ok(());
    };
    let old_request = old_parent
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let (old_path, new_path) = (o.path.clone(), format!("{}/{}", part.path, o.id));
    let f = o.fields()?;
    Rewrite {
        exact: (&old_parent, &part.path),
        under: Some((&old_path, &new_path)),
        id: (&old_request, &part.id),
    }
    .fields(f);
    if f.contains_key("parent_uid") {
        f.insert("parent_uid".into(), Value::from(part_uid));
    }
    o.path = new_path;
    o.parent_path = Some(part.path.clone());
    o.parent_uid = Some(part_uid.to_string());
    o.dirty = true;
    Ok(())
}

/// A lone partition's fields folded into its primary (a value the primary has is kept).
fn merge_fields(
    spec: &SplitPartitions,
    own: &Map<String, Value>,
    o: &mut Obj,
) -> Result<(), String> {
    let blank = |v: &Value| match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    let f = o.fields()?;
    let mut changed = false;
    for (from, to) in &spec.fields {
        let Some(v) = own.get(from) else { continue };
        if f.get(to).is_some_and(|cur| !blank(cur)) || f.get(to) == Some(v) {
            continue;
        }
        f.insert(to.clone(), v.clone());
        changed = true;
    }
    if changed {
        o.dirty = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(uid: &str, pt: &str, path: &str, parent_uid: &str, fields: Value) -> Obj {
        let (parent, id) = path.rsplit_once('/').unwrap();
        Obj {
            uid: uid.into(),
            portal_type: pt.into(),
            path: path.into(),
            parent_uid: Some(parent_uid.into()),
            parent_path: Some(parent.into()),
            id: id.into(),
            title: Some(id.into()),
            created: Some("2026-11-27T00:38:28+00:00".into()),
            modified: Some("2026-11-27T00:38:55+00:00".into()),
            review_state: Some("to_be_verified".into()),
            content_hash: String::new(),
            fields_text: fields.to_string(),
            sources: "{}".into(),
            fields: None,
            dirty: false,
        }
    }

    fn spec(min: usize) -> SplitPartitions {
        SplitPartitions {
            types: vec!["SamplePartition".into()],
            primary_types: vec!["AnalysisRequest".into()],
            via: "Sample".into(),
            members: vec!["Analysis".into()],
            member_field: "SamplePartition".into(),
            list_field: Some("Analyses".into()),
            parent_field: "ParentAnalysisRequest".into(),
            suffix: "-P".into(),
            digits: 2,
            min,
            fields: vec![
                ("Container".into(), "Container".into()),
                ("Preservation".into(), "Preservation".into()),
            ],
            skip_fields: vec!["Remarks".into()],
            member_states: ["sample_received", "to_be_verified", "verified", "published"]
                .map(String::from)
                .to_vec(),
        }
    }

    fn plan(spec: &SplitPartitions, input: &[Obj]) -> PartitionPlan {
        let mut b = PlanBuilder::new(spec);
        for o in input {
            if b.first_reads(&o.portal_type) {
                b.first(&mut o.clone()).unwrap();
            }
        }
        b.chosen();
        for o in input {
            if b.second_reads(&o.portal_type) {
                b.second(&mut o.clone()).unwrap();
            }
        }
        b.finish()
    }

    fn run(spec: &SplitPartitions, plan: &PartitionPlan, o: &mut Obj) -> Outcome {
        let mut out = Outcome {
            keep: true,
            ..Outcome::default()
        };
        apply(spec, plan, o, &mut out).unwrap();
        out
    }

    const C: &str = "/lims/clients/client-1";
    const REQ: &str = "/lims/clients/client-1/W-0006-R01";

    /// The seeded BIKA sample W-0006 (two partitions, Ca in P1, Mg in P2) plus a third
    /// partition P10 (ordering by number, not text) holding nothing.
    fn lab() -> Vec<Obj> {
        let part =
            |n: &str| json!({"uid": format!("p{n}"), "url": format!("{C}/W-0006/W-0006-P{n}")});
        let an = |uid: &str, id: &str, p: &str| {
            obj(
                uid,
                "Analysis",
                &format!("{REQ}/{id}"),
                "ar",
                json!({"Keyword": id, "Result": "12.5", "RequestID": "W-0006-R01",
                       "getRequestID": "W-0006-R01", "path": format!("{REQ}/{id}"),
                       "parent_path": REQ, "SamplePartition": part(p)}),
            )
        };
        vec![
            obj(
                "ar",
                "AnalysisRequest",
                REQ,
                "client",
                json!({"id": "W-0006-R01", "title": "W-0006-R01", "path": REQ,
                       "RequestID": "W-0006-R01", "Remarks": "not copied",
                       "ClientSampleID": "seed-partitioned",
                       "Sample": {"uid": "sample", "url": format!("{C}/W-0006")},
                       "created": "2026-11-27T00:38:28+00:00",
                       "Analyses": [{"uid": "ca", "url": format!("{REQ}/Ca")},
                                    {"uid": "mg", "url": format!("{REQ}/Mg")}]}),
            ),
            obj(
                "sample",
                "Sample",
                &format!("{C}/W-0006"),
                "client",
                json!({}),
            ),
            obj(
                "p10",
                "SamplePartition",
                &format!("{C}/W-0006/W-0006-P10"),
                "sample",
                json!({"Container": null, "created": "2026-11-27T00:40:00+00:00"}),
            ),
            obj(
                "p2",
                "SamplePartition",
                &format!("{C}/W-0006/W-0006-P2"),
                "sample",
                json!({"Container": {"uid": "vial"}, "Preservation": {"uid": "acid"},
                       "created": "2026-11-27T00:38:29+00:00"}),
            ),
            obj(
                "p1",
                "SamplePartition",
                &format!("{C}/W-0006/W-0006-P1"),
                "sample",
                json!({"Container": {"uid": "bottle"}, "Preservation": null}),
            ),
            an("ca", "Ca", "1"),
            an("mg", "Mg", "2"),
        ]
    }

    #[test]
    fn several_partitions_become_partitions_of_the_request_with_their_analyses() {
        let spec = spec(2);
        let input = lab();
        let plan = plan(&spec, &input);
        assert_eq!(plan.split_count(), 3);
        let mut out: BTreeMap<String, Obj> = BTreeMap::new();
        for mut o in input {
            assert!(run(&spec, &plan, &mut o).keep);
            out.insert(o.uid.clone(), o);
        }
        let p2 = out.get_mut("p2").unwrap();
        assert_eq!(p2.portal_type, "AnalysisRequest");
        assert_eq!(p2.id, "W-0006-R01-P02");
        assert_eq!(p2.path, format!("{C}/W-0006-R01-P02"));
        assert_eq!(p2.parent_uid.as_deref(), Some("client"));
        assert_eq!(p2.parent_path.as_deref(), Some(C));
        assert_eq!(p2.title.as_deref(), Some("W-0006-R01-P02"));
        assert_eq!(p2.review_state.as_deref(), Some("to_be_verified"));
        let f = p2.fields().unwrap().clone();
        assert_eq!(f["id"], "W-0006-R01-P02");
        assert_eq!(f["RequestID"], "W-0006-R01-P02");
        assert_eq!(f["path"], format!("{C}/W-0006-R01-P02"));
        assert_eq!(f["ClientSampleID"], "seed-partitioned");
        assert_eq!(f["created"], "2026-11-27T00:38:29+00:00", "its own dates");
        assert_eq!(f["Container"], json!({"uid": "vial"}));
        assert_eq!(f["Preservation"], json!({"uid": "acid"}));
        assert_eq!(
            f["ParentAnalysisRequest"],
            json!({"uid": "ar", "title": "W-0006-R01", "url": REQ})
        );
        assert_eq!(
            f["Sample"]["uid"], "sample",
            "kept for the Sample's folded fields"
        );
        assert!(!f.contains_key("Remarks"), "skip_fields are not copied");
        assert_eq!(
            f["Analyses"],
            json!([{"uid": "mg", "url": format!("{C}/W-0006-R01-P02/Mg")}])
        );
        // Numbered by the BIKA partition number: P1, P2, P10 -> P01, P02, P03.
        assert_eq!(out["p1"].id, "W-0006-R01-P01");
        assert_eq!(out["p10"].id, "W-0006-R01-P03");
        assert_eq!(
            out.get_mut("p10").unwrap().fields().unwrap()["Analyses"],
            json!([])
        );
        let mg = out.get_mut("mg").unwrap();
        assert_eq!(mg.path, format!("{C}/W-0006-R01-P02/Mg"));
        assert_eq!(mg.parent_uid.as_deref(), Some("p2"));
        assert_eq!(
            mg.parent_path.as_deref(),
            Some(&*format!("{C}/W-0006-R01-P02"))
        );
        let f = mg.fields().unwrap().clone();
        assert_eq!(f["getRequestID"], "W-0006-R01-P02");
        assert_eq!(f["RequestID"], "W-0006-R01-P02");
        assert_eq!(f["path"], format!("{C}/W-0006-R01-P02/Mg"));
        assert_eq!(f["parent_path"], format!("{C}/W-0006-R01-P02"));
        assert_eq!(f["Result"], "12.5");
        assert_eq!(out["ca"].path, format!("{C}/W-0006-R01-P01/Ca"));
        let ar = out.get_mut("ar").unwrap();
        assert_eq!(ar.path, REQ, "the primary stays");
        assert_eq!(
            ar.fields().unwrap()["Analyses"],
            json!([]),
            "the primary's analyses that moved are not listed twice"
        );
        // The Sample is not this step's business.
        assert!(!out["sample"].dirty);
    }

    #[test]
    fn a_partition_takes_its_least_advanced_analysis_state_when_listed() {
        let states = |spec: &SplitPartitions, mg: &str| -> BTreeMap<String, Option<String>> {
            let mut input = lab();
            for o in &mut input {
                if o.uid == "mg" {
                    o.review_state = Some(mg.into());
                }
            }
            let plan = plan(spec, &input);
            input
                .into_iter()
                .filter(|o| o.portal_type == "SamplePartition")
                .map(|mut o| {
                    run(spec, &plan, &mut o);
                    (o.id.clone(), o.review_state.clone())
                })
                .collect()
        };
        let s = |v: &str| Some(v.to_string());
        // Mg (P2) verified, Ca (P1) still to be verified, P10 empty: the primary's.
        let got = states(&spec(2), "verified");
        assert_eq!(got["W-0006-R01-P01"], s("to_be_verified"));
        assert_eq!(got["W-0006-R01-P02"], s("verified"));
        assert_eq!(got["W-0006-R01-P03"], s("to_be_verified"));
        // A state outside the list (retracted), or no list: the primary's.
        assert_eq!(
            states(&spec(2), "retracted")["W-0006-R01-P02"],
            s("to_be_verified")
        );
        let mut plain = spec(2);
        plain.member_states.clear();
        assert_eq!(
            states(&plain, "verified")["W-0006-R01-P02"],
            s("to_be_verified")
        );
    }

    #[test]
    fn a_lone_partition_is_merged_into_its_request_without_blanking() {
        let spec = spec(2);
        let mut input: Vec<Obj> = lab()
            .into_iter()
            .filter(|o| o.uid != "p2" && o.uid != "p10")
            .collect();
        input[0] = obj(
            "ar",
            "AnalysisRequest",
            REQ,
            "client",
            json!({"Sample": {"uid": "sample"}, "Preservation": {"uid": "kept"},
                   "Analyses": [{"uid": "ca"}]}),
        );
        let plan = plan(&spec, &input);
        assert_eq!(plan.split_count(), 0);
        for mut o in input {
            let before = o.clone();
            let out = run(&spec, &plan, &mut o);
            match o.uid.as_str() {
                "p1" => {
                    assert!(!out.keep);
                    assert_eq!(out.merged_into.as_deref(), Some("ar"));
                }
                "ar" => {
                    let f = o.fields().unwrap();
                    assert_eq!(f["Container"], json!({"uid": "bottle"}));
                    assert_eq!(
                        f["Preservation"],
                        json!({"uid": "kept"}),
                        "a null never blanks"
                    );
                    assert_eq!(f["Analyses"], json!([{"uid": "ca"}]));
                }
                _ => {
                    assert!(out.keep);
                    assert_eq!(o, before, "{} untouched", o.uid);
                }
            }
        }
    }

    #[test]
    fn a_secondary_request_sharing_the_sample_keeps_its_analyses() {
        let spec = spec(2);
        let mut input = lab();
        let r02 = "/lims/clients/client-1/W-0006-R02";
        input.push(obj(
            "ar2",
            "AnalysisRequest",
            r02,
            "client",
            json!({"Sample": {"uid": "sample"}, "Analyses": [{"uid": "ca2"}]}),
        ));
        input.push(obj(
            "ca2",
            "Analysis",
            &format!("{r02}/Ca"),
            "ar2",
            json!({"SamplePartition": {"uid": "p1"}}),
        ));
        let plan = plan(&spec, &input);
        for mut o in input {
            run(&spec, &plan, &mut o);
            match o.uid.as_str() {
                "ca2" => assert_eq!(o.path, format!("{r02}/Ca")),
                "ar2" => assert!(!o.dirty),
                "p1" => assert_eq!(o.id, "W-0006-R01-P01", "the first request by id"),
                _ => {}
            }
        }
    }
}
