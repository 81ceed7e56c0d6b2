//! `kedai migrate`: creates the database or brings its schema up to date,
//! keeping a copy of a database that holds data, and says what it did.

use anyhow::Context;

use super::{runtime, Output};
use crate::config::Settings;
use crate::store::OpenedStore;

pub(super) fn run(settings: &Settings, output: Output) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let place = OpenedStore::describe(&settings.store);
        let (store, report) = OpenedStore::open_migrating(&settings.store)
            .await
            .with_context(|| format!("migrating {place}"))?;
        store.close().await;
        output.print(serde_json::to_value(&report)?, || {
            let dir = place.trim_start_matches("the store ");
            match (&report.backup, report.from == report.to) {
                (_, true) => format!("The database {dir} is current (schema {}).", report.to),
                (Some(backup), false) => format!(
                    "Migrated the database {dir} from schema {} to {}; the copy from before \
                     is {}.",
                    report.from,
                    report.to,
                    backup.display()
                ),
                (None, false) => format!("Set up the database {dir} (schema {}).", report.to),
            }
        });
        Ok(())
    })
}
