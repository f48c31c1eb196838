//! Charts as inline SVG: line and scatter plots on linear or log axes, horizontal bars, heat maps
//! and histograms, each with a title, axis labels with units, ticks and a legend. Written by hand
//! rather than with plotters: the charts here are a few hundred lines of plain SVG text, need no
//! fonts or raster backend, and stay byte-for-byte stable for snapshot tests.

use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 52.0;
/// Series colours (colour-blind-safe Okabe-Ito order).
pub const COLORS: [&str; 8] = [
    "#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#f0e442", "#000000",
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    Linear,
    Log,
}

/// One axis: its label (with the unit) and scale; the range comes from the data unless fixed.
#[derive(Clone, Debug)]
pub struct Axis {
    pub label: String,
    pub scale: Scale,
    pub range: Option<(f64, f64)>,
}

impl Axis {
    pub fn linear(label: &str) -> Axis {
        Axis {
            label: label.to_owned(),
            scale: Scale::Linear,
            range: None,
        }
    }

    pub fn log(label: &str) -> Axis {
        Axis {
            label: label.to_owned(),
            scale: Scale::Log,
            range: None,
        }
    }

    pub fn fixed(mut self, low: f64, high: f64) -> Axis {
        self.range = Some((low, high));
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mark {
    Line,
    Dashed,
    Dots,
}

#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub mark: Mark,
}

impl Series {
    pub fn new(name: &str, points: Vec<(f64, f64)>, mark: Mark) -> Series {
        Series {
            name: name.to_owned(),
            points,
            mark,
        }
    }
}

/// A vertical rule at `x` with a label (e.g. the early-stopping point).
#[derive(Clone, Debug)]
pub struct Rule {
    pub x: f64,
    pub label: String,
}

/// Text safe inside SVG and HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number as a tick label: short, no trailing zeros.
pub fn number(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let magnitude = value.abs();
    if !(1e-3..1e6).contains(&magnitude) {
        return format!("{value:.0e}");
    }
    let text = if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Round tick positions covering `low..high` (1, 2 or 5 times a power of ten apart).
fn linear_ticks(low: f64, high: f64) -> Vec<f64> {
    let span = (high - low).abs().max(1e-12);
    let raw = span / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|factor| factor * power)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * power);
    let mut ticks = Vec::new();
    let mut tick = (low / step).ceil() * step;
    while tick <= high + step * 1e-9 && ticks.len() < 20 {
        ticks.push(if tick.abs() < step * 1e-9 { 0.0 } else { tick });
        tick += step;
    }
    ticks
}

struct Frame {
    x: (f64, f64, Scale),
    y: (f64, f64, Scale),
}

impl Frame {
    fn position(value: f64, (low, high, scale): (f64, f64, Scale), from: f64, to: f64) -> f64 {
        let (value, low, high) = match scale {
            Scale::Linear => (value, low, high),
            Scale::Log => (value.max(1e-300).log10(), low.log10(), high.log10()),
        };
        let fraction = if high > low {
            (value - low) / (high - low)
        } else {
            0.5
        };
        from + fraction.clamp(-0.05, 1.05) * (to - from)
    }

    fn px(&self, x: f64) -> f64 {
        Frame::position(x, self.x, LEFT, WIDTH - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        Frame::position(y, self.y, HEIGHT - BOTTOM, TOP)
    }
}

fn range(values: impl Iterator<Item = f64>, axis: &Axis) -> (f64, f64, Scale) {
    if let Some((low, high)) = axis.range {
        return (low, high, axis.scale);
    }
    let (mut low, mut high) = values
        .filter(|value| value.is_finite() && (axis.scale == Scale::Linear || *value > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
            (low.min(value), high.max(value))
        });
    if low > high {
        (low, high) = (0.0, 1.0);
    }
    match axis.scale {
        Scale::Log => {
            let low = 10f64.powf(low.log10().floor());
            let high = 10f64.powf(high.log10().ceil().max(low.log10() + 1.0));
            (low, high, Scale::Log)
        }
        Scale::Linear => {
            if high - low < 1e-12 {
                (low - 0.5, high + 0.5, Scale::Linear)
            } else {
                let pad = (high - low) * 0.04;
                (low - pad, high + pad, Scale::Linear)
            }
        }
    }
}

fn open(svg: &mut String, title: &str) {
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\" role=\"img\"><title>{}</title><rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fff\"/><text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        escape(title),
        WIDTH / 2.0,
        escape(title)
    );
}

/// Axes with ticks, grid lines and labels.
fn axes(svg: &mut String, frame: &Frame, x: &Axis, y: &Axis) {
    let (x_low, x_high, x_scale) = frame.x;
    let (y_low, y_high, y_scale) = frame.y;
    let ticks = |low: f64, high: f64, scale: Scale| -> Vec<f64> {
        match scale {
            Scale::Linear => linear_ticks(low, high),
            Scale::Log => {
                let mut ticks = Vec::new();
                let mut tick = low;
                while tick <= high * 1.000001 && ticks.len() < 20 {
                    ticks.push(tick);
                    tick *= 10.0;
                }
                ticks
            }
        }
    };
    for tick in ticks(x_low, x_high, x_scale) {
        let at = frame.px(tick);
        let _ = write!(
            svg,
            "<line x1=\"{at:.1}\" x2=\"{at:.1}\" y1=\"{TOP}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{at:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 16.0,
            number(tick)
        );
    }
    for tick in ticks(y_low, y_high, y_scale) {
        let at = frame.py(tick);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{at:.1}\" y2=\"{at:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            at + 4.0,
            number(tick)
        );
    }
    let _ = write!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text><text transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        WIDTH - LEFT - RIGHT,
        HEIGHT - TOP - BOTTOM,
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 12.0,
        escape(&x.label),
        (TOP + HEIGHT - BOTTOM) / 2.0,
        escape(&y.label)
    );
}

fn legend(svg: &mut String, names: &[(String, &str, Mark)]) {
    if names.len() < 2 {
        return;
    }
    for (index, (name, color, mark)) in names.iter().enumerate() {
        let y = TOP + 14.0 + index as f64 * 16.0;
        let x = WIDTH - RIGHT - 170.0;
        let sample = match mark {
            Mark::Dots => format!(
                "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{color}\"/>",
                x + 8.0,
                y - 4.0
            ),
            Mark::Line | Mark::Dashed => format!(
                "<line x1=\"{x}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"2\"{}/>",
                x + 16.0,
                y - 4.0,
                y - 4.0,
                if *mark == Mark::Dashed {
                    " stroke-dasharray=\"4 3\""
                } else {
                    ""
                }
            ),
        };
        let _ = write!(
            svg,
            "{sample}<text x=\"{}\" y=\"{y}\">{}</text>",
            x + 22.0,
            escape(name)
        );
    }
}

/// Lines or dots of one or more series on shared axes, with optional vertical rules.
pub fn plot(title: &str, x: &Axis, y: &Axis, series: &[Series], rules: &[Rule]) -> String {
    let frame = Frame {
        x: range(
            series
                .iter()
                .flat_map(|series| series.points.iter().map(|point| point.0))
                .chain(rules.iter().map(|rule| rule.x)),
            x,
        ),
        y: range(
            series
                .iter()
                .flat_map(|series| series.points.iter().map(|point| point.1)),
            y,
        ),
    };
    let mut svg = String::new();
    open(&mut svg, title);
    axes(&mut svg, &frame, x, y);
    let finite = |point: &&(f64, f64)| {
        point.0.is_finite()
            && point.1.is_finite()
            && (x.scale == Scale::Linear || point.0 > 0.0)
            && (y.scale == Scale::Linear || point.1 > 0.0)
    };
    for (index, series) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        match series.mark {
            Mark::Dots => {
                for point in series.points.iter().filter(finite) {
                    let _ = write!(
                        svg,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{color}\" fill-opacity=\"0.6\"/>",
                        frame.px(point.0),
                        frame.py(point.1)
                    );
                }
            }
            Mark::Line | Mark::Dashed => {
                let path: Vec<String> = series
                    .points
                    .iter()
                    .filter(finite)
                    .map(|point| format!("{:.1},{:.1}", frame.px(point.0), frame.py(point.1)))
                    .collect();
                if !path.is_empty() {
                    let _ = write!(
                        svg,
                        "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{}/>",
                        path.join(" "),
                        if series.mark == Mark::Dashed {
                            " stroke-dasharray=\"5 4\""
                        } else {
                            ""
                        }
                    );
                }
            }
        }
    }
    for rule in rules {
        let at = frame.px(rule.x);
        // The label goes on the side of the rule with room for it.
        let (anchor, offset) = if at > WIDTH * 0.6 {
            ("end", -4.0)
        } else {
            ("start", 4.0)
        };
        let _ = write!(
            svg,
            "<line x1=\"{at:.1}\" x2=\"{at:.1}\" y1=\"{TOP}\" y2=\"{}\" stroke=\"#d55e00\" stroke-dasharray=\"3 3\"/><text x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\" fill=\"#d55e00\">{}</text>",
            HEIGHT - BOTTOM,
            at + offset,
            HEIGHT - BOTTOM - 8.0,
            escape(&rule.label)
        );
    }
    let names: Vec<(String, &str, Mark)> = series
        .iter()
        .enumerate()
        .map(|(index, series)| {
            (
                series.name.clone(),
                COLORS[index % COLORS.len()],
                series.mark,
            )
        })
        .collect();
    legend(&mut svg, &names);
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars, one per label, in the order given; values at the bar ends.
pub fn bars(title: &str, value_label: &str, bars: &[(String, f64)]) -> String {
    let row = 18.0;
    let height = TOP + BOTTOM + row * bars.len().max(1) as f64;
    let left = 10.0
        + 7.0
            * bars
                .iter()
                .map(|(label, _)| label.chars().count().min(28))
                .max()
                .unwrap_or(4) as f64;
    let high = bars
        .iter()
        .map(|(_, value)| *value)
        .filter(|value| value.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-12);
    let width_of = |value: f64| (value.max(0.0) / high) * (WIDTH - left - 90.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\" role=\"img\"><title>{}</title><rect width=\"{WIDTH}\" height=\"{height}\" fill=\"#fff\"/><text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        escape(title),
        WIDTH / 2.0,
        escape(title)
    );
    for (index, (label, value)) in bars.iter().enumerate() {
        let y = TOP + index as f64 * row;
        let label: String = label.chars().take(28).collect();
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            left - 6.0,
            y + 13.0,
            escape(&label),
            y + 2.0,
            width_of(*value),
            row - 4.0,
            COLORS[0],
            left + width_of(*value) + 4.0,
            y + 13.0,
            number(*value)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text></svg>",
        (left + WIDTH - 90.0) / 2.0,
        height - 16.0,
        escape(value_label)
    );
    svg
}

/// A grid of values coloured from white to blue, each cell labelled with its value.
pub fn heat_map(
    title: &str,
    row_axis: &str,
    column_axis: &str,
    rows: &[String],
    columns: &[String],
    values: &[Vec<f64>],
) -> String {
    let cell_width = ((WIDTH - LEFT - RIGHT - 60.0) / columns.len().max(1) as f64).min(90.0);
    let cell_height = ((HEIGHT - TOP - BOTTOM) / rows.len().max(1) as f64).min(40.0);
    let (low, high) = values
        .iter()
        .flatten()
        .filter(|value| value.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
            (low.min(*value), high.max(*value))
        });
    let left = LEFT + 50.0;
    let mut svg = String::new();
    open(&mut svg, title);
    for (row, label) in rows.iter().enumerate() {
        let y = TOP + row as f64 * cell_height;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + cell_height / 2.0 + 4.0,
            escape(label)
        );
        for (column, value) in values.get(row).into_iter().flatten().enumerate() {
            let fraction = if high > low && value.is_finite() {
                (value - low) / (high - low)
            } else {
                0.0
            };
            let shade = (255.0 - fraction * 200.0).round() as u8;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{cell_width:.1}\" height=\"{cell_height:.1}\" fill=\"rgb({shade},{},255)\" stroke=\"#fff\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{}\">{}</text>",
                left + column as f64 * cell_width,
                (255.0 - fraction * 120.0).round() as u8,
                left + (column as f64 + 0.5) * cell_width,
                y + cell_height / 2.0 + 4.0,
                if fraction > 0.6 { "#fff" } else { "#000" },
                number(*value)
            );
        }
    }
    for (column, label) in columns.iter().enumerate() {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            left + (column as f64 + 0.5) * cell_width,
            TOP + rows.len() as f64 * cell_height + 16.0,
            escape(label)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text><text transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">{}</text></svg>",
        left + columns.len() as f64 * cell_width / 2.0,
        TOP + rows.len() as f64 * cell_height + 36.0,
        escape(column_axis),
        TOP + rows.len() as f64 * cell_height / 2.0,
        escape(row_axis)
    );
    svg
}

/// Counts of `values` in `bins` equal bins over `low..high` (values outside are clamped in).
pub fn bin_counts(values: &[f64], low: f64, high: f64, bins: usize) -> Vec<u64> {
    let mut counts = vec![0u64; bins.max(1)];
    let span = (high - low).max(1e-300);
    for value in values.iter().filter(|value| value.is_finite()) {
        let at = (((value - low) / span) * bins as f64).floor();
        counts[(at.max(0.0) as usize).min(bins.max(1) - 1)] += 1;
    }
    counts
}

/// One or more histograms over the same bins (`low..high` in equal steps), as outlined steps.
pub fn histogram(
    title: &str,
    x: &Axis,
    y_label: &str,
    (low, high): (f64, f64),
    series: &[(String, Vec<u64>)],
) -> String {
    let stepped: Vec<Series> = series
        .iter()
        .enumerate()
        .map(|(index, (name, counts))| {
            let width = (high - low) / counts.len().max(1) as f64;
            let mut points = Vec::with_capacity(counts.len() * 2 + 2);
            points.push((low, 0.0));
            for (bin, count) in counts.iter().enumerate() {
                let start = low + bin as f64 * width;
                points.push((start, *count as f64));
                points.push((start + width, *count as f64));
            }
            points.push((high, 0.0));
            Series::new(
                name,
                points,
                if index == 0 { Mark::Line } else { Mark::Dashed },
            )
        })
        .collect();
    let peak = series
        .iter()
        .flat_map(|(_, counts)| counts.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    plot(
        title,
        &x.clone().fixed(low, high),
        &Axis::linear(y_label).fixed(0.0, peak * 1.08),
        &stepped,
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            linear_ticks(0.0, 1.0),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(linear_ticks(3.0, 97.0), vec![20.0, 40.0, 60.0, 80.0]);
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(1500.0), "1500");
        assert_eq!(number(2e-5), "2e-5");
    }

    #[test]
    fn a_plot_snapshot() {
        let svg = plot(
            "loss per iteration",
            &Axis::linear("iteration"),
            &Axis::linear("loss"),
            &[
                Series::new(
                    "train",
                    vec![(1.0, 0.9), (2.0, 0.5), (3.0, 0.4)],
                    Mark::Line,
                ),
                Series::new(
                    "validation",
                    vec![(1.0, 1.0), (2.0, 0.7), (3.0, 0.75)],
                    Mark::Dashed,
                ),
            ],
            &[Rule {
                x: 2.0,
                label: "best: 2".to_owned(),
            }],
        );
        insta::assert_snapshot!(svg);
    }

    #[test]
    fn bar_heat_map_and_histogram_snapshots() {
        insta::assert_snapshot!(
            "bars",
            bars(
                "importance",
                "share",
                &[("f1".to_owned(), 0.6), ("f2".to_owned(), 0.4)]
            )
        );
        insta::assert_snapshot!(
            "heat_map",
            heat_map(
                "confusion matrix",
                "actual",
                "predicted",
                &["no".to_owned(), "yes".to_owned()],
                &["no".to_owned(), "yes".to_owned()],
                &[vec![40.0, 2.0], vec![5.0, 53.0]],
            )
        );
        insta::assert_snapshot!(
            "histogram",
            histogram(
                "scores",
                &Axis::linear("probability"),
                "rows",
                (0.0, 1.0),
                &[(
                    "class 0".to_owned(),
                    bin_counts(&[0.1, 0.15, 0.7], 0.0, 1.0, 4)
                )],
            )
        );
    }

    #[test]
    fn bars_and_heat_maps_escape_their_labels() {
        let svg = bars(
            "importance",
            "share",
            &[("a<b".to_owned(), 0.7), ("c".to_owned(), 0.3)],
        );
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        let svg = heat_map(
            "confusion",
            "actual",
            "predicted",
            &["x&y".to_owned()],
            &["p".to_owned()],
            &[vec![3.0]],
        );
        assert!(svg.contains("x&amp;y"));
    }
}
