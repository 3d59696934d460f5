// One chunkserver's disk: the data folder layout, the in-memory index of stored chunks, the server id,
// the highest master term seen, free space, and deletes. The chunk file format is in chunk-format.ts;
// streaming a new chunk to disk is chunk-writer.ts.
//
//   ${dataDir}/server-id                     this server's ServerId, made once (temp file then rename)
//   ${dataDir}/term                          the highest master term seen (decimal), persisted the same way
//   ${dataDir}/chunks/XX/<handle>_<v>.chunk  finished chunks (XX = the handle's last two hex digits)
//   ${dataDir}/tmp/                          writes in progress; emptied at start (a crash leaves only garbage there)
import { mkdir, open, readdir, readFile, rename, rm, statfs, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { GranaryError } from '../shared/errors.js'
import { assert } from '../shared/assert.js'
import { newServerId, serverIdPattern, type ChunkHandle, type ServerId } from '../shared/ids.js'
import { corruptChunksKeptMax } from '../shared/limits.js'
import type { StoredChunk } from '../shared/protocol.js'
import type { Logger } from '../shared/log.js'
import { chunkFileNameOf, chunkFolderOf, decodeFooter, fileBytesOf, footerBytes, parseChunkFileName } from './chunk-format.js'

export type StoreEvent = 'added' | 'removed'
export type StoreListener = (event: StoreEvent, chunk: StoredChunk) => void

export interface StoreOptions { dataDir: string, capacityBytes: number, log: Logger }

interface WriteSlot { reservedBytes: number }
interface UnreadableFile { version: number, fileBytes: number }

const scanFilesInFlightMax = 64    // footers read at once while indexing a folder
const folderPattern = /^[0-9a-f]{2}$/
const statfsCacheMs = 1000          // free space is read from the file system at most this often

export class ChunkStore {
  readonly dataDir: string
  readonly serverId: ServerId
  readonly #capacityBytes: number
  readonly #log: Logger
  readonly #index = new Map<ChunkHandle, StoredChunk>()
  readonly #writes = new Map<string, WriteSlot>()       // `${handle}_${version}` → reservation
  readonly #listeners: StoreListener[] = []
  readonly #corrupt = new Set<string>()                  // `${handle}_${version}`, insertion-ordered
  #corruptFound = 0
  #committedBytes = 0
  // Chunk files the start-up scan could not read (footer): not indexed, reported corrupt until the master's
  // delete removes them or a good copy is written over them. At most corruptChunksKeptMax files in all.
  readonly #unreadable = new Map<ChunkHandle, UnreadableFile[]>()
  #unreadableCount = 0
  #usedBytes = 0
  #term: number
  #termWrite: Promise<void> = Promise.resolve()
  #tempSeq = 0
  #statfsCache: { atMs: number, availableBytes: number, totalBytes: number } | undefined

  private constructor (options: StoreOptions, serverId: ServerId, term: number) {
    this.dataDir = options.dataDir
    this.#capacityBytes = options.capacityBytes
    this.#log = options.log
    this.serverId = serverId
    this.#term = term
  }

  static async open (options: StoreOptions): Promise<ChunkStore> {
    const { dataDir } = options
    await mkdir(join(dataDir, 'chunks'), { recursive: true })
    await rm(join(dataDir, 'tmp'), { recursive: true, force: true })
    await mkdir(join(dataDir, 'tmp'), { recursive: true })
    const serverId = await loadServerId(dataDir)
    const term = await loadTerm(dataDir)
    const store = new ChunkStore(options, serverId, term)
    await store.#scan()
    options.log.info({ serverId, term, chunkCount: store.chunkCount, usedBytes: store.usedBytes }, 'store opened')
    return store
  }

  // ---- index ----------------------------------------------------------------------------------------

  get chunkCount (): number { return this.#index.size }
  get usedBytes (): number { return this.#usedBytes }
  get activeWrites (): number { return this.#writes.size }
  get committedBytes (): number { return this.#committedBytes }     // chunk bytes committed since start (metrics)
  get corruptFoundCount (): number { return this.#corruptFound }    // chunks newly marked corrupt since start (metrics)
  get (chunkHandle: ChunkHandle): StoredChunk | undefined { return this.#index.get(chunkHandle) }
  chunks (): StoredChunk[] { return [...this.#index.values()] }
  onChange (listener: StoreListener): void { this.#listeners.push(listener) }

  // The stored chunk for a read, or GRN_CHUNK_NOT_FOUND when this exact version is not here.
  lookup (chunkHandle: ChunkHandle, version: number): { path: string, lengthBytes: number } {
    const chunk = this.#index.get(chunkHandle)
    if (chunk === undefined || chunk.version !== version) throw new GranaryError('GRN_CHUNK_NOT_FOUND', [chunkHandle, version])
    return { path: this.chunkPathOf(chunkHandle, version), lengthBytes: chunk.lengthBytes }
  }

  // Reports this exact stored version again as `added`, so the next heartbeat to every master carries it as
  // it carries a finished copy: for a replicate command naming a good copy the master has no row for.
  // False when that version is not stored here.
  announce (chunkHandle: ChunkHandle, version: number): boolean {
    const chunk = this.#index.get(chunkHandle)
    if (chunk === undefined || chunk.version !== version) return false
    this.#emit('added', chunk)
    return true
  }

  chunkPathOf (chunkHandle: ChunkHandle, version: number): string {
    return join(this.dataDir, 'chunks', chunkFolderOf(chunkHandle), chunkFileNameOf(chunkHandle, version))
  }

  // ---- writes ---------------------------------------------------------------------------------------

  // Claims (handle, version) for one write and reserves its bytes against free space. Refuses a version
  // that is stored or being written (no overwrites) and one older than the stored version.
  async beginWrite (chunkHandle: ChunkHandle, version: number, reserveBytes: number): Promise<{ tempPath: string, release: () => void }> {
    const key = `${chunkHandle}_${version}`
    const stored = this.#index.get(chunkHandle)
    if (stored !== undefined && stored.version === version) throw new GranaryError('GRN_CHUNK_MISMATCH', [chunkHandle, `version ${version} is already stored here`])
    if (stored !== undefined && stored.version > version) throw new GranaryError('GRN_STALE_VERSION', [chunkHandle, version, stored.version])
    if (this.#writes.has(key)) throw new GranaryError('GRN_CHUNK_MISMATCH', [chunkHandle, `version ${version} is being written already`])
    const freeBytes = await this.freeBytes()
    if (freeBytes < reserveBytes) throw new GranaryError('GRN_DISK_FULL', [this.serverId, freeBytes, reserveBytes])
    if (this.#writes.has(key)) throw new GranaryError('GRN_CHUNK_MISMATCH', [chunkHandle, `version ${version} is being written already`])
    const slot: WriteSlot = { reservedBytes: reserveBytes }
    this.#writes.set(key, slot)
    const tempPath = join(this.dataDir, 'tmp', `${key}.${++this.#tempSeq}.tmp`)
    let released = false
    const release = (): void => {
      assert(!released, 'a write slot is released once')
      released = true
      this.#writes.delete(key)
    }
    return { tempPath, release }
  }

  // Makes a finished, renamed chunk file visible; an older version of the handle is deleted.
  async commit (chunk: StoredChunk): Promise<void> {
    assert(this.#writes.has(`${chunk.chunkHandle}_${chunk.version}`), 'commit of a write that was begun')
    const previous = this.#index.get(chunk.chunkHandle)
    assert(previous === undefined || previous.version < chunk.version, 'commit never replaces an equal or newer version')
    this.#index.set(chunk.chunkHandle, chunk)
    this.#usedBytes += fileBytesOf(chunk.lengthBytes)
    this.#committedBytes += chunk.lengthBytes
    // The new file is verified: a mark left on this version (say, an unreadable file the rename has just
    // replaced) is not carried over to it. An older unreadable version stays reported: the master deletes it.
    this.#corrupt.delete(`${chunk.chunkHandle}_${chunk.version}`)
    this.#forgetUnreadable(chunk.chunkHandle, (v) => v === chunk.version)
    this.#emit('added', chunk)
    if (previous === undefined) return
    this.#usedBytes -= fileBytesOf(previous.lengthBytes)
    this.#corrupt.delete(`${previous.chunkHandle}_${previous.version}`)
    await this.#removeFile(previous)
  }

  // ---- deletes --------------------------------------------------------------------------------------

  // Removes `version` of the handle and any older one; a newer stored version is kept. True if a file went.
  //
  // Crash-safe and race-free by construction, with no journal:
  // - A chunk is ONE self-describing file (chunk-format.ts: data, CRC table and footer together), so a single
  //   unlink removes it atomically: its name is there, whole, or gone. Nothing is ever truncated or rewritten
  //   in place, so no chunk file can be left half-deleted.
  // - The index entry goes first, synchronously, before the unlink is even started: from this call on,
  //   lookup() refuses the chunk (GRN_CHUNK_NOT_FOUND), so a new read, a scrub or a replication source never
  //   starts on it. A read that passed lookup() but opens after the unlink gets ENOENT, which chunk-reader.ts
  //   turns into the same GRN_CHUNK_NOT_FOUND (the client tries another replica). A read that opened before the
  //   unlink holds the inode, so it streams the whole verified file to its end: never partial data.
  // - A crash (or a failed unlink) between the two steps leaves a whole, valid file that the index no longer
  //   names. The start-up scan indexes it again, the full report names it, and the master, which no longer
  //   knows the chunk, orders it deleted again. That is also why the folder is not fsynced after the unlink: a
  //   file a power cut brings back is the same orphan, found the same way.
  // - `removed` is reported to the master only after the unlink succeeded.
  // - A file the start-up scan could not read goes the same way (forgotten first, then unlinked), but
  //   unreported: the master never had it from here, it was only ever reported corrupt.
  async delete (chunkHandle: ChunkHandle, version: number): Promise<boolean> {
    const stored = this.#index.get(chunkHandle)
    const unreadable = this.#forgetUnreadable(chunkHandle, (v) => v <= version)
    if (stored === undefined || stored.version > version) {
      for (const file of unreadable) await this.#removeUnreadable(chunkHandle, file)
      return unreadable.length > 0
    }
    this.#index.delete(chunkHandle)
    this.#usedBytes -= fileBytesOf(stored.lengthBytes)
    this.#corrupt.delete(`${chunkHandle}_${stored.version}`)
    await this.#removeFile(stored)
    for (const file of unreadable) await this.#removeUnreadable(chunkHandle, file)
    // debug: a deleted tree is tens of thousands of these; the heartbeat logs one line per batch at info.
    this.#log.debug({ chunkHandle, version: stored.version }, 'chunk deleted')
    return true
  }

  async #removeFile (chunk: StoredChunk): Promise<void> {
    await unlink(this.chunkPathOf(chunk.chunkHandle, chunk.version)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
    })
    this.#emit('removed', chunk)
  }

  // Takes the handle's unreadable files of the versions picked out of the books (synchronously, like an
  // index entry): their bytes, their corrupt marks. The caller unlinks the ones whose file is still there.
  #forgetUnreadable (chunkHandle: ChunkHandle, picked: (version: number) => boolean): UnreadableFile[] {
    const files = this.#unreadable.get(chunkHandle)
    if (files === undefined) return []
    const gone = files.filter((f) => picked(f.version))
    const kept = files.filter((f) => !picked(f.version))
    if (kept.length > 0) this.#unreadable.set(chunkHandle, kept)
    else this.#unreadable.delete(chunkHandle)
    for (const file of gone) {
      this.#unreadableCount--
      this.#usedBytes -= file.fileBytes
      this.#corrupt.delete(`${chunkHandle}_${file.version}`)
    }
    assert(this.#unreadableCount >= 0, 'unreadable files are forgotten once each')
    return gone
  }

  async #removeUnreadable (chunkHandle: ChunkHandle, file: UnreadableFile): Promise<void> {
    await unlink(this.chunkPathOf(chunkHandle, file.version)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
    })
    this.#log.info({ chunkHandle, version: file.version, fileBytes: file.fileBytes }, 'unreadable chunk file deleted')
  }

  #emit (event: StoreEvent, chunk: StoredChunk): void {
    for (const listener of this.#listeners) listener(event, chunk)
  }

  // ---- space ----------------------------------------------------------------------------------------

  // Free bytes for new chunks: the file system's, capped by capacity − used, minus writes in progress.
  async freeBytes (): Promise<number> {
    let free = (await this.#fileSystem()).availableBytes
    if (this.#capacityBytes > 0) free = Math.min(free, this.#capacityBytes - this.#usedBytes)
    for (const slot of this.#writes.values()) free -= slot.reservedBytes
    return Math.max(0, free)
  }

  async capacityBytes (): Promise<number> {
    if (this.#capacityBytes > 0) return this.#capacityBytes
    return (await this.#fileSystem()).totalBytes
  }

  // statfs at most once per statfsCacheMs: every write asks for free space, and a small-file workload made
  // statfs one of the chunkserver's busiest calls. Writes in progress are subtracted live (reservations), so
  // a second-old reading only misses what other programs wrote meanwhile.
  async #fileSystem (): Promise<{ availableBytes: number, totalBytes: number }> {
    const nowMs = Date.now()
    if (this.#statfsCache !== undefined && nowMs - this.#statfsCache.atMs < statfsCacheMs) return this.#statfsCache
    const fs = await statfs(this.dataDir)
    this.#statfsCache = { atMs: nowMs, availableBytes: fs.bavail * fs.bsize, totalBytes: fs.blocks * fs.bsize }
    return this.#statfsCache
  }

  // ---- term (fencing) ------------------------------------------------------------------------------

  get term (): number { return this.#term }

  // Remembers a higher master term (from a token or a heartbeat reply); resolves once it is on disk.
  async observeTerm (term: number): Promise<void> {
    if (term <= this.#term) return
    const previous = this.#term
    this.#term = term
    this.#log.info({ term, previousTerm: previous }, 'term changed')
    // Chained so two newer terms never race on the file; a failed write does not poison the ones after it.
    const write = this.#termWrite.catch(() => {}).then(async () => { await writeFileDurably(join(this.dataDir, 'term'), `${this.#term}\n`) })
    this.#termWrite = write
    await write
  }

  // ---- corruption -----------------------------------------------------------------------------------

  noteCorrupt (chunkHandle: ChunkHandle, version: number): void {
    const key = `${chunkHandle}_${version}`
    if (!this.#corrupt.delete(key)) this.#corruptFound++
    this.#corrupt.add(key)
    if (this.#corrupt.size > corruptChunksKeptMax) {
      const oldest = this.#corrupt.values().next().value
      if (oldest !== undefined) this.#corrupt.delete(oldest)
    }
  }

  // What the heartbeat sends as `corrupt`, oldest first: each stored chunk that failed a checksum and each
  // chunk file the start-up scan could not read (lengthBytes 0: the footer that holds it is what failed),
  // so the master replaces the replica and orders the file deleted. Repeated on every heartbeat until the
  // file is deleted or a good copy replaces it. No longer than corruptChunksKeptMax (the schema's bound).
  corruptReport (): StoredChunk[] {
    const out: StoredChunk[] = []
    for (const { chunkHandle, version } of this.corruptChunks()) {
      const stored = this.#index.get(chunkHandle)
      if (stored !== undefined && stored.version === version) out.push(stored)
      else if (this.#unreadable.get(chunkHandle)?.some((f) => f.version === version) === true) out.push({ chunkHandle, version, lengthBytes: 0 })
    }
    return out
  }

  // Chunks that failed a checksum since start, oldest first (for the heartbeat to report).
  corruptChunks (): Array<{ chunkHandle: ChunkHandle, version: number }> {
    return [...this.#corrupt].map((key) => {
      const [chunkHandle, version] = key.split('_')
      return { chunkHandle: chunkHandle as ChunkHandle, version: Number(version) }
    })
  }

  // ---- start-up scan --------------------------------------------------------------------------------

  async #scan (): Promise<void> {
    const chunksDir = join(this.dataDir, 'chunks')
    for (const folder of await readdir(chunksDir)) {
      if (!folderPattern.test(folder)) continue
      const names = await readdir(join(chunksDir, folder))
      for (let i = 0; i < names.length; i += scanFilesInFlightMax) {
        const batch = names.slice(i, i + scanFilesInFlightMax)
        const found = await Promise.all(batch.map(async (name) => await this.#scanFile(folder, name)))
        for (const chunk of found) if (chunk !== null) await this.#indexScanned(chunk)
      }
    }
  }

  async #scanFile (folder: string, name: string): Promise<StoredChunk | null> {
    const parsed = parseChunkFileName(name)
    if (parsed === null || chunkFolderOf(parsed.chunkHandle) !== folder) {
      this.#log.warn({ folder, name }, 'unexpected file in chunks folder ignored')
      return null
    }
    const path = this.chunkPathOf(parsed.chunkHandle, parsed.version)
    let fileBytes = 0
    const reason = await readFooter(path).then((read) => { fileBytes = read.fileBytes; return decodeFooter(read.footer, read.fileBytes) },
      (err: NodeJS.ErrnoException) => err.code === 'ENOENT' ? null : err.message)
    if (reason === null) return null   // gone since the folder was listed: nothing to index or report
    if (typeof reason === 'string') {
      this.#noteUnreadable(parsed.chunkHandle, parsed.version, fileBytes, reason)
      return null
    }
    return { chunkHandle: parsed.chunkHandle, version: parsed.version, lengthBytes: reason.lengthBytes, crc32: reason.chunkCrc32 }
  }

  // Not served (the block CRCs and length are behind the bad footer), not deleted here (it may hold the
  // last copy of most blocks, and the master decides that, as for any corrupt replica): reported corrupt.
  // Past the bound the file is left as before, unreported, and logged.
  #noteUnreadable (chunkHandle: ChunkHandle, version: number, fileBytes: number, reason: string): void {
    if (this.#unreadableCount >= corruptChunksKeptMax) {
      this.#log.warn({ chunkHandle, version, reason, unreadableCountMax: corruptChunksKeptMax }, 'unreadable chunk file skipped: too many to report')
      return
    }
    const files = this.#unreadable.get(chunkHandle) ?? []
    files.push({ version, fileBytes })
    this.#unreadable.set(chunkHandle, files)
    this.#unreadableCount++
    this.#usedBytes += fileBytes
    this.noteCorrupt(chunkHandle, version)
    this.#log.warn({ chunkHandle, version, fileBytes, reason }, 'unreadable chunk file reported corrupt')
  }

  // Two versions of one handle: the newest wins and the older file is deleted (it is stale by definition).
  async #indexScanned (chunk: StoredChunk): Promise<void> {
    const other = this.#index.get(chunk.chunkHandle)
    if (other !== undefined && other.version > chunk.version) {
      await unlink(this.chunkPathOf(chunk.chunkHandle, chunk.version))
      this.#log.info({ chunkHandle: chunk.chunkHandle, version: chunk.version, kept: other.version }, 'stale chunk version deleted')
      return
    }
    if (other !== undefined) {
      this.#usedBytes -= fileBytesOf(other.lengthBytes)
      await unlink(this.chunkPathOf(other.chunkHandle, other.version))
      this.#log.info({ chunkHandle: other.chunkHandle, version: other.version, kept: chunk.version }, 'stale chunk version deleted')
    }
    this.#index.set(chunk.chunkHandle, chunk)
    this.#usedBytes += fileBytesOf(chunk.lengthBytes)
  }
}

async function readFooter (path: string): Promise<{ footer: Buffer, fileBytes: number }> {
  const handle = await open(path, 'r')
  try {
    const { size } = await handle.stat()
    const footer = Buffer.alloc(Math.min(footerBytes, size))
    await handle.read(footer, 0, footer.length, size - footer.length)
    return { footer, fileBytes: size }
  } finally {
    await handle.close()
  }
}

async function loadServerId (dataDir: string): Promise<ServerId> {
  const file = join(dataDir, 'server-id')
  const existing = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null
    throw err
  })
  if (existing !== null) {
    const serverId = existing.trim()
    if (!serverIdPattern.test(serverId)) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${file} holds ${JSON.stringify(serverId)}, not a server id`])
    return serverId as ServerId
  }
  const serverId = newServerId()
  await writeFileDurably(file, `${serverId}\n`)
  return serverId
}

async function loadTerm (dataDir: string): Promise<number> {
  const text = await readFile(join(dataDir, 'term'), 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '0'
    throw err
  })
  const term = Number(text.trim())
  if (!Number.isSafeInteger(term) || term < 0) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${dataDir}/term holds ${JSON.stringify(text.trim())}, not a term`])
  return term
}

// Temp file, fsync, rename, fsync the folder: the file is either the old or the new content after a crash.
export async function writeFileDurably (file: string, content: string): Promise<void> {
  const temp = `${file}.tmp-${process.pid}`
  const handle = await open(temp, 'w', 0o644)
  try {
    await handle.writeFile(content)
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(temp, file)
  await syncFolder(join(file, '..'))
}

export async function syncFolder (folder: string): Promise<void> {
  const handle = await open(folder, 'r')
  try { await handle.sync() } finally { await handle.close() }
}
