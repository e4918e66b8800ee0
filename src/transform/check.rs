//! Validation of a pipeline file's steps and tests: every problem is collected (never the first
//! only), each naming the file, the step (1-based index and its `name` or `op`) and the key; the
//! typed steps come out only when a step has no problem. Reads nothing but the parsed TOML.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::spec::{
    Action, Conditions, DEFAULT_ID_FIELDS, DEFAULT_SALT_ENV, IDENTITY_FIELDS, MapFunction, Op,
    PipelineTest, Problem, Redaction, SaltSource, Step, toml_to_json,
};

const OPS: &[&str] = &[
    "filter",
    "rename_type",
    "rename_workflow",
    "rename_fields",
    "drop_fields",
    "copy_fields",
    "set_fields",
    "map_values",
    "move",
    "prefix_ids",
    "redact",
    "fold_fields",
    "map_states",
    "nest_fields",
    "split_partitions",
];

/// Collects the problems of one pipeline file.
pub(super) struct Checker {
    pub file: String,
    pub problems: Vec<Problem>,
}

/// Keys a step of each op may have (besides `op` and `name`).
fn allowed(op: &str) -> &'static [&'static str] {
    match op {
        "filter" => &[
            "action",
            "types",
            "paths",
            "states",
            "created_after",
            "created_before",
            "modified_after",
            "modified_before",
            "field",
            "values",
        ],
        "rename_type" | "rename_workflow" | "move" => &["from", "to"],
        "rename_fields" => &["types", "fields"],
        "drop_fields" => &["types", "fields"],
        "copy_fields" => &["types", "fields"],
        "set_fields" => &["types", "values"],
        "map_values" => &["types", "field", "values", "function", "hidden_from"],
        "prefix_ids" => &["types", "prefix", "fields", "groups"],
        "redact" => &["types", "fields", "method", "with", "salt_env", "salt_file"],
        "fold_fields" => &["types", "via", "from_types", "fields"],
        "map_states" => &["types", "workflow", "states", "when"],
        "nest_fields" => &["types", "fields", "into", "null_as"],
        "split_partitions" => &[
            "types",
            "primary_types",
            "via",
            "members",
            "member_field",
            "list_field",
            "parent_field",
            "suffix",
            "digits",
            "min",
            "fields",
            "skip_fields",
            "member_states",
        ],
        _ => &[],
    }
}

/// A step's keys and where problems go.
struct StepCtx<'a> {
    t: &'a toml::Table,
    index: usize,
    label: String,
}

impl Checker {
    pub(super) fn top(&mut self, key: &str, message: String) {
        self.problems.push(Problem {
            file: self.file.clone(),
            step: None,
            step_name: None,
            key: key.to_string(),
            message,
        });
    }

    fn at(&mut self, s: &StepCtx<'_>, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            step: Some(s.index),
            step_name: Some(s.label.clone()),
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub(super) fn step(&mut self, index: usize, v: &toml::Value) -> Option<Step> {
        let Some(t) = v.as_table() else {
            self.top(&format!("steps[{index}]"), "must be a table".into());
            return None;
        };
        let op = t.get("op").and_then(|o| o.as_str()).unwrap_or("");
        let label = t
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or(op)
            .to_string();
        let s = StepCtx { t, index, label };
        if let Some(n) = t.get("name")
            && n.as_str().is_none()
        {
            self.at(&s, "name", "must be a string");
        }
        if !OPS.contains(&op) {
            let msg = match t.get("op") {
                None => "missing: every step names its operation".to_string(),
                Some(_) => format!("unknown operation {op:?} (one of {})", OPS.join(", ")),
            };
            self.at(&s, "op", msg);
            return None;
        }
        for k in t.keys() {
            if k != "op" && k != "name" && !allowed(op).contains(&k.as_str()) {
                self.at(
                    &s,
                    k,
                    format!("unknown key for {op} (allowed: {})", allowed(op).join(", ")),
                );
            }
        }
        let before = self.problems.len();
        let built = self.build(op, &s);
        if self.problems.len() > before {
            return None;
        }
        built.map(|op| Step {
            index,
            label: s.label,
            op,
        })
    }

    fn build(&mut self, op: &str, s: &StepCtx<'_>) -> Option<Op> {
        Some(match op {
            "filter" => self.filter(s)?,
            "rename_type" => Op::RenameType {
                from: self.req_str(s, "from")?,
                to: self.req_str(s, "to")?,
            },
            "rename_workflow" => Op::RenameWorkflow {
                from: self.req_str(s, "from")?,
                to: self.req_str(s, "to")?,
            },
            "move" => {
                let from = self.path(s, "from");
                let to = self.path(s, "to");
                Op::Move {
                    from: from?,
                    to: to?,
                }
            }
            "rename_fields" => {
                let types = self.strs(s, "types");
                let mut fields = Vec::new();
                for (k, v) in self.table(s, "fields", true)? {
                    self.not_identity(s, &format!("fields.{k}"), k);
                    match v.as_str() {
                        Some(to) => {
                            self.not_identity(s, &format!("fields.{k}"), to);
                            fields.push((k.clone(), to.to_string()));
                        }
                        None => self.at(s, &format!("fields.{k}"), "must be a string"),
                    }
                }
                Op::RenameFields { types, fields }
            }
            "copy_fields" => self.copy_fields(s)?,
            "drop_fields" => {
                let types = self.strs(s, "types");
                let fields = self.req_strs(s, "fields")?;
                for f in &fields {
                    self.not_identity(s, "fields", f);
                }
                Op::DropFields { types, fields }
            }
            "set_fields" => {
                let types = self.strs(s, "types");
                let mut values = Vec::new();
                for (k, v) in self.table(s, "values", true)? {
                    self.not_identity(s, &format!("values.{k}"), k);
                    if let Some(j) = self.json(s, &format!("values.{k}"), v) {
                        values.push((k.clone(), j));
                    }
                }
                Op::SetFields { types, values }
            }
            "map_values" => self.map_values(s)?,
            "prefix_ids" => {
                let types = self.req_strs(s, "types")?;
                let prefix = self.req_str(s, "prefix")?;
                if prefix.contains('/') || prefix.trim().is_empty() {
                    self.at(s, "prefix", "must be non-empty and hold no '/'");
                }
                let fields = if s.t.contains_key("fields") {
                    self.strs(s, "fields")
                } else {
                    DEFAULT_ID_FIELDS.iter().map(|f| f.to_string()).collect()
                };
                let groups = match s.t.get("groups") {
                    None => false,
                    Some(toml::Value::Boolean(b)) => *b,
                    Some(_) => {
                        self.at(s, "groups", "must be true or false");
                        false
                    }
                };
                Op::PrefixIds {
                    types,
                    prefix,
                    fields,
                    groups,
                }
            }
            "redact" => self.redact(s)?,
            "fold_fields" => {
                let types = self.req_strs(s, "types");
                let via = self.req_str(s, "via");
                let from_types = self.req_strs(s, "from_types");
                let mut fields = Vec::new();
                for (k, v) in self.table(s, "fields", true)? {
                    match v.as_str() {
                        Some(to) => {
                            self.not_identity(s, &format!("fields.{k}"), to);
                            fields.push((k.clone(), to.to_string()));
                        }
                        None => self.at(s, &format!("fields.{k}"), "must be a string"),
                    }
                }
                Op::FoldFields {
                    types: types?,
                    via: via?,
                    from_types: from_types?,
                    fields,
                }
            }
            "map_states" => {
                let types = self.req_strs(s, "types");
                let workflow = self.req_str(s, "workflow");
                let states = match self.table(s, "states", false) {
                    Some(t) => self.str_map(s, "states", t),
                    None => BTreeMap::new(),
                };
                let mut when = Vec::new();
                if let Some(t) = self.table(s, "when", false) {
                    for (field, v) in t {
                        let key = format!("when.{field}");
                        match v.as_table() {
                            Some(m) if !m.is_empty() => {
                                when.push((field.clone(), self.str_map(s, &key, m)));
                            }
                            _ => {
                                self.at(s, &key, "must be a non-empty table { value = \"state\" }")
                            }
                        }
                    }
                }
                Op::MapStates {
                    types: types?,
                    workflow: workflow?,
                    states,
                    when,
                }
            }
            "nest_fields" => self.nest_fields(s)?,
            "split_partitions" => self.split_partitions(s)?,
            _ => return None,
        })
    }

    fn copy_fields(&mut self, s: &StepCtx<'_>) -> Option<Op> {
        let types = self.strs(s, "types");
        let mut fields = Vec::new();
        for (k, v) in self.table(s, "fields", true)? {
            let key = format!("fields.{k}");
            self.not_identity(s, &key, k);
            match v.as_str() {
                Some(to) if !to.is_empty() && to != k => {
                    self.not_identity(s, &key, to);
                    fields.push((k.clone(), to.to_string()));
                }
                _ => self.at(s, &key, "must be a non-empty string naming another field"),
            }
        }
        if fields.is_empty() {
            self.at(
                s,
                "fields",
                "needs at least one field { Source = \"target\" }",
            );
        }
        Some(Op::CopyFields { types, fields })
    }

    fn nest_fields(&mut self, s: &StepCtx<'_>) -> Option<Op> {
        let types = self.strs(s, "types");
        let into = self.req_str(s, "into");
        if let Some(i) = &into {
            self.not_identity(s, "into", i);
        }
        let mut fields = Vec::new();
        let mut keys = std::collections::BTreeSet::new();
        for (k, v) in self.table(s, "fields", true)? {
            let key = format!("fields.{k}");
            self.not_identity(s, &key, k);
            match v.as_str() {
                Some(to) if !to.is_empty() => {
                    if !keys.insert(to.to_string()) {
                        self.at(s, &key, format!("dict key {to:?} is given twice"));
                    }
                    fields.push((k.clone(), to.to_string()));
                }
                _ => self.at(s, &key, "must be a non-empty string (the key in the dict)"),
            }
        }
        if fields.is_empty() {
            self.at(s, "fields", "needs at least one field { Source = \"key\" }");
        }
        let null_as = match s.t.get("null_as") {
            None => None,
            Some(v) => Some(self.json(s, "null_as", v)?),
        };
        Some(Op::NestFields {
            types,
            fields,
            into: into?,
            null_as,
        })
    }

    fn split_partitions(&mut self, s: &StepCtx<'_>) -> Option<Op> {
        let types = self.req_strs(s, "types");
        let primary_types = self.req_strs(s, "primary_types");
        let via = self.req_str(s, "via");
        let members = self.req_strs(s, "members");
        let member_field = self.req_str(s, "member_field");
        let list_field = self.opt_str(s, "list_field");
        let parent_field = self.req_str(s, "parent_field");
        let suffix = self.req_str(s, "suffix");
        for (key, v) in [
            ("via", &via),
            ("member_field", &member_field),
            ("list_field", &list_field),
            ("parent_field", &parent_field),
        ] {
            if let Some(f) = v {
                self.not_identity(s, key, f);
            }
        }
        if suffix.as_deref().is_some_and(|x| x.contains('/')) {
            self.at(s, "suffix", "must hold no '/'");
        }
        let mut int = |key: &str, default: i64, lo: i64, hi: i64| match s.t.get(key) {
            None => Some(default as usize),
            Some(toml::Value::Integer(i)) if (lo..=hi).contains(i) => Some(*i as usize),
            Some(_) => {
                self.at(s, key, format!("must be an integer from {lo} to {hi}"));
                None
            }
        };
        let digits = int("digits", 2, 1, 9);
        let min = int("min", 2, 1, 1000);
        let mut fields = Vec::new();
        if let Some(t) = self.table(s, "fields", false) {
            for (k, v) in t {
                let key = format!("fields.{k}");
                self.not_identity(s, &key, k);
                match v.as_str() {
                    Some(to) if !to.is_empty() => {
                        self.not_identity(s, &key, to);
                        fields.push((k.clone(), to.to_string()));
                    }
                    _ => self.at(s, &key, "must be a non-empty string (the target field)"),
                }
            }
        }
        let skip_fields = self.strs(s, "skip_fields");
        let member_states = self.strs(s, "member_states");
        Some(Op::SplitPartitions(Box::new(
            super::spec::SplitPartitions {
                types: types?,
                primary_types: primary_types?,
                via: via?,
                members: members?,
                member_field: member_field?,
                list_field,
                parent_field: parent_field?,
                suffix: suffix?,
                digits: digits?,
                min: min?,
                fields,
                skip_fields,
                member_states,
            },
        )))
    }

    fn filter(&mut self, s: &StepCtx<'_>) -> Option<Op> {
        let action = match s.t.get("action").and_then(|a| a.as_str()) {
            Some("keep") => Some(Action::Keep),
            Some("drop") => Some(Action::Drop),
            _ => {
                self.at(s, "action", "must be \"keep\" or \"drop\"");
                None
            }
        };
        let mut when = Conditions {
            types: self.strs(s, "types"),
            paths: self.strs(s, "paths"),
            states: self.strs(s, "states"),
            created_after: self.opt_str(s, "created_after"),
            created_before: self.opt_str(s, "created_before"),
            modified_after: self.opt_str(s, "modified_after"),
            modified_before: self.opt_str(s, "modified_before"),
            field: None,
        };
        match (s.t.get("field"), s.t.get("values")) {
            (Some(f), Some(toml::Value::Array(vs))) => {
                let vals: Vec<Value> = vs
                    .iter()
                    .filter_map(|v| self.json(s, "values", v))
                    .collect();
                match f.as_str() {
                    Some(f) => when.field = Some((f.to_string(), vals)),
                    None => self.at(s, "field", "must be a string"),
                }
            }
            (Some(_), _) => self.at(s, "values", "missing or not an array: field needs values"),
            (None, Some(_)) => self.at(s, "field", "missing: values need a field"),
            (None, None) => {}
        }
        let any = !when.types.is_empty()
            || !when.paths.is_empty()
            || !when.states.is_empty()
            || when.created_after.is_some()
            || when.created_before.is_some()
            || when.modified_after.is_some()
            || when.modified_before.is_some()
            || when.field.is_some();
        if !any {
            self.at(s, "types", "a filter needs at least one condition");
        }
        Some(Op::Filter {
            action: action?,
            when,
        })
    }

    fn map_values(&mut self, s: &StepCtx<'_>) -> Option<Op> {
        let types = self.strs(s, "types");
        let field = self.req_str(s, "field")?;
        self.not_identity(s, "field", &field);
        let function = match s.t.get("function").map(|f| f.as_str()) {
            None => None,
            Some(Some("seconds_from_duration")) => Some(MapFunction::SecondsFromDuration),
            Some(Some("uids_from_references")) => Some(MapFunction::UidsFromReferences),
            Some(Some("uid_from_reference")) => Some(MapFunction::UidFromReference),
            Some(Some("lowercase")) => Some(MapFunction::Lowercase),
            Some(Some("service_records_from_references")) => {
                Some(MapFunction::ServiceRecordsFromReferences)
            }
            Some(Some("number_from_string")) => Some(MapFunction::NumberFromString),
            Some(Some("decimal_degrees_from_dms")) => Some(MapFunction::DecimalDegreesFromDms),
            Some(Some("template_services_from_analyses")) => {
                Some(MapFunction::TemplateServicesFromAnalyses)
            }
            Some(Some("template_partitions_from_records")) => {
                Some(MapFunction::TemplatePartitionsFromRecords)
            }
            Some(Some("address_records_from_types")) => Some(MapFunction::AddressRecordsFromTypes),
            Some(Some("uid_records_from_references")) => {
                Some(MapFunction::UidRecordsFromReferences)
            }
            Some(Some("length")) => Some(MapFunction::Length),
            Some(Some("worksheet_layout_from_records")) => {
                Some(MapFunction::WorksheetLayoutFromRecords)
            }
            Some(Some("sticker_templates_from_records")) => {
                Some(MapFunction::StickerTemplatesFromRecords)
            }
            Some(_) => {
                self.at(
                    s,
                    "function",
                    "one of seconds_from_duration, uids_from_references, uid_from_reference, \
                     lowercase, service_records_from_references, number_from_string, \
                     decimal_degrees_from_dms, template_services_from_analyses, \
                     template_partitions_from_records, address_records_from_types, \
                     uid_records_from_references, length, worksheet_layout_from_records, \
                     sticker_templates_from_records",
                );
                None
            }
        };
        let hidden_from = self.opt_str(s, "hidden_from");
        if let Some(h) = &hidden_from {
            self.not_identity(s, "hidden_from", h);
            if *h == field {
                self.at(s, "hidden_from", "must name another field than `field`");
            }
            if !function.is_some_and(MapFunction::reads_hidden_flags) {
                self.at(
                    s,
                    "hidden_from",
                    "only with function = service_records_from_references or \
                     template_services_from_analyses",
                );
            }
        }
        let mut values = BTreeMap::new();
        if let Some(t) = self.table(s, "values", false) {
            for (k, v) in t {
                if let Some(j) = self.json(s, &format!("values.{k}"), v) {
                    values.insert(k.clone(), null_marks(j));
                }
            }
        }
        if values.is_empty() && function.is_none() {
            self.at(s, "values", "map_values needs values, a function, or both");
        }
        Some(Op::MapValues {
            types,
            field,
            values,
            function,
            hidden_from,
        })
    }

    fn redact(&mut self, s: &StepCtx<'_>) -> Option<Op> {
        let types = self.strs(s, "types");
        let fields = self.req_strs(s, "fields")?;
        for f in &fields {
            if f != "title" {
                self.not_identity(s, "fields", f);
            }
        }
        let method = match s.t.get("method").and_then(|m| m.as_str()) {
            Some("hash") => Redaction::Hash,
            Some("mask") => {
                let with = match s.t.get("with") {
                    Some(v) => self.json(s, "with", v)?,
                    None => Value::from("REDACTED"),
                };
                Redaction::Mask(with)
            }
            Some("drop") => Redaction::Drop,
            _ => {
                self.at(s, "method", "must be \"hash\", \"mask\" or \"drop\"");
                return None;
            }
        };
        if s.t.contains_key("with") && !matches!(method, Redaction::Mask(_)) {
            self.at(s, "with", "only for method = \"mask\"");
        }
        let env = self.opt_str(s, "salt_env");
        let file = self.opt_str(s, "salt_file");
        let salt = match (&method, env, file) {
            (Redaction::Hash, Some(_), Some(_)) => {
                self.at(s, "salt_file", "give salt_env or salt_file, not both");
                None
            }
            (Redaction::Hash, Some(e), None) => Some(SaltSource::Env(e)),
            (Redaction::Hash, None, Some(f)) => Some(SaltSource::File(PathBuf::from(f))),
            (Redaction::Hash, None, None) => Some(SaltSource::Env(DEFAULT_SALT_ENV.into())),
            (_, e, f) => {
                if e.is_some() || f.is_some() {
                    self.at(s, "salt_env", "a salt is only used by method = \"hash\"");
                }
                None
            }
        };
        Some(Op::Redact {
            types,
            fields,
            method,
            salt,
        })
    }

    pub(super) fn test(&mut self, index: usize, v: &toml::Value) -> Option<PipelineTest> {
        let key = |k: &str| format!("test[{index}].{k}");
        let Some(t) = v.as_table() else {
            self.top(&format!("test[{index}]"), "must be a table".into());
            return None;
        };
        for k in t.keys() {
            if !["name", "salt", "input", "expect", "dangling"].contains(&k.as_str()) {
                self.top(
                    &key(k),
                    "unknown key (expected name, salt, input, expect, dangling)".into(),
                );
            }
        }
        let name = t.get("name").and_then(|n| n.as_str()).unwrap_or_default();
        if name.is_empty() {
            self.top(&key("name"), "missing: every test has a name".into());
        }
        let mut records = |k: &str| -> Vec<toml::Table> {
            match t.get(k) {
                None => Vec::new(),
                Some(toml::Value::Array(a)) => {
                    let mut out = Vec::new();
                    for (i, r) in a.iter().enumerate() {
                        match r.as_table() {
                            Some(r) => out.push(r.clone()),
                            None => self
                                .top(&format!("{}[{}]", key(k), i + 1), "must be a table".into()),
                        }
                    }
                    out
                }
                Some(_) => {
                    self.top(&key(k), "must be an array of tables".into());
                    Vec::new()
                }
            }
        };
        let input = records("input");
        let expect = records("expect");
        if input.is_empty() {
            self.top(&key("input"), "a test needs input records".into());
        }
        Some(PipelineTest {
            name: name.to_string(),
            salt: t.get("salt").and_then(|s| s.as_str()).map(str::to_string),
            input,
            expect,
            dangling: t
                .get("dangling")
                .and_then(|d| d.as_integer())
                .map(|d| d.max(0) as u64),
        })
    }

    /// Cross-step rules: `prefix_ids` selects objects by their input type and path, so it comes
    /// before any `move` or `rename_type`, and a pipeline has at most one.
    pub(super) fn order(&mut self, steps: &[Step]) {
        let mut seen_path_change: Option<&Step> = None;
        let mut prefixes = 0;
        for s in steps {
            match &s.op {
                Op::Move { .. } | Op::RenameType { .. } => {
                    seen_path_change.get_or_insert(s);
                }
                Op::SplitPartitions(_) => {
                    if let Some(m) = seen_path_change {
                        let ctx = StepCtx {
                            t: &toml::Table::new(),
                            index: s.index,
                            label: s.label.clone(),
                        };
                        self.at(
                            &ctx,
                            "op",
                            format!(
                                "split_partitions selects objects by their input type: put it \
                                 before step {} ({})",
                                m.index, m.label
                            ),
                        );
                    }
                }
                Op::PrefixIds { .. } => {
                    prefixes += 1;
                    let ctx = StepCtx {
                        t: &toml::Table::new(),
                        index: s.index,
                        label: s.label.clone(),
                    };
                    if let Some(m) = seen_path_change {
                        self.at(
                            &ctx,
                            "op",
                            format!(
                                "prefix_ids selects objects by their input type and path: put it \
                                 before step {} ({})",
                                m.index, m.label
                            ),
                        );
                    }
                    if prefixes > 1 {
                        self.at(&ctx, "op", "at most one prefix_ids step per pipeline");
                    }
                }
                _ => {}
            }
        }
    }

    fn not_identity(&mut self, s: &StepCtx<'_>, key: &str, field: &str) {
        if IDENTITY_FIELDS.contains(&field) {
            self.at(
                s,
                key,
                format!(
                    "{field} carries the object's identity: use rename_type, move or prefix_ids"
                ),
            );
        }
    }

    fn req_str(&mut self, s: &StepCtx<'_>, key: &str) -> Option<String> {
        match s.t.get(key).map(|v| v.as_str()) {
            Some(Some(v)) if !v.is_empty() => Some(v.to_string()),
            Some(_) => {
                self.at(s, key, "must be a non-empty string");
                None
            }
            None => {
                self.at(s, key, "missing");
                None
            }
        }
    }

    fn opt_str(&mut self, s: &StepCtx<'_>, key: &str) -> Option<String> {
        match s.t.get(key) {
            None => None,
            Some(v) => match v.as_str() {
                Some(v) => Some(v.to_string()),
                None => {
                    self.at(s, key, "must be a string");
                    None
                }
            },
        }
    }

    fn path(&mut self, s: &StepCtx<'_>, key: &str) -> Option<String> {
        let p = self.req_str(s, key)?;
        if !p.starts_with('/') || p.ends_with('/') || p.contains("//") {
            self.at(
                s,
                key,
                "must be an absolute physical path like /senaite/setup/sampletypes",
            );
            return None;
        }
        Some(p)
    }

    fn strs(&mut self, s: &StepCtx<'_>, key: &str) -> Vec<String> {
        match s.t.get(key) {
            None => Vec::new(),
            Some(toml::Value::Array(a)) if a.iter().all(|v| v.is_str()) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(_) => {
                self.at(s, key, "must be an array of strings");
                Vec::new()
            }
        }
    }

    fn req_strs(&mut self, s: &StepCtx<'_>, key: &str) -> Option<Vec<String>> {
        if !s.t.contains_key(key) {
            self.at(s, key, "missing");
            return None;
        }
        let v = self.strs(s, key);
        if v.is_empty() {
            self.at(s, key, "must list at least one name");
            return None;
        }
        Some(v)
    }

    fn table<'a>(&mut self, s: &StepCtx<'a>, key: &str, required: bool) -> Option<&'a toml::Table> {
        match s.t.get(key) {
            Some(toml::Value::Table(t)) if !t.is_empty() || !required => Some(t),
            Some(_) => {
                self.at(s, key, "must be a non-empty table");
                None
            }
            None => {
                if required {
                    self.at(s, key, "missing");
                }
                None
            }
        }
    }

    /// A table of strings to strings (problems for other values).
    fn str_map(&mut self, s: &StepCtx<'_>, key: &str, t: &toml::Table) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in t {
            match v.as_str() {
                Some(to) if !to.is_empty() => {
                    out.insert(k.clone(), to.to_string());
                }
                _ => self.at(s, &format!("{key}.{k}"), "must be a non-empty string"),
            }
        }
        out
    }

    fn json(&mut self, s: &StepCtx<'_>, key: &str, v: &toml::Value) -> Option<Value> {
        match toml_to_json(v) {
            Ok(j) => Some(j),
            Err(m) => {
                self.at(s, key, m);
                None
            }
        }
    }
}

/// `map_values` targets: the string `"$null"` (at any depth) stands for JSON null, as in the
/// records of a `[[test]]` (TOML has no null).
fn null_marks(v: Value) -> Value {
    match v {
        Value::String(s) if s == "$null" => Value::Null,
        Value::Array(a) => Value::Array(a.into_iter().map(null_marks).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, null_marks(v))).collect()),
        other => other,
    }
}
