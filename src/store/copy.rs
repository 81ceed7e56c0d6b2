//! `kedai store copy`: moves everything a SQLite data directory holds into
//! an empty PostgreSQL database, in one transaction, then checks that every
//! table holds as many rows on both sides. Both schemas must be at the same
//! version (the source is migrated by `kedai migrate` first, the target is
//! migrated here). Columns are read by the target's types, so one loop
//! serves every table; the table order follows the foreign keys.
//!
//! Knows the two databases' catalogues, nothing of the aggregates.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{Postgres, QueryBuilder, Row};

use crate::cli::Output;
use crate::config::{Settings, StoreLocation, StoreUrl};
use crate::store::{PostgresStore, Schema, SqliteStore};

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Copy a SQLite store into an empty PostgreSQL database (the server
    /// stopped). Shop credentials stay sealed: give the replicas the same
    /// key (`KEDAI_CREDENTIALS_KEY`, or the data directory's
    /// credentials.key as `store.credentials_key_file`).
    Copy {
        /// `sqlite://<data dir>` (empty directory part: `store.data_dir`).
        #[arg(long)]
        from: String,
        /// `postgres://user:password@host:port/database`, empty.
        #[arg(long)]
        to: String,
    },
}

/// Rows inserted per statement (PostgreSQL allows 65,535 parameters).
const BATCH_ROWS: usize = 500;

/// Tables the migrations fill themselves; replaced, not counted as data.
const SEEDED: &[&str] = &["event_cursor"];

/// PostgreSQL's own tables, with no SQLite counterpart: the replicas'
/// timer claims (migration 0015), which start empty.
const POSTGRES_ONLY: &[&str] = &["timers"];

pub async fn run(cmd: StoreCommand, settings: &Settings, output: Output) -> anyhow::Result<()> {
    let StoreCommand::Copy { from, to } = cmd;
    let from = match StoreUrl(from).location(&settings.store.data_dir) {
        Ok(StoreLocation::Sqlite(dir)) => dir,
        _ => bail!("--from must be sqlite://<data dir>"),
    };
    let to = match StoreUrl(to).location(&settings.store.data_dir) {
        Ok(StoreLocation::Postgres(url)) => url,
        _ => bail!("--to must be postgres://user:password@host:port/database"),
    };
    let source = SqliteStore::open(&settings.store.sqlite_in(from.clone()), Schema::Current)
        .await
        .with_context(|| format!("opening the SQLite store in {}", from.display()))?;
    let target = PostgresStore::open(
        &to,
        &settings.store.sqlite_in(from.clone()),
        Schema::Migrate,
    )
    .await
    .with_context(|| format!("opening {}", to.redacted()))?;
    let result = copy(source.pool(), target.pool()).await;
    source.close().await;
    target.close().await;
    let counts = result?;
    let total: i64 = counts.values().sum();
    output.print(
        serde_json::json!({ "from": from, "to": to.redacted(), "rows": counts, "total": total }),
        || {
            let mut lines = vec![format!(
                "Copied {total} rows from {} to {}; every table's count checked:",
                from.display(),
                to.redacted()
            )];
            lines.extend(counts.iter().map(|(table, n)| format!("  {table:<24} {n}")));
            lines.push(
                "Shop credentials are still sealed with the source's key: start the replicas \
                 with the same KEDAI_CREDENTIALS_KEY or store.credentials_key_file."
                    .into(),
            );
            lines.join("\n")
        },
    );
    Ok(())
}

/// Copies every table and returns the row count of each, equal on both
/// sides; nothing is committed unless every count matches.
pub async fn copy(source: &SqlitePool, target: &PgPool) -> anyhow::Result<BTreeMap<String, i64>> {
    let source_version: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations")
            .fetch_one(source)
            .await?;
    let target_version: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations")
            .fetch_one(target)
            .await?;
    if source_version != target_version {
        bail!(
            "the SQLite store has schema version {source_version} and PostgreSQL \
             {target_version}; run `kedai migrate` on the SQLite data directory first"
        );
    }
    let tables: Vec<String> = tables_in_order(target)
        .await?
        .into_iter()
        .filter(|t| !POSTGRES_ONLY.contains(&t.as_str()))
        .collect();
    let mut tx = target.begin().await?;
    for table in &tables {
        if SEEDED.contains(&table.as_str()) {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
            continue;
        }
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await?;
        if rows > 0 {
            bail!("the PostgreSQL database is not empty ({table} has {rows} rows); copy into a new database");
        }
    }
    let mut counts = BTreeMap::new();
    for table in &tables {
        let columns = columns(target, table).await?;
        let copied = copy_table(source, &mut tx, table, &columns).await?;
        let expected: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(source)
            .await?;
        let landed: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await?;
        if copied != expected || landed != expected {
            bail!("{table}: {expected} rows in SQLite, {landed} in PostgreSQL; nothing copied");
        }
        counts.insert(table.clone(), landed);
    }
    // The audit log's sequence continues after the copied entries.
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), \
         GREATEST((SELECT MAX(seq) FROM audit_log), 1))",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(counts)
}

/// The target's tables, each after the tables its foreign keys name.
async fn tables_in_order(target: &PgPool) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
           AND table_name <> '_sqlx_migrations' ORDER BY table_name",
    )
    .fetch_all(target)
    .await?;
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c \
         WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace",
    )
    .fetch_all(target)
    .await?;
    let mut needs: BTreeMap<String, BTreeSet<String>> =
        names.iter().map(|n| (n.clone(), BTreeSet::new())).collect();
    for (table, referenced) in edges {
        if table != referenced {
            needs.entry(table).or_default().insert(referenced);
        }
    }
    let mut ordered = Vec::new();
    while !needs.is_empty() {
        let ready: Vec<String> = needs
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !needs.contains_key(d)))
            .map(|(t, _)| t.clone())
            .collect();
        if ready.is_empty() {
            bail!("foreign keys form a cycle among {:?}", needs.keys());
        }
        for table in ready {
            needs.remove(&table);
            ordered.push(table);
        }
    }
    Ok(ordered)
}

/// A column of the target and how its values are carried.
struct Column {
    name: String,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Boolean,
    Real,
    Bytes,
}

async fn columns(target: &PgPool, table: &str) -> anyhow::Result<Vec<Column>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(target)
    .await?;
    rows.into_iter()
        .map(|(name, data_type)| {
            let kind = match data_type.as_str() {
                "text" | "character varying" => Kind::Text,
                "bigint" | "integer" | "smallint" => Kind::Integer,
                "boolean" => Kind::Boolean,
                "double precision" | "real" => Kind::Real,
                "bytea" => Kind::Bytes,
                other => bail!("{table}.{name}: no copy rule for type {other}"),
            };
            Ok(Column { name, kind })
        })
        .collect()
}

enum Value {
    Text(Option<String>),
    Integer(Option<i64>),
    Boolean(Option<bool>),
    Real(Option<f64>),
    Bytes(Option<Vec<u8>>),
}

async fn copy_table(
    source: &SqlitePool,
    tx: &mut sqlx::Transaction<'static, Postgres>,
    table: &str,
    columns: &[Column],
) -> anyhow::Result<i64> {
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let list = names.join(", ");
    let rows = sqlx::query(&format!("SELECT {list} FROM {table}"))
        .fetch_all(source)
        .await
        .with_context(|| format!("reading {table} from SQLite"))?;
    let mut copied = 0i64;
    for chunk in rows.chunks(BATCH_ROWS) {
        let mut values = Vec::with_capacity(chunk.len());
        for row in chunk {
            let mut record = Vec::with_capacity(columns.len());
            for (i, column) in columns.iter().enumerate() {
                record.push(match column.kind {
                    Kind::Text => Value::Text(row.try_get(i)?),
                    Kind::Integer => Value::Integer(row.try_get(i)?),
                    Kind::Boolean => Value::Boolean(row.try_get(i)?),
                    Kind::Real => Value::Real(row.try_get(i)?),
                    Kind::Bytes => Value::Bytes(row.try_get(i)?),
                });
            }
            values.push(record);
        }
        let mut insert = QueryBuilder::<Postgres>::new(format!("INSERT INTO {table} ({list}) "));
        insert.push_values(values, |mut b, record| {
            for value in record {
                match value {
                    Value::Text(v) => b.push_bind(v),
                    Value::Integer(v) => b.push_bind(v),
                    Value::Boolean(v) => b.push_bind(v),
                    Value::Real(v) => b.push_bind(v),
                    Value::Bytes(v) => b.push_bind(v),
                };
            }
        });
        copied += insert
            .build()
            .execute(&mut **tx)
            .await
            .with_context(|| format!("writing {table} to PostgreSQL"))?
            .rows_affected() as i64;
    }
    Ok(copied)
}
