//! Schema drift between the reviewed snapshot and a destination snapshot (`review --against`):
//! per portal type, the field names present in the objects' `fields` on each side. Lists the
//! types the destination does not have (neither objects nor a catalog set up for them), the
//! types it has but holds no objects of (fields cannot be compared), the types only the
//! destination has, and the fields that have nowhere to go (present in the source, absent from
//! every destination object of the type), split by whether any source object has a value in
//! them. Pure computation over the scans; never touches the network.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::review::index::DestScan;
use crate::review::scan::FieldStat;

/// The destination snapshot compared against.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationInfo {
    /// Directory.
    pub dir: String,
    /// Snapshot id.
    pub snapshot_id: String,
    /// Site URL.
    pub source: String,
    /// Objects.
    pub objects: u64,
    /// Whether the destination snapshot records its catalogs' portal types (`raw/site`).
    pub has_catalog_types: bool,
}

/// A portal type present on one side only.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TypeGap {
    /// Portal type.
    pub portal_type: String,
    /// Objects of the type on the side that has it.
    pub objects: u64,
    /// Why it is listed.
    pub reason: String,
}

/// A field present on one side only.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldGap {
    /// Portal type.
    pub portal_type: String,
    /// Field name.
    pub field: String,
    /// Objects having the field (on the side that has it).
    pub objects: u64,
    /// Of those, objects with a value (not null or empty); 0 for destination-only fields.
    pub with_value: u64,
}

/// The drift report.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    /// The destination snapshot.
    pub destination: DestinationInfo,
    /// Types whose fields were compared (objects on both sides).
    pub compared_types: u64,
    /// Source types the destination has neither objects of nor a catalog for.
    pub types_missing_in_destination: Vec<TypeGap>,
    /// Source types the destination knows (a catalog lists them) but holds no objects of: their
    /// fields cannot be compared.
    pub types_without_objects_in_destination: Vec<TypeGap>,
    /// Types only the destination has objects of.
    pub types_only_in_destination: Vec<TypeGap>,
    /// Source fields no destination object of the type has: they have nowhere to go.
    pub fields_missing_in_destination: Vec<FieldGap>,
    /// Destination fields no source object of the type has (the destination's defaults apply).
    pub fields_only_in_destination: Vec<FieldGap>,
}

/// Compares the source's fields per type with the destination's.
pub(crate) fn compare(
    source: &BTreeMap<String, BTreeMap<String, FieldStat>>,
    counts: &BTreeMap<String, u64>,
    dest: &DestScan,
) -> Drift {
    let mut d = Drift {
        destination: DestinationInfo {
            dir: dest.dir.clone(),
            snapshot_id: dest.snapshot_id.clone(),
            source: dest.source.clone(),
            objects: dest.objects,
            has_catalog_types: dest.catalog_types.is_some(),
        },
        compared_types: 0,
        types_missing_in_destination: Vec::new(),
        types_without_objects_in_destination: Vec::new(),
        types_only_in_destination: Vec::new(),
        fields_missing_in_destination: Vec::new(),
        fields_only_in_destination: Vec::new(),
    };
    for (pt, fields) in source {
        let objects = counts.get(pt).copied().unwrap_or(0);
        let Some(dest_fields) = dest.fields.get(pt) else {
            type_without_fields(&mut d, dest, pt, objects);
            continue;
        };
        d.compared_types += 1;
        for (field, st) in fields {
            if !dest_fields.contains_key(field) {
                d.fields_missing_in_destination.push(FieldGap {
                    portal_type: pt.clone(),
                    field: field.clone(),
                    objects: st.objects,
                    with_value: st.with_value,
                });
            }
        }
        for (field, n) in dest_fields {
            if !fields.contains_key(field) {
                d.fields_only_in_destination.push(FieldGap {
                    portal_type: pt.clone(),
                    field: field.clone(),
                    objects: *n,
                    with_value: 0,
                });
            }
        }
    }
    for (pt, n) in &dest.types {
        if !source.contains_key(pt) {
            d.types_only_in_destination.push(TypeGap {
                portal_type: pt.clone(),
                objects: *n,
                reason: "objects only in the destination".to_string(),
            });
        }
    }
    d
}

/// Files a source type the destination has no objects of: missing, or known to a catalog.
fn type_without_fields(d: &mut Drift, dest: &DestScan, pt: &str, objects: u64) {
    let gap = |reason: &str| TypeGap {
        portal_type: pt.to_string(),
        objects,
        reason: reason.to_string(),
    };
    match &dest.catalog_types {
        Some(c) if c.contains(pt) => d.types_without_objects_in_destination.push(gap(
            "a destination catalog lists the type, but the destination snapshot has no objects \
             of it to compare fields with",
        )),
        Some(_) => d
            .types_missing_in_destination
            .push(gap("no objects of the type and no catalog for it")),
        None => d.types_missing_in_destination.push(gap(
            "no objects of the type (the destination snapshot records no catalogs to tell \
             whether the type is set up)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn stat(objects: u64, with_value: u64) -> FieldStat {
        FieldStat {
            objects,
            with_value,
        }
    }

    #[test]
    fn lists_missing_types_and_fields_on_both_sides() {
        let source = BTreeMap::from([
            (
                "Client".to_string(),
                BTreeMap::from([
                    ("uid".to_string(), stat(2, 2)),
                    ("Name".to_string(), stat(2, 2)),
                    ("Fax".to_string(), stat(2, 0)),
                ]),
            ),
            (
                "Sample".to_string(),
                BTreeMap::from([("uid".to_string(), stat(5, 5))]),
            ),
            (
                "Batch".to_string(),
                BTreeMap::from([("uid".to_string(), stat(1, 1))]),
            ),
        ]);
        let dest = DestScan::for_test(
            BTreeMap::from([
                (
                    "Client".to_string(),
                    BTreeMap::from([("uid".to_string(), 1), ("Phone".to_string(), 1)]),
                ),
                (
                    "Worksheet".to_string(),
                    BTreeMap::from([("uid".to_string(), 3)]),
                ),
            ]),
            Some(BTreeSet::from(["Batch".to_string()])),
        );
        let counts = source
            .iter()
            .map(|(t, f)| (t.clone(), f["uid"].objects))
            .collect();
        let d = compare(&source, &counts, &dest);
        assert_eq!(d.compared_types, 1);
        let types = |v: &[TypeGap]| v.iter().map(|g| g.portal_type.clone()).collect::<Vec<_>>();
        assert_eq!(types(&d.types_missing_in_destination), ["Sample"]);
        assert_eq!(d.types_missing_in_destination[0].objects, 5);
        assert_eq!(types(&d.types_without_objects_in_destination), ["Batch"]);
        assert_eq!(types(&d.types_only_in_destination), ["Worksheet"]);
        let fields = |v: &[FieldGap]| {
            v.iter()
                .map(|g| (g.field.clone(), g.with_value))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fields(&d.fields_missing_in_destination),
            [("Fax".to_string(), 0), ("Name".to_string(), 2)]
        );
        assert_eq!(
            fields(&d.fields_only_in_destination),
            [("Phone".to_string(), 0)]
        );
    }
}
