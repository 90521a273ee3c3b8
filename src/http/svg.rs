//! Charts drawn on the server as inline SVG, and the HTML escaping every page uses.
//!
//! No script runs in the browser: each chart is plain SVG markup with presentation attributes
//! (no `style` attributes, which the page's Content-Security-Policy would block). Every label
//! goes through [`escape`], since agent ids, sender domains and policy names reach here and
//! some of them come from mail.

use std::fmt::Write;

/// Chart width and height in SVG user units; the page scales them to its column.
const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 220.0;
/// Room for the title above and the labels below the plot.
const TOP: f64 = 34.0;
const BOTTOM: f64 = 40.0;
const LEFT: f64 = 36.0;

/// Escapes text for HTML and SVG, in element content and in quoted attributes alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// One named series of values and its colour.
#[derive(Debug, Clone)]
pub struct Series {
    /// Shown in the legend.
    pub name: String,
    /// A fill colour, such as `#2b6cb0`.
    pub color: &'static str,
    /// One value per label.
    pub values: Vec<u64>,
}

/// Vertical bars, one group per label and one bar per series, with a legend.
pub fn bars(title: &str, labels: &[String], series: &[Series]) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let mut svg = open(title);
    axis(&mut svg, max);
    let plot = WIDTH - LEFT - 8.0;
    let group = plot / labels.len().max(1) as f64;
    let bar = (group * 0.8) / series.len().max(1) as f64;
    let every = (labels.len() / 14).max(1);
    for (i, label) in labels.iter().enumerate() {
        let x0 = LEFT + i as f64 * group + group * 0.1;
        for (j, s) in series.iter().enumerate() {
            let value = s.values.get(i).copied().unwrap_or(0);
            let h = (HEIGHT - TOP - BOTTOM) * value as f64 / max as f64;
            let (x, y) = (x0 + j as f64 * bar, HEIGHT - BOTTOM - h);
            let _ = write!(
                svg,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{}: {value}</title></rect>"##,
                (bar - 1.0).max(1.0),
                s.color,
                escape(&format!("{label} {}", s.name))
            );
        }
        if i % every == 0 {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#444">{}</text>"##,
                x0 + group * 0.4,
                HEIGHT - BOTTOM + 14.0,
                escape(&shorten(label, 12))
            );
        }
    }
    legend(&mut svg, series.iter().map(|s| (s.name.as_str(), s.color)));
    svg.push_str("</svg>");
    svg
}

/// Horizontal stacked bars, one row per label, each row's parts in series order.
pub fn stacked(title: &str, labels: &[String], series: &[Series]) -> String {
    let mut svg = open(title);
    let rows = labels.len().max(1) as f64;
    let row_h = ((HEIGHT - TOP - BOTTOM) / rows).min(28.0);
    let (x0, plot) = (170.0, WIDTH - 170.0 - 8.0);
    for (i, label) in labels.iter().enumerate() {
        let total: u64 = series
            .iter()
            .map(|s| s.values.get(i).copied().unwrap_or(0))
            .sum();
        let y = TOP + i as f64 * row_h;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#222">{}</text>"##,
            x0 - 6.0,
            y + row_h * 0.6,
            escape(&shorten(label, 26))
        );
        let mut x = x0;
        for s in series {
            let value = s.values.get(i).copied().unwrap_or(0);
            let w = if total == 0 {
                0.0
            } else {
                plot * value as f64 / total as f64
            };
            let _ = write!(
                svg,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{}: {value}</title></rect>"##,
                row_h * 0.8,
                s.color,
                escape(&format!("{label} {}", s.name))
            );
            x += w;
        }
    }
    if labels.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="{LEFT}" y="{:.1}" font-size="12" fill="#666">nothing to show</text>"##,
            TOP + 20.0
        );
    }
    legend(&mut svg, series.iter().map(|s| (s.name.as_str(), s.color)));
    svg.push_str("</svg>");
    svg
}

fn open(title: &str) -> String {
    let title = escape(title);
    format!(
        r##"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}"><rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/><text x="8" y="18" font-size="14" font-weight="bold" fill="#111">{title}</text>"##
    )
}

/// The baseline and a top gridline labelled with the maximum.
fn axis(svg: &mut String, max: u64) {
    let (base, top) = (HEIGHT - BOTTOM, TOP);
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{base}" x2="{:.1}" y2="{base}" stroke="#888"/><line x1="{LEFT}" y1="{top}" x2="{:.1}" y2="{top}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#444">{max}</text><text x="{:.1}" y="{base}" font-size="10" text-anchor="end" fill="#444">0</text>"##,
        WIDTH - 8.0,
        WIDTH - 8.0,
        LEFT - 4.0,
        top + 4.0,
        LEFT - 4.0
    );
}

fn legend<'a>(svg: &mut String, entries: impl Iterator<Item = (&'a str, &'static str)>) {
    let mut x = WIDTH - 8.0;
    let entries: Vec<_> = entries.collect();
    for (name, color) in entries.iter().rev() {
        x -= 22.0 + 7.0 * name.chars().count() as f64;
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="8" width="10" height="10" fill="{color}"/><text x="{:.1}" y="17" font-size="11" fill="#222">{}</text>"##,
            x + 13.0,
            escape(name)
        );
    }
}

/// At most `max` characters, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_defuses_hostile_subjects() {
        let cases = [
            (
                "<script>alert(1)</script>",
                "&lt;script&gt;alert(1)&lt;/script&gt;",
            ),
            (
                "\"><img src=x onerror=alert(1)>",
                "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;",
            ),
            ("a & b's", "a &amp; b&#39;s"),
            ("bell\u{7}\u{1b}[31m", "bell\u{fffd}\u{fffd}[31m"),
            ("plain", "plain"),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), want, "{input:?}");
        }
    }

    #[test]
    fn bar_labels_are_escaped() {
        let labels = vec!["<b>x</b>".to_string()];
        let series = [Series {
            name: "n".into(),
            color: "#000",
            values: vec![3],
        }];
        let svg = bars("t<", &labels, &series);
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(svg.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(svg.contains(r#"aria-label="t&lt;""#));
    }

    #[test]
    fn stacked_rows_fill_the_plot_width() {
        let labels = vec!["p".to_string()];
        let series = [
            Series {
                name: "met".into(),
                color: "#0a0",
                values: vec![1],
            },
            Series {
                name: "breached".into(),
                color: "#a00",
                values: vec![3],
            },
        ];
        let svg = stacked("sla", &labels, &series);
        // 382 units of plot: 1 of 4 is 95.5, 3 of 4 is 286.5.
        assert!(svg.contains(r#"width="95.5""#), "{svg}");
        assert!(svg.contains(r#"width="286.5""#), "{svg}");
    }
}
