//! The charts of `report.html`, drawn with `plotters` (SVG backend) into strings that the page
//! inlines. Built without plotters' font support: text is sized by plotters' estimate and
//! written as SVG `<text>`, which the browser renders, so the page needs no fonts, scripts or
//! other files.
//!
//! Rendering never panics and never hangs: plotters' tick search asserts on NaN and does not
//! end on an infinite span, so only finite values of bounded size reach it ([`usable`]), every
//! axis range is non-empty ([`span`]), and a drawing error becomes a note in the page
//! ([`svg_or_note`]).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeMap;
use std::ops::Range;

/// Chart size in pixels: fits the page (max-width 900px) with the legend panel on the right.
const SIZE: (u32, u32) = (880, 340);
/// Width of the legend panel, enough for "node 12 (future-timestamp)" at the legend font.
const LEGEND_W: u32 = 200;
/// Height of one legend row and of one row of event labels.
const ROW_H: i32 = 17;
/// First legend row, level with the top of the plot.
const LEGEND_TOP: i32 = 48;
/// Legend rows that fit under [`LEGEND_TOP`] in [`SIZE`]; further entries become "+k more".
const LEGEND_ROWS: usize = 16;
/// Rows of event labels above the plot; a label that fits in no row is left out (its line stays).
const EVENT_LABEL_ROWS: usize = 2;
/// Event labels are cut to this many characters (a partition label lists every node).
const EVENT_LABEL_CHARS: usize = 32;
/// Events closer than this many pixels share one label, so coinciding events do not overprint.
const EVENT_MERGE_PX: i32 = 3;
/// Largest magnitude plotted. Report values are seconds, milliseconds and scores; anything
/// bigger is garbage, and a huge span would make plotters' tick search loop for ever.
const MAX_ABS: f64 = 1e12;
/// Font family of every text (generic, so the browser picks an installed font).
const FONT: &str = "sans-serif";

/// Line colors of correct nodes: matplotlib's tab10 and tab20 without reds, oranges and pinks,
/// which are kept for [`BAD`] so the two sets never share a color.
pub const GOOD: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(188, 189, 34),
    RGBColor(127, 127, 127),
    RGBColor(174, 199, 232),
    RGBColor(152, 223, 138),
    RGBColor(197, 176, 213),
];
/// Line colors of Byzantine and Sybil peers: reds, oranges and pinks, so attackers stand out.
pub const BAD: [RGBColor; 4] = [RGBColor(214, 39, 40), RGBColor(255, 127, 14), RGBColor(227, 119, 194), RGBColor(140, 0, 0)];
/// Color of timeline event lines and their labels (dark, so it differs from every series).
const EVENT_COLOR: RGBColor = RGBColor(60, 60, 60);
/// Grid lines at labelled ticks.
const GRID: RGBColor = RGBColor(225, 225, 225);
/// Grid lines between labelled ticks.
const GRID_LIGHT: RGBColor = RGBColor(245, 245, 245);

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Line {
    /// Legend name.
    pub name: String,
    /// Its color.
    pub color: RGBColor,
    /// Points in data coordinates, in drawing order; unusable ones are skipped.
    pub points: Vec<(f64, f64)>,
}

/// A timeline event, drawn as a dashed vertical line with a label above the plot.
#[derive(Clone, Debug)]
pub struct Event {
    /// Where, in x data coordinates.
    pub x: f64,
    /// What, in a few words.
    pub label: String,
}

/// A point mark (a conviction), drawn with the marker of its kind.
#[derive(Clone, Debug)]
pub struct Mark {
    /// Position in data coordinates.
    pub x: f64,
    /// Position in data coordinates.
    pub y: f64,
    /// Kind (a peer status such as "graylisted"): picks the marker and the legend entry.
    pub kind: String,
}

/// What one chart shows.
pub struct Chart<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// X axis description.
    pub x_label: &'a str,
    /// Y axis description.
    pub y_label: &'a str,
    /// The lines.
    pub lines: Vec<Line>,
    /// Vertical event lines.
    pub events: Vec<Event>,
    /// Point marks.
    pub marks: Vec<Mark>,
    /// A fixed y range (a CDF is 0 to 1); `None` fits the data.
    pub y_range: Option<Range<f64>>,
    /// Whether the x axis starts at 0 or lower (latencies and times since the start of a run
    /// are never negative, and a shifted origin would misstate them).
    pub x_from_zero: bool,
}

/// Marker shapes for point marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// An x.
    Cross,
    /// A filled triangle.
    Triangle,
    /// A ring.
    Circle,
}

/// What a legend row shows before its text.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Key {
    /// A line segment in this color.
    Line(RGBColor),
    /// A marker.
    Marker(Shape),
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Plot<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;
type DrawResult<T> = Result<T, DrawingAreaErrorKind<std::io::Error>>;

/// The chart as an inline `<svg>`, or a short note saying why it could not be drawn (the page
/// is still worth having without one plot).
pub fn svg_or_note(chart: &Chart) -> String {
    svg(chart).unwrap_or_else(|e| format!("<p class=\"note\">plot unavailable: {}</p>", super::esc(&e)))
}

/// The chart as an SVG document (`<svg ...>...</svg>`).
pub fn svg(chart: &Chart) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        draw(&root, chart).and_then(|()| root.present()).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Lays out title, plot and legend panel, then draws the parts.
fn draw(root: &Area, c: &Chart) -> DrawResult<()> {
    root.fill(&WHITE)?;
    let (left, legend) = root.split_horizontally(SIZE.0 - LEGEND_W);
    let below_title = left.titled(c.title, (FONT, 18))?;
    let label_band = if c.events.is_empty() { 4 } else { ROW_H * EVENT_LABEL_ROWS as i32 + 6 };
    let plot_area = below_title.margin(label_band, 0, 0, 8);
    let x = span(c.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)).chain(c.marks.iter().map(|m| m.x)).chain(c.events.iter().map(|e| e.x)).chain(c.x_from_zero.then_some(0.0)));
    let y = match &c.y_range {
        Some(r) if usable(r.start) && usable(r.end) && r.start < r.end => r.clone(),
        _ => padded(span(c.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).chain(c.marks.iter().map(|m| m.y)))),
    };
    let mut chart = ChartBuilder::on(&plot_area).x_label_area_size(44).y_label_area_size(64).build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(c.x_label)
        .y_desc(c.y_label)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .bold_line_style(GRID)
        .light_line_style(GRID_LIGHT)
        .draw()?;
    draw_events(root, &mut chart, &c.events)?;
    draw_lines(&mut chart, &c.lines)?;
    draw_marks(root, &chart, &c.marks)?;
    draw_legend(&legend, &legend_entries(c))
}

/// Whether a value can be plotted: finite and of sane size (see [`MAX_ABS`]).
fn usable(v: f64) -> bool {
    v.is_finite() && v.abs() <= MAX_ABS
}

/// The range covering the usable values, never empty: plotters needs `start < end`. No values
/// give 0..1; (nearly) equal values get ±0.5, or ±5% of the value if larger, around them.
fn span(values: impl IntoIterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values.into_iter().filter(|v| usable(*v)).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0.0..1.0;
    }
    let half = 0.5_f64.max(lo.abs() * 0.05);
    if hi - lo < 1e-9 * half { (lo - half)..(hi + half) } else { lo..hi }
}

/// A tick label: whole numbers without decimals ("500", not plotters' "500.0"), others with
/// at most three, trailing zeros cut (ticks like 0.30000000000000004 print as "0.3").
fn tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        return format!("{:.0}", v.round() + 0.0);
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `r` with 5% room above and below, so lines at the extremes stay off the frame.
fn padded(r: Range<f64>) -> Range<f64> {
    let pad = (r.end - r.start) * 0.05;
    (r.start - pad)..(r.end + pad)
}

/// The lines, each a legend entry; unusable points are dropped.
fn draw_lines(chart: &mut Plot, lines: &[Line]) -> DrawResult<()> {
    for line in lines {
        let points: Vec<(f64, f64)> = line.points.iter().copied().filter(|(x, y)| usable(*x) && usable(*y)).collect();
        chart.draw_series(LineSeries::new(points, line.color.stroke_width(2)))?;
    }
    Ok(())
}

/// Dashed vertical lines across the plot, labels in the band above it.
fn draw_events(root: &Area, chart: &mut Plot, events: &[Event]) -> DrawResult<()> {
    let y = chart.y_range();
    let mut at: Vec<(i32, String)> = Vec::new();
    for e in events.iter().filter(|e| usable(e.x)) {
        chart.draw_series(DashedLineSeries::new([(e.x, y.start), (e.x, y.end)], 6, 4, EVENT_COLOR.stroke_width(1)))?;
        at.push((chart.backend_coord(&(e.x, y.end)).0, e.label.clone()));
    }
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let style = TextStyle::from((FONT, 13).into_font()).color(&EVENT_COLOR).pos(Pos::new(HPos::Left, VPos::Bottom));
    let labels = merge_labels(at);
    let mut sized = Vec::with_capacity(labels.len());
    for (px, text) in &labels {
        let (w, _) = root.estimate_text_size(text, &style)?;
        sized.push((*px, i32::try_from(w).unwrap_or(i32::MAX / 2)));
    }
    for ((x, row), (_, text)) in place_labels(&sized, xs.end, EVENT_LABEL_ROWS).into_iter().zip(&labels).filter_map(|(p, l)| p.map(|p| (p, l))) {
        let baseline = ys.start - 3 - ROW_H * row as i32;
        root.draw(&Text::new(text.as_str(), (x, baseline), style.clone()))?;
    }
    Ok(())
}

/// Sorts event labels by pixel x and joins those within [`EVENT_MERGE_PX`] into one label,
/// cut to [`EVENT_LABEL_CHARS`].
fn merge_labels(mut at: Vec<(i32, String)>) -> Vec<(i32, String)> {
    at.sort_by_key(|(x, _)| *x);
    let mut out: Vec<(i32, String)> = Vec::new();
    for (x, label) in at {
        match out.last_mut() {
            Some((px, text)) if x - *px <= EVENT_MERGE_PX => {
                text.push_str(", ");
                text.push_str(&label);
            }
            _ => out.push((x, label)),
        }
    }
    for (_, text) in &mut out {
        if text.chars().count() > EVENT_LABEL_CHARS {
            *text = text.chars().take(EVENT_LABEL_CHARS - 1).chain(['…']).collect();
        }
    }
    out
}

/// Places labels (pixel x of their line, width), sorted by x, right of their line (or left
/// of `right_edge` if they would cross it) in the first of `rows` rows (row 0 next to the plot)
/// where they do not touch an earlier label: `(x, row)`, or `None` when no row is free.
fn place_labels(labels: &[(i32, i32)], right_edge: i32, rows: usize) -> Vec<Option<(i32, usize)>> {
    let mut ends = vec![i32::MIN; rows];
    labels
        .iter()
        .map(|&(px, w)| {
            let x = (px + 3).min(right_edge.saturating_sub(w)).max(0);
            let row = ends.iter().position(|end| x > end.saturating_add(6))?;
            ends[row] = x.saturating_add(w);
            Some((x, row))
        })
        .collect()
}

/// The marker for a peer status: x for graylisted (the usual conviction), a triangle for
/// banned, a ring for anything else.
fn shape_for(kind: &str) -> Shape {
    match kind {
        "graylisted" => Shape::Cross,
        "banned" => Shape::Triangle,
        _ => Shape::Circle,
    }
}

/// Draws one marker at a pixel position of `area`.
fn draw_marker(area: &Area, at: (i32, i32), shape: Shape) -> DrawResult<()> {
    match shape {
        Shape::Cross => area.draw(&Cross::new(at, 4, BLACK.stroke_width(2))),
        Shape::Triangle => area.draw(&TriangleMarker::new(at, 5, BLACK.filled())),
        Shape::Circle => area.draw(&Circle::new(at, 4, BLACK.stroke_width(2))),
    }
}

/// The point marks, on top of the lines; unusable ones are skipped.
fn draw_marks(root: &Area, chart: &Plot, marks: &[Mark]) -> DrawResult<()> {
    for m in marks.iter().filter(|m| usable(m.x) && usable(m.y)) {
        draw_marker(root, chart.backend_coord(&(m.x, m.y)), shape_for(&m.kind))?;
    }
    Ok(())
}

/// Legend rows: every line, then one row per kind of mark.
fn legend_entries(c: &Chart) -> Vec<(Key, String)> {
    let mut rows: Vec<(Key, String)> = c.lines.iter().map(|l| (Key::Line(l.color), l.name.clone())).collect();
    let kinds: BTreeMap<&str, ()> = c.marks.iter().map(|m| (m.kind.as_str(), ())).collect();
    rows.extend(kinds.keys().map(|k| (Key::Marker(shape_for(k)), format!("{k} by an honest node"))));
    rows
}

/// The legend panel: at most [`LEGEND_ROWS`] rows, the last one "+k more" if they overflow.
fn draw_legend(area: &Area, rows: &[(Key, String)]) -> DrawResult<()> {
    let style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let shown = if rows.len() > LEGEND_ROWS { LEGEND_ROWS - 1 } else { rows.len() };
    for (i, (key, name)) in rows.iter().take(shown).enumerate() {
        let y = LEGEND_TOP + ROW_H * i as i32;
        match key {
            Key::Line(color) => area.draw(&PathElement::new(vec![(6, y), (28, y)], color.stroke_width(3)))?,
            Key::Marker(shape) => draw_marker(area, (17, y), *shape)?,
        }
        area.draw(&Text::new(name.as_str(), (34, y), style.clone()))?;
    }
    if shown < rows.len() {
        let y = LEGEND_TOP + ROW_H * shown as i32;
        area.draw(&Text::new(format!("+{} more", rows.len() - shown), (34, y), style))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(lines: Vec<Line>, events: Vec<Event>, marks: Vec<Mark>) -> Chart<'static> {
        Chart { title: "t <&> title", x_label: "seconds", y_label: "value", lines, events, marks, y_range: None, x_from_zero: false }
    }

    fn line(points: Vec<(f64, f64)>) -> Line {
        Line { name: "node 0 (honest)".into(), color: GOOD[0], points }
    }

    fn render(c: &Chart) -> String {
        svg(c).expect("chart renders")
    }

    fn assert_valid(s: &str) {
        assert!(s.starts_with("<svg"), "{}", &s[..s.len().min(200)]);
        assert!(s.trim_end().ends_with("</svg>"));
        assert!(!s.contains("NaN") && !s.contains("inf"), "non-finite coordinate in {s}");
    }

    #[test]
    fn empty_chart_is_valid_svg_with_title_and_axis_labels() {
        let s = render(&chart(vec![], vec![], vec![]));
        assert_valid(&s);
        assert!(s.contains("t &lt;&amp;&gt; title"), "title is escaped");
        assert!(s.contains(">seconds") || s.contains("seconds\n"), "x label");
    }

    #[test]
    fn empty_series_is_valid_svg_and_keeps_its_legend_entry() {
        let s = render(&chart(vec![line(vec![])], vec![], vec![]));
        assert_valid(&s);
        assert!(s.contains("node 0 (honest)"));
    }

    #[test]
    fn single_point_renders() {
        let s = render(&chart(vec![line(vec![(2.0, 5.0)])], vec![], vec![]));
        assert_valid(&s);
    }

    #[test]
    fn equal_values_get_a_non_empty_range() {
        assert_eq!(span([3.0, 3.0, 3.0]), 2.5..3.5);
        assert_eq!(span([]), 0.0..1.0);
        let r = span([1e9, 1e9]);
        assert!(r.start < 1e9 && r.end > 1e9);
        let s = render(&chart(vec![line(vec![(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)])], vec![], vec![]));
        assert_valid(&s);
    }

    #[test]
    fn non_finite_and_huge_values_are_skipped() {
        assert_eq!(span([f64::NAN, 1.0, f64::INFINITY, 3.0, f64::NEG_INFINITY, 1e300]), 1.0..3.0);
        let points = vec![(0.0, 1.0), (f64::NAN, 2.0), (1.0, f64::INFINITY), (2.0, 3.0), (1e300, -1e300)];
        let events = vec![Event { x: f64::NAN, label: "nan".into() }, Event { x: 1.0, label: "attack".into() }];
        let marks = vec![Mark { x: f64::INFINITY, y: 0.0, kind: "graylisted".into() }];
        let s = render(&chart(vec![line(points)], events, marks));
        assert_valid(&s);
        assert!(s.contains("attack") && !s.contains(">nan"));
    }

    #[test]
    fn only_non_finite_values_render_an_empty_chart() {
        let s = render(&chart(vec![line(vec![(f64::NAN, f64::NAN)])], vec![Event { x: f64::INFINITY, label: "x".into() }], vec![]));
        assert_valid(&s);
    }

    #[test]
    fn bad_fixed_y_range_falls_back_to_the_data() {
        let mut c = chart(vec![line(vec![(0.0, 1.0), (1.0, 2.0)])], vec![], vec![]);
        c.y_range = Some(1.0..1.0);
        assert_valid(&render(&c));
        c.y_range = Some(f64::NAN..1.0);
        assert_valid(&render(&c));
    }

    #[test]
    fn events_and_marks_are_drawn_with_legend_rows_for_mark_kinds() {
        let events = vec![Event { x: 1.0, label: "attack".into() }, Event { x: 3.0, label: "kill node 2".into() }];
        let marks = vec![Mark { x: 1.5, y: -2.0, kind: "graylisted".into() }, Mark { x: 2.0, y: -9.0, kind: "banned".into() }];
        let s = render(&chart(vec![line(vec![(0.0, 0.0), (4.0, -10.0)])], events, marks));
        assert_valid(&s);
        for text in ["attack", "kill node 2", "graylisted by an honest node", "banned by an honest node"] {
            assert!(s.contains(text), "missing {text}");
        }
        assert!(s.contains("<polygon"), "banned is a filled triangle");
    }

    #[test]
    fn correct_and_attacker_colors_differ() {
        assert!(GOOD.iter().all(|g| !BAD.contains(g)));
    }

    #[test]
    fn ticks_print_whole_numbers_without_decimals() {
        assert_eq!(tick(&500.0), "500");
        assert_eq!(tick(&-0.0), "0");
        assert_eq!(tick(&0.30000000000000004), "0.3");
        assert_eq!(tick(&-2.5), "-2.5");
        assert_eq!(tick(&0.125), "0.125");
    }

    #[test]
    fn coinciding_events_share_one_cut_label() {
        let merged = merge_labels(vec![(100, "kill node 3".into()), (10, "attack".into()), (101, "attack end and a very long tail".into())]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0], (10, "attack".into()));
        assert_eq!(merged[1].1.chars().count(), EVENT_LABEL_CHARS);
        assert!(merged[1].1.starts_with("kill node 3, attack end") && merged[1].1.ends_with('…'));
    }

    #[test]
    fn event_labels_take_the_first_free_row_or_none() {
        let placed = place_labels(&[(0, 50), (20, 50), (40, 50), (200, 50), (780, 50)], 800, 2);
        assert_eq!(placed, vec![Some((3, 0)), Some((23, 1)), None, Some((203, 0)), Some((750, 0))]);
    }

    #[test]
    fn legend_overflow_is_summarized() {
        let lines = (0..40).map(|i| Line { name: format!("node {i}"), color: GOOD[i % GOOD.len()], points: vec![(i as f64, 1.0)] }).collect();
        let s = render(&chart(lines, vec![], vec![]));
        assert_valid(&s);
        assert!(s.contains(&format!("+{} more", 40 - (LEGEND_ROWS - 1))));
        assert!(!s.contains("node 39"));
    }
}
