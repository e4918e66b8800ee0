//! The review page's sections on warnings, schema drift (`--against`), the plan (`--plan`),
//! the diff (`--diff`), a transform's provenance and the manifest's notes. Every text goes
//! through [`esc`] or the escaping table helper.

use crate::review::html::{SHOWN, esc, more, short_id, table, warning};
use crate::review::{
    DiffSummary, Drift, FieldGap, Grouped, PlanSummary, ReviewReport, TransformInfo, TypeGap,
    Warnings,
};
use crate::snapshot::manifest::Note;

fn yes_no(v: Option<bool>) -> String {
    match v {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => "-".into(),
    }
}

/// A [`Grouped`] count as a table (key, count, in destination when known), with the number of
/// distinct keys and what was not told apart.
fn grouped(h: &mut String, g: &Grouped, what: &str, key_head: &str, with_dest: bool) {
    let rows: Vec<Vec<String>> = g
        .top
        .iter()
        .map(|c| {
            let mut row = vec![c.key.clone(), c.count.to_string()];
            if with_dest {
                row.push(yes_no(c.in_destination));
            }
            row
        })
        .collect();
    let heads: &[&str] = if with_dest {
        &[key_head, "count", "in destination"]
    } else {
        &[key_head, "count"]
    };
    h.push_str(&format!(
        "<h4>{} ({} distinct{})</h4>",
        esc(what),
        g.distinct,
        if g.others > 0 {
            format!(
                "; {} more occurrences of further keys not told apart",
                g.others
            )
        } else {
            String::new()
        }
    ));
    table(h, "list grouped", heads, &[1], &rows);
}

/// The first entries of a warning list, folded away.
fn first_entries(h: &mut String, total: u64, rows: &[Vec<String>], heads: &[&str]) {
    h.push_str(&format!(
        "<details><summary>The first {} of {total}</summary>",
        rows.len()
    ));
    table(h, "list", heads, &[], rows);
    h.push_str("</details>");
}

/// The warnings that matter, each with a few examples; nothing when there are none.
pub(crate) fn warnings(h: &mut String, r: &ReviewReport) {
    let w = &r.warnings;
    let with_dest = r.drift.is_some();
    if r.snapshot.base.is_some() && w.dangling_references.total + w.orphans.total > 0 {
        h.push_str(
            "<p class=\"info\">This is a delta snapshot: it holds only what changed since its \
             base, so references to and children of unchanged objects of the base are listed \
             below too. Review it --against a snapshot of the destination to tell them apart.</p>",
        );
    }
    dangling_warning(h, w, with_dest);
    orphan_warning(h, w, with_dest);
    if let Some(d) = &r.drift {
        drift_warnings(h, d);
    }
    if let Some(p) = &r.plan {
        plan_warnings(h, p);
    }
    if let Some(t) = &r.transform {
        transform_warnings(h, t);
    }
    if let Some(d) = r.diff.as_ref().filter(|d| d.relation == "unrelated") {
        warning(
            h,
            "diff-unrelated",
            1,
            "diff is about other snapshots",
            &format!(
                "Neither side of {} ({} -> {}) is this snapshot.",
                d.file,
                short_id(&d.old.snapshot_id),
                short_id(&d.new.snapshot_id)
            ),
            "",
        );
    }
}

fn dangling_warning(h: &mut String, w: &Warnings, with_dest: bool) {
    if w.dangling_references.total == 0 {
        return;
    }
    let mut d = String::new();
    grouped(
        &mut d,
        &w.dangling_by_field,
        "Per type and field",
        "type.field",
        false,
    );
    grouped(
        &mut d,
        &w.dangling_targets,
        "Missing targets referenced most",
        "missing uid",
        with_dest,
    );
    let rows: Vec<Vec<String>> = w
        .dangling_references
        .items
        .iter()
        .take(SHOWN)
        .map(|x| {
            vec![
                x.path.clone(),
                x.portal_type.clone(),
                x.field.clone(),
                x.target.clone(),
                yes_no(x.in_destination),
            ]
        })
        .collect();
    let heads = [
        "object",
        "type",
        "field",
        "missing target",
        "in destination",
    ];
    first_entries(&mut d, w.dangling_references.total, &rows, &heads);
    warning(
        h,
        "dangling-references",
        w.dangling_references.total,
        "references to objects that are not in this snapshot",
        "A load keeps such a reference only if the destination already has the target \
         (\"in destination\" with --against); otherwise the field is deferred and finally \
         left empty. Many references to a few targets usually mean the extract left out \
         the objects they point to (setup, another client).",
        &d,
    );
}

fn orphan_warning(h: &mut String, w: &Warnings, with_dest: bool) {
    if w.orphans.total == 0 {
        return;
    }
    let mut d = String::new();
    grouped(
        &mut d,
        &w.orphan_parents,
        "Missing parents",
        "parent path",
        with_dest,
    );
    let rows: Vec<Vec<String>> = w
        .orphans
        .items
        .iter()
        .take(SHOWN)
        .map(|x| {
            vec![
                x.path.clone(),
                x.portal_type.clone(),
                x.parent_path.clone(),
                yes_no(x.in_destination),
            ]
        })
        .collect();
    let heads = ["object", "type", "missing parent", "in destination"];
    first_entries(&mut d, w.orphans.total, &rows, &heads);
    warning(
        h,
        "orphans",
        w.orphans.total,
        "objects whose parent is not in this snapshot",
        "A load blocks an object whose parent is neither in the snapshot nor in the \
         destination.",
        &d,
    );
}

fn drift_warnings(h: &mut String, d: &Drift) {
    let n = d.types_missing_in_destination.len() as u64;
    if n > 0 {
        let rows: Vec<Vec<String>> = d
            .types_missing_in_destination
            .iter()
            .map(|t| vec![t.portal_type.clone(), t.objects.to_string()])
            .collect();
        let mut detail = String::new();
        table(
            &mut detail,
            "list",
            &["portal type", "objects"],
            &[1],
            &rows,
        );
        warning(
            h,
            "types-missing-in-destination",
            n,
            "types the destination does not have",
            "Objects of these types have nowhere to go: a load blocks them.",
            &detail,
        );
    }
    let lossy: Vec<Vec<String>> = d
        .fields_missing_in_destination
        .iter()
        .filter(|f| f.with_value > 0)
        .map(|f| {
            vec![
                f.portal_type.clone(),
                f.field.clone(),
                f.with_value.to_string(),
            ]
        })
        .collect();
    if !lossy.is_empty() {
        let mut detail = String::new();
        table(
            &mut detail,
            "list",
            &["portal type", "field", "objects with a value"],
            &[2],
            &lossy[..lossy.len().min(SHOWN)],
        );
        if lossy.len() > SHOWN {
            detail.push_str(&format!(
                r#"<p class="more">… and {} more in the schema drift section.</p>"#,
                lossy.len() - SHOWN
            ));
        }
        warning(
            h,
            "fields-missing-in-destination",
            lossy.len() as u64,
            "fields with values that the destination does not have",
            "No destination object of the type has these fields: their values have nowhere \
             to go.",
            &detail,
        );
    }
}

fn plan_warnings(h: &mut String, p: &PlanSummary) {
    if let Some(problem) = &p.receiver_problem {
        warning(h, "receiver", 1, "receiver missing", problem, "");
    }
    if p.blocked.total > 0 {
        let mut d = String::new();
        let rows: Vec<Vec<String>> = p
            .blocked_by_reason
            .iter()
            .map(|(r, n)| vec![r.clone(), n.to_string()])
            .collect();
        table(&mut d, "list", &["reason", "records"], &[1], &rows);
        warning(
            h,
            "blocked",
            p.blocked.total,
            "records the load would block",
            &format!(
                "From the plan against {}; listed in the plan section.",
                p.destination
            ),
            &d,
        );
    }
    if p.unresolved.total > 0 {
        warning(
            h,
            "unresolved",
            p.unresolved.total,
            "references the plan resolves nowhere",
            "Their targets are neither in the snapshot nor in the destination; listed in the \
             plan section.",
            "",
        );
    }
    if p.other_snapshot {
        let planned = p.snapshot_id.as_deref().unwrap_or_default();
        warning(
            h,
            "plan-other-snapshot",
            1,
            "the plan was made for another snapshot",
            &format!(
                "The plan names snapshot {}; its counts describe a load of that snapshot, not \
                 of this one. Run plan again on this snapshot.",
                planned
            ),
            "",
        );
    }
    if p.foreign_uids > 0 {
        warning(
            h,
            "plan-foreign",
            p.foreign_uids,
            "plan entries for objects this snapshot does not have",
            "The plan was probably made for another snapshot.",
            "",
        );
    }
}

fn transform_warnings(h: &mut String, t: &TransformInfo) {
    if let Some(n) = t.dropped_objects.filter(|n| *n > 0) {
        warning(
            h,
            "transform-dropped",
            n,
            "objects the transform dropped",
            "See the transform section for the details it recorded.",
            "",
        );
    }
    if let Some(n) = t.dangling_references.filter(|n| *n > 0) {
        warning(
            h,
            "transform-dangling",
            n,
            "references the transform left dangling",
            "See the transform section for the details it recorded.",
            "",
        );
    }
}

fn gap_rows(v: &[TypeGap]) -> Vec<Vec<String>> {
    v.iter()
        .map(|t| {
            vec![
                t.portal_type.clone(),
                t.objects.to_string(),
                t.reason.clone(),
            ]
        })
        .collect()
}

fn field_rows<'a>(v: impl Iterator<Item = &'a FieldGap>) -> Vec<Vec<String>> {
    v.map(|f| {
        vec![
            f.portal_type.clone(),
            f.field.clone(),
            f.objects.to_string(),
            f.with_value.to_string(),
        ]
    })
    .collect()
}

const GAP_HEADS: [&str; 3] = ["portal type", "objects", "why"];
const FIELD_HEADS: [&str; 4] = ["portal type", "field", "objects", "with a value"];

/// Schema drift against the destination snapshot.
pub(crate) fn drift(h: &mut String, d: &Drift) {
    let dest = &d.destination;
    h.push_str(&format!(
        r#"<section id="drift"><h2>Schema drift against the destination</h2><p>Destination snapshot <code>{}</code> (id <code>{}</code>, {} objects, from {}). Fields compared per portal type for {} types present on both sides{}.</p>"#,
        esc(&dest.dir),
        esc(&short_id(&dest.snapshot_id)),
        dest.objects,
        esc(&dest.source),
        d.compared_types,
        if dest.has_catalog_types {
            "; types without objects checked against the destination's catalogs"
        } else {
            ""
        }
    ));
    h.push_str("<h3>Types missing in the destination</h3>");
    let missing = gap_rows(&d.types_missing_in_destination);
    table(h, "list drift-types-missing", &GAP_HEADS, &[1], &missing);
    h.push_str("<h3>Types the destination has no objects of (fields not comparable)</h3>");
    let empty = gap_rows(&d.types_without_objects_in_destination);
    table(h, "list drift-types-empty", &GAP_HEADS, &[1], &empty);
    h.push_str("<h3>Fields with nowhere to go</h3>");
    let lost = d.fields_missing_in_destination.iter();
    let with = field_rows(lost.clone().filter(|f| f.with_value > 0));
    let without = field_rows(lost.filter(|f| f.with_value == 0));
    table(
        h,
        "list sortable drift-fields-missing",
        &FIELD_HEADS,
        &[2, 3],
        &with,
    );
    folded(
        h,
        &format!(
            "{} more fields missing in the destination that are empty in every source object \
             (nothing is lost)",
            without.len()
        ),
        "list drift-fields-empty",
        &FIELD_HEADS,
        &without,
    );
    let only = field_rows(d.fields_only_in_destination.iter());
    let summary = format!(
        "{} fields only the destination has (its defaults apply)",
        only.len()
    );
    folded(h, &summary, "list drift-fields-only", &FIELD_HEADS, &only);
    let types_only = gap_rows(&d.types_only_in_destination);
    let summary = format!(
        "{} types only the destination has objects of",
        types_only.len()
    );
    folded(
        h,
        &summary,
        "list drift-types-only",
        &GAP_HEADS,
        &types_only,
    );
    h.push_str("</section>");
}

/// A table folded into a `details` element under a summary line.
fn folded(h: &mut String, summary: &str, class: &str, heads: &[&str], rows: &[Vec<String>]) {
    h.push_str(&format!("<details><summary>{}</summary>", esc(summary)));
    let num: Vec<usize> = (0..heads.len())
        .filter(|i| matches!(heads[*i], "objects" | "with a value" | "count"))
        .collect();
    table(h, class, heads, &num, rows);
    h.push_str("</details>");
}

/// The plan: counts per type, blocked records, unresolved references.
pub(crate) fn plan(h: &mut String, p: &PlanSummary) {
    h.push_str(&format!(r#"<section id="plan"><h2>Load plan</h2><p>From <code>{}</code>: destination {} (receiver {}).</p>"#,
        esc(&p.file),
        esc(&p.destination),
        esc(p.receiver.as_deref().unwrap_or("missing"))
    ));
    let mut rows: Vec<Vec<String>> = p
        .by_type
        .iter()
        .map(|(t, c)| {
            vec![
                t.clone(),
                c.create.to_string(),
                c.update.to_string(),
                c.unchanged.to_string(),
                c.blocked.to_string(),
            ]
        })
        .collect();
    let t = &p.totals;
    rows.push(vec![
        "TOTAL".into(),
        t.create.to_string(),
        t.update.to_string(),
        t.unchanged.to_string(),
        t.blocked.to_string(),
    ]);
    let heads = ["portal type", "create", "update", "unchanged", "blocked"];
    table(h, "sortable plan-types", &heads, &[1, 2, 3, 4], &rows);
    if p.blocked.total > 0 {
        h.push_str("<h3>Blocked records</h3>");
        let rows: Vec<Vec<String>> = p
            .blocked
            .items
            .iter()
            .take(SHOWN)
            .map(|b| vec![b.path.clone(), b.portal_type.clone(), b.reason.clone()])
            .collect();
        table(
            h,
            "list plan-blocked",
            &["record", "type", "reason"],
            &[],
            &rows,
        );
        more(h, &p.blocked);
    }
    if p.unresolved.total > 0 {
        h.push_str("<h3>Unresolvable references</h3>");
        let rows: Vec<Vec<String>> = p
            .unresolved
            .items
            .iter()
            .take(SHOWN)
            .map(|u| vec![u.path.clone(), u.target.clone()])
            .collect();
        table(h, "list", &["object", "missing target"], &[], &rows);
        more(h, &p.unresolved);
    }
    if p.moved.total > 0 {
        h.push_str("<h3>Objects at another path in the destination</h3><ul>");
        for m in p.moved.items.iter().take(SHOWN) {
            h.push_str(&format!("<li>{}</li>", esc(&m.0)));
        }
        h.push_str("</ul>");
        more(h, &p.moved);
    }
    h.push_str("</section>");
}

/// The diff: counts per type and the changed objects.
pub(crate) fn diff(h: &mut String, d: &DiffSummary) {
    let side = match d.relation.as_str() {
        "new" => "this snapshot is the newer side",
        "old" => "this snapshot is the older side",
        _ => "this snapshot is on neither side",
    };
    h.push_str(&format!(r#"<section id="diff"><h2>Changes (diff)</h2><p>From <code>{}</code>: <code>{}</code> ({} objects) -> <code>{}</code> ({} objects); {}.</p>"#,
        esc(&d.file),
        esc(&short_id(&d.old.snapshot_id)),
        d.old.objects,
        esc(&short_id(&d.new.snapshot_id)),
        d.new.objects,
        side
    ));
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (t, c) in &d.by_type {
        if c.created + c.modified + c.moved + c.deleted > 0 {
            rows.push(vec![
                t.clone(),
                c.created.to_string(),
                c.modified.to_string(),
                c.moved.to_string(),
                c.deleted.to_string(),
                c.unchanged.to_string(),
            ]);
        }
    }
    let t = &d.totals;
    rows.push(vec![
        "TOTAL".into(),
        t.created.to_string(),
        t.modified.to_string(),
        t.moved.to_string(),
        t.deleted.to_string(),
        t.unchanged.to_string(),
    ]);
    let heads = [
        "portal type",
        "created",
        "modified",
        "moved",
        "deleted",
        "unchanged",
    ];
    table(h, "sortable diff-types", &heads, &[1, 2, 3, 4, 5], &rows);
    changed_objects(h, d);
    if d.site.total > 0 {
        h.push_str(&format!(
            "<p>{} users, groups or settings changed.</p>",
            d.site.total
        ));
    }
    h.push_str("</section>");
}

/// The diff's changed objects, the first [`SHOWN`].
fn changed_objects(h: &mut String, d: &DiffSummary) {
    if d.objects.total == 0 {
        return;
    }
    h.push_str("<h3>Changed objects</h3>");
    let rows: Vec<Vec<String>> = d
        .objects
        .items
        .iter()
        .take(SHOWN)
        .map(|o| {
            let status = match &o.reason {
                Some(r) => format!("{} ({r})", o.status),
                None => o.status.clone(),
            };
            vec![
                o.path.clone(),
                o.portal_type.clone(),
                status,
                o.changes.join(", "),
            ]
        })
        .collect();
    table(
        h,
        "list diff-objects",
        &["object", "type", "status", "what changed"],
        &[],
        &rows,
    );
    more(h, &d.objects);
}

/// What a transform recorded in the manifest.
pub(crate) fn transform(h: &mut String, t: &TransformInfo) {
    h.push_str(
        r#"<section id="transform"><h2>Transform</h2><div class="info"><dl class="example">"#,
    );
    let items = [
        ("input snapshot", t.input_snapshot_id.clone()),
        ("pipeline", t.pipeline.clone()),
        ("pipeline hash", t.pipeline_hash.clone()),
        ("objects dropped", t.dropped_objects.map(|n| n.to_string())),
        (
            "references left dangling",
            t.dangling_references.map(|n| n.to_string()),
        ),
    ];
    for (k, v) in items {
        if let Some(v) = v {
            h.push_str(&format!(
                "<dt>{}</dt><dd><code>{}</code></dd>",
                esc(k),
                esc(&v)
            ));
        }
    }
    h.push_str("</dl></div><h3>Everything it recorded</h3>");
    let rows: Vec<Vec<String>> = t
        .entries
        .iter()
        .map(|(k, v)| vec![k.clone(), v.clone()])
        .collect();
    table(
        h,
        "list transform-entries",
        &["manifest key", "value"],
        &[],
        &rows,
    );
    h.push_str("</section>");
}

/// The manifest's notes (what the source could not give, fallbacks).
pub(crate) fn notes(h: &mut String, notes: &[&Note]) {
    if notes.is_empty() {
        return;
    }
    h.push_str(&format!(r#"<section id="notes"><h2>Notes from the manifest</h2><p>{} notes: what the source could not give or that did not add up, stated by the stage that wrote the snapshot.</p>"#,
        notes.len()
    ));
    let rows: Vec<Vec<String>> = notes
        .iter()
        .take(SHOWN * 4)
        .map(|n| vec![n.kind.clone(), n.subject.clone(), n.message.clone()])
        .collect();
    table(
        h,
        "list sortable notes",
        &["kind", "subject", "message"],
        &[],
        &rows,
    );
    if notes.len() > SHOWN * 4 {
        h.push_str(&format!(
            r#"<p class="more">… and {} more in manifest.json.</p>"#,
            notes.len() - SHOWN * 4
        ));
    }
    h.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_section_shows_provenance_escaped_and_warns_of_losses() {
        let t = TransformInfo {
            keys: vec!["transform".into()],
            input_snapshot_id: Some("abc".into()),
            pipeline: Some("pipelines/<x>.toml".into()),
            pipeline_hash: Some("f00".into()),
            dropped_objects: Some(3),
            dangling_references: Some(0),
            entries: vec![("transform.note".into(), "<b>dropped</b>".into())],
        };
        let mut h = String::new();
        transform(&mut h, &t);
        assert!(
            h.contains("<dt>input snapshot</dt><dd><code>abc</code></dd>"),
            "{h}"
        );
        assert!(h.contains("pipelines/&lt;x&gt;.toml") && h.contains("&lt;b&gt;dropped"));
        assert!(!h.contains("<b>dropped"));
        let mut w = String::new();
        transform_warnings(&mut w, &t);
        assert!(w.contains(r#"data-warning="transform-dropped" data-count="3""#));
        assert!(!w.contains("transform-dangling"), "no warning for zero");
    }
}
