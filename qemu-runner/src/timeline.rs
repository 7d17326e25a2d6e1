//! The boot as a picture: [`timeline_svg`] draws a report's `boot.cpus`
//! as an SVG timeline (`cargo qemu --timeline FILE.svg`).
//!
//! One row per CPU (`cpu N`), x in milliseconds since the BSP's entry. A
//! started CPU is a bar from `start_ms` (its starter sent INIT) to
//! `ready_ms` (it ran Rust code on its own stack), coloured by its starter
//! (a fixed palette indexed by the starter's VP, see the legend). A thin
//! line in the same colour runs from the starter's own ready point (or, for
//! the BSP, which has none, straight down from the BSP's row) to the start
//! of the bar: the fan-out tree and its rounds show as chains of lines. A
//! failed CPU is a red hatched bar that runs to the right edge; the main
//! kernel's CPUs (the BSP and each node's base VP) and removed CPUs are grey
//! rows with a label. A dashed line marks `boot.ready_ms`. Each bar's
//! tooltip names the CPU's APIC ID beside its VP index.
//!
//! Rows shrink with the CPU count down to 5 px, and the labels thin out to
//! every 2nd, 4th… row: 288 CPUs (the most, under KVM) make a picture about
//! 1600 px tall with a label on every 4th CPU and each node's name at its
//! boundary.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sidecar::vocabulary::{ApDelay, CpuBootStatus};

use crate::schema::{BootCpu, Report};
use crate::svg::{self, num, Svg, FAILED, PALETTE};

/// Why a report cannot be drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot draw the boot timeline: {0}")]
pub struct TimelineError(String);

/// The colour of the CPUs started by `starter`.
fn colour(starter: u64) -> &'static str {
    PALETTE[(starter % PALETTE.len() as u64) as usize]
}

/// The hatch pattern for failed CPUs.
const DEFS: &str = r##"<defs><pattern id="failed-hatch" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fde3e3"/><line x1="0" y1="0" x2="0" y2="6" stroke="#d62728" stroke-width="2"/></pattern></defs>"##;

/// Draws the report's `boot.cpus` as an SVG timeline (see the module docs).
///
/// Needs `boot.cpus`; uses `started_by`, `start_ms`, `ready_ms` and `node`
/// where present, `nodes[].base_vp` to tell the main kernel's CPUs from
/// removed ones, and `boot.strategy`, `boot.ap_delay`, `boot.ready_ms`,
/// `boot.depth` for the title.
pub fn timeline_svg(report: &Report) -> Result<String, TimelineError> {
    let rows = sorted_rows(report)?;
    let legend = legend_items(&rows);
    let layout = Layout::new(&rows, report, layout_legend(&legend, 1000.0 - 20.0));
    let mut svg = Svg::new(layout.width, layout.height);
    svg.raw(DEFS);
    draw_heading(&mut svg, report, &layout);
    draw_row_backgrounds(&mut svg, &rows, &layout);
    draw_time_axis(&mut svg, &layout);
    draw_links(&mut svg, &rows, &layout);
    let main_kernel: BTreeSet<u64> = report.base_vps().chain([0]).collect();
    for (i, row) in rows.iter().enumerate() {
        draw_row(&mut svg, i, row, &main_kernel, &layout);
    }
    if let Some(ready) = report.boot.ready_ms {
        draw_ready_line(&mut svg, ready, &layout);
    }
    Ok(svg.finish())
}

/// `boot.cpus` by VP index.
fn sorted_rows(report: &Report) -> Result<Vec<&BootCpu>, TimelineError> {
    let cpus = report
        .boot
        .cpus
        .as_ref()
        .ok_or_else(|| TimelineError("the report has no boot.cpus list".to_owned()))?;
    if cpus.is_empty() {
        return Err(TimelineError("boot.cpus is empty".to_owned()));
    }
    let mut rows: Vec<&BootCpu> = cpus.iter().collect();
    rows.sort_by_key(|row| row.vp);
    Ok(rows)
}

/// Where everything goes.
struct Layout<'l> {
    width: f64,
    height: f64,
    /// Left edge of the plot (the labels are left of it).
    left: f64,
    plot_w: f64,
    plot_top: f64,
    plot_h: f64,
    row_h: f64,
    /// A label on every `label_every`-th VP.
    label_every: u64,
    font: f64,
    /// The time at the right edge, in ms.
    x_max: f64,
    cpus: usize,
    legend_top: f64,
    legend: LegendLines<'l>,
}

impl<'l> Layout<'l> {
    fn new(rows: &[&BootCpu], report: &Report, legend: LegendLines<'l>) -> Self {
        let n = rows.len();
        let row_h = (640.0 / n as f64).clamp(5.0, 22.0);
        // Labels at least 11 px apart, on every 1st, 2nd, 4th… row so that
        // they line up with 32-CPU nodes.
        let label_every = ((11.0 / row_h).ceil().max(1.0) as u64).next_power_of_two();
        let (width, left, right) = (1000.0, 110.0, 20.0);
        let legend_top = 64.0;
        let plot_top = legend_top + legend.len() as f64 * 18.0 + 30.0;
        let plot_h = n as f64 * row_h;
        let latest = rows
            .iter()
            .flat_map(|r| [r.start_ms, r.ready_ms])
            .chain([report.boot.ready_ms])
            .flatten()
            .filter(|t| t.is_finite())
            .fold(0.0, f64::max);
        Layout {
            width,
            height: plot_top + plot_h + 52.0,
            left,
            plot_w: width - left - right,
            plot_top,
            plot_h,
            row_h,
            label_every,
            font: (row_h - 2.0).clamp(7.0, 11.0),
            x_max: if latest > 0.0 { latest * 1.03 } else { 1.0 },
            cpus: n,
            legend_top,
            legend,
        }
    }

    fn x_of(&self, ms: f64) -> f64 {
        self.left + ms.clamp(0.0, self.x_max) / self.x_max * self.plot_w
    }

    fn row_top(&self, i: usize) -> f64 {
        self.plot_top + i as f64 * self.row_h
    }

    fn centre(&self, i: usize) -> f64 {
        self.row_top(i) + self.row_h / 2.0
    }

    fn bottom(&self) -> f64 {
        self.plot_top + self.plot_h
    }

    fn right(&self) -> f64 {
        self.left + self.plot_w
    }
}

/// Title, subtitle and legend.
fn draw_heading(svg: &mut Svg, report: &Report, layout: &Layout<'_>) {
    svg.text(
        (10.0, 24.0),
        &title(report, layout.cpus),
        r#"font-size="16" font-weight="bold""#,
    );
    svg.text(
        (10.0, 43.0),
        &subtitle(report),
        r##"font-size="12" fill="#555""##,
    );
    draw_legend(svg, &layout.legend, layout.legend_top);
}

/// Alternate row shading, node boundaries and names, CPU labels.
fn draw_row_backgrounds(svg: &mut Svg, rows: &[&BootCpu], layout: &Layout<'_>) {
    let mut previous_node = None;
    for (i, row) in rows.iter().enumerate() {
        if i % 2 == 1 && layout.row_h >= 10.0 {
            let (x, y, h) = (layout.left, layout.row_top(i), layout.row_h);
            svg.rect(x, y, layout.plot_w, h, r##"fill="#f6f6f6""##);
        }
        if row.node != previous_node {
            let y = layout.row_top(i);
            if i > 0 {
                svg.line(
                    (4.0, y),
                    (layout.right(), y),
                    r##"stroke="#888" stroke-width="0.8" stroke-dasharray="3 3""##,
                );
            }
            if let Some(node) = row.node {
                let label = format!("node {node}");
                svg.text((4.0, y + 10.0), &label, r##"font-size="10" fill="#666""##);
            }
            previous_node = row.node;
        }
        if row.vp % layout.label_every == 0 {
            svg.text(
                (layout.left - 6.0, layout.centre(i) + layout.font * 0.35),
                &format!("cpu {}", row.vp),
                &format!(r#"font-size="{}" text-anchor="end""#, num(layout.font)),
            );
        }
    }
}

/// The time axis: grid, ticks on top and bottom, frame and label.
fn draw_time_axis(svg: &mut Svg, layout: &Layout<'_>) {
    let (top, bottom) = (layout.plot_top, layout.bottom());
    for tick in svg::linear_ticks(layout.x_max, 10) {
        let x = layout.x_of(tick);
        svg.line(
            (x, top),
            (x, bottom),
            r##"stroke="#dddddd" stroke-width="0.8""##,
        );
        for y in [top - 6.0, bottom + 14.0] {
            svg.text(
                (x, y),
                &svg::tick_label(tick),
                r#"font-size="10" text-anchor="middle""#,
            );
        }
    }
    svg.rect(
        layout.left,
        top,
        layout.plot_w,
        layout.plot_h,
        r##"fill="none" stroke="#999" stroke-width="1""##,
    );
    svg.text(
        (layout.left + layout.plot_w / 2.0, bottom + 34.0),
        "milliseconds since the BSP's entry",
        r#"font-size="12" text-anchor="middle""#,
    );
}

/// Who started whom: a line from the starter's ready point to the start of
/// each bar, under the bars.
fn draw_links(svg: &mut Svg, rows: &[&BootCpu], layout: &Layout<'_>) {
    let row_of: HashMap<u64, usize> = rows.iter().enumerate().map(|(i, r)| (r.vp, i)).collect();
    for (i, row) in rows.iter().enumerate() {
        let (Some(start), Some(starter)) = (row.start_ms, row.started_by) else {
            continue;
        };
        let Some(&from) = row_of.get(&starter) else {
            continue;
        };
        let from_x = rows[from]
            .ready_ms
            .map_or(layout.x_of(start), |t| layout.x_of(t));
        let attrs = format!(
            r#"class="link" stroke="{}" stroke-width="0.9" stroke-opacity="0.7""#,
            colour(starter)
        );
        let to = (layout.x_of(start), layout.centre(i));
        svg.line((from_x, layout.centre(from)), to, &attrs);
    }
}

/// One row's content: a grey main-kernel or removed row, a hatched failed
/// bar, a started CPU's bar, or a note that there are no times.
fn draw_row(
    svg: &mut Svg,
    i: usize,
    row: &BootCpu,
    main_kernel: &BTreeSet<u64>,
    layout: &Layout<'_>,
) {
    let bar_h = (layout.row_h * 0.7).max(2.0);
    let bar = RowBar {
        y: layout.centre(i) - bar_h / 2.0,
        h: bar_h,
        text_y: layout.centre(i) + layout.font * 0.35,
        small: format!(r#"font-size="{}""#, num(layout.font)),
    };
    match (row.status, row.start_ms, row.ready_ms) {
        (CpuBootStatus::Removed, _, _) => {
            let label = match (row.vp, main_kernel.contains(&row.vp)) {
                (0, _) => "main kernel (BSP)",
                (_, true) => "main kernel",
                _ => "removed",
            };
            draw_grey_row(svg, label, &bar, layout);
        }
        (CpuBootStatus::Failed, start, _) => draw_failed_bar(svg, row, start, &bar, layout),
        (CpuBootStatus::Idle, Some(start), Some(ready)) => {
            draw_started_bar(svg, row, (start, ready), &bar, layout);
            let radius = (layout.row_h * 0.3).min(2.2);
            svg.circle(
                (layout.x_of(start), layout.centre(i)),
                radius,
                r##"fill="#222""##,
            );
        }
        (status @ CpuBootStatus::Idle, _, _) => {
            svg.text(
                (layout.left + 4.0, bar.text_y),
                &format!("{status}, no times"),
                &format!(r##"{} fill="#777""##, bar.small),
            );
        }
    }
}

/// A row's bar: where it goes and the attributes of its small text.
struct RowBar {
    y: f64,
    h: f64,
    text_y: f64,
    small: String,
}

/// A grey row across the plot with its label (main kernel or removed).
fn draw_grey_row(svg: &mut Svg, label: &str, bar: &RowBar, layout: &Layout<'_>) {
    svg.rect(
        layout.left,
        bar.y,
        layout.plot_w,
        bar.h,
        r##"fill="#e9e9e9""##,
    );
    svg.text(
        (layout.left + 4.0, bar.text_y),
        label,
        &format!(
            r##"class="grey" {} fill="#777" font-style="italic""##,
            bar.small
        ),
    );
}

/// A hatched bar from the CPU's start (or 0) to the right edge.
fn draw_failed_bar(
    svg: &mut Svg,
    row: &BootCpu,
    start: Option<f64>,
    bar: &RowBar,
    layout: &Layout<'_>,
) {
    let x = layout.x_of(start.unwrap_or(0.0));
    let attrs =
        format!(r#"class="failed" fill="url(#failed-hatch)" stroke="{FAILED}" stroke-width="1""#);
    let cpu = cpu_name(row);
    let tip = match start {
        Some(start) => format!("{cpu}: started at {start:.3} ms, never came up (failed)"),
        None => format!("{cpu}: failed"),
    };
    let width = layout.right() - x;
    titled_rect(svg, (x, bar.y, width, bar.h), &attrs, &tip);
    if layout.row_h >= 9.0 {
        let attrs = format!(r#"{} fill="{FAILED}" text-anchor="end""#, bar.small);
        svg.text((layout.right() - 4.0, bar.text_y - 1.0), "failed", &attrs);
    }
}

/// A bar in the starter's colour from INIT sent to the CPU ready.
fn draw_started_bar(
    svg: &mut Svg,
    row: &BootCpu,
    (start, ready): (f64, f64),
    bar: &RowBar,
    layout: &Layout<'_>,
) {
    let x = layout.x_of(start);
    let width = (layout.x_of(ready) - x).max(1.0);
    let starter = row.started_by.unwrap_or(0);
    let tip = format!(
        "{}: started by cpu {starter} at {start:.3} ms, ready at {ready:.3} ms ({:.3} ms)",
        cpu_name(row),
        ready - start
    );
    let attrs = format!(r#"class="bar" fill="{}""#, colour(starter));
    titled_rect(svg, (x, bar.y, width, bar.h), &attrs, &tip);
}

/// `cpu 280 (APIC ID 280)` for tooltips: the APIC ID where the report has
/// it, since past 255 CPUs it is what tells x2APIC CPUs apart.
fn cpu_name(row: &BootCpu) -> String {
    match row.apic_id {
        Some(id) => format!("cpu {} (APIC ID {id})", row.vp),
        None => format!("cpu {}", row.vp),
    }
}

/// The dashed line at `boot.ready_ms`.
fn draw_ready_line(svg: &mut Svg, ready: f64, layout: &Layout<'_>) {
    let x = layout.x_of(ready);
    svg.line(
        (x, layout.plot_top - 16.0),
        (x, layout.bottom()),
        r##"stroke="#222" stroke-width="1.2" stroke-dasharray="5 3""##,
    );
    svg.text(
        (x - 4.0, layout.plot_top - 19.0),
        &format!("all ready: {ready:.1} ms"),
        r#"font-size="11" text-anchor="end" font-weight="bold""#,
    );
}

/// A rectangle with a hover text.
fn titled_rect(svg: &mut Svg, (x, y, w, h): (f64, f64, f64, f64), attrs: &str, tip: &str) {
    svg.raw(&format!(
        r#"<rect x="{}" y="{}" width="{}" height="{}" {attrs}><title>{}</title></rect>"#,
        num(x),
        num(y),
        num(w.max(0.0)),
        num(h),
        svg::escape(tip)
    ));
}

/// `sidecar boot: fanout, spec delays, 8 CPUs: ready in 76.1 ms, depth 3`.
fn title(report: &Report, cpus: usize) -> String {
    let boot = &report.boot;
    let word = |name: Option<&'static str>| name.unwrap_or("?");
    let delays = match boot.ap_delay {
        Some(ApDelay::Spec) => "spec delays",
        Some(ApDelay::None) => "no delays",
        None => "? delays",
    };
    let ready = boot
        .ready_ms
        .map_or("?".to_owned(), |ms| format!("{ms:.1} ms"));
    let depth = boot.depth.map_or("?".to_owned(), |d| d.to_string());
    format!(
        "sidecar boot: {}, {delays}, {cpus} CPUs: ready in {ready}, depth {depth}",
        word(boot.strategy.map(|s| s.name())),
    )
}

/// Counts and what the marks mean.
fn subtitle(report: &Report) -> String {
    let count = |value: Option<u64>| value.map_or("?".to_owned(), |n| n.to_string());
    let nodes = report.nodes.as_ref().map_or(1, Vec::len);
    let plural = if nodes == 1 { "" } else { "s" };
    format!(
        "{} sidecar CPUs, {} failed, {nodes} node{plural}. Bar: INIT sent (dot) to CPU up, \
         coloured by its starter; line: from the starter's ready point (the BSP's row for the BSP).",
        count(report.boot.sidecar_cpus),
        count(report.boot.failed),
    )
}

/// One legend entry.
enum Swatch {
    Colour(&'static str),
    Failed,
    Grey,
}

/// The legend: one entry per palette colour in use (naming its starters),
/// then failed and main kernel/removed when present.
fn legend_items(rows: &[&BootCpu]) -> Vec<(Swatch, String)> {
    let mut by_colour: BTreeMap<usize, BTreeSet<u64>> = BTreeMap::new();
    for row in rows {
        if let (Some(starter), Some(_)) = (row.started_by, row.start_ms) {
            let index = (starter % PALETTE.len() as u64) as usize;
            by_colour.entry(index).or_default().insert(starter);
        }
    }
    let mut items: Vec<(Swatch, String)> = by_colour
        .into_iter()
        .map(|(index, starters)| {
            let names: Vec<String> = starters
                .iter()
                .take(3)
                .map(|&vp| match vp {
                    0 => "cpu 0 (BSP)".to_owned(),
                    vp => format!("cpu {vp}"),
                })
                .collect();
            let more = match starters.len() {
                0..=3 => String::new(),
                n => format!(" +{} more", n - 3),
            };
            let label = format!("started by {}{more}", names.join(", "));
            (Swatch::Colour(PALETTE[index]), label)
        })
        .collect();
    if rows.iter().any(|r| r.status == CpuBootStatus::Failed) {
        items.push((Swatch::Failed, "failed (never came up)".to_owned()));
    }
    if rows.iter().any(|r| r.status == CpuBootStatus::Removed) {
        items.push((Swatch::Grey, "main kernel / removed".to_owned()));
    }
    items
}

/// Legend entries placed on lines: (x, entry) per line.
type LegendLines<'a> = Vec<Vec<(f64, &'a (Swatch, String))>>;

/// Places legend entries on lines no wider than `width`.
fn layout_legend(items: &[(Swatch, String)], width: f64) -> LegendLines<'_> {
    let mut lines: Vec<Vec<(f64, &(Swatch, String))>> = vec![Vec::new()];
    let mut x = 10.0;
    for item in items {
        let item_w = 22.0 + 6.3 * item.1.chars().count() as f64 + 16.0;
        if x + item_w > width && x > 10.0 {
            lines.push(Vec::new());
            x = 10.0;
        }
        lines.last_mut().expect("one line at least").push((x, item));
        x += item_w;
    }
    lines.retain(|line| !line.is_empty());
    lines
}

fn draw_legend(svg: &mut Svg, lines: &LegendLines<'_>, top: f64) {
    for (index, line) in lines.iter().enumerate() {
        let y = top + index as f64 * 18.0;
        for (x, (swatch, label)) in line {
            let attrs = match swatch {
                Swatch::Colour(colour) => format!(r#"fill="{colour}""#),
                Swatch::Failed => {
                    format!(r#"fill="url(#failed-hatch)" stroke="{FAILED}" stroke-width="1""#)
                }
                Swatch::Grey => r##"fill="#e9e9e9" stroke="#999" stroke-width="0.5""##.to_owned(),
            };
            svg.rect(*x, y - 9.0, 16.0, 10.0, &attrs);
            svg.text((x + 22.0, y), label, r#"font-size="11""#);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svg::check_balanced;
    use serde_json::{json, Value};

    fn typed(json: Value) -> Report {
        serde_json::from_value(json).unwrap()
    }

    fn report() -> Report {
        typed(json!({
            "boot": {
                "strategy": "fanout", "ap_delay": "spec", "ready_ms": 76.088, "depth": 2,
                "sidecar_cpus": 4, "failed": 1,
                "cpus": [
                    {"vp": 0, "apic_id": 0, "node": 0, "status": "removed"},
                    {"vp": 1, "apic_id": 1, "node": 0, "status": "idle", "started_by": 0, "start_ms": 20.8, "ready_ms": 36.0},
                    {"vp": 2, "apic_id": 2, "node": 0, "status": "failed", "started_by": 0, "start_ms": 35.8},
                    {"vp": 3, "apic_id": 3, "node": 0, "status": "idle", "started_by": 1, "start_ms": 36.2, "ready_ms": 46.7},
                    {"vp": 4, "apic_id": 4, "node": 1, "status": "removed"},
                    {"vp": 5, "apic_id": 5, "node": 1, "status": "idle", "started_by": 0, "start_ms": 46.2, "ready_ms": 71.7},
                    {"vp": 6, "apic_id": 6, "node": 1, "status": "removed"},
                ]
            },
            "nodes": [
                {"index": 0, "base_vp": 0, "vp_count": 4, "sidecar_cpus": 3, "pages": 49},
                {"index": 1, "base_vp": 4, "vp_count": 3, "sidecar_cpus": 1, "pages": 25},
            ]
        }))
    }

    #[test]
    fn draws_one_bar_per_started_cpu() {
        let svg = timeline_svg(&report()).unwrap();
        check_balanced(&svg).unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(svg.matches(r#"class="bar""#).count(), 3, "{svg}");
        assert_eq!(svg.matches(r#"class="failed""#).count(), 1);
        // One link per started CPU, failed included.
        assert_eq!(svg.matches(r#"class="link""#).count(), 4);
        assert!(svg.contains(">main kernel (BSP)<"));
        assert!(svg.contains(">main kernel<"));
        assert_eq!(svg.matches(">removed<").count(), 1);
        for vp in 0..7 {
            assert!(
                svg.contains(&format!(">cpu {vp}<")),
                "no label for cpu {vp}"
            );
        }
        assert!(
            svg.contains("sidecar boot: fanout, spec delays, 7 CPUs: ready in 76.1 ms, depth 2")
        );
        assert!(svg.contains("all ready: 76.1 ms"));
        assert!(svg.contains(">node 1<"));
        // Starters 0 and 1 have their own colours and legend entries.
        assert!(svg.contains("started by cpu 0 (BSP)"));
        assert!(svg.contains("started by cpu 1<"));
        assert!(svg.contains(&format!(r#"class="bar" fill="{}""#, PALETTE[1])));
    }

    #[test]
    fn links_start_at_the_starters_ready_point() {
        let svg = timeline_svg(&report()).unwrap();
        // cpu 3 was started by cpu 1, which was ready at 36.0 ms: the link
        // starts where cpu 1's bar ends.
        let bar_end = svg
            .lines()
            .find(|l| l.contains("cpu 1 (APIC ID 1): started by cpu 0"))
            .map(|l| {
                let attr = |name: &str| -> f64 {
                    let start = l.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
                    l[start..].split('"').next().unwrap().parse().unwrap()
                };
                attr("x") + attr("width")
            })
            .unwrap();
        let link = svg
            .lines()
            .filter(|l| l.contains(r#"class="link""#))
            .nth(2)
            .unwrap();
        assert!(
            link.contains(&format!("x1=\"{}\"", num(bar_end))),
            "{link} vs {bar_end}"
        );
    }

    #[test]
    fn large_machines_thin_out_the_labels() {
        let cpus: Vec<Value> = (0..255u64)
            .map(|vp| match vp {
                0 | 32 => json!({"vp": vp, "node": vp / 32, "status": "removed"}),
                vp => json!({
                    "vp": vp, "node": vp / 32, "status": "idle", "started_by": vp / 2,
                    "start_ms": vp as f64, "ready_ms": vp as f64 + 10.0
                }),
            })
            .collect();
        let report = json!({"boot": {"cpus": cpus}, "nodes": [{"base_vp": 0}, {"base_vp": 32}]});
        let svg = timeline_svg(&typed(report)).unwrap();
        check_balanced(&svg).unwrap();
        assert_eq!(svg.matches(r#"class="bar""#).count(), 253);
        assert!(svg.contains(">cpu 252<") && svg.contains(">cpu 32<"));
        assert!(
            !svg.contains(">cpu 1<"),
            "every row labelled at 5 px per row"
        );
        assert!(
            svg.contains("+"),
            "the legend names a few starters per colour"
        );
    }

    /// 288 CPUs in 9 nodes of 32 as the fan-out starts them under KVM:
    /// the BSP starts each node's first sidecar CPU, which starts the next
    /// ones in rounds; each node's base VP runs the main kernel.
    fn report_288() -> Report {
        let cpus: Vec<Value> = (0..288u64)
            .map(|vp| {
                let (node, base) = (vp / 32, vp / 32 * 32);
                let round = (vp - base).max(1).ilog2() as f64;
                match vp - base {
                    0 => json!({"vp": vp, "apic_id": vp, "node": node, "status": "removed"}),
                    1 => json!({
                        "vp": vp, "apic_id": vp, "node": node, "status": "idle",
                        "started_by": 0, "start_ms": 5.0 + node as f64 * 0.4,
                        "ready_ms": 6.0 + node as f64 * 0.4
                    }),
                    i => json!({
                        "vp": vp, "apic_id": vp, "node": node, "status": "idle",
                        "started_by": base + i / 2, "start_ms": 6.0 + node as f64 * 0.4 + round,
                        "ready_ms": 6.8 + node as f64 * 0.4 + round
                    }),
                }
            })
            .collect();
        let nodes: Vec<Value> = (0..9u64)
            .map(|i| json!({"index": i, "base_vp": i * 32}))
            .collect();
        typed(json!({
            "boot": {"strategy": "fanout", "ap_delay": "none", "ready_ms": 15.2, "depth": 6,
                     "sidecar_cpus": 279, "failed": 0, "cpus": cpus},
            "nodes": nodes
        }))
    }

    #[test]
    fn the_largest_machine_stays_readable() {
        let svg = timeline_svg(&report_288()).unwrap();
        check_balanced(&svg).unwrap();
        assert_eq!(svg.matches(r#"class="bar""#).count(), 279);
        assert_eq!(svg.matches(">main kernel<").count(), 8);
        for node in 0..9 {
            assert!(svg.contains(&format!(">node {node}<")), "node {node}");
        }
        // 5 px rows, a label on every 4th, so that they stay 20 px apart.
        assert!(svg.contains(">cpu 284<") && !svg.contains(">cpu 285<"));
        let height: f64 = svg
            .split("height=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|h| h.parse().ok())
            .unwrap();
        assert!((1440.0..2000.0).contains(&height), "height {height}");
        assert!(svg.contains("cpu 287 (APIC ID 287): started by cpu 271 at "));
        assert!(svg.contains("sidecar boot: fanout, no delays, 288 CPUs: ready in 15.2 ms"));
    }

    #[test]
    fn reports_without_cpus_are_errors() {
        let err = timeline_svg(&typed(json!({"result": "fail"}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot draw the boot timeline: the report has no boot.cpus list"
        );
        assert!(timeline_svg(&typed(json!({"boot": {"cpus": []}}))).is_err());
        // An entry without its VP does not even make a report.
        let entry = json!({"boot": {"cpus": [{"status": "idle"}]}});
        let err = serde_json::from_value::<Report>(entry).unwrap_err();
        assert!(err.to_string().contains("missing field `vp`"), "{err}");
    }
}
