//! Measuring kedai's quality on labelled data: `kedai eval ...`.

pub mod intents;
pub mod langid;
