//! Compares the two candidate embedded stores (redb and fjall) on the log's workload and
//! prints a table.
//!
//! Run: `cargo run --release -p gateway --example store_choice [-- <scratch dir>]`
//!
//! Measured, for each store, in the same run and on the same disk:
//! - group-commit append: batches of 1, 16 and 256 messages of ~150 bytes, each batch made
//!   durable (fsync) before the next starts. Each message writes its record under its
//!   sequence number plus one channel-index entry, as the log does.
//! - range read: 100,000 messages read back in sequence order, values copied out.
//!
//! Without an argument the scratch directories are made under the system temp dir.

use anyhow::Result;
use redb::{ReadableDatabase, TableDefinition};
use std::path::Path;
use std::time::{Duration, Instant};

const MSGS: TableDefinition<u64, &[u8]> = TableDefinition::new("msgs");
const CHAN: TableDefinition<&[u8], ()> = TableDefinition::new("chan");
const PAYLOAD_LEN: usize = 150;
const READ_N: u64 = 100_000;

/// One store under test: append a batch durably, read a range.
trait Store {
    fn append_durable(&mut self, first_seq: u64, n: usize) -> Result<()>;
    fn append_bulk(&mut self, first_seq: u64, n: usize) -> Result<()>;
    fn read_range(&self, from: u64, n: u64) -> Result<u64>;
}

fn value(seq: u64) -> Vec<u8> {
    let mut v = vec![b'x'; PAYLOAD_LEN];
    v[..8].copy_from_slice(&seq.to_be_bytes());
    v
}

fn chan_key(seq: u64) -> Vec<u8> {
    let mut k = format!("plant1/line{}/temp", seq % 16).into_bytes();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

struct Redb(redb::Database);

impl Redb {
    fn write(&mut self, first_seq: u64, n: usize, durable: bool) -> Result<()> {
        let mut tx = self.0.begin_write()?;
        if !durable {
            tx.set_durability(redb::Durability::None)?;
        }
        {
            let mut msgs = tx.open_table(MSGS)?;
            let mut chan = tx.open_table(CHAN)?;
            for seq in first_seq..first_seq + n as u64 {
                msgs.insert(seq, value(seq).as_slice())?;
                chan.insert(chan_key(seq).as_slice(), ())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl Store for Redb {
    fn append_durable(&mut self, first_seq: u64, n: usize) -> Result<()> {
        self.write(first_seq, n, true)
    }
    fn append_bulk(&mut self, first_seq: u64, n: usize) -> Result<()> {
        self.write(first_seq, n, false)
    }
    fn read_range(&self, from: u64, n: u64) -> Result<u64> {
        let tx = self.0.begin_read()?;
        let msgs = tx.open_table(MSGS)?;
        let mut bytes = 0u64;
        for row in msgs.range(from..from + n)? {
            let (_, v) = row?;
            bytes += v.value().to_vec().len() as u64;
        }
        Ok(bytes)
    }
}

struct Fjall {
    db: fjall::Database,
    msgs: fjall::Keyspace,
    chan: fjall::Keyspace,
}

impl Fjall {
    fn write(&mut self, first_seq: u64, n: usize, durable: bool) -> Result<()> {
        let mode = durable.then_some(fjall::PersistMode::SyncAll);
        let mut batch = self.db.batch().durability(mode);
        for seq in first_seq..first_seq + n as u64 {
            batch.insert(&self.msgs, seq.to_be_bytes(), value(seq));
            batch.insert(&self.chan, chan_key(seq), []);
        }
        batch.commit()?;
        Ok(())
    }
}

impl Store for Fjall {
    fn append_durable(&mut self, first_seq: u64, n: usize) -> Result<()> {
        self.write(first_seq, n, true)
    }
    fn append_bulk(&mut self, first_seq: u64, n: usize) -> Result<()> {
        self.write(first_seq, n, false)
    }
    fn read_range(&self, from: u64, n: u64) -> Result<u64> {
        let mut bytes = 0u64;
        let end = from + n;
        for g in self.msgs.range(from.to_be_bytes()..end.to_be_bytes()) {
            let (_, v) = g.into_inner()?;
            bytes += v.to_vec().len() as u64;
        }
        Ok(bytes)
    }
}

/// Opens a store under test in a scratch directory.
type Opener = fn(&Path) -> Result<Box<dyn Store>>;

fn open_redb(dir: &Path) -> Result<Box<dyn Store>> {
    Ok(Box::new(Redb(redb::Database::create(
        dir.join("bench.redb"),
    )?)))
}

fn open_fjall(dir: &Path) -> Result<Box<dyn Store>> {
    let db = fjall::Database::builder(dir.join("fjall")).open()?;
    let msgs = db.keyspace("msgs", fjall::KeyspaceCreateOptions::default)?;
    let chan = db.keyspace("chan", fjall::KeyspaceCreateOptions::default)?;
    Ok(Box::new(Fjall { db, msgs, chan }))
}

/// Result of one append measurement.
struct AppendRow {
    batch: usize,
    commits_per_s: f64,
    msgs_per_s: f64,
    mean_commit: Duration,
}

fn bench_append(store: &mut dyn Store, batch: usize, next: &mut u64) -> Result<AppendRow> {
    // Enough batches to be stable, bounded so the whole run takes well under a minute.
    let batches: u32 = match batch {
        1 => 300,
        16 => 200,
        _ => 100,
    };
    let start = Instant::now();
    for _ in 0..batches {
        store.append_durable(*next, batch)?;
        *next += batch as u64;
    }
    let el = start.elapsed();
    Ok(AppendRow {
        batch,
        commits_per_s: f64::from(batches) / el.as_secs_f64(),
        msgs_per_s: (batches as usize * batch) as f64 / el.as_secs_f64(),
        mean_commit: el / batches,
    })
}

fn run(name: &str, open: Opener, base: &Path) -> Result<(Vec<AppendRow>, Duration)> {
    let dir = tempfile::tempdir_in(base)?;
    let mut store = open(dir.path())?;
    let mut next = 1u64;
    let mut rows = Vec::new();
    for batch in [1usize, 16, 256] {
        rows.push(bench_append(store.as_mut(), batch, &mut next)?);
    }
    // Top up to READ_N + existing messages without fsync per batch, then one durable commit.
    let read_from = next;
    let mut left = READ_N as usize;
    while left > 0 {
        let n = left.min(4096);
        store.append_bulk(next, n)?;
        next += n as u64;
        left -= n;
    }
    store.append_durable(next, 1)?;
    // Warm once, then measure the best of three (the page cache is warm in both cases).
    let expect = READ_N * PAYLOAD_LEN as u64;
    let mut best = Duration::MAX;
    for _ in 0..4 {
        let t = Instant::now();
        let bytes = store.read_range(read_from, READ_N)?;
        best = best.min(t.elapsed());
        anyhow::ensure!(
            bytes == expect,
            "{name}: read {bytes} bytes, expected {expect}"
        );
    }
    drop(store);
    Ok((rows, best))
}

fn main() -> Result<()> {
    let base = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let candidates: [(&str, Opener); 2] = [("redb 4", open_redb), ("fjall 3", open_fjall)];
    println!("| store | batch | commits/s | msgs/s | mean commit |");
    println!("|---|---:|---:|---:|---:|");
    let mut reads = Vec::new();
    for (name, open) in candidates {
        let (rows, read) = run(name, open, &base)?;
        for r in rows {
            println!(
                "| {name} | {} | {:.0} | {:.0} | {:.2} ms |",
                r.batch,
                r.commits_per_s,
                r.msgs_per_s,
                r.mean_commit.as_secs_f64() * 1e3
            );
        }
        reads.push((name, read));
    }
    println!();
    println!("| store | range read of {READ_N} msgs | msgs/s |");
    println!("|---|---:|---:|");
    for (name, d) in reads {
        println!(
            "| {name} | {:.1} ms | {:.0} |",
            d.as_secs_f64() * 1e3,
            READ_N as f64 / d.as_secs_f64()
        );
    }
    Ok(())
}
