// The package's public entry: `import { connect } from 'granary'`. connect() checks its options once
// (unknown keys refused) and returns a GranaryClient: streams (createReadStream, createWriteStream) and an
// fs.promises-like surface (readFile, writeFile, readdir, stat, mkdir, rename, rm) over one Granary cluster.
import { newCredentials } from '../shared/auth.js'
import type { AccessKeyInfo } from '../shared/protocol.js'
import { findCredentials, type Credentials } from './credentials.js'
import { Readable, finished } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { constants as bufferConstants } from 'node:buffer'
import { GranaryError, isGranaryError } from '../shared/errors.js'
import { resolveClientConfig, parseMasterList, type ClientConfig } from '../shared/config.js'
import { normalizePath } from '../shared/paths.js'
import type { FileStat, FileAttrs, ListReply, DuReply, DeleteReply, RestoreReply, ClusterReport, OpenReply, Reservation } from '../shared/protocol.js'
import * as limits from '../shared/limits.js'
import { assert } from '../shared/assert.js'
import { Transport } from './transport.js'
import { loadCa } from '../shared/tls.js'
import { MasterLink } from './master-link.js'
import { MetadataCache } from './cache.js'
import { ReservationPool } from './reservations.js'
import type { RetryPolicy } from './retry.js'
import { GranaryWriteStream, type WriteOptions, type WriteContext } from './write.js'
import { createReadStream, readAll, type ReadOptions, type ReadContext } from './read.js'
import { GranaryFs } from './fs.js'
import { packDirectory, unpackDirectory, type PackOptions, type UnpackOptions, type UnpackResult } from './tar.js'

export { GranaryError, errorCodes, errorSpecs, isGranaryError, type ErrorCode, type ErrorBody } from '../shared/errors.js'
export type { AccessKeyInfo } from '../shared/protocol.js'
export type { FileStat, FileAttrs, ListReply, DuReply, DeleteReply, RestoreReply, ClusterReport, ServerReport, OpenReply, ChunkLocation } from '../shared/protocol.js'
export type { ClientConfig } from '../shared/config.js'
export type { Credentials } from '../shared/auth.js'
export { channelNames } from './diagnostics.js'
export { GranaryWriteStream, type WriteOptions, type WriteProgress } from './write.js'
export { BufferPool, readPooledPieces } from './buffer-pool.js'
export type { ReadOptions } from './read.js'
export { GranaryFs, type FsCallOptions, type FsReadFileOptions, type FsWriteFileOptions, type FsReaddirOptions, type FsMkdirOptions,
  type FsRmOptions, type FsReadStreamOptions, type FsWriteStreamOptions } from './fs.js'
export { GranaryStats, GranaryDirent } from './fs-stats.js'
export { GranaryDir, type FsOpendirOptions } from './fs-dir.js'
export type { FsCpOptions } from './fs-copy.js'
export { FsWriteStream } from './fs-streams.js'
export { nodeCodeOf, isFsError, type GranaryFsError } from './fs-errors.js'
export { tarEntryNames, type PackOptions, type UnpackOptions, type UnpackResult } from './tar.js'
export { packLocalDirectory, unpackLocalDirectory, type LocalPackOptions, type LocalUnpackOptions } from './tar-local.js'

export interface ConnectOptions {
  masters?: string | readonly string[]   // master first, then shadows; default http://127.0.0.1:9000
  deadlineMs?: number                     // each operation's whole budget, retries included
  requestTimeoutMs?: number               // one HTTP exchange
  mutationTimeoutMs?: number              // one mutation's exchange with a master (then the next URL is tried)
  retryDelayMsMin?: number
  retryDelayMsMax?: number
  replication?: number                    // default for new files
  chunkSizeBytes?: number                 // default for new files
  keepAliveTimeoutMs?: number             // idle pooled connections close after this
  staleReads?: boolean                    // accept reads from a shadow cut off from its master (else GRN_STALE past 10 s)
  batching?: boolean                      // metadata calls that queue up for one server share a request (default true)
  reserveFiles?: boolean                  // writeFile of bytes that fit one chunk: one master call, on a file reserved ahead (default true)
  // An access key, or a credentials file; default: $GRANARY_CREDENTIALS, ./granary-data/credentials,
  // ~/.config/granary/credentials (client/credentials.ts). null: send requests unsigned.
  credentials?: Credentials | string | null
  // A PEM file of the CA that signed the servers' certificates, for https:// URLs; default $GRANARY_CA_FILE,
  // else the system's CAs.
  caFile?: string
}

export interface CallOptions { deadlineMs?: number, signal?: AbortSignal }
export type WriteData = Buffer | Uint8Array | string | AsyncIterable<Buffer | Uint8Array | string> | Readable
export interface ReadFileOptions extends CallOptions { encoding?: BufferEncoding }

export function connect (options: ConnectOptions = {}): GranaryClient {
  const { credentials, ...rest } = options
  const given: Record<string, unknown> = { ...rest }
  if (Array.isArray(given.masters)) given.masters = (given.masters as string[]).join(',')
  if (given.caFile === undefined && process.env.GRANARY_CA_FILE !== undefined && process.env.GRANARY_CA_FILE !== '') given.caFile = process.env.GRANARY_CA_FILE
  const config = resolveClientConfig(given)
  for (const key of ['requestTimeoutMs', 'keepAliveTimeoutMs'] as const) {
    if (config[key] < 1) throw new GranaryError('GRN_INVALID_ARGUMENT', [`client option '${key}' must be positive`])
  }
  return new GranaryClient(config, credentials === null ? null : findCredentials(credentials)?.credentials ?? null)
}

export class GranaryClient {
  readonly config: Readonly<ClientConfig>
  readonly credentials: Credentials | null   // the access key every metadata request is signed with
  readonly #transport: Transport
  readonly #link: MasterLink
  readonly #cache: MetadataCache
  readonly #policy: RetryPolicy
  #fs: GranaryFs | undefined
  #reservations: ReservationPool | undefined
  #closed = false

  constructor (config: ClientConfig, credentials: Credentials | null = null) {
    this.credentials = credentials
    this.config = Object.freeze({ ...config })
    this.#policy = { retryDelayMsMin: config.retryDelayMsMin, retryDelayMsMax: config.retryDelayMsMax, attemptsMax: limits.retryAttemptsMax }
    this.#transport = new Transport({ requestTimeoutMs: config.requestTimeoutMs, keepAliveTimeoutMs: config.keepAliveTimeoutMs, credentials, ca: loadCa('client', config.caFile), batching: config.batching })
    this.#link = new MasterLink(this.#transport, {
      masters: parseMasterList(config.masters), deadlineMs: config.deadlineMs, requestTimeoutMs: config.requestTimeoutMs,
      mutationTimeoutMs: config.mutationTimeoutMs, policy: this.#policy, staleReads: config.staleReads,
    })
    this.#cache = new MetadataCache({ ttlMs: limits.metadataCacheTtlMs, entriesMax: limits.metadataCacheEntriesMax })
  }

  // The metadata servers this client knows: the configured URLs and the ones learned (health's
  // metadataServers, GRN_NOT_MASTER refusals). A client given one URL knows the rest after its first call.
  get knownMasters (): readonly string[] { return this.#link.masters }

  // Asks every known metadata server now for the cluster's metadata servers (health: cheap), without waiting;
  // reads do this themselves, with the first read. A short-lived process (the CLI) calls it before it loads
  // the rest of its code, so by its first read it knows which servers answered and which did not, and races a
  // hung master at once instead of after a hedge delay. At most once per membersRefreshMs, like the reads' asks.
  discoverMasters (): Promise<void> {
    this.#checkOpen()
    return this.#link.refreshMembers() ?? Promise.resolve()
  }

  // Files the master reserved for this client's next small writes and not yet used (client/reservations.ts).
  get reservedFiles (): number { return this.#reservations?.size ?? 0 }

  // The newest (term, seq) position any master or shadow reply carried: no read answers from before it.
  get position (): { term: number, seq: number } { return this.#link.position }

  // The node:fs/promises-shaped view of this client (client/fs.ts): node-like values, errors with node's codes.
  get fs (): GranaryFs {
    this.#fs ??= new GranaryFs(this)
    return this.#fs
  }

  // ---- directories as tar streams (client/tar.ts) -------------------------------------------------------
  // A tar of the tree under `path` (stored modes, Granary's mtimes), streamed with bounded memory.
  packDirectory (path: string, options: PackOptions = {}): Readable {
    this.#checkOpen()
    return packDirectory(this, normalizePath(path), options)
  }

  // Stores every entry of a tar under `path`; an entry that would land outside it ('..', absolute) is refused.
  async unpackDirectory (path: string, tar: AsyncIterable<Buffer | Uint8Array> | Readable, options: UnpackOptions = {}): Promise<UnpackResult> {
    this.#checkOpen()
    return await unpackDirectory(this, normalizePath(path), tar, options)
  }

  // ---- streams ----------------------------------------------------------------------------------------
  createWriteStream (path: string, options: WriteOptions = {}): GranaryWriteStream {
    this.#checkOpen()
    return new GranaryWriteStream(this.#writeContext(), normalizePath(path), options, this.#reservationFor(options.sizeBytes, options))
  }

  createReadStream (path: string, options: ReadOptions = {}): Readable {
    this.#checkOpen()
    return createReadStream(this.#readContext(), normalizePath(path), options)
  }

  // ---- whole files ------------------------------------------------------------------------------------
  // Writes data as a new file (or replaces one with overwrite) and returns the completed file's stat.
  async writeFile (path: string, data: WriteData, options: WriteOptions = {}): Promise<FileStat> {
    const source = writeSource(data)   // bad data is refused before anything starts
    const stream = this.createWriteStream(path, Array.isArray(source) ? { ...options, sizeBytes: source.reduce((sum, buffer) => sum + buffer.length, 0) } : options)
    if (Array.isArray(source)) {
      // Bytes in hand (a Buffer or a string): written and ended directly. stream.pipeline would wrap them in a
      // Readable, and Node 20's aborts an AbortController at the end of every call, building a DOMException
      // with a stack: ~17-30 µs of CPU per small writeFile (microbenchmark), of ~450 µs in all.
      await new Promise<void>((resolve, reject) => {
        finished(stream, (err) => { if (err === undefined || err === null) resolve(); else reject(err) })
        for (const buffer of source) stream.write(buffer)
        stream.end()
      })
    } else {
      await pipeline(source, stream)
    }
    assert(stream.stat !== undefined, 'a finished write has its stat')
    return stream.stat
  }

  readFile (path: string): Promise<Buffer>
  readFile (path: string, options: BufferEncoding | (ReadFileOptions & { encoding: BufferEncoding })): Promise<string>
  readFile (path: string, options: CallOptions): Promise<Buffer>
  async readFile (path: string, options: BufferEncoding | ReadFileOptions = {}): Promise<Buffer | string> {
    const { encoding, ...call } = typeof options === 'string' ? { encoding: options } : options
    // A file replaced while it is read (GRN_CHUNK_MISMATCH) is read again from the start: readFile hands out
    // nothing until the end, so the caller gets the old file whole or the new file whole, never a mix. Bounded
    // by readFileRestartsMax and by the one deadline all attempts share.
    const deadlineAtMs = Date.now() + (call.deadlineMs ?? this.config.deadlineMs)
    for (let attempt = 1; ; attempt++) {
      try {
        const data = await this.#readWhole(path, { ...call, deadlineMs: Math.max(1, deadlineAtMs - Date.now()) })
        return encoding === undefined ? data : data.toString(encoding)
      } catch (err) {
        if (!isGranaryError(err) || err.code !== 'GRN_CHUNK_MISMATCH' || attempt >= limits.readFileRestartsMax || Date.now() >= deadlineAtMs) throw err
      }
    }
  }

  async #readWhole (path: string, call: CallOptions): Promise<Buffer> {
    // readFile buffers the whole file anyway, so it holds each chunk until its CRC32 matched: a corrupt
    // replica is then served from another instead of failing the read.
    this.#checkOpen()
    return await readAll(this.#readContext(), normalizePath(path), call, bufferConstants.MAX_LENGTH)
  }


  // ---- namespace --------------------------------------------------------------------------------------
  async stat (path: string, options: CallOptions = {}): Promise<FileStat> {
    this.#checkOpen()
    return await this.#link.stat(normalizePath(path), options)
  }

  // One page of a directory, sorted by name; pass the reply's nextAfter as `after` for the next page.
  async list (path: string, page: { after?: string, limit?: number } = {}, options: CallOptions = {}): Promise<ListReply> {
    this.#checkOpen()
    return await this.#link.list(normalizePath(path), page, options)
  }

  // A directory's entries one at a time, fetched a page at a time (memory: one page), sorted by name within each
  // folder; with `recursive`, the folders below follow breadth-first (at most readdirEntriesMax folders
  // waiting). `for await (const entry of client.entries('/photos')) ...`; breaking out stops the listing.
  async * entries (path: string, options: CallOptions & { recursive?: boolean, pageSize?: number } = {}): AsyncGenerator<FileStat, void, undefined> {
    const { recursive, pageSize, ...call } = options
    const limit = Math.min(limits.listPageSizeMax, Math.max(1, Math.floor(pageSize ?? limits.listPageSizeDefault)))
    const queue = [normalizePath(path)]
    for (let folder = queue.shift(); folder !== undefined; folder = queue.shift()) {
      let after: string | undefined
      do {
        const page = await this.list(folder, { after, limit }, call)
        for (const entry of page.entries) {
          if (recursive === true && entry.type === 'dir') queue.push(entry.path)
          yield entry
        }
        if (queue.length > limits.readdirEntriesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`folders waiting to be listed under ${path}`, limits.readdirEntriesMax])
        if (page.nextAfter !== null && after !== undefined && page.nextAfter <= after) {
          throw new GranaryError('GRN_INTERNAL', [`listing ${folder} did not advance past ${after}`])
        }
        after = page.nextAfter ?? undefined
      } while (after !== undefined)
    }
  }

  // Every entry of a directory (all pages): names, or stats with { withStats: true }.
  readdir (path: string, options?: CallOptions & { withStats?: false }): Promise<string[]>
  readdir (path: string, options: CallOptions & { withStats: true }): Promise<FileStat[]>
  async readdir (path: string, options: CallOptions & { withStats?: boolean } = {}): Promise<string[] | FileStat[]> {
    const entries: FileStat[] = []
    let after: string | undefined
    do {
      const page = await this.list(path, { after, limit: limits.listPageSizeDefault }, options)
      entries.push(...page.entries)
      if (entries.length > limits.readdirEntriesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`readdir of ${path}`, limits.readdirEntriesMax])
      if (page.nextAfter !== null && after !== undefined && page.nextAfter <= after) {
        throw new GranaryError('GRN_INTERNAL', [`listing ${path} did not advance past ${after}`])
      }
      after = page.nextAfter ?? undefined
    } while (after !== undefined)
    return options.withStats === true ? entries : entries.map((entry) => baseNameOf(entry.path))
  }

  // mode: the folder's permission bits (0..0o7777, default 0o755); folders made on the way get the default.
  async mkdir (path: string, options: CallOptions & { recursive?: boolean, mode?: number } = {}): Promise<FileStat> {
    this.#checkOpen()
    return await this.#link.mkdir(normalizePath(path), options.recursive === true, options, options.mode)
  }

  async rename (source: string, target: string, options: CallOptions = {}): Promise<FileStat> {
    this.#checkOpen()
    const from = normalizePath(source)
    const to = normalizePath(target)
    try {
      return await this.#link.rename(from, to, options)
    } finally {
      this.#cache.invalidate(from)
      this.#cache.invalidate(to)
    }
  }

  // One new file at `target` made of the closed files `sources` in order, their chunks moved, not copied (HDFS's
  // concat); the sources are gone after and an existing target is replaced. Every source but the last must be
  // whole chunks of one chunk size (write them with a chunkSizeBytes that divides their size): else
  // GRN_INVALID_ARGUMENT and nothing changes. attrs: the new file's attributes.
  async concat (target: string, sources: readonly string[], options: CallOptions & { attrs?: FileAttrs, mtimeMs?: number } = {}): Promise<FileStat> {
    this.#checkOpen()
    const to = normalizePath(target)
    const from = sources.map((source) => normalizePath(source))
    const { attrs, mtimeMs, ...call } = options
    try {
      return await this.#link.concat({ target: to, sources: from, ...(attrs === undefined ? {} : { attrs }), ...(mtimeMs === undefined ? {} : { mtimeMs }) }, call)
    } finally {
      this.#cache.invalidate(to)
      for (const source of from) this.#cache.invalidate(source)
    }
  }

  // Moves the entry to the trash (/.trash/<checkpoint>/<path>, restorable for the master's trashRetentionMs);
  // skipTrash deletes it for good at once (so does deleting inside /.trash). force: a missing path is not an
  // error (like fs.rm); the reply then counts nothing.
  async rm (path: string, options: CallOptions & { recursive?: boolean, force?: boolean, skipTrash?: boolean } = {}): Promise<DeleteReply> {
    this.#checkOpen()
    const target = normalizePath(path)
    try {
      return await this.#link.delete(target, options.recursive === true, options.skipTrash === true, options)
    } catch (err) {
      if (options.force === true && (err as GranaryError).code === 'GRN_NOT_FOUND') return { deletedFiles: 0, deletedDirs: 0, deletedChunks: 0, trashPath: null }
      throw err
    } finally {
      this.#cache.invalidate(target)
    }
  }

  // Brings a deleted entry back from the trash: `path` is where it was deleted from (the newest trashed copy is
  // taken) or its place in /.trash; `target` defaults to where it was deleted from. Never replaces (GRN_EXISTS).
  async restore (path: string, options: CallOptions & { target?: string } = {}): Promise<RestoreReply> {
    this.#checkOpen()
    const target = options.target === undefined ? undefined : normalizePath(options.target)
    const reply = await this.#link.restore(normalizePath(path), target, options)
    this.#cache.invalidate(reply.from)
    this.#cache.invalidate(reply.stat.path)
    return reply
  }

  async du (path: string, options: CallOptions = {}): Promise<DuReply> {
    this.#checkOpen()
    return await this.#link.du(normalizePath(path), options)
  }

  async report (options: CallOptions = {}): Promise<ClusterReport> {
    this.#checkOpen()
    return await this.#link.report(options)
  }

  // Access keys (an admin key's calls). create makes the key here and returns its secret, the only time it is
  // shown; the master keeps it sealed. prefix: the key may touch only that folder and what is under it.
  async createAccessKey (options: { name: string, readOnly?: boolean, admin?: boolean, prefix?: string }, call: CallOptions = {}): Promise<AccessKeyInfo & Credentials> {
    this.#checkOpen()
    const made = newCredentials()
    const prefix = options.prefix === undefined ? undefined : normalizePath(options.prefix)
    const info = await this.#link.createKey({ ...made, name: options.name, readOnly: options.readOnly ?? false, admin: options.admin ?? false, ...(prefix === undefined ? {} : { prefix }) }, call)
    return { ...info, secretAccessKey: made.secretAccessKey }
  }

  // An access key's AWS SigV4 signing key for one day, region and service, and its rights (an admin key's call:
  // the S3 gateway checks S3 signatures with it and never holds a secret).
  async accessKeySigningKey (accessKeyId: string, scope: { date: string, region: string, service: string }, call: CallOptions = {}): Promise<{ signingKey: Buffer, readOnly: boolean, admin: boolean, prefix: string | null }> {
    this.#checkOpen()
    const reply = await this.#link.signingKey({ accessKeyId, ...scope }, call)
    return { signingKey: Buffer.from(reply.signingKey, 'hex'), readOnly: reply.readOnly, admin: reply.admin, prefix: reply.prefix }
  }

  async listAccessKeys (call: CallOptions = {}): Promise<AccessKeyInfo[]> {
    this.#checkOpen()
    return (await this.#link.listKeys(call)).keys
  }

  async revokeAccessKey (accessKeyId: string, call: CallOptions = {}): Promise<AccessKeyInfo> {
    this.#checkOpen()
    return await this.#link.revokeKey(accessKeyId, call)
  }

  // Closes pooled connections; streams still open fail with GRN_ABORTED.
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#cache.clear()
    this.#reservations?.close()   // the master drops its unused reservations when their leases run out
    await this.#transport.close()
  }

  // `await using client = connect(...)` closes it at the end of the block.
  async [Symbol.asyncDispose] (): Promise<void> { await this.close() }

  // ---- wiring -----------------------------------------------------------------------------------------
  #checkOpen (): void {
    if (this.#closed) throw new GranaryError('GRN_ABORTED', ['the client is closed'])
  }

  // A reserved file for a write known to fit one chunk of the client's default replication and chunk size
  // (client/reservations.ts), or undefined: the write then creates its file as usual.
  #reservationFor (sizeBytes: number | undefined, options: WriteOptions): Reservation | undefined {
    const { replication, chunkSizeBytes } = this.config
    if (!this.config.reserveFiles || sizeBytes === undefined || !Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes > chunkSizeBytes) return undefined
    if ((options.replication ?? replication) !== replication || (options.chunkSizeBytes ?? chunkSizeBytes) !== chunkSizeBytes) return undefined
    this.#reservations ??= new ReservationPool(this.#link, { replication, chunkSizeBytes })
    return this.#reservations.take()
  }

  #writeContext (): WriteContext {
    return {
      link: this.#link, transport: this.#transport, policy: this.#policy,
      deadlineMs: this.config.deadlineMs, requestTimeoutMs: this.config.requestTimeoutMs,
      replication: this.config.replication, chunkSizeBytes: this.config.chunkSizeBytes,
      invalidate: (path) => { this.#cache.invalidate(path) },
    }
  }

  #readContext (): ReadContext {
    return {
      transport: this.#transport, policy: this.#policy,
      deadlineMs: this.config.deadlineMs, requestTimeoutMs: this.config.requestTimeoutMs,
      open: async (path, options) => await this.#open(path, options),
    }
  }

  async #open (path: string, options: { fresh: boolean, deadlineMs: number, signal: AbortSignal }): Promise<OpenReply> {
    if (!options.fresh) {
      const cached = this.#cache.get(path)
      if (cached !== undefined) return cached
    }
    const reply = await this.#link.open(path, { deadlineMs: options.deadlineMs, signal: options.signal })
    this.#cache.set(path, reply)
    return reply
  }
}

function writeSource (data: WriteData): Buffer[] | AsyncIterable<Buffer | Uint8Array | string> | Readable {
  if (typeof data === 'string') return data.length === 0 ? [] : [Buffer.from(data, 'utf8')]
  if (data instanceof Uint8Array) {
    const buffer = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)
    return buffer.length === 0 ? [] : [buffer]
  }
  if (data instanceof Readable || (typeof data === 'object' && data !== null && Symbol.asyncIterator in data)) return data
  throw new GranaryError('GRN_INVALID_ARGUMENT', ['writeFile data must be a Buffer, Uint8Array, string, Readable or async iterable'])
}

function baseNameOf (path: string): string {
  const slash = path.lastIndexOf('/')
  return path.slice(slash + 1)
}
