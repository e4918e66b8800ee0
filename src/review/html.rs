//! The review page: one self-contained HTML document (inline CSS, inline SVG, a few lines of
//! inline script for the table of contents and sortable tables; no external resource of any
//! kind). Every text that comes from a snapshot or a JSON file goes through [`esc`]; the page
//! embeds no data inside the script. The sections on drift, plan, diff and transform are in
//! [`super::sections`].

use crate::review::scan::{Capped, Example};
use crate::review::{ReviewReport, sections, svg};

/// Rows of a list shown on the page (the `--json` output has up to [`crate::review::LISTED`],
/// and every total).
pub(crate) const SHOWN: usize = 50;

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Bytes for people: `3.0 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A table of text cells (all escaped); `class` is set on the table, numeric columns
/// (`num[i]`) are right-aligned.
pub(crate) fn table(
    h: &mut String,
    class: &str,
    headers: &[&str],
    num: &[usize],
    rows: &[Vec<String>],
) {
    h.push_str(&format!(r#"<table class="{class}"><thead><tr>"#));
    for (i, head) in headers.iter().enumerate() {
        let c = if num.contains(&i) {
            r#" class="num""#
        } else {
            ""
        };
        h.push_str(&format!("<th{c}>{}</th>", esc(head)));
    }
    h.push_str("</tr></thead><tbody>");
    for row in rows {
        h.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let c = if num.contains(&i) {
                r#" class="num""#
            } else {
                ""
            };
            h.push_str(&format!("<td{c}>{}</td>", esc(cell)));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
}

/// "and N more" under a list cut for the page.
pub(crate) fn more<T>(h: &mut String, list: &Capped<T>) {
    let shown = list.items.len().min(SHOWN) as u64;
    if list.total > shown {
        h.push_str(&format!(r#"<p class="more">… and {} more (the first {} are in the <code>--json</code> output).</p>"#,
            list.total - shown,
            list.items.len()
        ));
    }
}

/// One warning box: a headline with its count, an explanation, and optional detail markup.
pub(crate) fn warning(
    h: &mut String,
    kind: &str,
    count: u64,
    headline: &str,
    why: &str,
    detail: &str,
) {
    h.push_str(&format!(r#"<div class="warn" data-warning="{}" data-count="{count}"><h3><span class="count">{count}</span> {}</h3><p>{}</p>{detail}</div>"#,
        esc(kind),
        esc(headline),
        esc(why)
    ));
}

/// Renders the page.
pub(crate) fn render(r: &ReviewReport) -> String {
    let mut h = String::with_capacity(64 * 1024);
    head(&mut h, r);
    summary(&mut h, r);
    h.push_str(r#"<section id="warnings"><h2>Warnings</h2>"#);
    let before = h.len();
    sections::warnings(&mut h, r);
    if h.len() == before {
        h.push_str(r#"<p class="ok">No warnings: every reference resolves, every parent is there, nothing is blocked.</p>"#);
    }
    h.push_str("</section>");
    types(&mut h, r);
    samples(&mut h, r);
    files(&mut h, r);
    if let Some(d) = &r.drift {
        sections::drift(&mut h, d);
    }
    if let Some(p) = &r.plan {
        sections::plan(&mut h, p);
    }
    if let Some(d) = &r.diff {
        sections::diff(&mut h, d);
    }
    if let Some(t) = &r.transform {
        sections::transform(&mut h, t);
    }
    let notes: Vec<&crate::snapshot::manifest::Note> = r
        .warnings
        .notes
        .iter()
        .filter(|n| r.transform.is_none() || n.kind != crate::review::inputs::TRANSFORM_NOTE)
        .collect();
    sections::notes(&mut h, &notes);
    examples(&mut h, r);
    h.push_str(&format!("</main><script>{SCRIPT}</script></body></html>\n"));
    h
}

fn head(h: &mut String, r: &ReviewReport) {
    let s = &r.snapshot;
    h.push_str(&format!(r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"><title>Review of {}</title><style>{STYLE}</style></head><body><header><h1>Review of snapshot <code>{}</code></h1><p class="meta">{} · source <code>{}</code> · completed {} · written by {}{}</p><nav id="toc" aria-label="Sections"></nav></header><main>"#,
        esc(&s.dir),
        esc(&s.dir),
        esc(&short_id(&s.snapshot_id)),
        esc(&s.source),
        esc(&s.finished_at),
        esc(&s.tool),
        match &s.base {
            Some(b) => format!(" · delta on base <code>{}</code>", esc(&short_id(b))),
            None => String::new(),
        }
    ));
}

/// The first 12 characters of an id.
pub(crate) fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

fn summary(h: &mut String, r: &ReviewReport) {
    let samples = r.types.get("AnalysisRequest").map_or(0, |t| t.count);
    let cards = [
        ("objects", r.snapshot.objects.to_string(), "objects"),
        ("types", r.types.len().to_string(), "portal types"),
        ("samples", samples.to_string(), "samples"),
        ("files", r.blobs.files.to_string(), "files"),
        ("bytes", bytes(r.blobs.bytes), "in files"),
        ("users", r.snapshot.users.to_string(), "users"),
        ("warnings", r.warning_count().to_string(), "warnings"),
    ];
    h.push_str(r#"<section id="summary"><h2>Summary</h2><div class="cards">"#);
    for (key, value, label) in cards {
        let hot = if key == "warnings" && r.warning_count() > 0 {
            " hot"
        } else {
            ""
        };
        h.push_str(&format!(
            r#"<div class="card{hot}" data-card="{key}"><b>{}</b><span>{}</span></div>"#,
            esc(&value),
            esc(label)
        ));
    }
    h.push_str("</div></section>");
}

fn types(h: &mut String, r: &ReviewReport) {
    h.push_str(r#"<section id="types"><h2>Objects per type and review state</h2><table class="sortable" id="types-table"><thead><tr><th>portal type</th><th class="num">objects</th><th>review states</th><th class="num">fields</th></tr></thead><tbody>"#);
    for (t, s) in &r.types {
        h.push_str(&format!(
            r#"<tr data-type="{}"><th scope="row">{}</th><td class="num">{}</td><td>"#,
            esc(t),
            esc(t),
            s.count
        ));
        for (state, n) in &s.states {
            h.push_str(&format!(
                r#"<span class="chip" data-state="{}">{} <b>{n}</b></span> "#,
                esc(state),
                esc(state)
            ));
        }
        h.push_str(&format!(r#"</td><td class="num">{}</td></tr>"#, s.fields));
    }
    h.push_str(&format!(r#"</tbody><tfoot><tr><th>total</th><td class="num">{}</td><td></td><td></td></tr></tfoot></table></section>"#,
        r.snapshot.objects
    ));
}

fn samples(h: &mut String, r: &ReviewReport) {
    h.push_str(r#"<section id="samples"><h2>Samples created per month</h2>"#);
    if r.samples_per_period.is_empty() {
        h.push_str("<p>No samples (portal type AnalysisRequest) in this snapshot.</p>");
    } else {
        let data: Vec<(String, u64)> = r
            .samples_per_period
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let total: u64 = data.iter().map(|(_, v)| v).sum();
        h.push_str(&format!(
            "<p>{total} samples by creation date, {} to {}.</p>",
            esc(&data[0].0),
            esc(&data[data.len() - 1].0)
        ));
        h.push_str(&svg::columns(&data, "samples"));
    }
    h.push_str("</section>");
}

fn files(h: &mut String, r: &ReviewReport) {
    let b = &r.blobs;
    h.push_str(&format!(r#"<section id="files"><h2>Attachments and files by size</h2><p>{} file field values, {} ({} distinct contents stored, {}).</p>"#,
        b.files,
        bytes(b.bytes),
        b.stored,
        bytes(b.stored_bytes)
    ));
    if b.files > 0 {
        let data: Vec<(String, u64, String)> = b
            .histogram
            .iter()
            .map(|c| {
                let noun = if c.count == 1 { "file" } else { "files" };
                (
                    c.label.clone(),
                    c.count,
                    format!("{noun}, {}", bytes(c.bytes)),
                )
            })
            .collect();
        h.push_str(&svg::rows(&data));
        h.push_str("<h3>Per type</h3>");
        let rows: Vec<Vec<String>> = b
            .by_type
            .iter()
            .map(|(t, (n, size))| vec![t.clone(), n.to_string(), bytes(*size)])
            .collect();
        table(
            h,
            "sortable",
            &["portal type", "files", "size"],
            &[1],
            &rows,
        );
        h.push_str("<h3>Largest files</h3>");
        let rows: Vec<Vec<String>> = b
            .largest
            .iter()
            .map(|f| {
                vec![
                    f.filename.clone(),
                    bytes(f.size),
                    f.content_type.clone(),
                    f.portal_type.clone(),
                    format!("{} ({})", f.path, f.field),
                ]
            })
            .collect();
        table(
            h,
            "largest",
            &["file", "size", "type", "owner type", "owner (field)"],
            &[1],
            &rows,
        );
    }
    h.push_str("</section>");
}

fn examples(h: &mut String, r: &ReviewReport) {
    h.push_str(r#"<section id="examples"><h2>Example records per type</h2>"#);
    for (t, s) in r.types.iter().filter(|(_, s)| !s.examples.is_empty()) {
        h.push_str(&format!(r#"<details data-examples="{}"><summary>{} <span class="dim">({} of {})</span></summary>"#,
            esc(t),
            esc(t),
            s.examples.len(),
            s.count
        ));
        for e in &s.examples {
            example(h, e);
        }
        h.push_str("</details>");
    }
    h.push_str("</section>");
}

fn example(h: &mut String, e: &Example) {
    h.push_str(&format!(r#"<dl class="example"><dt>title</dt><dd class="title">{}</dd><dt>path</dt><dd><code>{}</code></dd><dt>uid</dt><dd><code>{}</code></dd><dt>state</dt><dd>{}</dd><dt>created</dt><dd>{}</dd>"#,
        esc(&e.title),
        esc(&e.path),
        esc(&e.uid),
        esc(&e.review_state),
        esc(&e.created)
    ));
    for f in &e.fields {
        h.push_str(&format!(
            "<dt>{}</dt><dd>{}</dd>",
            esc(&f.name),
            esc(&f.value)
        ));
    }
    h.push_str("</dl>");
}

const STYLE: &str = r#"
:root{--fg:#1d2430;--dim:#5b6472;--line:#d9dee5;--bg:#f6f7f9;--accent:#2f6db5;--warn:#b5452f;--ok:#2f8a4a}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{background:#fff;border-bottom:1px solid var(--line);padding:16px 24px}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:17px;margin:0 0 10px}
h3{font-size:14px;margin:14px 0 6px}
.meta,.dim,.more{color:var(--dim)}
nav#toc{display:flex;flex-wrap:wrap;gap:4px 14px;margin-top:8px}
nav#toc a{color:var(--accent);text-decoration:none}
main{padding:16px 24px;max-width:1200px}
section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:14px 18px;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:22px}
.card span{color:var(--dim)}
.card.hot b{color:var(--warn)}
table{border-collapse:collapse;margin:6px 0;min-width:50%}
th,td{text-align:left;padding:3px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}
thead th{background:var(--bg)}
table.sortable thead th{cursor:pointer}
.chip{display:inline-block;background:var(--bg);border:1px solid var(--line);border-radius:10px;padding:0 8px;margin:1px 0}
.warn{border-left:4px solid var(--warn);background:#fdf5f3;padding:6px 12px;margin:8px 0}
.warn h3{margin:2px 0}
.warn .count{color:var(--warn)}
.info{border-left:4px solid var(--accent);background:#f3f7fc;padding:6px 12px;margin:8px 0}
.ok{color:var(--ok)}
code{font-size:12px}
svg.chart{display:block;margin:8px 0;max-width:100%;height:auto}
svg .bar{fill:var(--accent)}
svg .hbar{fill:#6c8fbf}
svg .grid{stroke:var(--line)}
svg text{font-size:11px;fill:var(--dim)}
svg text.value{fill:var(--fg)}
dl.example{display:grid;grid-template-columns:max-content 1fr;gap:1px 12px;border-top:1px solid var(--line);padding:6px 0;margin:0}
dl.example dt{color:var(--dim)}
dl.example dd{margin:0;word-break:break-word}
details{margin:4px 0}
summary{cursor:pointer}
"#;

/// The page's only script: builds the table of contents from the section headings and makes
/// tables with class `sortable` sortable by clicking a column head. It reads only the page's own
/// DOM and sets text with `textContent`.
const SCRIPT: &str = r#"
(function(){
  var nav=document.getElementById('toc');
  document.querySelectorAll('main > section[id] > h2').forEach(function(h){
    var a=document.createElement('a');
    a.href='#'+h.parentNode.id;
    a.textContent=h.textContent;
    nav.appendChild(a);
  });
  function key(td){var t=td?td.textContent.trim():'';var n=parseFloat(t.replace(/,/g,''));return isNaN(n)||!/^[0-9.,]+/.test(t)?t.toLowerCase():n;}
  document.querySelectorAll('table.sortable').forEach(function(table){
    table.querySelectorAll('thead th').forEach(function(th,i){
      th.addEventListener('click',function(){
        var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
        var dir=th.getAttribute('data-dir')==='asc'?-1:1;
        rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);return (x>y?1:x<y?-1:0)*dir;});
        rows.forEach(function(r){body.appendChild(r);});
        th.setAttribute('data-dir',dir===1?'asc':'desc');
      });
    });
  });
  document.documentElement.setAttribute('data-js','ready');
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(bytes(17), "17 bytes");
        assert_eq!(bytes(3_145_728), "3.0 MiB");
        assert_eq!(bytes(1536), "1.5 KiB");
    }

    #[test]
    fn tables_escape_cells() {
        let mut h = String::new();
        table(&mut h, "t", &["a<"], &[], &[vec!["<img src=x>".into()]]);
        assert!(h.contains("&lt;img src=x&gt;") && !h.contains("<img"));
    }
}
