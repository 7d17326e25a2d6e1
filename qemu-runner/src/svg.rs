//! Hand-written SVG: an element writer, axis ticks, and a line chart with
//! whiskers that the benchmarks share. SVG is only text; nothing here
//! needs a library.

use std::fmt::Write as _;

/// A colour palette that reads on white and avoids red, which the pictures
/// keep for failures.
pub(crate) const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
];

/// Red, for failures.
pub(crate) const FAILED: &str = "#d62728";

/// An SVG document under construction.
pub(crate) struct Svg {
    out: String,
}

impl Svg {
    /// Starts a `width` × `height` document with a white background.
    pub fn new(width: f64, height: f64) -> Self {
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#,
            w = num(width),
            h = num(height)
        );
        let mut svg = Svg { out };
        svg.rect(0.0, 0.0, width, height, r##"fill="#ffffff""##);
        svg
    }

    /// Appends markup as it is (a `<defs>` block, say).
    pub fn raw(&mut self, markup: &str) {
        self.out.push_str(markup);
        self.out.push('\n');
    }

    /// A rectangle with extra attributes (`fill=...`).
    pub fn rect(&mut self, x: f64, y: f64, width: f64, height: f64, attrs: &str) {
        let _ = writeln!(
            self.out,
            r#"<rect x="{}" y="{}" width="{}" height="{}" {attrs}/>"#,
            num(x),
            num(y),
            num(width.max(0.0)),
            num(height.max(0.0))
        );
    }

    /// A line from (x1, y1) to (x2, y2).
    pub fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), attrs: &str) {
        let _ = writeln!(
            self.out,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" {attrs}/>"#,
            num(x1),
            num(y1),
            num(x2),
            num(y2)
        );
    }

    /// A circle.
    pub fn circle(&mut self, (x, y): (f64, f64), radius: f64, attrs: &str) {
        let _ = writeln!(
            self.out,
            r#"<circle cx="{}" cy="{}" r="{}" {attrs}/>"#,
            num(x),
            num(y),
            num(radius)
        );
    }

    /// A polyline through `points`.
    pub fn polyline(&mut self, points: &[(f64, f64)], attrs: &str) {
        let mut list = String::new();
        for (i, (x, y)) in points.iter().enumerate() {
            let space = if i == 0 { "" } else { " " };
            let _ = write!(list, "{space}{},{}", num(*x), num(*y));
        }
        let _ = writeln!(self.out, r#"<polyline points="{list}" {attrs}/>"#);
    }

    /// Text at (x, y) (the baseline), escaped.
    pub fn text(&mut self, (x, y): (f64, f64), text: &str, attrs: &str) {
        let _ = writeln!(
            self.out,
            r#"<text x="{}" y="{}" {attrs}>{}</text>"#,
            num(x),
            num(y),
            escape(text)
        );
    }

    /// Closes the document.
    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// `text` with the XML special characters escaped.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate or length, to 0.01 and without trailing zeros.
pub(crate) fn num(value: f64) -> String {
    let value = if value.is_finite() { value } else { 0.0 };
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    match text {
        "-0" | "" => "0".to_owned(),
        text => text.to_owned(),
    }
}

/// A tick label: integers plainly, small values with the digits they need.
pub(crate) fn tick_label(value: f64) -> String {
    if value >= 1.0 && value.fract() == 0.0 {
        format!("{value:.0}")
    } else if value >= 0.1 {
        num(value)
    } else {
        format!("{value}")
    }
}

/// A round step (1, 2 or 5 times a power of ten) giving at most about
/// `target` ticks from 0 to `max`, and the ticks.
pub(crate) fn linear_ticks(max: f64, target: usize) -> Vec<f64> {
    let max = if max > 0.0 && max.is_finite() {
        max
    } else {
        1.0
    };
    let rough = max / target.max(1) as f64;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * power);
    let count = (max / step).floor() as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

/// Ticks for a log scale from `min` to `max`: 1, 2 and 5 times each power
/// of ten in range (only the powers of ten, and both ends, when the range
/// spans more than three decades).
pub(crate) fn log_ticks(min: f64, max: f64) -> Vec<f64> {
    let (low, high) = (min.log10().floor() as i32, max.log10().ceil() as i32);
    let wide = high - low > 3;
    let multiples: &[f64] = if wide { &[1.0] } else { &[1.0, 2.0, 5.0] };
    let mut ticks: Vec<f64> = (low..=high)
        .flat_map(|power| multiples.iter().map(move |m| m * 10f64.powi(power)))
        .filter(|tick| *tick >= min * 0.999 && *tick <= max * 1.001)
        .collect();
    if wide {
        for end in [min, max] {
            if !ticks.iter().any(|t| (t / end - 1.0).abs() < 1e-6) {
                ticks.push(end);
            }
        }
        ticks.sort_by(f64::total_cmp);
    }
    ticks
}

/// The largest 1, 2 or 5 times a power of ten at or below `value` (> 0).
fn nice_below(value: f64) -> f64 {
    let power = 10f64.powf(value.log10().floor());
    [5.0, 2.0, 1.0]
        .iter()
        .map(|m| m * power)
        .find(|nice| *nice <= value * 1.000_001)
        .unwrap_or(power)
}

/// The smallest 1, 2 or 5 times a power of ten at or above `value` (> 0).
fn nice_above(value: f64) -> f64 {
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|nice| *nice >= value * 0.999_999)
        .unwrap_or(10.0 * power)
}

/// `text` in lines of at most `width` characters, broken at spaces (a
/// longer word gets a line of its own).
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

/// One point of a [`LineChart`] series: a value with its spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartPoint {
    /// Where along x.
    pub x: f64,
    /// The value drawn on the line (a median, say).
    pub y: f64,
    /// The bottom of the whisker (the minimum).
    pub low: f64,
    /// The top of the whisker (the maximum).
    pub high: f64,
}

/// One line of a [`LineChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct ChartSeries {
    /// The legend's name for it.
    pub name: String,
    /// Dashed rather than solid.
    pub dashed: bool,
    /// The points, in x order.
    pub points: Vec<ChartPoint>,
}

/// A line chart with min–max whiskers: what benchmarks draw.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// The title line.
    pub title: String,
    /// A smaller line under the title (machine, runs…).
    pub subtitle: String,
    /// The x axis label.
    pub x_label: String,
    /// The y axis label.
    pub y_label: String,
    /// A base-2 log scale on x with a tick at every x of the data (CPU
    /// counts); otherwise linear.
    pub x_log: bool,
    /// A base-10 log scale on y; otherwise linear from 0.
    pub y_log: bool,
    /// The lines, each in the next colour of a fixed palette.
    pub series: Vec<ChartSeries>,
}

impl LineChart {
    /// The chart as an SVG document.
    pub fn to_svg(&self) -> String {
        let frame = Frame::new(self);
        let mut svg = Svg::new(frame.width, frame.height);
        self.draw_titles(&mut svg, &frame);
        self.draw_axes(&mut svg, &frame);
        for (index, series) in self.series.iter().enumerate() {
            let style = SeriesStyle::new(index, series.dashed);
            draw_series(&mut svg, &frame, series, &style);
            draw_legend_entry(&mut svg, &frame, index, &series.name, &style);
        }
        let note_y = frame.top + 14.0 + self.series.len() as f64 * 22.0 + 10.0;
        svg.text(
            (frame.left + frame.plot_w + 20.0, note_y),
            "dot: median; whisker: min to max",
            r##"font-size="11" fill="#555""##,
        );
        svg.finish()
    }

    /// The x of every point, in series order.
    fn xs(&self) -> Vec<f64> {
        self.points().map(|p| p.x).collect()
    }

    fn points(&self) -> impl Iterator<Item = &ChartPoint> {
        self.series.iter().flat_map(|s| s.points.iter())
    }

    /// The title and the subtitle's lines.
    fn draw_titles(&self, svg: &mut Svg, frame: &Frame) {
        svg.text(
            (frame.left, 28.0),
            &self.title,
            r#"font-size="17" font-weight="bold""#,
        );
        for (index, line) in frame.subtitle.iter().enumerate() {
            svg.text(
                (frame.left, 48.0 + 15.0 * index as f64),
                line,
                r##"font-size="12" fill="#555""##,
            );
        }
    }

    /// The plot's frame, grid lines and ticks on both axes, axis labels.
    fn draw_axes(&self, svg: &mut Svg, frame: &Frame) {
        let (left, top, plot_w, plot_h) = (frame.left, frame.top, frame.plot_w, frame.plot_h);
        svg.rect(
            left,
            top,
            plot_w,
            plot_h,
            r##"fill="none" stroke="#999" stroke-width="1""##,
        );
        for &tick in &frame.y.ticks {
            let y = frame.y_of(tick);
            svg.line(
                (left, y),
                (left + plot_w, y),
                r##"stroke="#e4e4e4" stroke-width="1""##,
            );
            svg.text(
                (left - 6.0, y + 4.0),
                &tick_label(tick),
                r#"font-size="11" text-anchor="end""#,
            );
        }
        let mut x_ticks: Vec<f64> = match self.x_log {
            true => self.xs(),
            false => linear_ticks(frame.x.max, 10),
        };
        x_ticks.sort_by(f64::total_cmp);
        x_ticks.dedup();
        for &tick in &x_ticks {
            let x = frame.x_of(tick);
            svg.line(
                (x, top),
                (x, top + plot_h),
                r##"stroke="#e4e4e4" stroke-width="1""##,
            );
            svg.text(
                (x, top + plot_h + 16.0),
                &tick_label(tick),
                r#"font-size="11" text-anchor="middle""#,
            );
        }
        svg.text(
            (left + plot_w / 2.0, frame.height - 18.0),
            &self.x_label,
            r#"font-size="13" text-anchor="middle""#,
        );
        let (label_x, label_y) = (20.0, top + plot_h / 2.0);
        svg.text(
            (label_x, label_y),
            &self.y_label,
            &format!(
                r#"font-size="13" text-anchor="middle" transform="rotate(-90 {} {})""#,
                num(label_x),
                num(label_y)
            ),
        );
    }
}

/// A chart's geometry: the plot area and both scales.
struct Frame {
    width: f64,
    height: f64,
    left: f64,
    top: f64,
    plot_w: f64,
    plot_h: f64,
    /// The subtitle, wrapped to the chart's width.
    subtitle: Vec<String>,
    x: XScale,
    y: YScale,
}

impl Frame {
    fn new(chart: &LineChart) -> Self {
        let (left, bottom, plot_w, plot_h) = (80.0, 60.0, 590.0, 430.0);
        // The legend gets the room its longest name needs (about 7 px a
        // character at 12 px), the subtitle as many lines as it needs.
        let longest = chart
            .series
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0);
        let right = (66.0 + 7.0 * longest as f64).max(230.0);
        let width = left + plot_w + right;
        let subtitle = wrap(&chart.subtitle, ((width - left - 20.0) / 6.6) as usize);
        let top = 55.0 + 15.0 * subtitle.len() as f64;
        let ys: Vec<f64> = chart.points().flat_map(|p| [p.y, p.low, p.high]).collect();
        Frame {
            width,
            height: top + plot_h + bottom,
            left,
            top,
            plot_w,
            plot_h,
            subtitle,
            x: XScale::new(&chart.xs(), chart.x_log),
            y: YScale::new(&ys, chart.y_log),
        }
    }

    fn x_of(&self, x: f64) -> f64 {
        self.left + self.x.fraction(x) * self.plot_w
    }

    fn y_of(&self, y: f64) -> f64 {
        self.top + self.plot_h - self.y.fraction(y) * self.plot_h
    }
}

/// The finite `values` folded with `f` from `init`.
fn fold_finite(values: &[f64], init: f64, f: fn(f64, f64) -> f64) -> f64 {
    values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(init, f)
}

/// The x axis: the data's range, base-2 log or linear, with 4% padding on
/// both sides.
struct XScale {
    min: f64,
    max: f64,
    log: bool,
}

impl XScale {
    fn new(xs: &[f64], log: bool) -> Self {
        let min = fold_finite(xs, f64::INFINITY, f64::min);
        let max = fold_finite(xs, f64::NEG_INFINITY, f64::max);
        let (min, max) = match min.is_finite() {
            true if max > min => (min, max),
            true => (min * 0.5, min * 2.0 + 1.0),
            false => (1.0, 2.0),
        };
        XScale { min, max, log }
    }

    /// Where `x` falls, from 0 (left) to 1 (right).
    fn fraction(&self, x: f64) -> f64 {
        let (lo, hi, v) = match self.log {
            true => (
                self.min.max(1e-9).log2(),
                self.max.log2(),
                x.max(1e-9).log2(),
            ),
            false => (self.min, self.max, x),
        };
        let pad = 0.04 * (hi - lo);
        (v - lo + pad) / (hi - lo + 2.0 * pad)
    }
}

/// The y axis: base-10 log between round values around the data, or
/// linear from 0 to 5% above the largest value; and its ticks.
struct YScale {
    /// `Some((lo, hi))` for a log scale, `None` for a linear one.
    log: Option<(f64, f64)>,
    /// The linear scale's top.
    max: f64,
    ticks: Vec<f64>,
}

impl YScale {
    fn new(ys: &[f64], log: bool) -> Self {
        let y_min = fold_finite(ys, f64::INFINITY, f64::min);
        let y_max = fold_finite(ys, f64::NEG_INFINITY, f64::max);
        if log {
            let lo = match y_min.is_finite() && y_min > 0.0 {
                true => nice_below(y_min),
                false => 1.0,
            };
            let hi = match y_max.is_finite() && y_max > lo {
                true => nice_above(y_max),
                false => lo * 10.0,
            };
            YScale {
                log: Some((lo, hi)),
                max: hi,
                ticks: log_ticks(lo, hi),
            }
        } else {
            let max = if y_max.is_finite() && y_max > 0.0 {
                y_max * 1.05
            } else {
                1.0
            };
            YScale {
                log: None,
                max,
                ticks: linear_ticks(max, 8),
            }
        }
    }

    /// Where `y` falls, from 0 (bottom) to 1 (top).
    fn fraction(&self, y: f64) -> f64 {
        match self.log {
            Some((lo, hi)) => {
                let (l, h) = (lo.log10(), hi.log10());
                (y.max(lo).log10() - l) / (h - l)
            }
            None => y / self.max,
        }
    }
}

/// A series' colour (the palette's next) and dash pattern.
struct SeriesStyle {
    colour: &'static str,
    dash: &'static str,
}

impl SeriesStyle {
    fn new(index: usize, dashed: bool) -> Self {
        SeriesStyle {
            colour: PALETTE[index % PALETTE.len()],
            dash: if dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            },
        }
    }
}

/// A series' line, and a dot with a min-to-max whisker at each point.
fn draw_series(svg: &mut Svg, frame: &Frame, series: &ChartSeries, style: &SeriesStyle) {
    let SeriesStyle { colour, dash } = style;
    let line: Vec<(f64, f64)> = series
        .points
        .iter()
        .map(|p| (frame.x_of(p.x), frame.y_of(p.y)))
        .collect();
    svg.polyline(
        &line,
        &format!(r#"class="series" fill="none" stroke="{colour}" stroke-width="2"{dash}"#),
    );
    for point in &series.points {
        let x = frame.x_of(point.x);
        let (y_low, y_high) = (frame.y_of(point.low), frame.y_of(point.high));
        let stroke = format!(r#"stroke="{colour}" stroke-width="1.2""#);
        svg.line(
            (x, y_low),
            (x, y_high),
            &format!(r#"class="whisker" {stroke}"#),
        );
        svg.line((x - 4.0, y_low), (x + 4.0, y_low), &stroke);
        svg.line((x - 4.0, y_high), (x + 4.0, y_high), &stroke);
        svg.circle(
            (x, frame.y_of(point.y)),
            3.5,
            &format!(r#"fill="{colour}""#),
        );
    }
}

/// The `index`-th legend line, right of the plot.
fn draw_legend_entry(svg: &mut Svg, frame: &Frame, index: usize, name: &str, style: &SeriesStyle) {
    let SeriesStyle { colour, dash } = style;
    let legend_y = frame.top + 14.0 + index as f64 * 22.0;
    let legend_x = frame.left + frame.plot_w + 20.0;
    svg.line(
        (legend_x, legend_y - 4.0),
        (legend_x + 28.0, legend_y - 4.0),
        &format!(r#"stroke="{colour}" stroke-width="2"{dash}"#),
    );
    svg.circle(
        (legend_x + 14.0, legend_y - 4.0),
        3.5,
        &format!(r#"fill="{colour}""#),
    );
    svg.text((legend_x + 36.0, legend_y), name, r#"font-size="12""#);
}

/// Test helper: checks that every tag is closed, in order.
#[cfg(test)]
pub(crate) fn check_balanced(svg: &str) -> Result<(), String> {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let end = after.find('>').ok_or("a tag is not closed with '>'")?;
        let tag = &after[..end];
        rest = &after[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match open.pop() {
                Some(top) if top == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().ok_or("an empty tag")?;
            open.push(name);
        }
        if tag.contains('<') {
            return Err(format!("'<' inside the tag {tag:?}"));
        }
    }
    match open.is_empty() {
        true => Ok(()),
        false => Err(format!("never closed: {open:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_escapes() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1.256), "1.26");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(f64::NAN), "0");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(tick_label(20.0), "20");
        assert_eq!(tick_label(0.5), "0.5");
    }

    #[test]
    fn linear_ticks_are_round() {
        assert_eq!(
            linear_ticks(76.0, 8),
            [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]
        );
        assert_eq!(
            linear_ticks(3700.0, 8),
            [0.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 3500.0]
        );
        assert_eq!(linear_ticks(0.0, 8), linear_ticks(1.0, 8));
    }

    #[test]
    fn log_ticks_span_the_decades() {
        assert_eq!(
            log_ticks(1.0, 100.0),
            [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
        assert_eq!(log_ticks(1.0, 10000.0), [1.0, 10.0, 100.0, 1000.0, 10000.0]);
        assert_eq!(
            log_ticks(10.0, 20000.0),
            [10.0, 100.0, 1000.0, 10000.0, 20000.0]
        );
        assert_eq!((nice_below(17.9), nice_above(10617.0)), (10.0, 20000.0));
        assert_eq!((nice_below(250.0), nice_above(0.3)), (200.0, 0.5));
    }

    #[test]
    fn chart_is_balanced_with_one_line_per_series() {
        let point = |x: f64, y: f64| ChartPoint {
            x,
            y,
            low: y * 0.9,
            high: y * 1.1,
        };
        let chart = LineChart {
            title: "t <1>".into(),
            subtitle: "s & s".into(),
            x_label: "CPUs".into(),
            y_label: "ms".into(),
            x_log: true,
            y_log: true,
            series: vec![
                ChartSeries {
                    name: "a".into(),
                    dashed: false,
                    points: vec![point(4.0, 10.0), point(64.0, 30.0)],
                },
                ChartSeries {
                    name: "b".into(),
                    dashed: true,
                    points: vec![point(4.0, 40.0), point(64.0, 700.0)],
                },
            ],
        };
        let svg = chart.to_svg();
        check_balanced(&svg).unwrap();
        assert_eq!(svg.matches(r#"class="series""#).count(), 2);
        assert_eq!(svg.matches(r#"class="whisker""#).count(), 4);
        assert!(svg.contains("t &lt;1&gt;"));
        let linear = LineChart {
            x_log: false,
            y_log: false,
            series: vec![],
            ..chart
        };
        check_balanced(&linear.to_svg()).unwrap();
    }

    #[test]
    fn long_subtitles_wrap_and_long_names_widen_the_legend() {
        assert_eq!(wrap("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
        assert_eq!(wrap("", 6), Vec::<String>::new());
        assert_eq!(wrap("toolongword x", 4), ["toolongword", "x"]);
        let chart = |subtitle: &str, name: &str| LineChart {
            title: "t".into(),
            subtitle: subtitle.into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_log: false,
            y_log: false,
            series: vec![ChartSeries {
                name: name.into(),
                dashed: false,
                points: vec![],
            }],
        };
        let short = chart("short", "a").to_svg();
        assert!(
            short
                .starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" width="900" height="560""#),
            "{short}"
        );
        let long = chart(&"word ".repeat(60), &"n".repeat(40)).to_svg();
        assert!(
            long.starts_with(
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="1016" height="590""#
            ),
            "{long}"
        );
        check_balanced(&long).unwrap();
    }

    #[test]
    fn the_checker_finds_unbalanced_tags() {
        assert!(check_balanced("<svg><g></svg>").is_err());
        assert!(check_balanced("<svg>").is_err());
        assert!(check_balanced("<svg><rect/></svg>").is_ok());
    }
}
