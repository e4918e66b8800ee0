//! Pipeline files: parsing and validating a `pipelines/*.toml` into typed steps before any data
//! is read. Every problem of a file is collected and reported at once, each naming the file, the
//! step (1-based index and its `name` or `op`) and the key. This module only reads the pipeline
//! file; it never touches a snapshot or the network.
//!
//! ```toml
//! name = "example"
//! description = "what it is for"
//!
//! [[steps]]
//! op = "rename_type"
//! from = "ARTemplate"
//! to = "SampleTemplate"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One problem of a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The pipeline file.
    pub file: String,
    /// 1-based step index (`None` for top-level and test problems).
    pub step: Option<usize>,
    /// The step's `name`, else its `op`.
    pub step_name: Option<String>,
    /// The key concerned (dotted for nested keys).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(i) = self.step {
            write!(f, ": step {i}")?;
            if let Some(n) = &self.step_name {
                write!(f, " ({n})")?;
            }
        }
        write!(f, ": key `{}`: {}", self.key, self.message)
    }
}

/// Filter action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Keep,
    Drop,
}

/// Conditions of a filter (all given ones must hold).
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    pub types: Vec<String>,
    pub paths: Vec<String>,
    pub states: Vec<String>,
    pub created_after: Option<String>,
    pub created_before: Option<String>,
    pub modified_after: Option<String>,
    pub modified_before: Option<String>,
    pub field: Option<(String, Vec<Value>)>,
}

/// A value function of `map_values`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapFunction {
    /// `{days, hours, minutes}` to seconds (a float, as 2.x Dexterity durations read).
    SecondsFromDuration,
    /// A list of reference dicts to a list of uid strings.
    UidsFromReferences,
    /// One reference dict to its uid string.
    UidFromReference,
    /// Lower-case a string.
    Lowercase,
    /// A list of reference dicts (or uids) to 2.x service records `{uid, hidden}`
    /// (AnalysisProfile `services`); `hidden` from the step's `hidden_from` field, else false.
    ServiceRecordsFromReferences,
    /// A decimal string (`"12.50"`, 1.x prices) to a number; other strings stay.
    NumberFromString,
    /// A 1.x coordinate `{degrees, minutes, seconds, bearing}` to 2.x decimal degrees as a
    /// string (7 decimals at most, negative for S and W, as senaite.core's
    /// `geo.to_decimal_degrees`); an empty one (no degrees) to `""`.
    DecimalDegreesFromDms,
    /// 1.x ARTemplate `Analyses` `[{service_uid, partition}]` to 2.x SampleTemplate `services`
    /// `[{uid, part_id, hidden}]` (senaite.core's migrate_template_to_dx); `hidden` from the
    /// step's `hidden_from` field, else false.
    TemplateServicesFromAnalyses,
    /// 1.x ARTemplate `Partitions` rows to 2.6 SampleTemplate `partitions` rows
    /// `{part_id, container, preservation, sampletype}` (see `records::template_partitions`).
    TemplatePartitionsFromRecords,
    /// 1.x addresses keyed by 2.6 address type to the 2.6 Organization `address` list of typed
    /// records, or null when all are empty (see `records::address_records`).
    AddressRecordsFromTypes,
    /// A list of reference dicts (or uids) to records `[{uid}]` (2.6 WorksheetTemplate
    /// `services`, as migrate_ws_template_to_dx writes them); null to `[]`.
    UidRecordsFromReferences,
    /// The number of items of a list (null: 0); other values stay.
    Length,
    /// 1.x WorksheetTemplate `Layout` rows to 2.6 `template_layout` rows (see
    /// `records::worksheet_layout`).
    WorksheetLayoutFromRecords,
    /// 1.x SampleType `AdmittedStickerTemplates` records to the 2.6 record list (see
    /// `records::sticker_templates`).
    StickerTemplatesFromRecords,
}

impl MapFunction {
    /// Whether the function reads the per-service hidden flags of a `hidden_from` field.
    pub(crate) fn reads_hidden_flags(self) -> bool {
        matches!(
            self,
            MapFunction::ServiceRecordsFromReferences | MapFunction::TemplateServicesFromAnalyses
        )
    }
}

/// Redaction method.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Redaction {
    /// Salted sha256, `h:` and 16 hex digits.
    Hash,
    /// Replace with a fixed value.
    Mask(Value),
    /// Remove the field.
    Drop,
}

/// Where a redaction salt comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SaltSource {
    Env(String),
    File(PathBuf),
}

/// One typed step.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Filter {
        action: Action,
        when: Conditions,
    },
    RenameType {
        from: String,
        to: String,
    },
    /// Renames a workflow id in every object's `workflow_history` rows (the entries themselves,
    /// states and times, stay as recorded): SENAITE 1.x's `bika_ar_workflow` history is the
    /// 2.6 `senaite_sample_workflow`'s. Applied in the per-object tables' pass, in step order.
    RenameWorkflow {
        from: String,
        to: String,
    },
    RenameFields {
        types: Vec<String>,
        fields: Vec<(String, String)>,
    },
    DropFields {
        types: Vec<String>,
        fields: Vec<String>,
    },
    /// Copies fields to other names, the source staying (SENAITE 1.x WorksheetTemplate
    /// `Layout` into the 2.6 `num_of_positions` a later `map_values` counts): (source,
    /// target), in file order; a missing source (or a file field, whose bytes are one `blobs`
    /// row) copies nothing, a present one replaces the target.
    CopyFields {
        types: Vec<String>,
        fields: Vec<(String, String)>,
    },
    SetFields {
        types: Vec<String>,
        values: Vec<(String, Value)>,
    },
    MapValues {
        types: Vec<String>,
        field: String,
        values: BTreeMap<String, Value>,
        function: Option<MapFunction>,
        /// A sibling field of 1.x `AnalysisServicesSettings` records `[{uid, hidden}]` the
        /// service functions read the hidden flags from (left in place).
        hidden_from: Option<String>,
    },
    Move {
        from: String,
        to: String,
    },
    PrefixIds {
        types: Vec<String>,
        prefix: String,
        fields: Vec<String>,
        /// Also rename the Plone groups named after a selected id (client groups).
        groups: bool,
    },
    Redact {
        types: Vec<String>,
        fields: Vec<String>,
        method: Redaction,
        salt: Option<SaltSource>,
    },
    /// Copies fields of a referenced object (read before the data pass) into the referencing
    /// one: BIKA's Sample fields into its AnalysisRequest.
    FoldFields {
        types: Vec<String>,
        via: String,
        from_types: Vec<String>,
        /// (source field, target field).
        fields: Vec<(String, String)>,
    },
    /// Gathers several fields into one dict field (SENAITE 1.x SamplePoint `Latitude` and
    /// `Longitude` into the 2.6 `location` {latitude, longitude}): each source field is removed
    /// and its value stored under its new key; a missing or null source reads `null_as` when
    /// given. Objects holding none of the source fields are left as they are.
    NestFields {
        types: Vec<String>,
        /// (source field, key in the dict), in file order.
        fields: Vec<(String, String)>,
        into: String,
        null_as: Option<Value>,
    },
    /// Puts an object's state under one workflow: the row's `review_state` mapped by `states`,
    /// overridden by a state field's value listed in `when` (a merged parallel workflow, e.g.
    /// `cancellation_state = { cancelled = "cancelled" }`); its `workflow_states` rows become
    /// one row of `workflow`. Objects without a state are left as they are.
    MapStates {
        types: Vec<String>,
        workflow: String,
        states: BTreeMap<String, String>,
        when: Vec<(String, BTreeMap<String, String>)>,
    },
    /// BIKA 3.1 sample partitions to SENAITE 2.x (`split_partitions`, see [`SplitPartitions`]).
    SplitPartitions(Box<SplitPartitions>),
}

/// `split_partitions`: the partitions (objects of `types`, children of the object a primary
/// references through `via`) of a container holding `min` or more become partitions of the
/// primary, of the primary's type: id `<primary id><suffix><n, digits wide>`, beside the
/// primary, with the primary's fields (less `skip_fields`), the partition's `fields`, its state
/// (the primary's, or its members' by `member_states`) and `parent_field` referencing the
/// primary; the members (objects of
/// `members` under the primary whose `member_field` names a partition) move into it, and the
/// primary's `list_field` keeps only the members left to it. A container with fewer partitions
/// has its partition merged into the primary (its `fields` folded in, never blanking a value)
/// and the partition object goes, counted as merged.
#[derive(Debug, Clone)]
pub(crate) struct SplitPartitions {
    /// Partition types (input).
    pub types: Vec<String>,
    /// Primary types (input): the objects that reference the partitions' container.
    pub primary_types: Vec<String>,
    /// The primaries' reference field naming the container.
    pub via: String,
    /// Member types: objects under a primary assigned to a partition.
    pub members: Vec<String>,
    /// The members' reference field naming their partition.
    pub member_field: String,
    /// The primaries' list of members (reference dicts), split between primary and partitions.
    pub list_field: Option<String>,
    /// The partitions' reference to their primary.
    pub parent_field: String,
    /// Between the primary's id and the partition number.
    pub suffix: String,
    /// Width of the partition number (zero-padded).
    pub digits: usize,
    /// Least number of partitions in a container that makes partitions (else merged).
    pub min: usize,
    /// (partition field, field of the new object), in file order.
    pub fields: Vec<(String, String)>,
    /// Fields of the primary not copied onto its partitions.
    pub skip_fields: Vec<String>,
    /// States in the order they progress (e.g. received, to be verified, verified): a partition
    /// whose members' and primary's states are all listed takes its least advanced member's;
    /// otherwise (or when empty) the primary's state.
    pub member_states: Vec<String>,
}

/// A step: its label and operation.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// 1-based index.
    pub index: usize,
    /// `name`, else `op`.
    pub label: String,
    /// The operation.
    pub op: Op,
}

/// An inline test of a pipeline (`[[test]]`).
#[derive(Debug, Clone)]
pub(crate) struct PipelineTest {
    pub name: String,
    pub salt: Option<String>,
    pub input: Vec<toml::Table>,
    pub expect: Vec<toml::Table>,
    pub dangling: Option<u64>,
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file it was read from.
    pub path: PathBuf,
    /// `name`.
    pub name: String,
    /// sha256 of the file's bytes.
    pub sha256: String,
    pub(crate) steps: Vec<Step>,
    pub(crate) tests: Vec<PipelineTest>,
}

impl Pipeline {
    /// Number of steps.
    pub fn step_count(&self) -> usize {
        self.steps.len()
    }

    /// Number of inline tests.
    pub fn test_count(&self) -> usize {
        self.tests.len()
    }
}

/// Fields that carry an object's identity: changed only by `rename_type`, `move` and
/// `prefix_ids`, which keep the row and the fields consistent.
pub(crate) const IDENTITY_FIELDS: &[&str] = &[
    "uid",
    "UID",
    "portal_type",
    "path",
    "parent_path",
    "parent_uid",
    "parent_id",
    "id",
    "getId",
    "getPhysicalPath",
];

/// Id-valued fields `prefix_ids` rewrites by default (besides `id`, `getId`, `title` equal to
/// the id and `parent_id`): the sample id copied onto analyses.
pub(crate) const DEFAULT_ID_FIELDS: &[&str] = &["getRequestID"];

/// Default environment variable holding the redaction salt.
pub const DEFAULT_SALT_ENV: &str = "SENAITE_SYNC_SALT";

/// Reads and validates a pipeline file.
///
/// # Errors
/// The file's I/O error, or every problem found (`Err(problems)`).
pub fn load(path: &Path) -> std::result::Result<Pipeline, Vec<Problem>> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        vec![Problem {
            file: file.clone(),
            step: None,
            step_name: None,
            key: "-".into(),
            message: format!("cannot be read: {e}"),
        }]
    })?;
    parse(path, &bytes)
}

/// Validates pipeline text (`path` names it in problems).
///
/// # Errors
/// Every problem found.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> std::result::Result<Pipeline, Vec<Problem>> {
    let mut p = super::check::Checker {
        file: path.display().to_string(),
        problems: Vec::new(),
    };
    let text = String::from_utf8_lossy(bytes);
    let table: toml::Table = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            p.top("-", format!("not valid TOML: {}", e.to_string().trim()));
            return Err(p.problems);
        }
    };
    let mut name = String::new();
    let mut steps = Vec::new();
    let mut tests = Vec::new();
    for (k, v) in &table {
        match k.as_str() {
            "name" => match v.as_str() {
                Some(s) => name = s.to_string(),
                None => p.top(k, "must be a string".into()),
            },
            "description" => {
                if v.as_str().is_none() {
                    p.top(k, "must be a string".into());
                }
            }
            "steps" => match v.as_array() {
                Some(a) => {
                    for (i, s) in a.iter().enumerate() {
                        if let Some(step) = p.step(i + 1, s) {
                            steps.push(step);
                        }
                    }
                }
                None => p.top(k, "must be an array of tables ([[steps]])".into()),
            },
            "test" => match v.as_array() {
                Some(a) => {
                    for (i, t) in a.iter().enumerate() {
                        if let Some(t) = p.test(i + 1, t) {
                            tests.push(t);
                        }
                    }
                }
                None => p.top(k, "must be an array of tables ([[test]])".into()),
            },
            _ => p.top(
                k,
                "unknown key (expected name, description, steps, test)".into(),
            ),
        }
    }
    if name.is_empty() {
        p.top("name", "missing: every pipeline has a name".into());
    }
    p.order(&steps);
    if !p.problems.is_empty() {
        return Err(p.problems);
    }
    Ok(Pipeline {
        path: path.to_path_buf(),
        name,
        sha256: crate::jsonx::sha256_hex(bytes),
        steps,
        tests,
    })
}

/// A TOML value as JSON (dates are refused: write them as strings, as snapshots hold them).
pub(crate) fn toml_to_json(v: &toml::Value) -> std::result::Result<Value, String> {
    Ok(match v {
        toml::Value::String(s) => Value::from(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or("non-finite floats are not supported")?,
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(_) => {
            return Err("write dates as strings (\"2025-01-31T00:00:00+00:00\")".into());
        }
        toml::Value::Array(a) => {
            Value::Array(a.iter().map(toml_to_json).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(t) => {
            let mut m = serde_json::Map::new();
            for (k, v) in t {
                m.insert(k.clone(), toml_to_json(v)?);
            }
            Value::Object(m)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Problem> {
        parse(Path::new("p.toml"), text.as_bytes()).unwrap_err()
    }

    #[test]
    fn every_problem_is_reported_with_step_and_key() {
        let p = problems(
            r#"
            name = "x"
            colour = "red"
            [[steps]]
            op = "rename_type"
            from = "A"
            [[steps]]
            op = "explode"
            [[steps]]
            name = "rn"
            op = "rename_fields"
            fields = { Prefix = 3 }
            typo = 1
            "#,
        );
        let keys: Vec<(Option<usize>, &str)> = p.iter().map(|p| (p.step, p.key.as_str())).collect();
        assert!(keys.contains(&(None, "colour")), "{p:?}");
        assert!(keys.contains(&(Some(1), "to")), "{p:?}");
        assert!(keys.contains(&(Some(2), "op")), "{p:?}");
        assert!(keys.contains(&(Some(3), "typo")), "{p:?}");
        assert!(keys.contains(&(Some(3), "fields.Prefix")), "{p:?}");
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p[0].to_string().starts_with("p.toml"));
    }

    #[test]
    fn fold_fields_and_map_states_are_checked() {
        let p = problems(
            r#"
            name = "x"
            [[steps]]
            op = "fold_fields"
            types = ["AnalysisRequest"]
            fields = { DateSampled = "path", SampleCondition = 3 }
            [[steps]]
            op = "map_states"
            types = ["AnalysisRequest"]
            states = { sample_due = "" }
            when = { cancellation_state = "cancelled" }
            "#,
        );
        let keys: Vec<(Option<usize>, &str)> = p.iter().map(|p| (p.step, p.key.as_str())).collect();
        for want in [
            (Some(1), "via"),
            (Some(1), "from_types"),
            (Some(1), "fields.DateSampled"),
            (Some(1), "fields.SampleCondition"),
            (Some(2), "workflow"),
            (Some(2), "states.sample_due"),
            (Some(2), "when.cancellation_state"),
        ] {
            assert!(keys.contains(&want), "{want:?} missing: {p:?}");
        }
        assert_eq!(p.len(), 7, "{p:?}");
        let ok = parse(
            Path::new("p.toml"),
            br#"
            name = "x"
            [[steps]]
            op = "map_states"
            types = ["Analysis"]
            workflow = "senaite_analysis_workflow"
            states = { sample_due = "registered" }
            when = { cancellation_state = { cancelled = "cancelled" } }
            "#,
        )
        .unwrap();
        assert_eq!(ok.step_count(), 1);
    }

    #[test]
    fn nest_fields_is_checked_and_dollar_null_maps_to_null() {
        let p = problems(
            r#"
            name = "x"
            [[steps]]
            name = "location"
            op = "nest_fields"
            fields = { Latitude = "latitude", Longitude = "latitude", uid = "u", Elevation = 3 }
            null_as = 2025-01-31
            extra = 1
            "#,
        );
        let keys: Vec<(Option<usize>, &str)> = p.iter().map(|p| (p.step, p.key.as_str())).collect();
        for want in [
            (Some(1), "into"),
            (Some(1), "fields.Longitude"),
            (Some(1), "fields.uid"),
            (Some(1), "fields.Elevation"),
            (Some(1), "null_as"),
            (Some(1), "extra"),
        ] {
            assert!(keys.contains(&want), "{want:?} missing: {p:?}");
        }
        assert_eq!(p.len(), 6, "{p:?}");
        assert!(p.iter().all(|p| p.step_name.as_deref() == Some("location")));
        let ok = parse(
            Path::new("p.toml"),
            br#"
            name = "x"
            [[steps]]
            op = "nest_fields"
            types = ["SamplePoint"]
            fields = { Latitude = "latitude", Longitude = "longitude" }
            into = "location"
            null_as = ""
            [[steps]]
            op = "map_values"
            field = "AdmittedStickerTemplates"
            values = { "null" = [{ admitted = [], small_default = "$null" }] }
            "#,
        )
        .unwrap();
        assert_eq!(ok.step_count(), 2);
        match &ok.steps[1].op {
            Op::MapValues { values, .. } => assert_eq!(
                values.get("null"),
                Some(&serde_json::json!([{"admitted": [], "small_default": null}]))
            ),
            other => panic!("not map_values: {other:?}"),
        }
    }

    #[test]
    fn copy_fields_is_checked() {
        let p = problems(
            r#"
            name = "x"
            [[steps]]
            op = "copy_fields"
            fields = { Layout = "Layout", uid = "u", Service = 3, Other = "path" }
            extra = 1
            "#,
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        for want in [
            "fields.Layout",
            "fields.uid",
            "fields.Service",
            "fields.Other",
            "extra",
        ] {
            assert!(keys.contains(&want), "{want:?} missing: {p:?}");
        }
        assert!(
            !problems("name = \"x\"\n[[steps]]\nop = \"copy_fields\"\nfields = {}\n").is_empty()
        );
        let ok = parse(
            Path::new("p.toml"),
            br#"
            name = "x"
            [[steps]]
            op = "copy_fields"
            types = ["WorksheetTemplate"]
            fields = { Layout = "NumOfPositions" }
            [[steps]]
            op = "map_values"
            field = "NumOfPositions"
            function = "length"
            "#,
        )
        .unwrap();
        match &ok.steps[0].op {
            Op::CopyFields { types, fields } => {
                assert_eq!(types, &["WorksheetTemplate".to_string()]);
                assert_eq!(fields, &[("Layout".into(), "NumOfPositions".into())]);
            }
            other => panic!("not copy_fields: {other:?}"),
        }
        assert!(matches!(
            &ok.steps[1].op,
            Op::MapValues {
                function: Some(MapFunction::Length),
                ..
            }
        ));
    }

    #[test]
    fn hidden_from_is_checked() {
        let p = problems(
            r#"
            name = "x"
            [[steps]]
            op = "map_values"
            field = "Service"
            function = "number_from_string"
            hidden_from = "AnalysisServicesSettings"
            [[steps]]
            op = "map_values"
            field = "Service"
            function = "service_records_from_references"
            hidden_from = "Service"
            [[steps]]
            op = "map_values"
            field = "Analyses"
            function = "template_services_from_analyses"
            hidden_from = "uid"
            "#,
        );
        let keys: Vec<(Option<usize>, &str)> = p.iter().map(|p| (p.step, p.key.as_str())).collect();
        assert_eq!(
            keys,
            [
                (Some(1), "hidden_from"),
                (Some(2), "hidden_from"),
                (Some(3), "hidden_from")
            ],
            "{p:?}"
        );
        let ok = parse(
            Path::new("p.toml"),
            br#"
            name = "x"
            [[steps]]
            op = "map_values"
            field = "Analyses"
            function = "template_services_from_analyses"
            hidden_from = "AnalysisServicesSettings"
            [[steps]]
            op = "map_values"
            field = "Partitions"
            function = "template_partitions_from_records"
            [[steps]]
            op = "map_values"
            field = "address"
            function = "address_records_from_types"
            "#,
        )
        .unwrap();
        match &ok.steps[0].op {
            Op::MapValues {
                function,
                hidden_from,
                ..
            } => {
                assert_eq!(*function, Some(MapFunction::TemplateServicesFromAnalyses));
                assert_eq!(hidden_from.as_deref(), Some("AnalysisServicesSettings"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn split_partitions_is_checked_and_comes_before_moves() {
        let p = problems(
            r#"
            name = "x"
            [[steps]]
            op = "move"
            from = "/lims"
            to = "/senaite"
            [[steps]]
            name = "parts"
            op = "split_partitions"
            types = ["SamplePartition"]
            via = "Sample"
            members = []
            member_field = "path"
            parent_field = "ParentAnalysisRequest"
            suffix = "-P/"
            digits = 0
            fields = { Container = 3 }
            "#,
        );
        let keys: Vec<(Option<usize>, &str)> = p.iter().map(|p| (p.step, p.key.as_str())).collect();
        for want in [
            (Some(2), "primary_types"),
            (Some(2), "members"),
            (Some(2), "member_field"),
            (Some(2), "suffix"),
            (Some(2), "digits"),
            (Some(2), "fields.Container"),
        ] {
            assert!(keys.contains(&want), "{want:?} missing: {p:?}");
        }
        assert_eq!(p.len(), 6, "{p:?}");
        let late = problems(
            r#"
            name = "x"
            [[steps]]
            op = "rename_type"
            from = "A"
            to = "B"
            [[steps]]
            op = "split_partitions"
            types = ["SamplePartition"]
            primary_types = ["AnalysisRequest"]
            via = "Sample"
            members = ["Analysis"]
            member_field = "SamplePartition"
            parent_field = "ParentAnalysisRequest"
            suffix = "-P"
            "#,
        );
        assert_eq!(late.len(), 1, "{late:?}");
        assert_eq!((late[0].step, late[0].key.as_str()), (Some(2), "op"));
        let ok = parse(
            Path::new("p.toml"),
            br#"
            name = "x"
            [[steps]]
            op = "split_partitions"
            types = ["SamplePartition"]
            primary_types = ["AnalysisRequest"]
            via = "Sample"
            members = ["Analysis"]
            member_field = "SamplePartition"
            list_field = "Analyses"
            parent_field = "ParentAnalysisRequest"
            suffix = "-P"
            fields = { Container = "Container" }
            skip_fields = ["Remarks"]
            "#,
        )
        .unwrap();
        match &ok.steps[0].op {
            Op::SplitPartitions(s) => assert_eq!((s.digits, s.min), (2, 2)),
            other => panic!("not split_partitions: {other:?}"),
        }
    }

    #[test]
    fn prefix_after_move_is_refused() {
        let p = problems(
            r#"
            name = "x"
            [[steps]]
            op = "move"
            from = "/s/a"
            to = "/s/b"
            [[steps]]
            op = "prefix_ids"
            types = ["Client"]
            prefix = "A-"
            "#,
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].step, Some(2));
    }

    #[test]
    fn identity_fields_are_not_set_by_field_steps() {
        let p =
            problems("name = \"x\"\n[[steps]]\nop = \"set_fields\"\nvalues = { path = \"/a\" }\n");
        assert_eq!(p[0].key, "values.path");
    }
}
