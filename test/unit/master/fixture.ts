// Test fixture (not a test file): a master on a t.testdir() database with a hand-moved clock, driven through
// fastify inject(); fake chunkservers are just heartbeats; dumpTables() snapshots every table for
// "nothing changed" and replay comparisons.
import type { FastifyInstance } from 'fastify'
import { signRequestWithSecret } from '../../../shared/auth.js'
import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import type { Test } from 'tap'
import { resolveMasterConfig, type MasterConfig } from '../../../shared/config.js'
import type { ServerId } from '../../../shared/ids.js'
import type * as p from '../../../shared/protocol.js'
import { openMaster, type Master } from '../../../master/main.js'
import type { Db } from '../../../master/db.js'

export const quietLog = pino({ level: 'silent' })
export const startMs = 1_700_000_000_000
export const testLeaseMs = 10 * 365 * 24 * 60 * 60_000

export interface TestMaster extends Master {
  clock: { nowMs: number }
  config: MasterConfig
  secret: Buffer
  fatal: Error[]
  call: <T = any>(method: 'GET' | 'POST', url: string, payload?: unknown) => Promise<{ statusCode: number, body: T }>
}

type TapLike = Pick<Test, 'testdir' | 'teardown'>

export async function startTestMaster (t: TapLike, over: Partial<MasterConfig> & { dir?: string, secret?: Buffer } = {}): Promise<TestMaster> {
  const { dir, secret: givenSecret, ...configOver } = over
  const dataDir = dir ?? t.testdir()
  // The lease runs on the hand-moved clock too, and lasts longer than any test moves it: tests that are not
  // about the lease get one from the fake chunkservers' echoes (heartbeat() below) and keep it.
  const config = resolveMasterConfig({ dataDir, logLevel: 'silent', port: 0, leaseMs: testLeaseMs, ...configOver })
  const clock = { nowMs: startMs }
  const fatal: Error[] = []
  const secret = givenSecret ?? randomBytes(32)
  const master = openMaster(config, { logger: quietLog, now: () => clock.nowMs, monoNow: () => clock.nowMs, onFatal: (err) => { fatal.push(err) }, tick: false, secret })
  t.teardown(() => master.close())
  const call = async (method: 'GET' | 'POST', url: string, payload?: unknown) => await signedInject(master.app, secret, method, url, payload)
  return { ...master, clock, config, secret, fatal, call }
}

export function serverIdOf (i: number): ServerId {
  return `cs-${i.toString(16).padStart(12, '0')}` as ServerId
}

export function heartbeatBody (i: number, over: Partial<p.HeartbeatRequest> = {}): p.HeartbeatRequest {
  return {
    serverId: serverIdOf(i), url: `http://127.0.0.1:${7000 + i}`, capacityBytes: 1e12, freeBytes: 1e12 - i, usedBytes: 0,
    chunkCount: 0, activeWrites: 0, term: 1, ...over
  }
}

// Like a real chunkserver, each heartbeat echoes the lease fields of the last reply from that master.
const echoes = new WeakMap<object, Map<number, p.LeaseEcho>>()
export function echoOf (m: object, i: number): p.LeaseEcho | undefined { return echoes.get(m)?.get(i) }
export function noteEcho (m: object, i: number, reply: p.HeartbeatReply): void {
  let map = echoes.get(m)
  if (map === undefined) echoes.set(m, map = new Map())
  if (reply.role === 'master' && reply.instanceId !== undefined && reply.sentAtMs !== undefined) {
    map.set(i, { instanceId: reply.instanceId, term: reply.term, sentAtMs: reply.sentAtMs, isrEpoch: reply.isrEpoch ?? 0 })
  }
}

export async function heartbeat (m: TestMaster, i: number, over: Partial<p.HeartbeatRequest> = {}): Promise<p.HeartbeatReply> {
  const echo = echoOf(m.app, i)
  const res = await m.call<p.HeartbeatReply>('POST', '/chunkservers/heartbeat', heartbeatBody(i, { ...(echo === undefined ? {} : { lease: echo }), ...over }))
  if (res.statusCode !== 200) throw new Error(`heartbeat ${i}: ${JSON.stringify(res.body)}`)
  noteEcho(m.app, i, res.body)
  return res.body
}

// A round of heartbeats that renews the lease of THIS master process (a just-restarted one holds none): a
// server with no reply of this process to echo heartbeats once to get one, then every server heartbeats
// echoing this process's latest reply. servers: fake chunkserver indexes, a majority of the registered ones.
// Returns whether the lease is held afterwards.
export async function renewLease (m: TestMaster, servers: readonly number[]): Promise<boolean> {
  for (const i of servers) {
    const echo = echoOf(m.app, i)
    if (echo === undefined || echo.instanceId !== m.lease.instanceId) await heartbeat(m, i)
    await heartbeat(m, i)
  }
  return m.lease.held()
}

// n chunkservers that have registered and sent an (empty) full report, so placement may use them.
export async function addServers (m: TestMaster, count: number, first = 1): Promise<ServerId[]> {
  const ids: ServerId[] = []
  for (let i = first; i < first + count; i++) {
    await heartbeat(m, i)
    await heartbeat(m, i, { fullReport: [] })
    ids.push(serverIdOf(i))
  }
  return ids
}

export const smallChunkBytes = 64 * 1024

// create → (allocate → commit)* → complete, chunks of the given lengths; returns the completed stat.
export async function writeFile (m: TestMaster, path: string, lengths: number[], over: Partial<p.CreateRequest> = {}): Promise<p.FileStat> {
  const created = await m.call<p.CreateReply>('POST', '/fs/create', { path, replication: 2, chunkSizeBytes: smallChunkBytes, ...over })
  if (created.statusCode !== 200) throw new Error(`create ${path}: ${JSON.stringify(created.body)}`)
  const { inodeId, leaseId } = created.body
  for (const [chunkIndex, lengthBytes] of lengths.entries()) {
    const allocated = await m.call<p.AllocateReply>('POST', '/fs/allocate', { inodeId, leaseId, chunkIndex })
    if (allocated.statusCode !== 200) throw new Error(`allocate ${path}: ${JSON.stringify(allocated.body)}`)
    const { chunkHandle, version, pipeline } = allocated.body
    const committed = await m.call('POST', '/fs/commit', {
      inodeId, leaseId, chunkIndex, chunkHandle, version, lengthBytes, crc32: chunkIndex + 7, serverIds: pipeline.map((s) => s.serverId)
    })
    if (committed.statusCode !== 200) throw new Error(`commit ${path}: ${JSON.stringify(committed.body)}`)
  }
  const sizeBytes = lengths.reduce((a, b) => a + b, 0)
  const completed = await m.call<p.FileStat>('POST', '/fs/complete', { inodeId, leaseId, sizeBytes, chunkCount: lengths.length })
  if (completed.statusCode !== 200) throw new Error(`complete ${path}: ${JSON.stringify(completed.body)}`)
  return completed.body
}

// How many records the master's oplog holds: one per committed mutation (a batch is one).
export function oplogCount (m: TestMaster): number {
  return m.db.prepare('SELECT count(*) FROM oplog').pluck().get() as number
}

// A mutation sent twice with one request id (a retry whose reply was lost): the second gets the first's stored
// reply and applies nothing; one file exists afterwards.
export async function checkRetriedOnce (t: Pick<Test, 'same' | 'equal'>, m: TestMaster, url: string, body: Record<string, unknown>): Promise<void> {
  const one = await m.call('POST', url, body)
  const records = oplogCount(m)
  const two = await m.call('POST', url, body)
  t.same(two.body, one.body, 'the stored reply')
  t.equal(oplogCount(m), records, 'nothing applied twice')
  t.equal(m.db.prepare("SELECT count(*) FROM inodes WHERE type = 'file'").pluck().get(), 1)
}

const tableOrder: Record<string, string> = {
  meta: 'id', inodes: 'id', chunks: 'chunkHandle', replicas: 'chunkHandle, serverId', servers: 'serverId',
  oplog: 'seq', requests: 'requestId', sqlite_sequence: 'name'
}

// Every row of every master table, in a stable order.
export function dumpTables (db: Db, tables = Object.keys(tableOrder)): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {}
  for (const table of tables) out[table] = db.prepare(`SELECT * FROM ${table} ORDER BY ${tableOrder[table] ?? 'rowid'}`).all()
  return out
}

// One inject() signed with the cluster secret, as a chunkserver or shadow signs (shared/auth.ts): the cluster key
// may call every route, so tests that are not about authentication pass its checks.
export async function signedInject<T = any> (app: FastifyInstance, secret: Buffer, method: 'GET' | 'POST', url: string, payload?: unknown): Promise<{ statusCode: number, body: T }> {
  const target = method === 'GET' ? url + (payload === undefined ? '' : '?' + new URLSearchParams(payload as Record<string, string>).toString()) : url
  const body = method === 'GET' || payload === undefined ? null : JSON.stringify(payload)
  const headers = { ...signRequestWithSecret(secret, method, target, body), ...(body === null ? {} : { 'content-type': 'application/json' }) }
  const res = await app.inject(body === null ? { method, url: target, headers } : { method, url: target, headers, payload: body })
  return { statusCode: res.statusCode, body: res.json() }
}
