//! What every page shows besides its content (the navigation bar and who
//! is signed in), and the small formatting helpers pages share: relative
//! times, durations, amounts, percentages. Everything here returns plain
//! strings; the templates escape them.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::session::Viewer;
use super::WebError;

/// The navigation bar's data.
#[derive(Debug, Clone)]
pub struct Nav {
    pub user_name: String,
    pub role: &'static str,
    pub csrf: String,
    pub active: &'static str,
    pub is_admin: bool,
    pub can_act: bool,
}

impl Nav {
    pub fn new(viewer: &Viewer, active: &'static str) -> Nav {
        Nav {
            user_name: viewer.user.display_name.clone(),
            role: viewer.user.role.as_str(),
            csrf: viewer.csrf.clone(),
            active,
            is_admin: viewer.user.role.is_admin(),
            can_act: viewer.user.role.can_act(),
        }
    }
}

/// Renders a page template.
pub fn render<T: Template>(page: &T) -> Result<Response, WebError> {
    page.render()
        .map(|html| Html(html).into_response())
        .map_err(|e| WebError::Internal(format!("rendering a page: {e}")))
}

/// "just now", "5 min ago", "3 h ago", "2 d ago".
pub fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds().max(0);
    match secs {
        0..=44 => "just now".into(),
        45..=3599 => format!("{} min ago", (secs + 30) / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// A duration in seconds, short: "45 s", "12 min", "3.5 h".
pub fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.0} s")
    } else if secs < 3600.0 {
        format!("{:.0} min", secs / 60.0)
    } else if secs < 86_400.0 {
        format!("{:.1} h", secs / 3600.0)
    } else {
        format!("{:.1} d", secs / 86_400.0)
    }
}

/// Minor units as an amount: 12345 USD -> "123.45 USD".
pub fn money(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", cents / 100, cents % 100)
}

/// "12.34" (or "12", "12.3") in minor units; `None` when it is not an
/// amount with at most two decimals.
pub fn parse_money(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    let (whole, fraction) = raw.split_once('.').unwrap_or((raw, ""));
    if whole.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || fraction.len() > 2
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let fraction: i64 = format!("{fraction:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(fraction)
}

/// A language's name for people: "Indonesian" for `id`; the code itself
/// for languages kedai does not serve.
pub fn language_name(code: &str) -> String {
    let base = code
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match base.as_str() {
        "en" => "English".into(),
        "id" => "Indonesian".into(),
        "ms" => "Malay".into(),
        "th" => "Thai".into(),
        "vi" => "Vietnamese".into(),
        "tl" | "fil" => "Tagalog".into(),
        "pt" => "Portuguese".into(),
        "es" => "Spanish".into(),
        "zh" => "Chinese".into(),
        "" => "an unknown language".into(),
        _ => code.to_owned(),
    }
}

/// How long a buyer has waited: "under a minute", "5 min", "3 h".
pub fn waited(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    match ago(since, now).as_str() {
        "just now" => "under a minute".into(),
        other => other.trim_end_matches(" ago").to_owned(),
    }
}

pub fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".into(), |r| format!("{:.0}%", r * 100.0))
}

/// A timestamp as agents read it: UTC, to the minute.
pub fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_trip() {
        assert_eq!(parse_money("12.5"), Some(1250));
        assert_eq!(parse_money("0.05"), Some(5));
        assert_eq!(parse_money("7"), Some(700));
        for bad in [
            "",
            "-1",
            "1.234",
            "1,5",
            "abc",
            ".5",
            "99999999999999999999",
        ] {
            assert_eq!(parse_money(bad), None, "{bad}");
        }
        assert_eq!(money(1250, "USD"), "12.50 USD");
        assert_eq!(money(-5, "THB"), "-0.05 THB");
    }

    #[test]
    fn relative_times() {
        let now = Utc::now();
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(now - chrono::Duration::minutes(5), now), "5 min ago");
        assert_eq!(ago(now - chrono::Duration::hours(3), now), "3 h ago");
        assert_eq!(duration(90.0), "2 min");
        assert_eq!(duration(5400.0), "1.5 h");
    }
}
