//! Reading the original deployment's five tables (LEGACY.md) in one consistent snapshot, in
//! pages by id (keyset pagination), so that a live original is neither locked nor loaded into
//! memory.

use anyhow::Context;
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, Row};

use tooltool_proto::{Digest, Visibility};

/// A file's digest, size and visibility, validated.
pub type FileFacts = (Digest, u64, Visibility);

/// A file row of the original, with its instances' regions and its pending upload.
#[derive(Debug, Clone)]
pub struct LegacyFile {
    /// The original's row id (the page cursor).
    pub id: i64,
    /// Its `sha512` column, not yet validated.
    pub sha512: String,
    /// Its size.
    pub size: i64,
    /// Its visibility enum, as text.
    pub visibility: String,
    /// The original's regions holding an instance.
    pub regions: Vec<String>,
    /// Its pending upload: `(region, expires as unix seconds)`.
    pub pending: Option<(String, i64)>,
}

impl LegacyFile {
    /// The validated digest, size and visibility; `Err` says what is wrong with the row.
    pub fn parsed(&self) -> Result<FileFacts, String> {
        let digest = Digest::parse(&self.sha512).map_err(|_| format!("{:?} is not a sha512 digest", self.sha512))?;
        let size = u64::try_from(self.size).map_err(|_| format!("size {} is negative", self.size))?;
        let visibility = self.visibility.parse().map_err(|_| format!("visibility {:?} is unknown", self.visibility))?;
        Ok((digest, size, visibility))
    }
}

/// A batch row of the original, and its names: `(filename, sha512, size, visibility)`.
#[derive(Debug, Clone)]
pub struct LegacyBatch {
    /// Its id.
    pub id: i64,
    /// Upload time, unix seconds (the naive timestamp read as UTC, fractions dropped).
    pub uploaded: i64,
    /// Its author.
    pub author: String,
    /// Its message.
    pub message: String,
    /// Its files by name.
    pub files: Vec<(String, String, i64, String)>,
}

/// One read-only REPEATABLE READ transaction on the original's database.
pub struct Source {
    conn: PgConnection,
}

impl Source {
    /// Connects to `url` and opens the snapshot every read of the run shares.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let mut conn =
            PgConnection::connect(url).await.context("--from: cannot connect to the original's PostgreSQL")?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut conn).await?;
        let found: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_name IN \
             ('releng_tooltool_files', 'releng_tooltool_batches', 'releng_tooltool_batch_files', \
              'releng_tooltool_file_instances', 'releng_tooltool_pending_upload')",
        )
        .fetch_one(&mut conn)
        .await?
        .try_get("n")?;
        anyhow::ensure!(
            found == 5,
            "--from: the database lacks the original's tables (found {found} of 5 releng_tooltool_* tables)"
        );
        Ok(Self { conn })
    }

    /// Rows of `table` (`files` or `batches`).
    pub async fn count(&mut self, table: &str) -> anyhow::Result<u64> {
        let n: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM releng_tooltool_{table}"))
            .fetch_one(&mut self.conn)
            .await?
            .try_get("n")?;
        Ok(n as u64)
    }

    /// Every region named by an instance or a pending upload.
    pub async fn regions(&mut self) -> anyhow::Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT region::text AS region FROM releng_tooltool_file_instances \
             UNION SELECT region::text FROM releng_tooltool_pending_upload ORDER BY 1",
        )
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows.iter().map(|r| r.try_get("region")).collect::<Result<_, _>>()?)
    }

    /// Up to `limit` files with ids above `after`, by id.
    pub async fn files(&mut self, after: i64, limit: i64) -> anyhow::Result<Vec<LegacyFile>> {
        let rows = sqlx::query(
            "SELECT f.id::bigint AS id, f.sha512::text AS sha512, f.size::bigint AS size, \
             f.visibility::text AS visibility, \
             COALESCE((SELECT string_agg(i.region::text, ',' ORDER BY i.region::text) \
                 FROM releng_tooltool_file_instances i WHERE i.file_id = f.id), '') AS regions, \
             p.region::text AS pending_region, FLOOR(EXTRACT(EPOCH FROM p.expires))::bigint AS pending_expires \
             FROM releng_tooltool_files f LEFT JOIN releng_tooltool_pending_upload p ON p.file_id = f.id \
             WHERE f.id > $1 ORDER BY f.id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&mut self.conn)
        .await?;
        rows.iter().map(file_from_row).collect()
    }

    /// Up to `limit` batches with ids above `after`, by id, each with its names.
    pub async fn batches(&mut self, after: i64, limit: i64) -> anyhow::Result<Vec<LegacyBatch>> {
        let rows = sqlx::query(
            "SELECT id::bigint AS id, FLOOR(EXTRACT(EPOCH FROM uploaded))::bigint AS uploaded, author, message \
             FROM releng_tooltool_batches WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&mut self.conn)
        .await?;
        let mut batches: Vec<LegacyBatch> = rows
            .iter()
            .map(|r| {
                Ok(LegacyBatch {
                    id: r.try_get("id")?,
                    uploaded: r.try_get("uploaded")?,
                    author: r.try_get("author")?,
                    message: r.try_get("message")?,
                    files: Vec::new(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        let (Some(first), Some(last)) = (batches.first(), batches.last()) else { return Ok(batches) };
        let names = sqlx::query(
            "SELECT bf.batch_id::bigint AS batch_id, bf.filename, f.sha512::text AS sha512, f.size::bigint AS size, \
             f.visibility::text AS visibility FROM releng_tooltool_batch_files bf \
             JOIN releng_tooltool_files f ON f.id = bf.file_id \
             WHERE bf.batch_id >= $1 AND bf.batch_id <= $2 ORDER BY bf.batch_id, bf.filename",
        )
        .bind(first.id)
        .bind(last.id)
        .fetch_all(&mut self.conn)
        .await?;
        let mut i = 0;
        for r in &names {
            let batch_id: i64 = r.try_get("batch_id")?;
            while batches[i].id < batch_id {
                i += 1;
            }
            batches[i].files.push((
                r.try_get("filename")?,
                r.try_get("sha512")?,
                r.try_get("size")?,
                r.try_get("visibility")?,
            ));
        }
        Ok(batches)
    }

    /// Ends the snapshot.
    pub async fn close(mut self) -> anyhow::Result<()> {
        sqlx::query("COMMIT").execute(&mut self.conn).await?;
        self.conn.close().await?;
        Ok(())
    }
}

fn file_from_row(r: &PgRow) -> anyhow::Result<LegacyFile> {
    let regions: String = r.try_get("regions")?;
    let pending =
        match (r.try_get::<Option<String>, _>("pending_region")?, r.try_get::<Option<i64>, _>("pending_expires")?) {
            (Some(region), Some(expires)) => Some((region, expires)),
            _ => None,
        };
    Ok(LegacyFile {
        id: r.try_get("id")?,
        sha512: r.try_get("sha512")?,
        size: r.try_get("size")?,
        visibility: r.try_get("visibility")?,
        regions: regions.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        pending,
    })
}
