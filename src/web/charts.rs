//! A small chart library of our own: lays out horizontal bar charts,
//! column charts and rate gauges as numbers for the templates to draw as
//! inline SVG. No script runs and no style attribute is needed, so the
//! charts live within the strict Content-Security-Policy, and every label
//! is escaped by the template like any other text. Hand-written because
//! what is needed is a few rectangles; a plotting crate would bring fonts
//! and raster back-ends we do not use.

/// Width of the SVG coordinate space; the CSS scales it to the card.
pub const WIDTH: f64 = 480.0;
const BAR_HEIGHT: f64 = 22.0;
const BAR_GAP: f64 = 6.0;
const LABEL_WIDTH: f64 = 150.0;
const VALUE_WIDTH: f64 = 50.0;

pub struct Bar {
    pub label: String,
    pub value: String,
    pub y: f64,
    pub text_y: f64,
    pub width: f64,
    pub value_x: f64,
}

pub struct BarChart {
    pub title: &'static str,
    pub height: f64,
    pub label_width: f64,
    pub bars: Vec<Bar>,
}

impl BarChart {
    /// At most `max_bars` bars, largest first as given.
    pub fn new(title: &'static str, items: &[(String, usize)], max_bars: usize) -> BarChart {
        let items = &items[..items.len().min(max_bars)];
        let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
        let span = WIDTH - LABEL_WIDTH - VALUE_WIDTH;
        let bars = items
            .iter()
            .enumerate()
            .map(|(i, (label, value))| {
                let y = i as f64 * (BAR_HEIGHT + BAR_GAP);
                let width = (*value as f64 / max * span).max(1.0);
                Bar {
                    label: label.replace('_', " "),
                    value: value.to_string(),
                    y,
                    text_y: y + BAR_HEIGHT * 0.7,
                    width,
                    value_x: LABEL_WIDTH + width + 6.0,
                }
            })
            .collect::<Vec<_>>();
        BarChart {
            title,
            height: (bars.len().max(1) as f64) * (BAR_HEIGHT + BAR_GAP),
            label_width: LABEL_WIDTH,
            bars,
        }
    }
}

pub struct Column {
    pub label: String,
    pub value: usize,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub label_x: f64,
    pub show_label: bool,
}

/// Conversations per day.
pub struct ColumnChart {
    pub height: f64,
    pub base: f64,
    pub max: usize,
    pub columns: Vec<Column>,
}

const COLUMN_AREA: f64 = 140.0;
/// Room above the tallest column for its value.
const COLUMN_TOP: f64 = 18.0;
/// The column chart spans a whole card: wider than the bar charts.
pub const COLUMNS_WIDTH: f64 = 1000.0;

impl ColumnChart {
    pub fn new(items: &[(String, usize)]) -> ColumnChart {
        let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0);
        let slot = COLUMNS_WIDTH / items.len().max(1) as f64;
        let label_every = items.len().div_ceil(10).max(1);
        let columns = items
            .iter()
            .enumerate()
            .map(|(i, (label, value))| {
                let height = if max == 0 {
                    0.0
                } else {
                    (*value as f64 / max as f64 * COLUMN_AREA).max(1.0)
                };
                Column {
                    // "2026-11-21" -> "11-21"
                    label: label.get(5..).unwrap_or(label).to_owned(),
                    value: *value,
                    x: i as f64 * slot + slot * 0.15,
                    y: COLUMN_TOP + COLUMN_AREA - height,
                    width: slot * 0.7,
                    height,
                    label_x: i as f64 * slot + slot / 2.0,
                    show_label: i % label_every == 0,
                }
            })
            .collect();
        ColumnChart {
            height: COLUMN_TOP + COLUMN_AREA + 22.0,
            base: COLUMN_TOP + COLUMN_AREA + 17.0,
            max,
            columns,
        }
    }
}

/// A rate as a filled bar.
pub struct Gauge {
    pub label: &'static str,
    pub value: String,
    pub filled: f64,
    pub known: bool,
}

impl Gauge {
    pub fn new(label: &'static str, rate: Option<f64>) -> Gauge {
        Gauge {
            label,
            value: super::view::percent(rate),
            filled: rate.unwrap_or(0.0).clamp(0.0, 1.0) * WIDTH,
            known: rate.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_keep_their_order() {
        let chart = BarChart::new(
            "t",
            &[("a".into(), 10), ("b_c".into(), 5), ("d".into(), 0)],
            2,
        );
        assert_eq!(chart.bars.len(), 2);
        assert_eq!(chart.bars[1].label, "b c");
        assert!((chart.bars[0].width - 2.0 * chart.bars[1].width).abs() < 1e-9);
        assert!(chart.bars[1].y > chart.bars[0].y);
    }

    #[test]
    fn empty_charts_have_room_and_no_division_by_zero() {
        let chart = BarChart::new("t", &[], 5);
        assert!(chart.height > 0.0);
        let columns = ColumnChart::new(&[("2026-11-21".into(), 0)]);
        assert_eq!(columns.columns[0].height, 0.0);
        assert_eq!(columns.columns[0].label, "11-21");
    }
}
