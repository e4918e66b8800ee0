//! Inline SVG charts for the review page, drawn here so the page needs no script library or
//! network: a column chart (samples per month) and a horizontal bar chart (files per size
//! class). Labels come from data and are escaped like every other text of the page.

use crate::review::html::esc;

/// Plot height of the column chart, in pixels.
const PLOT_H: u64 = 180;
/// Left margin (y-axis labels).
const LEFT: u64 = 44;

/// A column chart: one `rect.bar` per `(label, value)` with `data-period` and `data-count`.
pub(crate) fn columns(data: &[(String, u64)], unit: &str) -> String {
    let n = data.len().max(1) as u64;
    let bw = (720 / n).clamp(6, 48);
    let gap = (bw / 5).max(1);
    let width = LEFT + n * bw + 16;
    let rotate = n > 12;
    let height = PLOT_H + if rotate { 70 } else { 40 };
    let max = data.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let mut s = String::new();
    s.push_str(&format!(r#"<svg class="chart" role="img" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"><desc>{} per period</desc>"#,
        esc(unit)
    ));
    for (frac, v) in [(0u64, 0u64), (1, max / 2), (2, max)] {
        let y = 10 + PLOT_H - PLOT_H * frac / 2;
        s.push_str(&format!(r#"<line class="grid" x1="{LEFT}" y1="{y}" x2="{}" y2="{y}"/><text class="axis" x="{}" y="{}" text-anchor="end">{v}</text>"#,
            width - 8,
            LEFT - 6,
            y + 4
        ));
    }
    let every = (n / 24).max(1) as usize;
    for (i, (label, v)) in data.iter().enumerate() {
        let h = PLOT_H * v / max;
        let x = LEFT + i as u64 * bw + gap / 2;
        let y = 10 + PLOT_H - h;
        s.push_str(&format!(r#"<rect class="bar" x="{x}" y="{y}" width="{}" height="{h}" data-period="{}" data-count="{v}"><title>{}: {v} {}</title></rect>"#,
            bw - gap,
            esc(label),
            esc(label),
            esc(unit)
        ));
        if n <= 36 && *v > 0 {
            s.push_str(&format!(
                r#"<text class="value" x="{}" y="{}" text-anchor="middle">{v}</text>"#,
                x + (bw - gap) / 2,
                y.saturating_sub(3).max(9)
            ));
        }
        if i % every == 0 {
            let lx = x + (bw - gap) / 2;
            let ly = PLOT_H + 26;
            if rotate {
                s.push_str(&format!(r#"<text class="axis" x="{lx}" y="{ly}" text-anchor="end" transform="rotate(-45 {lx} {ly})">{}</text>"#,
                    esc(label)
                ));
            } else {
                s.push_str(&format!(
                    r#"<text class="axis" x="{lx}" y="{ly}" text-anchor="middle">{}</text>"#,
                    esc(label)
                ));
            }
        }
    }
    s.push_str("</svg>");
    s
}

/// A horizontal bar chart: one `rect.hbar` per row with `data-label` and `data-count`, the
/// count and a note (e.g. bytes) written beside each bar.
pub(crate) fn rows(data: &[(String, u64, String)]) -> String {
    let row_h = 24u64;
    let label_w = 130u64;
    let bar_w = 420u64;
    let width = label_w + bar_w + 200;
    let height = row_h * data.len().max(1) as u64 + 8;
    let max = data.iter().map(|(_, v, _)| *v).max().unwrap_or(0).max(1);
    let mut s = String::new();
    s.push_str(&format!(r#"<svg class="chart" role="img" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">"#
    ));
    for (i, (label, v, note)) in data.iter().enumerate() {
        let y = 4 + i as u64 * row_h;
        let w = bar_w * v / max;
        s.push_str(&format!(r#"<text class="axis" x="{}" y="{}" text-anchor="end">{}</text><rect class="hbar" x="{label_w}" y="{}" width="{w}" height="{}" data-label="{}" data-count="{v}"><title>{}: {v}</title></rect><text class="value" x="{}" y="{}">{v} {}</text>"#,
            label_w - 8,
            y + 16,
            esc(label),
            y + 3,
            row_h - 6,
            esc(label),
            esc(label),
            label_w + w + 6,
            y + 16,
            esc(note)
        ));
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_scale_to_the_largest_value_and_escape_labels() {
        let data = vec![
            ("2026-01".to_string(), 4),
            ("2026-02".to_string(), 0),
            ("<x>".to_string(), 2),
        ];
        let svg = columns(&data, "samples");
        assert_eq!(svg.matches(r#"class="bar""#).count(), 3);
        assert!(svg.contains(&format!(
            r#"height="{PLOT_H}" data-period="2026-01" data-count="4""#
        )));
        assert!(svg.contains(r#"height="0" data-period="2026-02" data-count="0""#));
        assert!(svg.contains("&lt;x&gt;") && !svg.contains("<x>"));
    }

    #[test]
    fn rows_draw_one_bar_per_row() {
        let svg = rows(&[
            ("< 1 KiB".into(), 3, "files".into()),
            ("1-10 KiB".into(), 0, "files".into()),
        ]);
        assert_eq!(svg.matches(r#"class="hbar""#).count(), 2);
        assert!(svg.contains("&lt; 1 KiB"));
    }
}
