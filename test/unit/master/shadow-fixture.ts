// Test fixture (not a test file): a real master and shadows in this process, talking HTTP on port 0, with one
// secret; helpers to drive a write load through the master's routes (fake chunkservers are heartbeats), to
// wait for a shadow to catch up, and to compare the tables that define the namespace and the chunks.
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import type { Test } from 'tap'
import { resolveMasterConfig, resolveShadowConfig, type MasterConfig, type ShadowConfig } from '../../../shared/config.js'
import type * as p from '../../../shared/protocol.js'
import { startMaster, startShadow, type Master, type MasterOptions, type RunningShadow } from '../../../master/main.js'
import type { Db } from '../../../master/db.js'
import { dumpTables, heartbeatBody, quietLog, smallChunkBytes } from './fixture.js'

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

export async function startPair (t: TapLike, masterOver: Partial<MasterConfig> = {}, masterOptions: MasterOptions = {}): Promise<Pair> {
  const root = t.testdir({})
  const secret = randomBytes(32)
  const fatal: Error[] = []
  const started = await startMaster(resolveMasterConfig({ dataDir: join(root, 'master'), port: 0, logLevel: 'silent', ...masterOver }),
    { logger: quietLog, secret, tick: false, onFatal: (err) => { fatal.push(err) }, ...masterOptions })
  t.teardown(() => started.close())
  const shadows: RunningShadow[] = []
  t.teardown(async () => { for (const s of shadows) await s.close() })
  return {
    root, secret, master: started.master, masterUrl: started.url, closeMaster: started.close, fatal,
    startShadow: async (name = 'shadow', over = {}, options = {}) => {
      const config = resolveShadowConfig({ dataDir: join(root, name), port: 0, master: started.url, logLevel: 'silent', pollWaitMs: 200, ...over })
      const shadow = await startShadow(config, { logger: quietLog, secret, tick: false, onFatal: (err) => { fatal.push(err) }, ...options })
      shadows.push(shadow)
      return shadow
    }
  }
}

export async function call<T = any> (node: Master, method: 'GET' | 'POST', url: string, payload?: unknown): Promise<{ statusCode: number, body: T }> {
  const res = await node.app.inject(method === 'GET'
    ? { method, url: url + (payload === undefined ? '' : '?' + new URLSearchParams(payload as Record<string, string>).toString()) }
    : { method, url, payload: payload as Record<string, unknown> })
  return { statusCode: res.statusCode, body: res.json() }
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

// Three fake chunkservers that have full-reported, so the master can place replicas.
export async function addServers (node: Master, count = 3): Promise<void> {
  for (let i = 1; i <= count; i++) {
    await call(node, 'POST', '/chunkservers/heartbeat', heartbeatBody(i))
    await call(node, 'POST', '/chunkservers/heartbeat', heartbeatBody(i, { fullReport: [] }))
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
