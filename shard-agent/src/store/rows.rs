//! Reading a shard's rows and inserting them, in statements within MySQL's placeholder limit.

use sqlx::{AssertSqlSafe, Row as _};
use walshard_contract::{KeyRange, Row};

use super::statements::{MAX_PLACEHOLDERS, pad_pow2, placeholders, pow2_chunks};
use super::values::{bind_value, decode_row};
use super::{ShardTable, Store, StoreError, ranges};

impl Store {
    /// Rows with keys in `range` (inclusive), ordered by key.
    pub async fn read_range(
        &self,
        t: &ShardTable,
        range: KeyRange,
    ) -> Result<Vec<Row>, StoreError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE {k} BETWEEN ? AND ? ORDER BY {k}",
            t.column_list,
            t.table,
            k = t.key()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(range.low)
            .bind(range.high)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| decode_row(&t.schema, r))
            .collect::<Result<_, _>>()?)
    }

    /// The rows of each of `ranges` (inclusive), each ordered by key, in one statement over the
    /// ranges merged ([`ranges::covering`]); an empty range gets no rows.
    pub async fn read_ranges(
        &self,
        t: &ShardTable,
        ranges: &[KeyRange],
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let cover = ranges::covering(ranges);
        if cover.is_empty() {
            return Ok(vec![Vec::new(); ranges.len()]);
        }
        // Padded to a power of two (the last range repeated) so few statement shapes are cached.
        let cover = pad_pow2(&cover);
        let wheres = vec![format!("{} BETWEEN ? AND ?", t.key()); cover.len()];
        let sql = format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {}",
            t.column_list,
            t.table,
            wheres.join(" OR "),
            t.key()
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for r in &cover {
            query = query.bind(r.low).bind(r.high);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let rows: Vec<Row> = rows
            .iter()
            .map(|r| decode_row(&t.schema, r))
            .collect::<Result<_, _>>()?;
        Ok(ranges::split(&rows, ranges))
    }

    /// Every row of the shard, ordered by key.
    pub async fn read_all(&self, t: &ShardTable) -> Result<Vec<Row>, StoreError> {
        self.read_range(
            t,
            KeyRange {
                low: i64::MIN,
                high: i64::MAX,
            },
        )
        .await
    }

    pub(super) async fn insert_rows(
        &self,
        tx: &mut sqlx::MySqlConnection,
        t: &ShardTable,
        rows: &[&Row],
    ) -> Result<(), StoreError> {
        for range in pow2_chunks(rows.len(), t.rows_per_insert()) {
            let chunk = &rows[range];
            let mut q = sqlx::query(AssertSqlSafe(t.insert_sql(chunk.len())));
            for row in chunk {
                for v in &row.0 {
                    q = bind_value(q, v);
                }
            }
            q.execute(&mut *tx).await?;
        }
        Ok(())
    }

    pub(super) async fn existing_keys(
        &self,
        tx: &mut sqlx::MySqlConnection,
        t: &ShardTable,
        keys: &[i64],
    ) -> Result<Vec<i64>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(MAX_PLACEHOLDERS / 2) {
            let chunk = pad_pow2(chunk);
            let sql = format!(
                "SELECT DISTINCT {k} FROM {} WHERE {k} IN ({}) ORDER BY {k}",
                t.table,
                placeholders(chunk.len()),
                k = t.key()
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for k in &chunk {
                q = q.bind(*k);
            }
            for r in q.fetch_all(&mut *tx).await? {
                found.push(r.try_get::<i64, _>(0)?);
            }
        }
        Ok(found)
    }
}
