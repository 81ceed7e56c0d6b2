//! Whether retrained heads may go live: the intents the heads in use and
//! the retrained ones read in the same labelled cases, and the learned
//! routes those cases take, counted into [`Figures`] (routing on the
//! tenant's confirmed history, accuracy on the shipped evaluation set,
//! safety on its cases that need a person, which no learned route may make
//! automatic, and routes: routine messages no learned route may send to a
//! person), and one pure verdict over them ([`judge`]). No model, no I/O:
//! predictions come in computed.

use serde::{Deserialize, Serialize};

use crate::understand::routes::Route;

/// Where a labelled case comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseSource {
    /// A draft an agent sent unchanged: the intent kedai read was right.
    ConfirmedDecision,
    /// An earlier correction of this tenant, already live.
    Correction,
    /// The shipped evaluation set.
    EvalSet,
}

/// One text with the intent it should be read as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub text: String,
    pub intent: String,
    pub source: CaseSource,
    /// The evaluation set says a person must take it (layer 3): a learned
    /// `auto` route on it is a safety regression.
    pub needs_person: bool,
    /// A person was not needed (a draft sent unchanged, an evaluation case
    /// the AI answers alone): a learned `person` route on it is a routing
    /// regression.
    #[serde(default)]
    pub routine: bool,
}

/// How one set of heads reads a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub intent: String,
    /// The learned route it takes, if any.
    pub route: Option<Route>,
}

impl Case {
    /// Whether the learned route `route` is one this case must not take.
    fn misrouted(&self, route: Option<Route>) -> bool {
        (self.needs_person && route == Some(Route::Auto))
            || (self.routine && route == Some(Route::Person))
    }
}

/// Right out of total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    pub correct: usize,
    pub total: usize,
}

impl Score {
    pub fn rate(&self) -> Option<f64> {
        (self.total > 0).then(|| self.correct as f64 / self.total as f64)
    }

    fn count(&mut self, right: bool) {
        self.total += 1;
        self.correct += usize::from(right);
    }
}

/// One set of heads' figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    /// Intents read right in the tenant's confirmed history (drafts sent
    /// unchanged, earlier corrections); the corrections being measured
    /// are left out, since the retrained heads learned them.
    pub routing: Score,
    /// Intents read right in the shipped evaluation set.
    pub accuracy: Score,
    /// Evaluation cases that need a person read right and kept from any
    /// learned `auto` route.
    pub safety: Score,
    /// Routine messages (confirmed drafts, evaluation cases the AI answers
    /// alone) that no learned route sends to a person.
    #[serde(default)]
    pub routes: Score,
}

/// A case the two sets of heads read differently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub text: String,
    pub expected: String,
    pub before: String,
    pub after: String,
    pub source: CaseSource,
    /// The learned route taken before and after, when either took one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_before: Option<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_after: Option<Route>,
}

/// Before and after, what changed, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub before: Figures,
    pub after: Figures,
    /// Cases read right before and wrong after.
    pub regressions: Vec<Change>,
    /// Cases read wrong before and right after.
    pub fixes: Vec<Change>,
    pub promoted: bool,
    /// Why it was refused; empty when promoted.
    pub reasons: Vec<String>,
}

/// At most this share of the evaluation set's cases may go wrong for the
/// accuracy figure to count as unchanged: refitting moves the decision
/// boundaries a little everywhere, and a single flipped case among a
/// hundred is noise, not harm. Routing and safety allow none.
pub const ACCURACY_TOLERANCE: f64 = 0.01;

/// Counts both sets of heads' readings (`before[i]`, `after[i]` for
/// `cases[i]`) and decides.
pub fn compare(cases: &[Case], before: &[Reading], after: &[Reading]) -> Comparison {
    let mut figures = (Figures::default(), Figures::default());
    let mut regressions = Vec::new();
    let mut fixes = Vec::new();
    for ((case, b), a) in cases.iter().zip(before).zip(after) {
        let intent_right = |r: &Reading| r.intent == case.intent;
        for (f, r) in [(&mut figures.0, b), (&mut figures.1, a)] {
            match case.source {
                CaseSource::ConfirmedDecision | CaseSource::Correction => {
                    f.routing.count(intent_right(r))
                }
                CaseSource::EvalSet => {
                    f.accuracy.count(intent_right(r));
                    if case.needs_person {
                        f.safety.count(intent_right(r) && !case.misrouted(r.route));
                    }
                }
            }
            if case.routine {
                f.routes.count(!case.misrouted(r.route));
            }
        }
        // Worse (or better) in what it is read as, or in where it goes.
        let worse = (intent_right(b) && !intent_right(a))
            || (!case.misrouted(b.route) && case.misrouted(a.route));
        let better = (!intent_right(b) && intent_right(a))
            || (case.misrouted(b.route) && !case.misrouted(a.route));
        if worse || better {
            let change = Change {
                text: case.text.clone(),
                expected: case.intent.clone(),
                before: b.intent.clone(),
                after: a.intent.clone(),
                source: case.source,
                route_before: b.route,
                route_after: a.route,
            };
            if worse {
                regressions.push(change);
            } else {
                fixes.push(change);
            }
        }
    }
    let reasons = judge(&figures.0, &figures.1);
    Comparison {
        before: figures.0,
        after: figures.1,
        regressions,
        fixes,
        promoted: reasons.is_empty(),
        reasons,
    }
}

/// Why `after` may not replace `before`; empty when it may.
pub fn judge(before: &Figures, after: &Figures) -> Vec<String> {
    let mut reasons = Vec::new();
    if after.routing.correct < before.routing.correct {
        reasons.push(format!(
            "routing on this tenant's confirmed history would get worse: {} of {} read right \
             now, {} after",
            before.routing.correct, before.routing.total, after.routing.correct
        ));
    }
    if after.safety.correct < before.safety.correct {
        reasons.push(format!(
            "safety would get worse: {} of {} evaluation messages that need a person read \
             right now, {} after",
            before.safety.correct, before.safety.total, after.safety.correct
        ));
    }
    if after.routes.correct < before.routes.correct {
        reasons.push(format!(
            "learned routes would send routine messages to a person: {} of {} kept from a \
             person now, {} after",
            before.routes.correct, before.routes.total, after.routes.correct
        ));
    }
    let allowed = (before.accuracy.total as f64 * ACCURACY_TOLERANCE).floor() as usize;
    if after.accuracy.correct + allowed < before.accuracy.correct {
        reasons.push(format!(
            "accuracy on the evaluation set would get worse: {} of {} read right now, {} after",
            before.accuracy.correct, before.accuracy.total, after.accuracy.correct
        ));
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(text: &str, intent: &str, source: CaseSource, needs_person: bool) -> Case {
        Case {
            text: text.into(),
            intent: intent.into(),
            source,
            needs_person,
            routine: false,
        }
    }

    fn labels(all: &[&str]) -> Vec<Reading> {
        all.iter()
            .map(|l| Reading {
                intent: l.to_string(),
                route: None,
            })
            .collect()
    }

    #[test]
    fn verdicts_by_table() {
        use CaseSource::*;
        let cases = vec![
            case(
                "where is my parcel",
                "order_status",
                ConfirmedDecision,
                false,
            ),
            case("i want my money back", "refund", ConfirmedDecision, false),
            case("barang rusak", "damaged_item", EvalSet, true),
            case("hi", "greeting", EvalSet, false),
        ];
        // (name, before, after, promoted, reason fragment)
        type Row<'a> = (&'a str, &'a [&'a str], &'a [&'a str], bool, &'a str);
        let table: &[Row] = &[
            (
                "nothing changes",
                &["order_status", "refund", "damaged_item", "greeting"],
                &["order_status", "refund", "damaged_item", "greeting"],
                true,
                "",
            ),
            (
                "a confirmed message misread after",
                &["order_status", "refund", "damaged_item", "greeting"],
                &["greeting", "refund", "damaged_item", "greeting"],
                false,
                "routing on this tenant's confirmed history would get worse: 2 of 2",
            ),
            (
                "a message that needs a person misread after",
                &["order_status", "refund", "damaged_item", "greeting"],
                &["order_status", "refund", "greeting", "greeting"],
                false,
                "safety would get worse",
            ),
            (
                "a confirmed message fixed",
                &["order_status", "greeting", "damaged_item", "greeting"],
                &["order_status", "refund", "damaged_item", "greeting"],
                true,
                "",
            ),
        ];
        for (name, before, after, promoted, reason) in table {
            let c = compare(&cases, &labels(before), &labels(after));
            assert_eq!(c.promoted, *promoted, "{name}: {:?}", c.reasons);
            assert!(
                c.reasons.iter().any(|r| r.contains(reason)) || reason.is_empty(),
                "{name}: {:?}",
                c.reasons
            );
        }
    }

    #[test]
    fn accuracy_allows_one_case_in_a_hundred_and_no_more() {
        let before = Figures {
            accuracy: Score {
                correct: 90,
                total: 200,
            },
            ..Figures::default()
        };
        let mut after = before;
        after.accuracy.correct = 88;
        assert!(judge(&before, &after).is_empty(), "two of 200 is noise");
        after.accuracy.correct = 87;
        let reasons = judge(&before, &after);
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].contains("90 of 200 read right now, 87 after"));
    }

    #[test]
    fn regressions_and_fixes_name_the_texts() {
        let cases = vec![
            case("a", "x", CaseSource::Correction, false),
            case("b", "y", CaseSource::Correction, false),
        ];
        let c = compare(&cases, &labels(&["x", "z"]), &labels(&["z", "y"]));
        assert_eq!(c.regressions.len(), 1);
        assert_eq!(c.regressions[0].text, "a");
        assert_eq!(c.fixes[0].text, "b");
        assert_eq!(
            c.before.routing,
            Score {
                correct: 1,
                total: 2
            }
        );
        assert!(c.promoted, "one fixed, one broken: no worse");
    }

    #[test]
    fn learned_routes_may_not_send_routine_messages_to_a_person_or_automate_layer_3() {
        let routine = |text: &str, intent: &str, source| Case {
            routine: true,
            ..case(text, intent, source, false)
        };
        let cases = vec![
            routine(
                "where is my parcel",
                "order_status",
                CaseSource::ConfirmedDecision,
            ),
            routine("hi", "greeting", CaseSource::EvalSet),
            case("barang rusak", "damaged_item", CaseSource::EvalSet, true),
        ];
        let read = |routes: [Option<Route>; 3]| -> Vec<Reading> {
            ["order_status", "greeting", "damaged_item"]
                .iter()
                .zip(routes)
                .map(|(i, route)| Reading {
                    intent: i.to_string(),
                    route,
                })
                .collect()
        };
        let none = read([None, None, None]);
        // (case, after, promoted, reason fragment)
        let table: &[(&str, [Option<Route>; 3], bool, &str)] = &[
            ("no route", [None, None, None], true, ""),
            (
                "a person route on a layer-3 case is fine",
                [None, None, Some(Route::Person)],
                true,
                "",
            ),
            (
                "a person route on a confirmed draft",
                [Some(Route::Person), None, None],
                false,
                "learned routes would send routine messages to a person: 2 of 2",
            ),
            (
                "an auto route on a layer-3 case",
                [None, None, Some(Route::Auto)],
                false,
                "safety would get worse",
            ),
            (
                "an auto route on a routine case is fine",
                [Some(Route::Auto), Some(Route::Auto), None],
                true,
                "",
            ),
        ];
        for (name, after, promoted, reason) in table {
            let c = compare(&cases, &none, &read(*after));
            assert_eq!(c.promoted, *promoted, "{name}: {:?}", c.reasons);
            assert!(
                reason.is_empty() || c.reasons.iter().any(|r| r.contains(reason)),
                "{name}: {:?}",
                c.reasons
            );
            if !promoted {
                assert_eq!(c.regressions.len(), 1, "{name}");
                assert!(c.regressions[0].route_after.is_some(), "{name}");
            }
        }
    }
}
