//! The screen: a pure function from the [`Model`] to a ratatui buffer.
//!
//! ```text
//! header   URL, version, uptime, last refresh (or why the process cannot be read)
//! table    one row per source, filter and sink
//! footer   the keys
//! ```

use std::time::Duration;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row as TableRow, Table, Widget};

use super::client::{Model, Row, SortKey};

/// The keys, as the footer shows them.
pub const FOOTER: &str =
    " q/Esc quit · s/→ next sort column · S/← previous sort column · r reverse sort ";

/// The table's columns: title, width, and the sort key it shows (if any).
const COLUMNS: [(&str, u16, Option<SortKey>); 14] = [
    ("ID", 18, Some(SortKey::Id)),
    ("KIND", 6, Some(SortKey::Kind)),
    ("TYPE", 14, Some(SortKey::Type)),
    ("EV IN/s", 9, Some(SortKey::EventsIn)),
    ("EV OUT/s", 9, Some(SortKey::EventsOut)),
    ("B IN/s", 10, Some(SortKey::BytesIn)),
    ("B OUT/s", 10, Some(SortKey::BytesOut)),
    ("EV IN", 8, None),
    ("EV OUT", 8, None),
    ("ERRORS", 7, Some(SortKey::Errors)),
    ("DISCARD", 7, None),
    ("BUFFER", 12, Some(SortKey::Buffer)),
    ("OLDEST", 7, None),
    ("DETAILS", 0, None),
];

/// Draws the whole screen into `buf` over `area`.
pub fn render(model: &Model, area: Rect, buf: &mut Buffer) {
    let [header, table, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    Paragraph::new(header_lines(model)).render(header, buf);
    components_table(model).render(table, buf);
    Paragraph::new(Line::from(Span::styled(
        FOOTER,
        Style::new().add_modifier(Modifier::REVERSED),
    )))
    .render(footer, buf);
}

/// The screen of `model` at `width` × `height`, as a buffer.
pub fn to_buffer(model: &Model, width: u16, height: u16) -> Buffer {
    let area = Rect::new(0, 0, width, height);
    let mut buf = Buffer::empty(area);
    render(model, area, &mut buf);
    buf
}

fn header_lines(model: &Model) -> Vec<Line<'static>> {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut first = vec![
        Span::styled("nagare top", bold),
        Span::raw(format!("  {}", model.url)),
    ];
    if let Some(version) = &model.version {
        first.push(Span::raw(format!("  version {version}")));
    }
    if let (Some(started), Some(seen)) = (model.started, model.last_success) {
        let up = seen.duration_since(started).unwrap_or_default();
        first.push(Span::raw(format!("  up {}", duration(up))));
    }
    let second = match (&model.error, model.refreshed) {
        (Some(error), _) => Line::from(vec![
            Span::styled(
                error.clone(),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                "  (failed {} time{} in a row; retrying every {})",
                model.failures,
                if model.failures == 1 { "" } else { "s" },
                duration(model.interval)
            )),
        ]),
        (None, Some(at)) => Line::from(format!(
            "refreshed {} every {}  ·  {} components",
            humantime::format_rfc3339_seconds(at),
            duration(model.interval),
            model.rows.len()
        )),
        (None, None) => Line::from(format!("connecting to {} ...", model.url)),
    };
    let third = Line::from(format!(
        "sorted by {} {}",
        model.sort.name(),
        if model.reverse { "(reversed)" } else { "" }
    ));
    vec![Line::from(first), second, third]
}

fn components_table(model: &Model) -> Table<'static> {
    let arrow = if model.reverse { "▲" } else { "▼" };
    let header = TableRow::new(COLUMNS.iter().map(|(title, _, key)| {
        if *key == Some(model.sort) {
            Cell::from(format!("{title}{arrow}"))
        } else {
            Cell::from(*title)
        }
    }))
    .style(Style::new().add_modifier(Modifier::BOLD));
    let widths = COLUMNS.iter().map(|(_, width, _)| match width {
        0 => Constraint::Fill(1),
        w => Constraint::Length(*w),
    });
    let rows: Vec<TableRow<'static>> = model.sorted_rows().into_iter().map(row).collect();
    let title = if model.rows.is_empty() && model.last_success.is_none() {
        " components (nothing read yet) "
    } else {
        " components "
    };
    Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(Block::bordered().title(title))
}

fn row(r: &Row) -> TableRow<'static> {
    let s = &r.stats;
    let buffer = s.buffer.unwrap_or_default();
    let fill = match (buffer.fill(), buffer.chunks) {
        (Some(f), Some(c)) => format!("{:.1}% {c}ch", f * 100.0),
        (Some(f), None) => format!("{:.1}%", f * 100.0),
        (None, Some(c)) => format!("{c}ch"),
        (None, None) => "-".to_string(),
    };
    let errors = s.errors.map_or("-".to_string(), count);
    let errors_style = if s.errors.unwrap_or(0) > 0 {
        Style::new().fg(Color::Red)
    } else {
        Style::new()
    };
    TableRow::new(vec![
        Cell::from(s.id.clone()),
        Cell::from(s.kind.clone()),
        Cell::from(s.r#type.clone()),
        Cell::from(per_second(r.events_in, false)),
        Cell::from(per_second(r.events_out, false)),
        Cell::from(per_second(r.bytes_in, true)),
        Cell::from(per_second(r.bytes_out, true)),
        Cell::from(count(s.received_events)),
        Cell::from(count(s.sent_events)),
        Cell::from(errors).style(errors_style),
        Cell::from(s.discarded.map_or("-".to_string(), count)),
        Cell::from(fill),
        Cell::from(
            buffer
                .oldest_chunk_age_seconds
                .map_or("-".to_string(), |a| {
                    duration(Duration::from_secs_f64(a.max(0.0)))
                }),
        ),
        Cell::from(details(&s.details)),
    ])
}

/// A count, shortened past five digits: `999`, `12345`, `123.5k`, `12.3M`.
pub fn count(n: u64) -> String {
    let v = n as f64;
    if n < 100_000 {
        n.to_string()
    } else if v < 1e6 {
        format!("{:.1}k", v / 1e3)
    } else if v < 1e9 {
        format!("{:.1}M", v / 1e6)
    } else {
        format!("{:.1}G", v / 1e9)
    }
}

/// A rate per second (`-` before the second poll), in bytes with binary units when
/// `bytes`.
pub fn per_second(rate: Option<f64>, bytes: bool) -> String {
    let Some(rate) = rate else {
        return "-".to_string();
    };
    if bytes {
        const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
        let mut value = rate;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            format!("{value:.0}B")
        } else {
            format!("{value:.1}{}", UNITS[unit])
        }
    } else if rate < 10.0 && rate.fract() != 0.0 {
        format!("{rate:.1}")
    } else if rate < 100_000.0 {
        format!("{rate:.0}")
    } else if rate < 1e6 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{:.1}M", rate / 1e6)
    }
}

/// A duration in its two largest units: `42s`, `3m05s`, `2h07m`, `3d04h`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600)
    }
}

/// A component's gauges, with the well-known ones shortened: `open 3 paused 0`,
/// `up 2 down 0`, `conns 5`; others as `name 1`.
pub fn details(details: &std::collections::BTreeMap<String, f64>) -> String {
    const SHORT: [(&str, &str); 5] = [
        ("files_open", "open"),
        ("files_paused", "paused"),
        ("servers_up", "up"),
        ("servers_down", "down"),
        ("connections", "conns"),
    ];
    let mut known: Vec<(usize, String)> = Vec::new();
    let mut other: Vec<String> = Vec::new();
    for (name, value) in details {
        let value = if value.fract() == 0.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.2}")
        };
        match SHORT.iter().position(|(long, _)| long == name) {
            Some(at) => known.push((at, format!("{} {value}", SHORT[at].1))),
            None => other.push(format!("{name} {value}")),
        }
    }
    known.sort();
    known
        .into_iter()
        .map(|(_, s)| s)
        .chain(other)
        .collect::<Vec<_>>()
        .join(" ")
}
