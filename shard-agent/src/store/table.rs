//! A shard's MySQL table, resolved once, and the SQL text that names it (pure: no IO).

use walshard_contract::{Ident, Schema};

use super::statements::{MAX_PLACEHOLDERS, placeholders};

/// A shard's table, resolved once.
#[derive(Debug, Clone)]
pub struct ShardTable {
    /// The shard id; the table is `shard_<id>`.
    pub shard: Ident,
    /// The table's columns, the key first (its primary key).
    pub schema: Schema,
    /// `` `shard_<id>` ``
    pub(super) table: String,
    /// `` `a`,`b`,`c` ``
    pub(super) column_list: String,
}

impl ShardTable {
    /// The table of `shard` with `schema` (nothing is created in MySQL: see
    /// [`Store::ensure_shard`](super::Store::ensure_shard)).
    pub fn new(shard: Ident, schema: Schema) -> Self {
        let column_list = schema
            .columns()
            .iter()
            .map(Ident::quoted)
            .collect::<Vec<_>>()
            .join(",");
        Self {
            table: format!("`shard_{}`", shard.as_str()),
            shard,
            schema,
            column_list,
        }
    }

    /// The key column, quoted.
    pub(super) fn key(&self) -> String {
        self.schema.key().quoted()
    }

    /// `CREATE TABLE IF NOT EXISTS`: the key `NOT NULL` and primary, the other columns nullable.
    pub(super) fn create_sql(&self) -> String {
        let cols: Vec<String> = self
            .schema
            .iter()
            .enumerate()
            .map(|(i, (c, d))| {
                let null = if i == 0 { " NOT NULL" } else { " NULL" };
                format!("{} {}{null}", c.quoted(), d.sql_type())
            })
            .collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({})) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            self.table,
            cols.join(", "),
            self.key()
        )
    }

    /// An `INSERT` of `rows` whole rows.
    pub(super) fn insert_sql(&self, rows: usize) -> String {
        let one = format!("({})", placeholders(self.schema.columns().len()));
        format!(
            "INSERT INTO {} ({}) VALUES {}",
            self.table,
            self.column_list,
            vec![one; rows].join(",")
        )
    }

    /// Rows per INSERT statement that keep within the placeholder limit.
    pub(super) fn rows_per_insert(&self) -> usize {
        (MAX_PLACEHOLDERS / self.schema.columns().len()).max(1)
    }
}
