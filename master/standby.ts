// A warm spare master. Starting Node and loading fastify, SQLite, pino and ajv costs ~600 ms on a 2-core
// machine, far more than opening the database (a few ms at any namespace size). So `granary up` keeps one
// spare beside the master: the same `granary master` command with GRANARY_STANDBY=1, which loads everything,
// warms the schema compiler, logs {"msg":"standby"} and then waits — without touching the database or the
// port — for the line "go" on its stdin. When the master dies the supervisor writes "go" and the spare opens
// the database and listens: a restart costs tens of ms instead of a process start. (Started by hand or under
// systemd, without the variable, a master starts cold as before.) The stdin pipe is also the lifeline: if the
// supervisor dies while this waits, the pipe closes and the spare exits.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { resolveMasterConfig } from '../shared/config.js'
import type { Logger } from '../shared/log.js'
import { warmSchemaCompilers } from './lazy-schemas.js'
import { isAlive } from '../shared/process.js'

export const standbyEnvName = 'GRANARY_STANDBY'
export const standbyMessage = 'standby'
export const warmUpDirPrefix = 'granary-standby-'   // + the spare's pid + '-' + mkdtemp's suffix (removeWarmUpDirsOfDeadSpares)
const warmUpDirName = new RegExp(`^${warmUpDirPrefix}(\\d+)-[^-]+$`)
export const activateLine = 'go'
const pendingInputBytesMax = 1024   // stdin carries one short line; anything longer is not ours

export function isStandby (env: NodeJS.ProcessEnv = process.env): boolean {
  return env[standbyEnvName] === '1'
}

// Warms up, announces itself, and resolves when the supervisor says go. Exits if stdin closes first.
export async function waitForActivation (log: Logger, input: NodeJS.ReadableStream = process.stdin, exit: () => void = () => process.exit(0)): Promise<void> {
  await warmUp().catch((err: unknown) => log.warn({ err }, 'standby warm-up failed; it will start cooler'))
  const waitedFromMs = Date.now()
  const activated = new Promise<void>((resolve) => {
    let pending = ''
    const onData = (data: Buffer | string): void => {
      pending = (pending + data.toString()).slice(-pendingInputBytesMax)
      if (!pending.split('\n').slice(0, -1).some((line) => line.trim() === activateLine)) return
      input.removeListener('data', onData)
      input.removeListener('end', onEnd)
      input.removeListener('close', onEnd)
      resolve()
    }
    const onEnd = (): void => { log.info('supervisor gone before activation; exiting'); exit() }
    input.on('data', onData)
    input.once('end', onEnd)
    input.once('close', onEnd)
    input.resume()
  })
  log.info(standbyMessage)
  await activated
  log.info({ standbyMs: Date.now() - waitedFromMs }, 'standby activated: opening the database')
}

// V8 compiles a function the first time it runs, and fastify, find-my-way, ajv and better-sqlite3 have many.
// So the spare runs a throwaway master once — on its own temporary database, never the real one, on a port
// of its own — through the requests a restarted master meets first: a restart then runs code already compiled.
async function warmUp (): Promise<void> {
  warmSchemaCompilers()
  const { openMaster } = await import('./main.js')   // not a static import: main.ts imports this file
  removeWarmUpDirsOfDeadSpares(tmpdir())
  const dir = mkdtempSync(join(tmpdir(), `${warmUpDirPrefix}${process.pid}-`))
  try {
    const config = resolveMasterConfig({ dataDir: dir, port: 0, logLevel: 'silent' })
    const master = openMaster(config, { logger: pino({ level: 'silent' }), secret: randomBytes(32), tick: false })
    try {
      await master.app.listen({ host: '127.0.0.1', port: 0 })
      const server = { serverId: 'cs-000000000001', url: 'http://127.0.0.1:1', capacityBytes: 1, freeBytes: 1, usedBytes: 0, chunkCount: 0, activeWrites: 0, term: 1 }
      await master.app.inject({ method: 'POST', url: '/chunkservers/heartbeat', payload: { ...server, fullReport: [] } })
      await master.app.inject({ method: 'POST', url: '/fs/mkdir', payload: { path: '/warm', requestId: 'warm-1' } })
      await master.app.inject({ method: 'POST', url: '/fs/create', payload: { path: '/warm/f', replication: 1, requestId: 'warm-2' } })
      for (const url of ['/fs/stat?path=/warm', '/fs/list?path=/', '/fs/open?path=/warm', '/healthz']) await master.app.inject({ method: 'GET', url })
    } finally {
      await master.close()
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

// A spare killed during its warm-up (SIGKILL: its finally never runs) leaves its throwaway database behind, ~110 KB
// in tmpdir. Each folder names the spare's pid, so the next spare to warm up on this host removes those of spares
// no longer running. A pid reused since keeps its folder until that process is gone too (never the wrong way); a
// folder of another user's spare is theirs (the removal fails and is ignored). Only a tmpdir shared between pid
// namespaces could make a live spare look dead: its warm-up then fails, is logged, and it starts cooler.
export function removeWarmUpDirsOfDeadSpares (dir: string): void {
  let names: string[]
  try { names = readdirSync(dir) } catch { return }
  for (const name of names) {
    const pid = Number(warmUpDirName.exec(name)?.[1])
    if (!Number.isSafeInteger(pid) || pid <= 0 || isAlive(pid)) continue
    try { rmSync(join(dir, name), { recursive: true, force: true }) } catch {}
  }
}
