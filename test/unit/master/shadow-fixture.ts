// Test fixture (not a test file): a real master and shadows in this process, talking HTTP on port 0, with one
// secret; helpers to drive a write load through the master's routes (fake chunkservers are heartbeats that
// echo the master's lease fields), to wait for a shadow to catch up, and to compare the tables that define the
// namespace and the chunks. startVoters() gives fake chunkservers a real vote (chunkserver/voter.ts behind a
// bare HTTP server on its own hand-moved clock), so a shadow can win an election in-process.
import { controlKey, nonceHeader, replySignatureHeader, signReply } from '../../../shared/auth.js'
import { signedInject } from './fixture.js'
import { randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import type { Test } from 'tap'
import { resolveMasterConfig, resolveShadowConfig, type MasterConfig, type ShadowConfig } from '../../../shared/config.js'
import { isGranaryError } from '../../../shared/errors.js'
import type { ServerId } from '../../../shared/ids.js'
import type * as p from '../../../shared/protocol.js'
import { startMaster, startShadow, type Master, type MasterOptions, type RunningShadow } from '../../../master/main.js'
import type { Db } from '../../../master/db.js'
import type { ChunkStore } from '../../../chunkserver/store.js'
import { Voter } from '../../../chunkserver/voter.js'
import { dumpTables, echoOf, heartbeatBody, noteEcho, quietLog, serverIdOf, smallChunkBytes, testLeaseMs } from './fixture.js'

type TapLike = Pick<Test, 'testdir' | 'teardown'>

export const stateTables = ['meta', 'inodes', 'chunks', 'replicas', 'servers', 'sqlite_sequence']

export interface Pair {
  root: string
  secret: Buffer
  master: Master
  masterUrl: string
  closeMaster: () => Promise<void>
  fatal: Error[]
  startShadow: (name?: string, over?: Partial<ShadowConfig>, options?: MasterOptions) => Promise<RunningShadow>
}

const pairSecret = randomBytes(32)

export async function startPair (t: TapLike, masterOver: Partial<MasterConfig> = {}, masterOptions: MasterOptions = {}): Promise<Pair> {
  const root = t.testdir({})
  const secret = pairSecret
  const fatal: Error[] = []
  // The lease runs on the real clock here: longer than any test, so it holds once the fake chunkservers echoed.
  const started = await startMaster(resolveMasterConfig({ dataDir: join(root, 'master'), port: 0, logLevel: 'silent', leaseMs: testLeaseMs, ...masterOver }),
    { logger: quietLog, secret, tick: false, onFatal: (err) => { fatal.push(err) }, ...masterOptions })
  t.teardown(() => started.close())
  const shadows: RunningShadow[] = []
  t.teardown(async () => { for (const s of shadows) await s.close() })
  return {
    root, secret, master: started.master, masterUrl: started.url, closeMaster: started.close, fatal,
    startShadow: async (name = 'shadow', over = {}, options = {}) => {
      // No automatic election unless a test asks for one: a promotion here is the test's own /admin/promote.
      const config = resolveShadowConfig({ dataDir: join(root, name), port: 0, master: started.url, logLevel: 'silent', pollWaitMs: 200, leaseMs: testLeaseMs, autoPromote: false, ...over })
      const shadow = await startShadow(config, { logger: quietLog, secret, tick: false, onFatal: (err) => { fatal.push(err) }, ...options })
      shadows.push(shadow)
      return shadow
    }
  }
}

// Signed with the pairs' cluster secret (the cluster key may call every route).
export async function call<T = any> (node: Master, method: 'GET' | 'POST', url: string, payload?: unknown): Promise<{ statusCode: number, body: T }> {
  return await signedInject<T>(node.app, pairSecret, method, url, payload)
}

export async function waitFor (predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadlineMs = Date.now() + timeoutMs
  while (!(await predicate())) {
    if (Date.now() > deadlineMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

export async function caughtUp (shadow: RunningShadow, master: Master): Promise<void> {
  // Applied everything, and heard so from the master (a fresh snapshot matches the seq before any poll).
  await waitFor(() => shadow.node.queue.seq === master.queue.seq && shadow.node.follower?.lagRecords() === 0,
    `shadow at seq ${master.queue.seq} (it is at ${shadow.node.queue.seq})`)
}

export function tables (db: Db): Record<string, unknown[]> {
  return dumpTables(db, stateTables)
}

// A fake chunkserver's heartbeat that echoes the lease fields of the last master reply from this node.
export async function beat (node: Master, i: number, over: Partial<p.HeartbeatRequest> = {}): Promise<{ statusCode: number, body: p.HeartbeatReply }> {
  const echo = echoOf(node.app, i)
  const res = await call<p.HeartbeatReply>(node, 'POST', '/chunkservers/heartbeat', heartbeatBody(i, { ...(echo === undefined ? {} : { lease: echo }), ...over }))
  if (res.statusCode === 200) noteEcho(node.app, i, res.body)
  return res
}

// Three fake chunkservers that have full-reported (and echoed: the master holds its lease), so the master can
// place replicas.
export async function addServers (node: Master, count = 3): Promise<void> {
  for (let i = 1; i <= count; i++) {
    await beat(node, i)
    await beat(node, i, { fullReport: [] })
  }
}

// Fake chunkservers that heartbeat every few ms (echoing, like real ones) until the test ends: what a master
// needs to drop a stopped shadow from its in-sync set (a majority must echo the smaller set first).
export function keepBeating (t: TapLike, node: Master, count = 3, everyMs = 20): void {
  let stopped = false
  let running: Promise<unknown> = Promise.resolve()
  const timer = setInterval(() => {
    running = running.then(async () => { for (let i = 1; i <= count && !stopped; i++) await beat(node, i) }).catch(() => {})
  }, everyMs)
  t.teardown(async () => { stopped = true; clearInterval(timer); await running })
}

export interface FakeVoter {
  i: number
  serverId: ServerId
  url: string                                  // where its /vote is served: the URL it registers with
  voter: Voter
  store: { term: number, dataDir: string, serverId: ServerId }
  clock: { nowMs: number }                     // its monotonic clock, moved by hand
  echoes: Map<string, p.LeaseEcho>             // per master URL: the echo for the next heartbeat there
  answers: string[]                            // every vote answer: 'granted' or the refusal's code
}

export interface Voters {
  list: FakeVoter[]
  // One heartbeat from voter i to the node at nodeUrl, carrying the echo and the newest term it has seen; the
  // reply goes through the voter as a real chunkserver's would.
  beat: (node: Master, nodeUrl: string, i: number, over?: Partial<p.HeartbeatRequest>) => Promise<{ statusCode: number, body: p.HeartbeatReply }>
  register: (node: Master, nodeUrl: string) => Promise<void>   // each registers, full-reports and echoes
  round: (node: Master, nodeUrl: string) => Promise<void>      // one heartbeat each
  lapse: () => void                                            // every voter's promise to its master runs out
}

// count fake chunkservers 1..count with real voters (leaseMs as the master's), each serving POST /vote.
export async function startVoters (t: TapLike, pair: Pick<Pair, 'root' | 'secret'>, count = 3, leaseMs = testLeaseMs): Promise<Voters> {
  const list: FakeVoter[] = []
  for (let i = 1; i <= count; i++) {
    const dataDir = join(pair.root, `cs${i}`)
    mkdirSync(dataDir, { recursive: true })
    const clock = { nowMs: 0 }
    const store = { term: 1, dataDir, serverId: serverIdOf(i) }
    const voter = await Voter.open({ store: store as unknown as ChunkStore, leaseMs, secret: pair.secret, log: quietLog, now: () => clock.nowMs })
    const answers: string[] = []
    const server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => {
        // Signed as a chunkserver signs a vote's answer (shared/auth-server.ts): the candidate believes nothing else.
        const send = (statusCode: number, body: unknown): void => {
          const text = JSON.stringify(body)
          const nonce = req.headers[nonceHeader]
          res.writeHead(statusCode, { 'content-type': 'application/json', ...(typeof nonce === 'string' ? { [replySignatureHeader]: signReply(controlKey(pair.secret), nonce, statusCode, text) } : {}) })
          res.end(text)
        }
        if (req.method !== 'POST' || req.url !== '/vote') { send(404, { code: 'GRN_NOT_FOUND', message: String(req.url) }); return }
        voter.vote(JSON.parse(Buffer.concat(chunks).toString()) as p.VoteRequest).then(({ term }) => {
          answers.push('granted')
          send(200, { granted: true, term, serverId: store.serverId } satisfies p.VoteReply)
        }, (err: Error) => {
          answers.push(isGranaryError(err) ? err.code : 'error')
          if (isGranaryError(err)) send(err.statusCode, err.toBody())
          else send(500, { code: 'GRN_INTERNAL', message: err.message })
        })
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.teardown(() => { server.closeAllConnections(); server.close() })
    list.push({ i, serverId: store.serverId, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, voter, store, clock, echoes: new Map(), answers })
  }
  const byIndex = (i: number): FakeVoter => list[i - 1] as FakeVoter
  const beatOne = async (node: Master, nodeUrl: string, i: number, over: Partial<p.HeartbeatRequest> = {}): Promise<{ statusCode: number, body: p.HeartbeatReply }> => {
    const v = byIndex(i)
    const echo = v.echoes.get(nodeUrl)
    const masterUrl = v.voter.masterUrl
    const res = await call<p.HeartbeatReply>(node, 'POST', '/chunkservers/heartbeat', heartbeatBody(i, {
      url: v.url, term: v.store.term, ...(echo === undefined ? {} : { lease: echo }), ...(masterUrl === undefined ? {} : { masterUrl }), ...over
    }))
    if (res.statusCode !== 200) return res
    const reply = res.body
    v.store.term = Math.max(v.store.term, reply.term)
    if (reply.role === 'master' && typeof reply.instanceId === 'string' && typeof reply.sentAtMs === 'number') {
      const next = await v.voter.onMasterReply(nodeUrl, {
        term: reply.term, instanceId: reply.instanceId, sentAtMs: reply.sentAtMs, isrEpoch: reply.isrEpoch ?? 0, isr: reply.isr ?? [], released: reply.released === true
      })
      if (next === null) v.echoes.delete(nodeUrl)
      else v.echoes.set(nodeUrl, next)
    }
    return res
  }
  return {
    list,
    beat: beatOne,
    register: async (node, nodeUrl) => {
      for (const v of list) {
        await beatOne(node, nodeUrl, v.i)
        await beatOne(node, nodeUrl, v.i, { fullReport: [] })
      }
    },
    round: async (node, nodeUrl) => { for (const v of list) await beatOne(node, nodeUrl, v.i) },
    lapse: () => { for (const v of list) v.clock.nowMs += leaseMs + 1 }
  }
}

// Resolves with what `promise` resolves to, or fails after timeoutMs: no test waits unbounded on a promotion.
export async function within<T> (promise: Promise<T>, what: string, timeoutMs = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

// create → allocate → commit (per chunk) → complete, through the master's routes.
export async function writeFile (node: Master, path: string, chunkCount: number): Promise<void> {
  const created = await call<p.CreateReply>(node, 'POST', '/fs/create', { path, replication: 2, chunkSizeBytes: smallChunkBytes })
  if (created.statusCode !== 200) throw new Error(`create ${path}: ${JSON.stringify(created.body)}`)
  const { inodeId, leaseId } = created.body
  for (let chunkIndex = 0; chunkIndex < chunkCount; chunkIndex++) {
    const allocated = await call<p.AllocateReply>(node, 'POST', '/fs/allocate', { inodeId, leaseId, chunkIndex })
    const { chunkHandle, version, pipeline } = allocated.body
    await call(node, 'POST', '/fs/commit', {
      inodeId, leaseId, chunkIndex, chunkHandle, version, lengthBytes: smallChunkBytes, crc32: chunkIndex, serverIds: pipeline.map((s) => s.serverId)
    })
  }
  const done = await call(node, 'POST', '/fs/complete', { inodeId, leaseId, sizeBytes: chunkCount * smallChunkBytes, chunkCount })
  if (done.statusCode !== 200) throw new Error(`complete ${path}: ${JSON.stringify(done.body)}`)
}

// A mixed load: directories, files with chunks, renames and deletes, `rounds` times, under /<prefix>.
export async function writeLoad (node: Master, prefix: string, rounds: number): Promise<void> {
  await call(node, 'POST', '/fs/mkdir', { path: `/${prefix}`, parents: true })
  for (let i = 0; i < rounds; i++) {
    await Promise.all([
      call(node, 'POST', '/fs/mkdir', { path: `/${prefix}/d${i}/e`, parents: true }),
      writeFile(node, `/${prefix}/f${i}`, 1 + (i % 3)),
      call(node, 'POST', '/fs/mkdir', { path: `/${prefix}/gone${i}` })
    ])
    await call(node, 'POST', '/fs/rename', { source: `/${prefix}/f${i}`, target: `/${prefix}/d${i}/e/f` })
    await call(node, 'POST', '/fs/delete', { path: `/${prefix}/gone${i}` })
  }
}
