//! Point-in-time restore: which segments a restore replays and to which point ([`plan`]), and
//! applying them inside the restore's transaction ([`apply`]).
//!
//! A restore point is a snapshot: an automatic or named restore point (`op = 'M'`), or the end
//! of an archiver's turn. The target is one of them; a transaction's changes are applied when
//! the target's snapshot saw it and the base backup's did not ([`super::snapshot`]). Row images
//! are applied in log order (an upsert of the row as written, or a delete by primary key), which
//! for any one row is the order its writers committed in, since each waited for the row lock of
//! the one before. Every segment from the base backup's first to the last present is read and
//! checked before the database is touched; a missing, corrupt or foreign segment refuses the
//! restore.
//!
//! The statements themselves are in the storage layer ([`crate::store::replay`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::segment::{self, SegmentReader};
use super::snapshot::Snapshot;
use super::storage::{ArchiveStorage, LocalSegment};
use crate::backup::format::ArchivePoint;
use crate::backup::{BackupError, BackupKey};
use crate::store::catalog::TableInfo;
use crate::store::replay as sql;

/// Where a restore should stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Everything archived: the newest consistent point.
    Latest,
    /// The newest restore point at or before this time (`--until`).
    Time(DateTime<Utc>),
    /// The restore point with this number (`--until-seq`).
    Seq(i64),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Latest => write!(f, "the end of the archive"),
            Target::Time(t) => write!(f, "{}", t.to_rfc3339()),
            Target::Seq(n) => write!(f, "restore point #{n}"),
        }
    }
}

/// A point the archive can restore to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Point {
    /// The restore point's number, `None` for the end of an archiver's turn.
    pub seq: Option<i64>,
    /// Its name (`""` for automatic ones).
    pub name: String,
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// The segment that holds it.
    pub segment: i64,
    #[serde(skip)]
    snapshot: Snapshot,
}

#[derive(Deserialize)]
struct MarkRow {
    name: String,
    at: DateTime<Utc>,
    snapshot: String,
}

/// A checked replay: the segments and the point.
pub struct ReplayPlan {
    key: Option<BackupKey>,
    archive_id: String,
    base: Snapshot,
    /// The point restored to.
    pub point: Point,
    /// The first and last segment replayed.
    pub segments: (i64, i64),
    files: Vec<(i64, LocalSegment)>,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplayReport {
    /// Transactions applied.
    pub transactions: u64,
    /// Row changes applied.
    pub changes: u64,
    /// Sequences moved past the replayed ids ([`advance_sequences`]).
    pub sequences: u64,
}

/// Reads and checks the archive from `base`'s first segment, and picks the point for `target`.
pub async fn plan(
    storage: &ArchiveStorage,
    base: &ArchivePoint,
    schema_version: i64,
    target: &Target,
    key: Option<&BackupKey>,
) -> Result<ReplayPlan, BackupError> {
    let base_snapshot = Snapshot::parse(&base.snapshot).ok_or_else(|| {
        BackupError::Verification(format!(
            "malformed snapshot {:?} in the manifest",
            base.snapshot
        ))
    })?;
    let present = storage.segments().await?;
    let mut files = Vec::new();
    let mut points: Vec<Point> = Vec::new();
    let from_start = present.iter().copied().filter(|n| *n >= base.start_segment);
    for (expected, n) in (base.start_segment..).zip(from_start) {
        if n != expected {
            return Err(BackupError::Verification(format!(
                "segment {} of {storage} is missing (the next present is {}): the archive \
                 has a hole, nothing after it can be replayed",
                segment::name(expected),
                segment::name(n)
            )));
        }
        let local = storage.fetch(n).await?;
        let mut reader = SegmentReader::open(&local.path, n, &base.archive_id, key)?;
        let crosses = reader.begin.schema_version != schema_version;
        while let Some(c) = reader.next_change()? {
            if c.op == "M" {
                let m: MarkRow = serde_json::from_str(c.row.get()).map_err(|e| {
                    BackupError::Verification(format!("segment {n}: bad restore point: {e}"))
                })?;
                let snapshot = Snapshot::parse(&m.snapshot).ok_or_else(|| {
                    BackupError::Verification(format!("segment {n}: bad snapshot {}", m.snapshot))
                })?;
                points.push(Point {
                    seq: Some(c.id),
                    name: m.name,
                    at: m.at,
                    segment: n,
                    snapshot,
                });
            }
        }
        if let Some(s) = reader.end().and_then(|e| e.snapshot.as_deref()) {
            let snapshot = Snapshot::parse(s).ok_or_else(|| {
                BackupError::Verification(format!("segment {n}: bad snapshot {s}"))
            })?;
            points.push(Point {
                seq: None,
                name: String::new(),
                at: reader.begin.created_at,
                segment: n,
                snapshot,
            });
        }
        files.push((n, local));
        if crosses {
            // Points in a segment written at another schema version cannot be replayed onto
            // this backup's tables; stop listing there.
            points.retain(|p| p.segment < n);
            break;
        }
    }
    let usable: Vec<&Point> = points
        .iter()
        .filter(|p| p.snapshot.includes(&base_snapshot))
        .collect();
    let chosen = match target {
        Target::Latest => usable.iter().max_by_key(|p| (p.segment, p.at)).copied(),
        Target::Time(t) => usable
            .iter()
            .filter(|p| p.at <= *t)
            .max_by_key(|p| (p.at, p.segment))
            .copied(),
        Target::Seq(n) => points.iter().find(|p| p.seq == Some(*n)),
    };
    let Some(point) = chosen.cloned() else {
        let range = match (usable.first(), usable.last()) {
            (Some(a), Some(b)) => format!(
                "the archive can restore this backup to points from {} to {}",
                a.at.to_rfc3339(),
                b.at.to_rfc3339()
            ),
            _ => "the archive holds no point after this backup".to_owned(),
        };
        return Err(BackupError::Refused(format!(
            "cannot restore to {target}: {range}"
        )));
    };
    if !point.snapshot.includes(&base_snapshot) {
        return Err(BackupError::Refused(format!(
            "restore point #{} ({}) is older than the backup; restore from an older backup",
            point.seq.unwrap_or_default(),
            point.at.to_rfc3339()
        )));
    }
    files.retain(|(n, _)| *n <= point.segment);
    Ok(ReplayPlan {
        key: key.cloned(),
        archive_id: base.archive_id.clone(),
        base: base_snapshot,
        segments: (base.start_segment, point.segment),
        point,
        files,
    })
}

/// Rows touched since the last flush: per table, per primary key, the newest change and its
/// position in the log.
#[derive(Default)]
struct NetEffect {
    tables: BTreeMap<String, std::collections::HashMap<String, Latest>>,
    rows: usize,
}

struct Latest {
    at: (i64, i64),
    deleted: bool,
    /// The row as written, or as it was when deleted (its key is what a delete needs).
    row: Box<serde_json::value::RawValue>,
}

/// Flush after a segment once this many rows are pending.
const FLUSH_ROWS: usize = 100_000;
/// Rows per statement.
const STATEMENT_ROWS: usize = 500;

/// Applies the plan inside the restore's transaction (`tables`: the target's, by name; the
/// schema's triggers already off, constraints deferred).
///
/// The changes of one statement are logged table by table in no useful order (a statement
/// with several data-modifying CTEs fires its tables' triggers in any order), so replaying them
/// one by one could insert a trade before its order. What is replayed instead is the net effect
/// of whole segments: each row's last image (a later segment, or a higher id in the same one, is
/// later for any one row), upserted parents first, and the rows whose last change is a delete,
/// deleted children first. A segment boundary is a state the source went through (all shipped
/// transactions up to it form a prefix closed under "committed before"), so the foreign keys
/// hold after every flush.
pub async fn apply(
    tx: &mut sqlx::PgConnection,
    plan: &ReplayPlan,
    schema: &str,
    tables: &BTreeMap<String, TableInfo>,
) -> Result<ReplayReport, BackupError> {
    let order: Vec<String> =
        crate::store::catalog::dependency_order(tables.values().cloned().collect())
            .into_iter()
            .map(|t| t.name)
            .collect();
    let mut report = ReplayReport::default();
    let mut xids = std::collections::HashSet::new();
    let mut pending = NetEffect::default();
    for (n, local) in &plan.files {
        let mut reader = SegmentReader::open(&local.path, *n, &plan.archive_id, plan.key.as_ref())?;
        while let Some(c) = reader.next_change()? {
            if c.op == "M" || plan.base.saw(c.xid) || !plan.point.snapshot.saw(c.xid) {
                continue;
            }
            xids.insert(c.xid);
            report.changes += 1;
            let info = table(tables, &c.table)?;
            match c.op.as_str() {
                "W" | "D" => {
                    let key = key_of(info, c.row.get())?;
                    let latest = Latest {
                        at: (*n, c.id),
                        deleted: c.op == "D",
                        row: c.row,
                    };
                    let rows = pending.tables.entry(c.table).or_default();
                    if rows.insert(key, latest).is_none() {
                        pending.rows += 1;
                    }
                }
                "T" => {
                    flush(tx, schema, tables, &order, std::mem::take(&mut pending)).await?;
                    sql::delete_all(&mut *tx, schema, &info.name)
                        .await
                        .map_err(db(&c.table))?;
                }
                other => {
                    return Err(BackupError::Verification(format!(
                        "segment {n}: unknown change kind {other:?}"
                    )));
                }
            }
        }
        if pending.rows >= FLUSH_ROWS {
            flush(tx, schema, tables, &order, std::mem::take(&mut pending)).await?;
        }
    }
    flush(tx, schema, tables, &order, pending).await?;
    report.transactions = xids.len() as u64;
    Ok(report)
}

fn db(table: &str) -> impl FnOnce(sqlx::Error) -> BackupError + '_ {
    move |source| BackupError::Database {
        context: format!("replaying changes to {table}"),
        source,
    }
}

fn table<'a>(
    tables: &'a BTreeMap<String, TableInfo>,
    name: &str,
) -> Result<&'a TableInfo, BackupError> {
    let info = tables.get(name).ok_or_else(|| {
        BackupError::Refused(format!(
            "the archive changes table {name}, which the target lacks"
        ))
    })?;
    if info.primary_key.is_empty() {
        return Err(BackupError::Refused(format!(
            "table {name} has no primary key, so its changes cannot be replayed"
        )));
    }
    Ok(info)
}

/// The primary-key values of a row image, as a comparable string.
fn key_of(info: &TableInfo, row: &str) -> Result<String, BackupError> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(row)
        .map_err(|e| BackupError::Verification(format!("bad row image in {}: {e}", info.name)))?;
    let key: Vec<&serde_json::Value> = info
        .primary_key
        .iter()
        .map(|c| map.get(c).unwrap_or(&serde_json::Value::Null))
        .collect();
    serde_json::to_string(&key)
        .map_err(|e| BackupError::Verification(format!("bad key in {}: {e}", info.name)))
}

/// Writes the net effect: upserts parents first, then deletes children first, each table's
/// rows in log order, [`STATEMENT_ROWS`] per statement.
async fn flush(
    tx: &mut sqlx::PgConnection,
    schema: &str,
    tables: &BTreeMap<String, TableInfo>,
    order: &[String],
    mut pending: NetEffect,
) -> Result<(), BackupError> {
    let mut deletes = Vec::new();
    for name in order {
        let Some(rows) = pending.tables.remove(name) else {
            continue;
        };
        let info = table(tables, name)?;
        let (mut writes, mut gone): (Vec<Latest>, Vec<Latest>) =
            rows.into_values().partition(|l| !l.deleted);
        writes.sort_by_key(|l| l.at);
        for chunk in writes.chunks(STATEMENT_ROWS) {
            statement(tx, schema, info, false, chunk).await?;
        }
        gone.sort_by_key(|l| std::cmp::Reverse(l.at));
        deletes.push((info, gone));
    }
    for (info, gone) in deletes.into_iter().rev() {
        for chunk in gone.chunks(STATEMENT_ROWS) {
            statement(tx, schema, info, true, chunk).await?;
        }
    }
    Ok(())
}

async fn statement(
    tx: &mut sqlx::PgConnection,
    schema: &str,
    info: &TableInfo,
    delete: bool,
    rows: &[Latest],
) -> Result<(), BackupError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut json = String::from("[");
    for (i, l) in rows.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(l.row.get());
    }
    json.push(']');
    let written = if delete {
        sql::delete_rows(&mut *tx, schema, info, json).await
    } else {
        sql::upsert_rows(&mut *tx, schema, info, json).await
    };
    written.map_err(db(&info.name))
}

/// Moves every column-owned sequence past the largest id the replay wrote (the backup set
/// them as of its snapshot); run after the backup's own sequence values are set.
pub async fn advance_sequences(
    tx: &mut sqlx::PgConnection,
    schema: &str,
    tables: &BTreeMap<String, TableInfo>,
) -> Result<u64, BackupError> {
    let owned = sql::owned_sequences(&mut *tx, schema)
        .await
        .map_err(db("sequences"))?;
    let mut moved = 0;
    for seq in owned {
        if !tables.contains_key(&seq.table) {
            continue;
        }
        let advanced = sql::advance_sequence(&mut *tx, schema, &seq)
            .await
            .map_err(db(&seq.table))?;
        moved += u64::from(advanced);
    }
    Ok(moved)
}
