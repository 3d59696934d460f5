// A consistent copy of master.db for a shadow to bootstrap from, both ends of it. The master makes it with
// SQLite's online backup (better-sqlite3 db.backup: page steps that yield to the event loop; writes this same
// connection makes meanwhile are carried into the copy, so the copy is the database as of the backup's last
// step) — never by copying a live file, which could catch a torn page or miss the WAL. The copy is turned
// into a self-contained file (journal_mode DELETE) and streamed as a tar archive: the file, hashed as it is
// read, then a JSON manifest with that hash. The shadow hashes what it writes (the pair check) and checks size,
// sha256 and the meta row against the manifest before installing it.
import Database from 'better-sqlite3'
import { createHash } from 'node:crypto'
import { createReadStream, mkdirSync, openSync, closeSync, fsyncSync, renameSync, rmSync, statSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import tar from 'tar-stream'
import { GranaryError } from '../shared/errors.js'
import { snapshotDbName, snapshotManifestName, type SnapshotManifest } from '../shared/protocol.js'
import { dbFileName, readMeta, schemaVersion, type Db } from './db.js'

const backupPagesPerStep = 1024          // ~4 MiB per event-loop turn: fast, yet a turn stays a few ms
const manifestBytesMax = 64 * 1024
const writeBatchBytes = 1024 * 1024      // received pieces are written in batches of this (one writev each)
const syncEveryBytes = 8 * 1024 * 1024   // fdatasync while receiving, so the final fsync is short (PERF-NOTES.md)
let snapshotCount = 0

// The master's side: the backup, described except for its hash (computed while it streams).
export interface MadeSnapshot { file: string, manifest: Omit<SnapshotManifest, 'sha256'> }
// The shadow's side: the received file and the full manifest it was checked against.
export interface ReceivedSnapshot { file: string, manifest: SnapshotManifest }

// Backs the database up into `dir` (made if missing). The caller removes `file` when done with it.
export async function makeSnapshot (db: Db, dir: string, nowMs: number): Promise<MadeSnapshot> {
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `snapshot-${process.pid}-${++snapshotCount}.db`)
  try {
    await db.backup(file, { progress: () => backupPagesPerStep })
    const copy = new Database(file)
    let meta
    try {
      copy.pragma('journal_mode = DELETE')   // one file, no -wal beside it to carry along
      meta = readMeta(copy)
    } finally {
      copy.close()
    }
    const sizeBytes = statSync(file).size
    return { file, manifest: { seq: meta.seq, term: meta.term, schemaVersion: meta.schemaVersion, sizeBytes, createdAtMs: nowMs } }
  } catch (err) {
    rmSync(file, { force: true })
    throw err
  }
}

// The tar stream: the database file, then the manifest carrying the sha256 of the bytes just sent (one read
// of the file, not a hashing pass before streaming).
export function packSnapshot (made: MadeSnapshot): Readable {
  const pack = tar.pack()
  const hash = createHash('sha256')
  const entry = pack.entry({ name: snapshotDbName, size: made.manifest.sizeBytes }, (err) => {
    if (err) { pack.destroy(err); return }
    const manifest = JSON.stringify({ ...made.manifest, sha256: hash.digest('hex') } satisfies SnapshotManifest)
    pack.entry({ name: snapshotManifestName, size: Buffer.byteLength(manifest) }, manifest)
    pack.finalize()
  })
  const source = createReadStream(made.file, { highWaterMark: writeBatchBytes })
  source.once('error', (err) => pack.destroy(err))
  source.on('data', (piece) => hash.update(piece))
  source.pipe(entry)
  // A node Readable over the streamx one, so fastify (and error propagation) treat it as any other stream.
  return Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false })
}

// Reads a snapshot tar stream into `dir` (emptied first): the database file, checked against the manifest
// that follows it (size, sha256, and its meta row's seq, term and schema version).
export async function receiveSnapshot (source: Readable, dir: string): Promise<ReceivedSnapshot> {
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const extract = tar.extract()
  source.once('error', (err) => extract.destroy(err))
  source.pipe(extract)
  let manifest: SnapshotManifest | undefined
  let written: { sizeBytes: number, sha256: string } | undefined
  const file = join(dir, `${snapshotDbName}.part`)
  for await (const entry of extract) {
    if (entry.header.name === snapshotDbName && written === undefined) {
      written = await writeHashed(entry as AsyncIterable<Buffer>, file)
    } else if (entry.header.name === snapshotManifestName && written !== undefined && manifest === undefined) {
      manifest = parseManifest(await readSmall(entry as AsyncIterable<Buffer>))
    } else {
      throw new GranaryError('GRN_INTEGRITY', ['a snapshot', `unexpected entry ${JSON.stringify(entry.header.name)}`])
    }
  }
  if (manifest === undefined || written === undefined) throw new GranaryError('GRN_INTEGRITY', ['a snapshot', 'the stream ended before its manifest'])
  if (written.sizeBytes !== manifest.sizeBytes || written.sha256 !== manifest.sha256) {
    throw new GranaryError('GRN_INTEGRITY', ['a snapshot', `got ${written.sizeBytes} bytes with sha256 ${written.sha256}, the manifest says ${manifest.sizeBytes} and ${manifest.sha256}`])
  }
  checkMeta(file, manifest)
  return { file, manifest }
}

// Replaces the data folder's database with a received snapshot. A crash part-way leaves no master.db at all,
// and a shadow without one bootstraps again: never a mix of the old and the new.
export function installSnapshot (dataDir: string, file: string): void {
  const target = join(dataDir, dbFileName)
  for (const suffix of ['', '-wal', '-shm']) rmSync(target + suffix, { force: true })
  renameSync(file, target)
  const fd = openSync(dataDir, 'r')
  try { fsyncSync(fd) } finally { closeSync(fd) }
}

async function readSmall (entry: AsyncIterable<Buffer>): Promise<string> {
  const pieces: Buffer[] = []
  let bytes = 0
  for await (const piece of entry) {
    bytes += piece.length
    if (bytes > manifestBytesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', ['snapshot manifest', manifestBytesMax])
    pieces.push(piece)
  }
  return Buffer.concat(pieces).toString('utf8')
}

function parseManifest (text: string): SnapshotManifest {
  let parsed: Partial<SnapshotManifest>
  try { parsed = JSON.parse(text) as Partial<SnapshotManifest> } catch { parsed = {} }
  const whole = (n: unknown): boolean => Number.isSafeInteger(n) && (n as number) >= 0
  if (!whole(parsed.seq) || !whole(parsed.term) || !whole(parsed.schemaVersion) || !whole(parsed.sizeBytes) ||
      typeof parsed.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(parsed.sha256)) {
    throw new GranaryError('GRN_INTEGRITY', ['a snapshot', 'malformed manifest'])
  }
  if (parsed.schemaVersion !== schemaVersion) {
    throw new GranaryError('GRN_INTEGRITY', ['a snapshot', `schema version ${String(parsed.schemaVersion)}, this Granary has ${schemaVersion}`])
  }
  return parsed as SnapshotManifest
}

// Written and hashed as it arrives (pieces gathered into one writev per writeBatchBytes, synced every
// syncEveryBytes), then fsynced: the pair check to the master's hash of the same bytes as it read them.
async function writeHashed (entry: AsyncIterable<Buffer>, file: string): Promise<{ sizeBytes: number, sha256: string }> {
  const hash = createHash('sha256')
  let sizeBytes = 0
  let batch: Buffer[] = []
  let batchBytes = 0
  let unsyncedBytes = 0
  const handle = await open(file, 'w')
  try {
    for await (const piece of entry) {
      sizeBytes += piece.length
      hash.update(piece)
      batch.push(piece)
      batchBytes += piece.length
      if (batchBytes >= writeBatchBytes) {
        await handle.writev(batch)
        unsyncedBytes += batchBytes
        batch = []
        batchBytes = 0
      }
      if (unsyncedBytes >= syncEveryBytes) {
        await handle.datasync()
        unsyncedBytes = 0
      }
    }
    if (batch.length > 0) await handle.writev(batch)
    await handle.sync()
  } finally {
    await handle.close()
  }
  return { sizeBytes, sha256: hash.digest('hex') }
}

function checkMeta (file: string, manifest: SnapshotManifest): void {
  const copy = new Database(file, { readonly: true })
  try {
    const meta = readMeta(copy)
    if (meta.seq !== manifest.seq || meta.term !== manifest.term || meta.schemaVersion !== manifest.schemaVersion) {
      throw new GranaryError('GRN_INTEGRITY', ['a snapshot', `its meta row (seq ${meta.seq}, term ${meta.term}) disagrees with the manifest (seq ${manifest.seq}, term ${manifest.term})`])
    }
  } finally {
    copy.close()
  }
}
