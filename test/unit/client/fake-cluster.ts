// In-process fakes of a master and chunkservers (node:http on port 0) that speak shared/protocol.ts closely
// enough to drive the client, with switches to inject the failures the client must survive. Not a test file.
import { createServer, request as httpRequest, type Server, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { GranaryError, isGranaryError, type ErrorCode } from '../../../shared/errors.js'
import { crc32 } from '../../../shared/checksum.js'
import type { ChunkHandle, InodeId, LeaseId, ServerId } from '../../../shared/ids.js'
import type * as P from '../../../shared/protocol.js'

export interface Recorded { method: string, route: string, body: Record<string, unknown>, query: Record<string, string> }

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> | void

async function listen (handler: Handler): Promise<{ server: Server, url: string }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    Promise.resolve(handler(req, res, url)).catch((err: unknown) => { sendError(res, err) })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

async function close (server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => { resolve() }))
}

export function sendJson (res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) { res.destroy(); return }
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

export function sendError (res: ServerResponse, err: unknown): void {
  const e = isGranaryError(err) ? err : new GranaryError('GRN_INTERNAL', [String(err)])
  sendJson(res, e.statusCode, e.toBody())
}

async function readBody (req: IncomingMessage): Promise<Buffer> {
  const pieces: Buffer[] = []
  for await (const piece of req) pieces.push(piece as Buffer)
  return Buffer.concat(pieces)
}

// ---------------------------------------------------------------------------------------------------------
// Chunkservers: store chunks in memory, forward PUTs down the pipeline, serve ranged GETs.

export type PutFault = 'refuse' | 'cut' | 'bad-crc' | 'disk-full' | 'stale-term'
// hang: take the request, never answer (a frozen server); stall: send cutAfterBytes, then nothing, connection open
// trickle: the whole body, in 1 KiB pieces every trickleEveryMs (a live but slow server)
export type GetFault = 'cut' | 'checksum' | 'short' | 'corrupt' | 'refuse' | 'hang' | 'stall' | 'trickle'

export class FakeChunkserver {
  readonly serverId: ServerId
  url = ''
  readonly chunks = new Map<string, Buffer>()     // `${handle}:${version}` → bytes
  readonly puts: Array<{ chunkHandle: string, pipeline: string, bytes: number }> = []
  readonly gets: Array<{ chunkHandle: string, offset: number, length: number }> = []
  putFaults: PutFault[] = []                       // consumed one per PUT
  getFaults: GetFault[] = []                       // consumed one per GET
  readonly getFaultsFor = new Map<string, GetFault[]>()   // chunk handle → faults for GETs of that chunk only
  cutAfterBytes = 1000
  trickleEveryMs = 10
  holdPuts: Promise<void> | undefined              // while set, PUT replies wait for it
  #server: Server | undefined

  constructor (index: number) {
    this.serverId = `cs-${index.toString(16).padStart(12, '0')}` as ServerId
  }

  async start (): Promise<void> {
    const { server, url } = await listen(async (req, res, url) => { await this.#handle(req, res, url) })
    this.#server = server
    this.url = url
  }

  async stop (): Promise<void> { if (this.#server !== undefined) await close(this.#server) }

  async #handle (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const match = /^\/chunks\/([0-9a-f]{16})$/.exec(url.pathname)
    if (match === null) { sendError(res, new GranaryError('GRN_NOT_FOUND', [url.pathname])); return }
    const chunkHandle = match[1] as string
    const version = Number(url.searchParams.get('version'))
    const token = req.headers['x-granary-token']
    if (req.method === 'PUT') { await this.#put(req, res, chunkHandle, version, token); return }
    if (token !== `r.${chunkHandle}.${version}`) { sendError(res, new GranaryError('GRN_TOKEN_INVALID', ['bad token'])); return }
    this.#get(res, url, chunkHandle, version)
  }

  async #put (req: IncomingMessage, res: ServerResponse, chunkHandle: string, version: number, token: unknown): Promise<void> {
    const pipeline = String(req.headers['x-granary-pipeline'] ?? '')
    const fault = this.putFaults.shift()
    if (fault === 'cut') {
      let seen = 0
      req.on('data', (piece: Buffer) => { seen += piece.length; if (seen >= this.cutAfterBytes) req.socket.destroy() })
      return
    }
    const bytes = await readBody(req)
    if (this.holdPuts !== undefined) await this.holdPuts
    this.puts.push({ chunkHandle, pipeline, bytes: bytes.length })
    if (token !== `w.${chunkHandle}.${version}`) { sendError(res, new GranaryError('GRN_TOKEN_INVALID', ['bad token'])); return }
    if (fault === 'refuse') { sendError(res, new GranaryError('GRN_REPLICA_FAILED', [this.url, 'injected'], { failedUrl: this.url })); return }
    if (fault === 'disk-full') { sendError(res, new GranaryError('GRN_DISK_FULL', [this.serverId, 0, bytes.length])); return }
    if (fault === 'stale-term') { sendError(res, new GranaryError('GRN_STALE_TERM', [1, 2])); return }   // a token signed before a failover
    const acks: P.ReplicaAck[] = [{ serverId: this.serverId, url: this.url, lengthBytes: bytes.length, crc32: fault === 'bad-crc' ? (crc32(bytes) ^ 1) >>> 0 : crc32(bytes) }]
    const rest = pipeline.split(',').filter((s) => s.length > 0)
    if (rest.length > 0) {
      const downstream = await forward(rest, chunkHandle, version, String(token), bytes)
      if (downstream.status !== 200) { sendJson(res, downstream.status, downstream.body); return }
      acks.push(...(downstream.body as P.WriteChunkReply).replicas)
    }
    this.chunks.set(`${chunkHandle}:${version}`, bytes)
    sendJson(res, 200, { replicas: acks } satisfies P.WriteChunkReply)
  }

  #get (res: ServerResponse, url: URL, chunkHandle: string, version: number): void {
    const stored = this.chunks.get(`${chunkHandle}:${version}`)
    if (stored === undefined) { sendError(res, new GranaryError('GRN_CHUNK_NOT_FOUND', [chunkHandle, version])); return }
    const offset = Number(url.searchParams.get('offset') ?? 0)
    const length = Number(url.searchParams.get('length') ?? stored.length - offset)
    this.gets.push({ chunkHandle, offset, length })
    const fault = this.getFaultsFor.get(chunkHandle)?.shift() ?? this.getFaults.shift()
    if (fault === 'checksum') { sendError(res, new GranaryError('GRN_CHECKSUM_MISMATCH', [chunkHandle, 0])); return }
    if (fault === 'refuse') { sendError(res, new GranaryError('GRN_UNAVAILABLE', [this.url, 'injected'])); return }
    if (fault === 'hang') return
    let bytes = stored.subarray(offset, offset + length)
    if (fault === 'corrupt') { bytes = Buffer.from(bytes); bytes[0] = (bytes[0] ?? 0) ^ 0xff }
    if (fault === 'short') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-granary-chunk-length': String(stored.length) })
      res.end(bytes.subarray(0, Math.min(this.cutAfterBytes, bytes.length - 1)))
      return
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length, 'x-granary-chunk-length': String(stored.length) })
    if (fault === 'cut') {
      res.write(bytes.subarray(0, Math.min(this.cutAfterBytes, bytes.length - 1)), () => { setTimeout(() => res.socket?.destroy(), 5) })
      return
    }
    if (fault === 'stall') { res.write(bytes.subarray(0, Math.min(this.cutAfterBytes, bytes.length - 1))); return }
    if (fault === 'trickle') {
      let sent = 0
      const next = (): void => {
        if (res.destroyed) return
        const piece = bytes.subarray(sent, sent + 1024)
        sent += piece.length
        if (sent >= bytes.length) { res.end(piece); return }
        res.write(piece)
        setTimeout(next, this.trickleEveryMs)
      }
      next()
      return
    }
    res.end(bytes)
  }
}

function forward (rest: string[], chunkHandle: string, version: number, token: string, bytes: Buffer): Promise<{ status: number, body: unknown }> {
  const [next, ...after] = rest as [string, ...string[]]
  return new Promise((resolve) => {
    const req = httpRequest(`${next}/chunks/${chunkHandle}?version=${version}`, {
      method: 'PUT', headers: { 'x-granary-token': token, 'x-granary-pipeline': after.join(','), 'content-length': bytes.length },
    }, (res) => {
      readBody(res).then((body) => { resolve({ status: res.statusCode ?? 500, body: JSON.parse(body.toString()) }) },
        () => { resolve(replicaFailed(next)) })
    })
    req.on('error', () => { resolve(replicaFailed(next)) })
    req.end(bytes)
  })
}

function replicaFailed (url: string): { status: number, body: unknown } {
  return { status: 502, body: new GranaryError('GRN_REPLICA_FAILED', [url, 'unreachable'], { failedUrl: url }).toBody() }
}

// ---------------------------------------------------------------------------------------------------------
// The master: an in-memory namespace and the write protocol, idempotent by requestId.

interface Entry { stat: P.FileStat, chunks: P.ChunkLocation[] }
interface PendingChunk { chunkHandle: ChunkHandle, version: number, pipeline: P.ChunkserverAddress[], committed?: { lengthBytes: number, crc32: number, serverIds: ServerId[] } }
interface Pending { path: string, inodeId: InodeId, leaseId: LeaseId, replication: number, chunkSizeBytes: number, overwrite: boolean, chunks: Map<number, PendingChunk> }
export interface InjectedFailure { route: string, code: ErrorCode, times: number, afterApply?: boolean }
// Set: this server is not the master and answers like master/commit-queue.ts notMasterError. A shadow refuses
// mutations (POST) and serves reads; a deposed master refuses both. masterUrl: the master it names, if any.
export interface NotMasterRole { role: 'shadow' | 'deposed', masterUrl: string | null }

export class FakeMaster {
  url = ''
  readonly entries = new Map<string, Entry>([['/', { stat: dirStat('/', 1 as InodeId), chunks: [] }]])
  readonly pending = new Map<number, Pending>()
  readonly requests: Recorded[] = []
  readonly replies = new Map<string, { status: number, body: unknown }>()   // requestId → first reply
  readonly failures: InjectedFailure[] = []
  leaseTtlMs = 60_000
  #nextInode = 2
  #nextHandle = 1
  rotation = 0                                     // where the next pipeline starts among the candidates
  notMaster: NotMasterRole | undefined
  #server: Server | undefined

  constructor (readonly chunkservers: FakeChunkserver[], readonly role: P.Role = 'master', masterUrl: string | null = null) {
    if (role === 'shadow') this.notMaster = { role: 'shadow', masterUrl }
  }

  async start (port = 0): Promise<void> {
    const { server, url } = await listen(async (req, res, url) => { await this.#handle(req, res, url) })
    this.#server = server
    this.url = url
    void port
  }

  async stop (): Promise<void> { if (this.#server !== undefined) await close(this.#server) }

  count (route: string): number { return this.requests.filter((r) => r.route === route).length }

  async #handle (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const raw = req.method === 'POST' ? (await readBody(req)).toString() : ''
    const body = raw.length > 0 ? JSON.parse(raw) as Record<string, unknown> : {}
    const query = Object.fromEntries(url.searchParams.entries())
    this.requests.push({ method: req.method ?? '', route: url.pathname, body, query })
    const requestId = typeof body.requestId === 'string' ? body.requestId : undefined
    const refusal = this.notMaster
    if (refusal !== undefined && url.pathname !== '/healthz' && (req.method === 'POST' || refusal.role === 'deposed')) {
      const fencedByTerm = refusal.role === 'deposed' ? 2 : null
      sendError(res, new GranaryError('GRN_NOT_MASTER', [refusal.role, refusal.masterUrl ?? 'unknown to it'], { role: refusal.role, masterUrl: refusal.masterUrl, term: 1, fencedByTerm }))
      return
    }
    const injected = this.failures.find((f) => f.route === url.pathname && f.times > 0)
    if (injected !== undefined && injected.afterApply !== true) { injected.times--; sendError(res, new GranaryError(injected.code, ['injected', 'injected'])); return }
    const replay = requestId === undefined ? undefined : this.replies.get(requestId)
    if (replay !== undefined) { sendJson(res, replay.status, replay.body); return }
    let reply: { status: number, body: unknown }
    try {
      reply = { status: 200, body: this.#route(url.pathname, req.method === 'POST' ? body : query) }
    } catch (err) {
      const e = isGranaryError(err) ? err : new GranaryError('GRN_INTERNAL', [String(err)])
      reply = { status: e.statusCode, body: e.toBody() }
    }
    if (requestId !== undefined) this.replies.set(requestId, reply)
    // afterApply: the op is applied but the reply is lost (a crash after commit): only a requestId saves a retry.
    if (injected !== undefined) { injected.times--; req.socket.destroy(); return }
    sendJson(res, reply.status, reply.body)
  }

  #route (route: string, input: Record<string, unknown>): unknown {
    switch (route) {
      case '/healthz': return { role: this.role, term: 1, seq: 0, safeMode: false }
      case '/fs/stat': return this.#entry(String(input.path)).stat
      case '/fs/list': return this.#list(String(input.path), input.after as string | undefined, input.limit === undefined ? 1000 : Number(input.limit))
      case '/fs/open': return this.#open(String(input.path))
      case '/fs/du': return this.#du(String(input.path))
      case '/cluster/report': return this.#report()
      case '/fs/mkdir': return this.#mkdir(String(input.path), input.parents === true)
      case '/fs/rename': return this.#rename(String(input.source), String(input.target))
      case '/fs/delete': return this.#delete(String(input.path), input.recursive === true)
      case '/fs/create': return this.#create(input as unknown as P.CreateRequest)
      case '/fs/allocate': return this.#allocate(input as unknown as P.AllocateRequest)
      case '/fs/commit': return this.#commit(input as unknown as P.CommitRequest)
      case '/fs/complete': return this.#complete(input as unknown as P.CompleteRequest)
      case '/fs/renew': return { leaseExpiresAtMs: this.#lease(input as unknown as P.RenewRequest) }
      case '/fs/abandon': { const p = this.#lease(input as unknown as P.AbandonRequest); void p; this.pending.delete(Number(input.inodeId)); return { abandoned: true } }
      default: throw new GranaryError('GRN_NOT_FOUND', [route])
    }
  }

  #entry (path: string): Entry {
    const entry = this.entries.get(path)
    if (entry === undefined) throw new GranaryError('GRN_NOT_FOUND', [path])
    return entry
  }

  #children (path: string): string[] {
    const prefix = path === '/' ? '/' : `${path}/`
    return [...this.entries.keys()].filter((p) => p !== path && p.startsWith(prefix) && !p.slice(prefix.length).includes('/')).sort()
  }

  #list (path: string, after: string | undefined, limit: number): P.ListReply {
    if (this.#entry(path).stat.type !== 'dir') throw new GranaryError('GRN_NOT_DIR', [path])
    const names = this.#children(path).map((p) => p.slice(p.lastIndexOf('/') + 1)).filter((n) => after === undefined || n > after)
    const page = names.slice(0, limit)
    const prefix = path === '/' ? '/' : `${path}/`
    return { entries: page.map((n) => this.#entry(prefix + n).stat), nextAfter: names.length > limit ? page[page.length - 1] as string : null }
  }

  #open (path: string): P.OpenReply {
    const entry = this.#entry(path)
    if (entry.stat.type === 'dir') throw new GranaryError('GRN_IS_DIR', [path])
    return { stat: entry.stat, chunks: entry.chunks, term: 1, tokenExpiresAtMs: Date.now() + 600_000 }
  }

  #du (path: string): P.DuReply {
    this.#entry(path)
    const prefix = path === '/' ? '/' : `${path}/`
    const under = [...this.entries.values()].filter((e) => e.stat.path === path || e.stat.path.startsWith(prefix))
    return { path, fileCount: under.filter((e) => e.stat.type === 'file').length, dirCount: under.filter((e) => e.stat.type === 'dir').length, sizeBytes: under.reduce((s, e) => s + e.stat.sizeBytes, 0) }
  }

  #report (): P.ClusterReport {
    const files = [...this.entries.values()].filter((e) => e.stat.type === 'file')
    return {
      role: this.role, term: 1, seq: this.requests.length, safeMode: false,
      fileCount: files.length, dirCount: this.entries.size - files.length, chunkCount: files.reduce((s, e) => s + e.chunks.length, 0),
      sizeBytes: files.reduce((s, e) => s + e.stat.sizeBytes, 0), underReplicatedChunks: 0, missingChunks: 0,
      servers: this.chunkservers.map((cs) => ({ serverId: cs.serverId, url: cs.url, alive: true, lastHeartbeatAgeMs: 120, capacityBytes: 1 << 30, freeBytes: 1 << 29, usedBytes: 1 << 29, chunkCount: cs.chunks.size, activeWrites: 0 })),
    }
  }

  #mkdir (path: string, parents: boolean): P.FileStat {
    const names = path.split('/').filter((n) => n.length > 0)
    let current = ''
    for (const [i, name] of names.entries()) {
      current += `/${name}`
      const existing = this.entries.get(current)
      const last = i === names.length - 1
      if (existing !== undefined) {
        if (existing.stat.type !== 'dir') throw new GranaryError('GRN_NOT_DIR', [current])
        if (last && !parents) throw new GranaryError('GRN_EXISTS', [current])
        continue
      }
      if (!last && !parents) throw new GranaryError('GRN_NOT_FOUND', [current])
      this.entries.set(current, { stat: dirStat(current, this.#nextInode++ as InodeId), chunks: [] })
    }
    return this.#entry(path).stat
  }

  #rename (source: string, target: string): P.FileStat {
    this.#entry(source)
    if (this.entries.has(target)) throw new GranaryError('GRN_EXISTS', [target])
    if (target.startsWith(`${source}/`)) throw new GranaryError('GRN_RENAME_INTO_SELF', [source, target])
    for (const [path, entry] of [...this.entries]) {
      if (path === source || path.startsWith(`${source}/`)) {
        this.entries.delete(path)
        const moved = target + path.slice(source.length)
        this.entries.set(moved, { ...entry, stat: { ...entry.stat, path: moved } })
      }
    }
    return this.#entry(target).stat
  }

  #delete (path: string, recursive: boolean): P.DeleteReply {
    const entry = this.#entry(path)
    if (entry.stat.type === 'dir' && this.#children(path).length > 0 && !recursive) throw new GranaryError('GRN_NOT_EMPTY', [path])
    const reply = { deletedFiles: 0, deletedDirs: 0, deletedChunks: 0, trashPath: null }   // the fake has no trash: deletes are for good
    for (const [p, e] of [...this.entries]) {
      if (p === path || p.startsWith(`${path}/`)) {
        this.entries.delete(p)
        if (e.stat.type === 'dir') reply.deletedDirs++; else { reply.deletedFiles++; reply.deletedChunks += e.chunks.length }
      }
    }
    return reply
  }

  #create (request: P.CreateRequest): P.CreateReply {
    const existing = this.entries.get(request.path)
    if (existing !== undefined && (existing.stat.type === 'dir' || request.overwrite !== true)) throw new GranaryError('GRN_EXISTS', [request.path])
    const parent = request.path.slice(0, request.path.lastIndexOf('/')) || '/'
    if (this.entries.get(parent)?.stat.type !== 'dir') throw new GranaryError('GRN_NOT_FOUND', [parent])
    const inodeId = this.#nextInode++ as InodeId
    const pending: Pending = {
      path: request.path, inodeId, leaseId: `lease${inodeId}`.padEnd(32, '0') as LeaseId, replication: request.replication ?? 3,
      chunkSizeBytes: request.chunkSizeBytes ?? 64 * 1024 * 1024, overwrite: request.overwrite === true, chunks: new Map(),
    }
    this.pending.set(inodeId, pending)
    const reply: P.CreateReply = { inodeId, leaseId: pending.leaseId, leaseExpiresAtMs: Date.now() + this.leaseTtlMs, replication: pending.replication, chunkSizeBytes: pending.chunkSizeBytes }
    if (request.allocateFirstChunk !== true || this.chunkservers.length < pending.replication) return reply
    // As the master: chunk 0 in the same call. Recorded as an allocation (viaCreate) so tests that follow the
    // allocations see every one.
    const allocation = { inodeId, leaseId: pending.leaseId, chunkIndex: 0 }
    this.requests.push({ method: 'POST', route: '/fs/allocate', body: { ...allocation, viaCreate: true }, query: {} })
    return { ...reply, firstChunk: this.#allocate(allocation) }
  }

  #lease (request: { inodeId: InodeId, leaseId: LeaseId }): number {
    const pending = this.pending.get(request.inodeId)
    if (pending === undefined || pending.leaseId !== request.leaseId) throw new GranaryError('GRN_LEASE_EXPIRED', [String(request.inodeId)])
    return Date.now() + this.leaseTtlMs
  }

  #allocate (request: P.AllocateRequest): P.AllocateReply {
    const leaseExpiresAtMs = this.#lease(request)
    const pending = this.pending.get(request.inodeId) as Pending
    const exclude = new Set(request.excludeServerIds ?? [])
    const candidates = this.chunkservers.filter((cs) => !exclude.has(cs.serverId))
    if (candidates.length < pending.replication) throw new GranaryError('GRN_NO_CHUNKSERVERS', [pending.replication, candidates.length])
    const start = this.rotation++
    const pipeline = Array.from({ length: pending.replication }, (_, i) => candidates[(start + i) % candidates.length] as FakeChunkserver)
      .map((cs) => ({ serverId: cs.serverId, url: cs.url }))
    if (request.chunkIndex > pending.chunks.size) throw new GranaryError('GRN_CHUNK_MISMATCH', [`index ${request.chunkIndex}`, 'allocating it would leave a hole'])
    const previous = pending.chunks.get(request.chunkIndex)
    if (previous?.committed !== undefined) throw new GranaryError('GRN_CHUNK_MISMATCH', [previous.chunkHandle, 'already committed'])
    const chunkHandle = previous?.chunkHandle ?? (this.#nextHandle++).toString(16).padStart(16, '0') as ChunkHandle
    const version = (previous?.version ?? 0) + 1
    pending.chunks.set(request.chunkIndex, { chunkHandle, version, pipeline })
    return { chunkHandle, version, term: 1, pipeline, token: `w.${chunkHandle}.${version}`, tokenExpiresAtMs: Date.now() + 600_000, leaseExpiresAtMs }
  }

  #commit (request: P.CommitRequest): P.CommitReply {
    const leaseExpiresAtMs = this.#lease(request)
    const chunk = (this.pending.get(request.inodeId) as Pending).chunks.get(request.chunkIndex)
    if (chunk === undefined || chunk.version !== request.version || chunk.chunkHandle !== request.chunkHandle) {
      throw new GranaryError('GRN_STALE_VERSION', [request.chunkHandle, request.version, chunk?.version ?? 0])
    }
    const before = chunk.committed
    chunk.committed = { lengthBytes: request.lengthBytes, crc32: request.crc32, serverIds: request.serverIds }
    if (request.complete === undefined) return { leaseExpiresAtMs }
    try {   // as the master: one op, so a refused complete takes the commit with it
      return { leaseExpiresAtMs, stat: this.#complete({ inodeId: request.inodeId, leaseId: request.leaseId, ...request.complete }) }
    } catch (err) {
      chunk.committed = before
      throw err
    }
  }

  #complete (request: P.CompleteRequest): P.FileStat {
    this.#lease(request)
    const pending = this.pending.get(request.inodeId) as Pending
    const chunks: P.ChunkLocation[] = []
    let sizeBytes = 0
    for (let i = 0; i < request.chunkCount; i++) {
      const chunk = pending.chunks.get(i)
      if (chunk?.committed === undefined) throw new GranaryError('GRN_INVALID_ARGUMENT', [`chunk ${i} not committed`])
      if (i < request.chunkCount - 1 && chunk.committed.lengthBytes !== pending.chunkSizeBytes) throw new GranaryError('GRN_INVALID_ARGUMENT', [`chunk ${i} not full`])
      sizeBytes += chunk.committed.lengthBytes
      const replicas = chunk.committed.serverIds.map((id) => this.chunkservers.find((cs) => cs.serverId === id) as FakeChunkserver).map((cs) => ({ serverId: cs.serverId, url: cs.url }))
      chunks.push({ chunkIndex: i, chunkHandle: chunk.chunkHandle, version: chunk.version, lengthBytes: chunk.committed.lengthBytes, crc32: chunk.committed.crc32, replicas, token: `r.${chunk.chunkHandle}.${chunk.version}` })
    }
    if (sizeBytes !== request.sizeBytes) throw new GranaryError('GRN_INVALID_ARGUMENT', [`size ${request.sizeBytes} but chunks hold ${sizeBytes}`])
    const existing = this.entries.get(pending.path)
    if (existing !== undefined && !pending.overwrite) throw new GranaryError('GRN_EXISTS', [pending.path])
    const stat: P.FileStat = { path: pending.path, inodeId: pending.inodeId, type: 'file', sizeBytes, mtimeMs: Date.now(), replication: pending.replication, chunkSizeBytes: pending.chunkSizeBytes, chunkCount: request.chunkCount, mode: 0o644 }
    this.entries.set(pending.path, { stat, chunks })
    this.pending.delete(request.inodeId)
    return stat
  }
}

function dirStat (path: string, inodeId: InodeId): P.FileStat {
  return { path, inodeId, type: 'dir', sizeBytes: 0, mtimeMs: Date.now(), replication: 0, chunkSizeBytes: 0, chunkCount: 0, mode: 0o755 }
}

// A master, an optional shadow (sharing the master's state is not needed by these tests) and n chunkservers.
export async function startFakeCluster (chunkserverCount = 3): Promise<{ master: FakeMaster, chunkservers: FakeChunkserver[], stop: () => Promise<void> }> {
  const chunkservers = Array.from({ length: chunkserverCount }, (_, i) => new FakeChunkserver(i + 1))
  await Promise.all(chunkservers.map(async (cs) => await cs.start()))
  const master = new FakeMaster(chunkservers)
  await master.start()
  return {
    master,
    chunkservers,
    stop: async () => { await master.stop(); await Promise.all(chunkservers.map(async (cs) => await cs.stop())) },
  }
}
