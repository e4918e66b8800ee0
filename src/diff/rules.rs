//! The rules of `diff`: which fields change without meaning (catalog runtime values, computed
//! counters, URLs) and how far values may move before they count as changed (numeric epsilon,
//! date precision). Defaults are embedded (`default_rules.toml`, documented in the README); a
//! `--rules FILE` is laid over them. Every problem in a rules file is collected and reported
//! with the file and the key, and unknown keys are errors, so a typo never silently compares
//! nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::compare::{DatePrecision, IGNORED_FIELDS, Tolerance};
use crate::error::{Error, Result};
use crate::snapshot::table::{
    BLOBS, GROUPS, LOCAL_ROLES, SETTINGS, TableDef, USERS, WORKFLOW_HISTORY, WORKFLOW_STATES,
};

/// The embedded default rules.
pub const DEFAULT_RULES: &str = include_str!("default_rules.toml");

/// Tables whose columns `[columns.TABLE.COLUMN]` may name.
const COLUMN_TABLES: &[&TableDef] = &[
    &WORKFLOW_HISTORY,
    &WORKFLOW_STATES,
    &LOCAL_ROLES,
    &BLOBS,
    &USERS,
    &GROUPS,
    &SETTINGS,
];

/// Per-object tables whose rows `[tables.TABLE]` may name.
const TABLE_RULE_TABLES: &[&TableDef] =
    &[&WORKFLOW_HISTORY, &WORKFLOW_STATES, &LOCAL_ROLES, &BLOBS];

/// JSON-text columns whose keys a rule may name as `COLUMN.KEY`.
const JSON_COLUMNS: &[&str] = &["properties", "extra"];

/// One rule: any of its settings may be absent (then the layer below, or the defaults, decide).
#[derive(Debug, Clone, Default, PartialEq)]
struct Rule {
    /// `Some(Some(reason))` ignores, `Some(None)` compares again (`ignore = false`).
    ignore: Option<Option<String>>,
    /// `Some(Some(reason))`: compared only where the source side (diff's old snapshot,
    /// verify's loaded snapshot) holds a value; `Some(None)` everywhere again.
    source_empty: Option<Option<String>>,
    epsilon: Option<f64>,
    date_precision: Option<DatePrecision>,
    false_is_null: Option<bool>,
}

impl Rule {
    fn overlay(&mut self, top: &Rule) {
        if top.ignore.is_some() {
            self.ignore = top.ignore.clone();
        }
        if top.source_empty.is_some() {
            self.source_empty = top.source_empty.clone();
        }
        if top.epsilon.is_some() {
            self.epsilon = top.epsilon;
        }
        if top.false_is_null.is_some() {
            self.false_is_null = top.false_is_null;
        }
        if top.date_precision.is_some() {
            self.date_precision = top.date_precision;
        }
    }
}

/// An ignored field or column and why, as listed in reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ignored {
    /// `NAME` for a field, `TABLE.COLUMN[.KEY]` for a column.
    pub name: String,
    /// Why its changes carry no meaning.
    pub reason: String,
}

/// The resolved rules of one diff run.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The `--rules` file laid over the defaults, if any.
    pub file: Option<PathBuf>,
    defaults: Tolerance,
    nested_ignore: Vec<String>,
    /// Field rules by name pattern.
    fields: BTreeMap<String, Rule>,
    /// Column rules by `TABLE.COLUMN[.KEY]`.
    columns: BTreeMap<String, Rule>,
    /// Rules of an object's rows of a per-object table, by table name.
    tables: BTreeMap<String, Rule>,
}

/// What applies to one field or column.
#[derive(Debug, Clone, Copy)]
pub enum Resolved {
    /// Left out of the comparison.
    Ignored,
    /// Compared with this tolerance.
    Compare(Tolerance),
}

impl Resolved {
    /// The tolerance, or `None` when ignored.
    pub fn tolerance(self) -> Option<Tolerance> {
        match self {
            Resolved::Ignored => None,
            Resolved::Compare(t) => Some(t),
        }
    }
}

impl Default for Rules {
    fn default() -> Self {
        let mut rules = Rules {
            file: None,
            defaults: Tolerance::EXACT,
            nested_ignore: Vec::new(),
            fields: BTreeMap::new(),
            columns: BTreeMap::new(),
            tables: BTreeMap::new(),
        };
        for (name, reason) in IGNORED_FIELDS {
            rules.fields.insert(
                (*name).to_string(),
                Rule {
                    ignore: Some(Some((*reason).to_string())),
                    ..Rule::default()
                },
            );
        }
        // INVARIANT: the embedded defaults are checked by a unit test; should they ever fail to
        // parse, the verify list above still applies.
        if let Ok(layer) = parse_layer(DEFAULT_RULES, Path::new("(embedded default rules)")) {
            rules.apply(layer);
        }
        rules
    }
}

/// One parsed rules file.
#[derive(Debug, Default)]
struct Layer {
    epsilon: Option<f64>,
    date_precision: Option<DatePrecision>,
    nested_ignore: Option<Vec<String>>,
    fields: BTreeMap<String, Rule>,
    columns: BTreeMap<String, Rule>,
    tables: BTreeMap<String, Rule>,
}

impl Rules {
    /// The defaults with `file` laid over them.
    ///
    /// # Errors
    /// When the file cannot be read, is not TOML, or holds unknown keys or bad values (every
    /// problem is listed, each with the file and the key).
    pub fn load(file: &Path) -> Result<Rules> {
        let text = std::fs::read_to_string(file).map_err(|e| Error::read(file, e))?;
        Rules::from_toml(&text, file)
    }

    /// The defaults with the rules in `text` (read from `origin`) laid over them.
    ///
    /// # Errors
    /// As [`Rules::load`].
    pub fn from_toml(text: &str, origin: &Path) -> Result<Rules> {
        let layer = parse_layer(text, origin)?;
        let mut rules = Rules::default();
        rules.apply(layer);
        rules.file = Some(origin.to_path_buf());
        Ok(rules)
    }

    fn apply(&mut self, layer: Layer) {
        if let Some(e) = layer.epsilon {
            self.defaults.epsilon = e;
        }
        if let Some(p) = layer.date_precision {
            self.defaults.date_precision = p;
        }
        if let Some(n) = layer.nested_ignore {
            self.nested_ignore = n;
        }
        for (name, rule) in layer.fields {
            self.fields.entry(name).or_default().overlay(&rule);
        }
        for (name, rule) in layer.columns {
            self.columns.entry(name).or_default().overlay(&rule);
        }
        for (name, rule) in layer.tables {
            self.tables.entry(name).or_default().overlay(&rule);
        }
    }

    /// Keys dropped at any depth inside field values.
    pub fn nested_ignore(&self) -> &[String] {
        &self.nested_ignore
    }

    /// What applies to a field of `objects.fields` (or an `objects` column of that name).
    pub fn field(&self, name: &str) -> Resolved {
        self.resolve(self.field_rule(name))
    }

    /// Whether a field or attribute that the source side (`old`) leaves without a value is
    /// left out (`source_empty`): the destination holds a value the source never had, such as
    /// a default or a state of a newer version, so there is nothing the source could lose.
    /// Where the source has a value, it is compared as usual.
    pub fn skips_source_empty(&self, name: &str, old: &Value) -> bool {
        is_no_value(old)
            && self
                .field_rule(name)
                .is_some_and(|r| matches!(r.source_empty, Some(Some(_))))
    }

    /// Whether an object's rows of the per-object table `table` are left out when the source
    /// side (`old`) has none of them (`[tables.TABLE] source_empty`).
    pub fn skips_source_empty_rows(&self, table: &str, old_rows: usize) -> bool {
        old_rows == 0
            && self
                .tables
                .get(table)
                .is_some_and(|r| matches!(r.source_empty, Some(Some(_))))
    }

    fn field_rule(&self, name: &str) -> Option<&Rule> {
        self.fields.get(name).or_else(|| {
            self.fields
                .iter()
                .find(|(pattern, _)| pattern.contains('*') && glob_match(pattern, name))
                .map(|(_, r)| r)
        })
    }

    /// What applies to a column (`TABLE.COLUMN` or `TABLE.COLUMN.KEY`).
    pub fn column(&self, table: &str, column: &str) -> Resolved {
        self.resolve(self.columns.get(&format!("{table}.{column}")))
    }

    fn resolve(&self, rule: Option<&Rule>) -> Resolved {
        let Some(rule) = rule else {
            return Resolved::Compare(self.defaults);
        };
        if let Some(Some(_)) = rule.ignore {
            return Resolved::Ignored;
        }
        Resolved::Compare(Tolerance {
            epsilon: rule.epsilon.unwrap_or(self.defaults.epsilon),
            date_precision: rule.date_precision.unwrap_or(self.defaults.date_precision),
            false_is_null: rule.false_is_null.unwrap_or(self.defaults.false_is_null),
        })
    }

    /// Every ignored field and column with its reason, sorted by name.
    pub fn ignored(&self) -> Vec<Ignored> {
        let mut out = Vec::new();
        for (prefix, map) in [("", &self.fields), ("", &self.columns)] {
            for (name, rule) in map {
                if let Some(Some(reason)) = &rule.ignore {
                    out.push(Ignored {
                        name: format!("{prefix}{name}"),
                        reason: reason.clone(),
                    });
                } else if let Some(Some(reason)) = &rule.source_empty {
                    out.push(Ignored {
                        name: format!("{prefix}{name} (where the source has none)"),
                        reason: reason.clone(),
                    });
                }
            }
        }
        for (name, rule) in &self.tables {
            if let Some(Some(reason)) = &rule.source_empty {
                out.push(Ignored {
                    name: format!("{name} rows (where the source object has none)"),
                    reason: reason.clone(),
                });
            }
        }
        for key in &self.nested_ignore {
            out.push(Ignored {
                name: format!("*.{key}"),
                reason: "nested key dropped inside field values (defaults.nested_ignore)".into(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// JSON `null`, `""`, `{}` and `[]`: a field or attribute without a value.
fn is_no_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    if !text.ends_with(last) {
        return false;
    }
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Parses one rules file, gathering every problem.
fn parse_layer(text: &str, origin: &Path) -> Result<Layer> {
    let fail = |problems: Vec<String>| {
        Error::Usage(format!(
            "rules file {}: {}",
            origin.display(),
            problems.join("; ")
        ))
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| fail(vec![e.to_string()]))?;
    let mut problems = Vec::new();
    let mut layer = Layer::default();
    for (key, value) in &table {
        match (key.as_str(), value) {
            ("defaults", toml::Value::Table(t)) => parse_defaults(t, &mut layer, &mut problems),
            ("fields", toml::Value::Table(t)) => {
                for (name, v) in t {
                    let at = format!("fields.{name}");
                    if let Some(rule) = parse_rule(v, &at, &mut problems) {
                        layer.fields.insert(name.clone(), rule);
                    }
                }
            }
            ("columns", toml::Value::Table(t)) => parse_columns(t, &mut layer, &mut problems),
            ("tables", toml::Value::Table(t)) => parse_tables(t, &mut layer, &mut problems),
            ("defaults" | "fields" | "columns" | "tables", _) => {
                problems.push(format!("`{key}` must be a table"));
            }
            _ => problems.push(format!(
                "unknown key `{key}` (expected defaults, fields, columns or tables)"
            )),
        }
    }
    if problems.is_empty() {
        Ok(layer)
    } else {
        Err(fail(problems))
    }
}

fn parse_defaults(t: &toml::Table, layer: &mut Layer, problems: &mut Vec<String>) {
    for (key, v) in t {
        let at = format!("defaults.{key}");
        match key.as_str() {
            "epsilon" => layer.epsilon = parse_epsilon(v, &at, problems),
            "date_precision" => layer.date_precision = parse_precision(v, &at, problems),
            "nested_ignore" => match v.as_array() {
                Some(items) if items.iter().all(toml::Value::is_str) => {
                    layer.nested_ignore = Some(
                        items
                            .iter()
                            .filter_map(toml::Value::as_str)
                            .map(str::to_string)
                            .collect(),
                    );
                }
                _ => problems.push(format!("`{at}` must be a list of strings")),
            },
            _ => problems.push(format!(
                "unknown key `{at}` (expected epsilon, date_precision or nested_ignore)"
            )),
        }
    }
}

fn parse_columns(t: &toml::Table, layer: &mut Layer, problems: &mut Vec<String>) {
    for (table, cols) in t {
        let Some(def) = COLUMN_TABLES.iter().find(|d| d.name == table) else {
            let names: Vec<&str> = COLUMN_TABLES.iter().map(|d| d.name).collect();
            problems.push(format!(
                "unknown key `columns.{table}` (expected one of {})",
                names.join(", ")
            ));
            continue;
        };
        let Some(cols) = cols.as_table() else {
            problems.push(format!("`columns.{table}` must be a table"));
            continue;
        };
        for (col, v) in cols {
            let at = format!("columns.{table}.{col}");
            let base = col.split_once('.').map_or(col.as_str(), |(c, _)| c);
            let known = def.col(base).is_some()
                && (base == col.as_str() || JSON_COLUMNS.contains(&base))
                && base != "uid";
            if !known {
                problems.push(format!("unknown key `{at}` (no such column of {table})"));
                continue;
            }
            if let Some(rule) = parse_rule(v, &at, problems) {
                layer.columns.insert(format!("{table}.{col}"), rule);
            }
        }
    }
}

/// `[tables.TABLE]`: an object's rows of a per-object table, with `source_empty` only.
fn parse_tables(t: &toml::Table, layer: &mut Layer, problems: &mut Vec<String>) {
    for (table, v) in t {
        let at = format!("tables.{table}");
        if !TABLE_RULE_TABLES.iter().any(|d| d.name == table) {
            let names: Vec<&str> = TABLE_RULE_TABLES.iter().map(|d| d.name).collect();
            problems.push(format!(
                "unknown key `{at}` (expected one of {})",
                names.join(", ")
            ));
            continue;
        }
        let Some(rule) = parse_rule(v, &at, problems) else {
            continue;
        };
        if rule.ignore.is_some()
            || rule.epsilon.is_some()
            || rule.date_precision.is_some()
            || rule.false_is_null.is_some()
        {
            problems.push(format!(
                "`{at}` takes only source_empty (its columns have rules of their own)"
            ));
            continue;
        }
        layer.tables.insert(table.clone(), rule);
    }
}

/// A rule that takes a reason: `Some(Some(reason))`, `Some(None)` for `false` (switched off in
/// this layer), `None` (and a problem) for anything else.
fn parse_reason(v: &toml::Value, here: &str, problems: &mut Vec<String>) -> Option<Option<String>> {
    match v {
        toml::Value::String(reason) if !reason.trim().is_empty() => Some(Some(reason.clone())),
        toml::Value::Boolean(false) => Some(None),
        _ => {
            problems.push(format!(
                "`{here}` must be the reason (a non-empty string) or false"
            ));
            None
        }
    }
}

fn parse_rule(v: &toml::Value, at: &str, problems: &mut Vec<String>) -> Option<Rule> {
    let Some(t) = v.as_table() else {
        problems.push(format!("`{at}` must be a table"));
        return None;
    };
    let mut rule = Rule::default();
    for (key, v) in t {
        let here = format!("{at}.{key}");
        match key.as_str() {
            "ignore" => rule.ignore = parse_reason(v, &here, problems).or(rule.ignore),
            "source_empty" => {
                rule.source_empty = parse_reason(v, &here, problems).or(rule.source_empty);
            }
            "epsilon" => rule.epsilon = parse_epsilon(v, &here, problems),
            "date_precision" => rule.date_precision = parse_precision(v, &here, problems),
            "false_is_null" => match v {
                toml::Value::Boolean(b) => rule.false_is_null = Some(*b),
                _ => problems.push(format!("`{here}` must be true or false")),
            },
            _ => problems.push(format!(
                "unknown key `{here}` (expected ignore, source_empty, epsilon, date_precision or false_is_null)"
            )),
        }
    }
    Some(rule)
}

fn parse_epsilon(v: &toml::Value, at: &str, problems: &mut Vec<String>) -> Option<f64> {
    let e = match v {
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i) => *i as f64,
        _ => f64::NAN,
    };
    if e.is_finite() && e >= 0.0 {
        Some(e)
    } else {
        problems.push(format!("`{at}` must be a non-negative number"));
        None
    }
}

fn parse_precision(v: &toml::Value, at: &str, problems: &mut Vec<String>) -> Option<DatePrecision> {
    let p = v.as_str().and_then(DatePrecision::parse);
    if p.is_none() {
        problems.push(format!(
            "`{at}` must be one of exact, millisecond, second, minute, day"
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse() {
        parse_layer(DEFAULT_RULES, Path::new("default_rules.toml")).unwrap();
        let rules = Rules::default();
        assert!(matches!(rules.field("getProgress"), Resolved::Ignored));
        assert!(matches!(rules.field("creation_date"), Resolved::Ignored));
        assert!(matches!(rules.field("Result"), Resolved::Compare(_)));
        assert!(matches!(
            rules.column("workflow_states", "status"),
            Resolved::Ignored
        ));
        assert_eq!(rules.nested_ignore(), ["api_url", "url"]);
    }

    #[test]
    fn a_file_overlays_the_defaults() {
        let text = r#"
            [defaults]
            date_precision = "second"
            [fields.getProgress]
            ignore = false
            [fields.Price]
            epsilon = 0.01
            [fields."get*Title"]
            ignore = "copies of referenced titles"
            [columns.workflow_history.time]
            date_precision = "minute"
        "#;
        let rules = Rules::from_toml(text, Path::new("r.toml")).unwrap();
        assert!(matches!(rules.field("getProgress"), Resolved::Compare(_)));
        let Resolved::Compare(t) = rules.field("Price") else {
            panic!("Price is compared");
        };
        assert_eq!(t.epsilon, 0.01);
        assert_eq!(t.date_precision, DatePrecision::Second);
        assert!(matches!(
            rules.field("getSampleTypeTitle"),
            Resolved::Ignored
        ));
        assert!(matches!(rules.field("getSampleType"), Resolved::Compare(_)));
        let Resolved::Compare(t) = rules.column("workflow_history", "time") else {
            panic!("time is compared");
        };
        assert_eq!(t.date_precision, DatePrecision::Minute);
    }

    #[test]
    fn every_unknown_key_is_named_with_the_file() {
        let text = r#"
            [defaults]
            epsilonn = 1
            [fields.Price]
            epsilon = -1
            tolerance = 2
            [columns.workflow_history.nope]
            ignore = "x"
            [columns.nosuch.x]
            ignore = "x"
            [extra]
        "#;
        let err = Rules::from_toml(text, Path::new("/tmp/my-rules.toml"))
            .unwrap_err()
            .to_string();
        for needle in [
            "/tmp/my-rules.toml",
            "`defaults.epsilonn`",
            "`fields.Price.epsilon`",
            "`fields.Price.tolerance`",
            "`columns.workflow_history.nope`",
            "`columns.nosuch`",
            "`extra`",
        ] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
    }

    #[test]
    fn invalid_toml_names_the_file() {
        let err = Rules::from_toml("[fields", Path::new("bad.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml"), "{err}");
    }

    #[test]
    fn source_empty_rules_parse_and_name_their_mistakes() {
        let rules = Rules::from_toml(
            "[fields.VAT]\nsource_empty = \"a 2.6 default\"\n\
             [tables.workflow_history]\nsource_empty = \"no history in the source\"\n",
            Path::new("r.toml"),
        )
        .unwrap();
        assert!(rules.skips_source_empty("VAT", &Value::Null));
        assert!(rules.skips_source_empty("VAT", &Value::from("")));
        assert!(!rules.skips_source_empty("VAT", &Value::from("10.00")));
        assert!(!rules.skips_source_empty("Price", &Value::Null));
        assert!(rules.skips_source_empty_rows("workflow_history", 0));
        assert!(!rules.skips_source_empty_rows("workflow_history", 1));
        assert!(!rules.skips_source_empty_rows("workflow_states", 0));
        // The field stays compared (with the defaults) where the source has a value.
        assert!(matches!(rules.field("VAT"), Resolved::Compare(_)));
        let err = Rules::from_toml(
            "[tables.users]\nsource_empty = \"x\"\n\
             [tables.blobs]\nignore = \"x\"\n\
             [fields.VAT]\nsource_empty = true\n",
            Path::new("bad.toml"),
        )
        .unwrap_err()
        .to_string();
        for want in [
            "bad.toml",
            "unknown key `tables.users`",
            "`tables.blobs` takes only source_empty",
            "`fields.VAT.source_empty` must be the reason",
        ] {
            assert!(err.contains(want), "{want:?} not in {err}");
        }
    }

    #[test]
    fn shipped_verify_rules_load_and_give_every_entry_a_reason() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/verify");
        let mut seen = 0;
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("toml") {
                continue;
            }
            let rules = Rules::load(&p).unwrap();
            assert!(
                rules.ignored().iter().all(|i| !i.reason.trim().is_empty()),
                "{}",
                p.display()
            );
            seen += 1;
        }
        assert!(seen >= 2, "pipelines/verify holds the 1.x and BIKA rules");
    }

    #[test]
    fn globs_match_like_shells() {
        assert!(glob_match("get*Title", "getClientTitle"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXc"));
        assert!(!glob_match("get*Title", "getTitleX"));
    }
}
