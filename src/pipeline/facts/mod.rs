//! The checkable facts of a text: numbers, amounts of money with their
//! currency, percentages, durations, quantities with units, dates, codes
//! (order, tracking and voucher numbers, SKUs), links, email addresses and
//! phone numbers, each normalised so that two ways of writing the same fact
//! compare equal: `Rp 50.000` and `Rp50000`, `USD 2.50` and `2,50 USD`,
//! `๓-๕ วัน` and `3-5 days`, `SPE-2611-00123` and `spe 2611 00123` do not,
//! but `SPE-2611-00123` and `SPE2611-00123` do.
//!
//! Two uses: [`unsupported`] lists a draft's facts that none of its sources
//! (the knowledge it was grounded in, the order record, the buyer's own
//! message) states, and [`missing`] lists the facts of a source text that
//! its translation lost. A fact is compared by kind and value: a number
//! is supported by any fact of the same value, an amount only by the same
//! amount in the same currency.
//!
//! Extraction reads the folded view of a text (`text::fold`), so digits of
//! any script, fullwidth forms and invisible characters make no
//! difference. Pure functions: no I/O, no models; nothing here knows how a
//! reply is chosen.

mod parse;
#[cfg(test)]
mod tests;

use serde::Serialize;

pub use parse::extract;

/// What a fact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactKind {
    Number,
    /// Money: the value is `CUR amount`, e.g. `IDR 50000`, `USD 2.5`.
    Amount,
    /// The value is the number, e.g. `20` for `20%` (and for `打八折`, 20%
    /// off).
    Percentage,
    /// The value is `from-to unit` or `n unit`: `3-5 day`, `24 hour`.
    Duration,
    /// A measure with its unit: `2 kg`, `10000 mah`.
    Quantity,
    /// `YYYY-MM-DD`, or `MM-DD` when the year is not written.
    Date,
    /// Order, tracking and voucher numbers, SKUs: upper case, separators
    /// removed.
    Code,
    /// Host and path, lower case, without scheme or `www.`.
    Link,
    Email,
    /// The last nine digits, so `+62 811 2222 3333` and `0811-2222-3333`
    /// are one number.
    Phone,
}

/// One fact of a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fact {
    pub kind: FactKind,
    /// The normalised value facts are compared by.
    pub value: String,
    /// The fact as it reads in the folded text.
    pub text: String,
}

impl Fact {
    /// The numbers in this fact's value, for comparing facts of different
    /// kinds (a bare number against an amount or a duration).
    fn numbers(&self) -> Vec<&str> {
        match self.kind {
            FactKind::Number | FactKind::Percentage => vec![self.value.as_str()],
            FactKind::Amount | FactKind::Duration | FactKind::Quantity => self
                .value
                .split([' ', '-'])
                .filter(|part| part.starts_with(|c: char| c.is_ascii_digit()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether `other` states this fact.
    pub fn stated_by(&self, other: &Fact) -> bool {
        if self.kind == other.kind && self.value == other.value {
            return true;
        }
        match self.kind {
            // An amount written without its currency ("10k") is stated by
            // the same number in any form, and states an amount in any
            // currency.
            FactKind::Amount if self.value.starts_with(UNKNOWN_CURRENCY) => {
                self.numbers().iter().all(|n| other.numbers().contains(n))
            }
            FactKind::Amount => {
                other.kind == FactKind::Amount
                    && other.value.starts_with(UNKNOWN_CURRENCY)
                    && self.numbers() == other.numbers()
            }
            // "3 days" when the source says "3-5 days", or a bare number
            // any fact of the source holds.
            FactKind::Number => other.numbers().contains(&self.value.as_str()),
            FactKind::Duration | FactKind::Quantity => {
                other.kind == self.kind
                    && unit_of(&self.value) == unit_of(&other.value)
                    && self.numbers().iter().all(|n| other.numbers().contains(n))
            }
            _ => false,
        }
    }
}

/// The currency of an amount written without one.
const UNKNOWN_CURRENCY: &str = "XXX";

fn unit_of(value: &str) -> &str {
    value.rsplit(' ').next().unwrap_or("")
}

/// The facts of `reply` that no text of `sources` states: every number,
/// amount, percentage, duration, quantity, date, code, link, email and
/// phone number of a drafted reply must come from its sources.
pub fn unsupported(reply: &str, sources: &[&str]) -> Vec<Fact> {
    let known: Vec<Fact> = sources.iter().flat_map(|s| extract(s)).collect();
    let mut out: Vec<Fact> = Vec::new();
    for fact in extract(reply) {
        let stated = known.iter().any(|k| fact.stated_by(k));
        if !stated && !out.contains(&fact) {
            out.push(fact);
        }
    }
    out
}

/// The facts of `source` that `translation` does not carry: a translation
/// must keep every number, amount, unit, date, code and link of its source.
pub fn missing(source: &str, translation: &str) -> Vec<Fact> {
    let carried = extract(translation);
    let mut out: Vec<Fact> = Vec::new();
    for fact in extract(source) {
        let kept = carried.iter().any(|c| fact.stated_by(c));
        if !kept && !out.contains(&fact) {
            out.push(fact);
        }
    }
    out
}
