// Runs docs/OPERATIONS.md "A five-host deployment" as written, on five loopback addresses: the layout table, the
// one-off commands (the secret made on the master host and copied with scp -p to every other host), each
// systemd unit's ExecStart (continuation lines joined, %i expanded as systemd does; each also through the
// product's own flag checks) in the documented start order, the client's masters list (the export line and the
// connect() call), the checks block (run through sh and jq with the real CLI) and the report-field table (each
// field is where it says; literal healthy values hold). Nothing is retyped here; only the machine differs:
//   10.0.0.N → 127.0.0.N; /var/lib/granary → a folder per host under one temp folder; --host 0.0.0.0 → the host's
//   own 127.0.0.N (this machine may only bind 127.0.0.0/8; the doc's --advertise-url is kept, mapped like every
//   address); /usr/bin/node and /opt/granary/dist/client/cli/cli.js → spawnRole's process.execPath and this repo's
//   dist/client/cli/cli.js (the doc's node flags must be the ones spawnRole passes).
// Ports are the doc's own (9000 on the metadata hosts, 9100 on the chunkservers): they sit below the ephemeral
// range (32768+) that every other test's port 0 draws from, on addresses (127.0.0.11-15) no other test binds a
// fixed port on, so they cannot collide with a free port picked elsewhere; a run of this file beside another run
// of it would collide and fail at start with EADDRINUSE in the log tail.
// Then, through the library, a 200 MiB file is streamed in and read back (sha256), and every chunkserver URL in
// the master's and the shadow's /cluster/report and in both /fs/open replies must be its own host's address:
// no 0.0.0.0, no 127.0.0.1 default, no other host's address in that server's entry (and /healthz names the two
// metadata hosts by theirs).
import t from 'tap'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { signedRequest as request } from '../../testing/cluster.js'
import { readCredentialsFile } from '../../client/credentials.js'
import { connect } from '../../client/index.js'
import {
  chunkserverDefaults, configFromArgv, masterDefaults, resolveChunkserverConfig, resolveMasterConfig, resolveShadowConfig, shadowDefaults
} from '../../shared/config.js'
import { cliPath, formatLogTail, spawnRole, type ProcessRole, type SpawnedRole } from '../../shared/process.js'
import type { ClusterReport, HealthReply, OpenReply } from '../../shared/protocol.js'

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const docPath = join(repo, 'docs', 'OPERATIONS.md')
const sectionHeading = '## A five-host deployment'
const docNode = '/usr/bin/node'
const docCli = '/opt/granary/dist/client/cli/cli.js'
const docStateDir = '/var/lib/granary'
const spawnRoleNodeFlags = ['--single-threaded-gc']   // what shared/process.ts spawnRole runs every role with
const MiB = 1024 * 1024
const fileBytes = 200 * MiB
const readyTimeoutMs = 20_000
const settleTimeoutMs = 30_000                           // a check of the doc's that must come to hold

// ---- reading the section --------------------------------------------------------------------------------------
function section (): string {
  const text = readFileSync(docPath, 'utf8')
  const start = text.indexOf(`\n${sectionHeading}\n`)
  if (start === -1) throw new Error(`${docPath} has no "${sectionHeading}" section`)
  const rest = text.slice(start + 1)
  const end = rest.slice(sectionHeading.length).search(/\n## /)
  return end === -1 ? rest : rest.slice(0, sectionHeading.length + end + 1)
}

interface Block { lang: string, lines: string[] }
function blocksOf (text: string): Block[] {
  const out: Block[] = []
  for (const m of text.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)) out.push({ lang: m[1] as string, lines: (m[2] as string).replace(/\n$/, '').split('\n') })
  return out
}

function blockStarting (blocks: Block[], lang: string, firstLine: RegExp): Block {
  const found = blocks.filter((b) => b.lang === lang && firstLine.test(b.lines[0] ?? ''))
  if (found.length !== 1) throw new Error(`expected one \`\`\`${lang} block starting ${String(firstLine)} in "${sectionHeading}", found ${found.length}`)
  return found[0] as Block
}

// ExecStart= with its continuation lines (a trailing backslash) joined, as systemd reads it.
function execStartOf (block: Block): string {
  const i = block.lines.findIndex((l) => l.startsWith('ExecStart='))
  if (i === -1) throw new Error(`unit block "${block.lines[0]}" has no ExecStart=`)
  const parts: string[] = []
  for (let j = i; j < block.lines.length; j++) {
    const line = block.lines[j] as string
    const continued = line.endsWith('\\')
    parts.push((continued ? line.slice(0, -1) : line).trim())
    if (!continued) break
  }
  return parts.join(' ').slice('ExecStart='.length)
}

interface HostRow { address: string, role: ProcessRole, unit: string, binds: string, advertises: string }
interface Layout {
  hosts: HostRow[]
  units: Map<string, { execStart: string, writtenFor: string }>   // unit file name → its ExecStart
  failoverExecStarts: string[]
  prepare: string[]
  secret: { host: string, lines: string[] }
  start: string[]
  checks: string[]
  masters: string[]              // the export GRANARY_MASTER list
  connectMasters: string[]       // connect({ masters: [...] })
  fieldRows: Array<{ fields: string[], askedOf: 'master' | 'shadow', healthy: string[] }>
}

function readLayout (): Layout {
  const text = section()
  const blocks = blocksOf(text)
  const hosts: HostRow[] = []
  for (const m of text.matchAll(/^\| (10\.0\.0\.\d+) \| (master|shadow|chunkserver) \| `([^`]+)` \| ([^|]+?) \| ([^|]+?) \|$/gm)) {
    hosts.push({ address: m[1] as string, role: m[2] as ProcessRole, unit: m[3] as string, binds: m[4] as string, advertises: m[5] as string })
  }
  const units = new Map<string, { execStart: string, writtenFor: string }>()
  const failoverExecStarts: string[] = []
  for (const block of blocks.filter((b) => b.lang === 'ini')) {
    const unit = /^# \/etc\/systemd\/system\/(\S+) on (.+)$/.exec(block.lines[0] ?? '')
    if (unit !== null) units.set(unit[1] as string, { execStart: execStartOf(block), writtenFor: unit[2] as string })
    else if (/^# after a failover: ExecStart of \S+ on 10\.0\.0\.\d+$/.test(block.lines[0] ?? '')) failoverExecStarts.push(execStartOf(block))
    else throw new Error(`an \`\`\`ini block of "${sectionHeading}" starts "${block.lines[0] ?? ''}": neither a unit (# /etc/systemd/system/NAME on HOSTS) nor "# after a failover: ExecStart of NAME on HOST"`)
  }
  const secretBlock = blockStarting(blocks, 'sh', /^# on 10\.0\.0\.\d+, as root, once$/)
  const exports = [...text.matchAll(/^export GRANARY_MASTER=(\S+)$/gm)].map((m) => m[1] as string)
  if (exports.length === 0 || exports.some((e) => e !== exports[0])) throw new Error(`the section's export GRANARY_MASTER lines differ or are missing: ${exports.join(' | ')}`)
  const connectCall = /connect\(\{ masters: \[([^\]]*)\] \}\)/.exec(text)
  if (connectCall === null) throw new Error('the section has no connect({ masters: [...] }) call')
  const fieldRows: Layout['fieldRows'] = []
  for (const m of text.matchAll(/^\| ((?:`[^`|]+`(?:, )?)+) \| the (master|shadow)[^|]* \| ([^|]+?) \| [^|]+ \|$/gm)) {
    fieldRows.push({
      fields: [...(m[1] as string).matchAll(/`([^`]+)`/g)].map((f) => f[1] as string),
      askedOf: m[2] as 'master' | 'shadow',
      healthy: (m[3] as string).split(', ').map((h) => h.replace(/`/g, '').trim())
    })
  }
  return {
    hosts,
    units,
    failoverExecStarts,
    prepare: blockStarting(blocks, 'sh', /^# every host, as root$/).lines.slice(1),
    secret: { host: (/10\.0\.0\.\d+/.exec(secretBlock.lines[0] as string) as RegExpExecArray)[0], lines: secretBlock.lines.slice(1) },
    start: blockStarting(blocks, 'sh', /^# start, in this order$/).lines.slice(1),
    checks: blockStarting(blocks, 'sh', /^# checks$/).lines.slice(1).filter((l) => !l.startsWith('export GRANARY_MASTER=')),
    masters: (exports[0] as string).split(','),
    connectMasters: [...(connectCall[1] as string).matchAll(/'([^']+)'/g)].map((q) => q[1] as string),
    fieldRows
  }
}

// ---- this machine's stand-ins --------------------------------------------------------------------------------
const loopback = (text: string): string => text.replace(/\b10\.0\.0\.(\d{1,3})\b/g, '127.0.0.$1')

// A unit instance's ExecStart as systemd would run it: the template's %i is the instance name.
function unitCommand (layout: Layout, unitName: string): string {
  const name = unitName.endsWith('.service') ? unitName : `${unitName}.service`
  const exact = layout.units.get(name)
  if (exact !== undefined) return exact.execStart
  const template = /^([^@]+)@(.+)\.service$/.exec(name)
  const unit = template === null ? undefined : layout.units.get(`${template[1] as string}@.service`)
  if (template === null || unit === undefined) throw new Error(`no unit ${name} (or its template) in "${sectionHeading}"`)
  return unit.execStart.replace(/%(.)/g, (_, c: string) => {
    if (c === 'i') return template[2] as string
    if (c === '%') return '%'
    throw new Error(`${name}: specifier %${c} is not one this test expands`)
  })
}

interface DocCommand { role: ProcessRole, docArgs: string[] }
function parseExecStart (command: string): DocCommand {
  if (/["'$\\]/.test(command)) throw new Error(`ExecStart has quoting or variables this test does not parse: ${command}`)
  const tokens = command.split(/\s+/).filter((s) => s !== '')
  if (tokens[0] !== docNode) throw new Error(`ExecStart must start with ${docNode}: ${command}`)
  const cliAt = tokens.indexOf(docCli)
  if (cliAt === -1) throw new Error(`ExecStart must run ${docCli}: ${command}`)
  const nodeFlags = tokens.slice(1, cliAt)
  if (JSON.stringify(nodeFlags) !== JSON.stringify(spawnRoleNodeFlags)) {
    throw new Error(`ExecStart's node flags ${nodeFlags.join(' ')} differ from spawnRole's (${spawnRoleNodeFlags.join(' ')}): this test would not run what the doc says`)
  }
  const role = tokens[cliAt + 1] as ProcessRole
  if (!['master', 'shadow', 'chunkserver'].includes(role)) throw new Error(`ExecStart runs '${String(role)}', not a server role`)
  return { role, docArgs: tokens.slice(cliAt + 2) }
}

// The product's own flag parser and checks accept the doc's flags, as written (10.0.0.N, 0.0.0.0 and all).
function resolveDocConfig ({ role, docArgs }: DocCommand): Record<string, unknown> {
  if (role === 'master') return resolveMasterConfig(configFromArgv('master', masterDefaults, docArgs))
  if (role === 'shadow') return resolveShadowConfig(configFromArgv('shadow', shadowDefaults, docArgs))
  return resolveChunkserverConfig(configFromArgv('chunkserver', chunkserverDefaults, docArgs))
}

function flagValue (args: readonly string[], flag: string): string | undefined {
  const i = args.indexOf(flag)
  return i === -1 ? undefined : args[i + 1]
}

interface Host { row: HostRow, address: string, stateDir: string }

function mapArgs (host: Host, docArgs: readonly string[]): string[] {
  const args = docArgs.map((arg, i) => docArgs[i - 1] === '--host' && arg === '0.0.0.0' ? host.address : loopback(arg.replaceAll(docStateDir, host.stateDir)))
  const leaked = args.filter((a) => a.includes('0.0.0.0') || /\b10\.0\.0\.\d/.test(a))
  if (leaked.length > 0) throw new Error(`after mapping, ${host.row.address}'s arguments still name ${leaked.join(' ')}`)
  return args
}

interface Shell { code: number | null, stdout: string, stderr: string }
function sh (script: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Shell> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.on('error', reject)
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

// Polls until probe() returns a value; the error names what did not hold and the probe's last answer.
async function until<T> (what: string, timeoutMs: number, probe: () => Promise<T | string>, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (true) {
    const got = await probe()
    if (typeof got !== 'string') return got
    if (Date.now() > deadline) throw new Error(`${what}: did not hold within ${timeoutMs} ms; last: ${got}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

// The admin key the deployed master made at its first start (docs/OPERATIONS.md "Access keys").
let adminKeyFile: string | undefined
async function getText (url: string): Promise<{ status: number, text: string }> {
  if (adminKeyFile === undefined) throw new Error('the master has not made its admin key yet')
  const res = await request(url, { headersTimeout: 5_000, bodyTimeout: 5_000 }, readCredentialsFile(adminKeyFile))
  return { status: res.statusCode, text: await res.body.text() }
}

// A server's /cluster/report, or why there is none (for until()).
async function reportAt (url: string): Promise<ClusterReport | string> {
  try {
    const { status, text } = await getText(`${url}/cluster/report`)
    return status === 200 ? JSON.parse(text) as ClusterReport : `${url}/cluster/report answered ${status}: ${text}`
  } catch (err) {
    return `${url}/cluster/report: ${(err as Error).message}`
  }
}

// A dotted path of the report ('lease.held', 'servers[].alive'): every value it reaches (arrays fan out).
function valuesAt (value: unknown, path: string): unknown[] {
  let current: unknown[] = [value]
  for (const part of path.split('.')) {
    const many = part.endsWith('[]')
    const key = many ? part.slice(0, -2) : part
    current = current.flatMap((v) => {
      const next = (v as Record<string, unknown> | null | undefined)?.[key]
      return many ? (Array.isArray(next) ? next : [undefined]) : [next]
    })
  }
  return current
}

// ---- the run --------------------------------------------------------------------------------------------------
t.test('docs/OPERATIONS.md "A five-host deployment" runs as written', async (t) => {
  const startedAt = Date.now()
  const layout = readLayout()
  t.same(layout.hosts.map((h) => `${h.address} ${h.role}`),
    ['10.0.0.11 master', '10.0.0.12 shadow', '10.0.0.13 chunkserver', '10.0.0.14 chunkserver', '10.0.0.15 chunkserver'],
    'the layout table lists the five hosts of the issue')

  const root = mkdtempSync(join(tmpdir(), 'granary-deploy-'))
  const hosts = new Map<string, Host>(layout.hosts.map((row) => {
    const address = loopback(row.address)
    return [row.address, { row, address, stateDir: join(root, address, 'var-lib-granary') }]
  }))
  const hostOf = (docAddress: string): Host => {
    const host = hosts.get(docAddress)
    if (host === undefined) throw new Error(`${docAddress} is not a host of the layout table`)
    return host
  }
  const running: Array<{ name: string, host: Host, logPath: string, spawned: SpawnedRole }> = []
  t.teardown(async () => {
    // Only our processes, by pid; then wait until each is gone.
    for (const p of running) {
      if (p.spawned.child.exitCode === null && p.spawned.child.signalCode === null) {
        try { process.kill(p.spawned.pid, 'SIGKILL') } catch {}
      }
    }
    await Promise.all(running.map(async (p) => await p.spawned.exited))
    if (t.passing() && process.env.GRANARY_KEEP_TEST_DIRS !== '1') rmSync(root, { recursive: true, force: true })
    else t.comment(`kept ${root}`)
  })
  const phase = (what: string): void => { t.comment(`${what}: ${Date.now() - startedAt} ms`) }
  const logTails = (): string => running.map((p) => formatLogTail(p.logPath, 15)).join('\n')

  // Every ExecStart of the section, as written, passes the product's own config checks; without
  // --advertise-url a chunkserver's 0.0.0.0 bind is refused (the doc's reason for the flag).
  const docCommands = new Map<string, DocCommand>()
  for (const row of layout.hosts) {
    const command = parseExecStart(unitCommand(layout, row.unit))
    t.equal(command.role, row.role, `${row.unit} on ${row.address} runs ${row.role}`)
    // Refused as written means refused on a real host: do not run a loopback version of it.
    try { resolveDocConfig(command) } catch (err) { throw new Error(`${row.unit}: granary ${command.role} refuses the doc's flags: ${(err as Error).message}`) }
    t.pass(`${row.unit}: the product accepts its flags as written`)
    t.equal(`${flagValue(command.docArgs, '--host') ?? ''}:${flagValue(command.docArgs, '--port') ?? ''}`, row.binds, `${row.unit} binds what the table says`)
    const advertised = flagValue(command.docArgs, '--advertise-url') ?? `http://${row.binds}`
    t.equal(advertised, row.advertises, `${row.unit} advertises what the table says`)
    if (row.role === 'chunkserver') {
      t.equal(flagValue(command.docArgs, '--host'), '0.0.0.0', `${row.unit} binds every address`)
      const without = command.docArgs.filter((a, i) => a !== '--advertise-url' && command.docArgs[i - 1] !== '--advertise-url')
      t.throws(() => resolveDocConfig({ role: 'chunkserver', docArgs: without }), { code: 'GRN_INVALID_ARGUMENT', message: /--advertise-url/ },
        `${row.unit} without --advertise-url is refused at start`)
      t.same(flagValue(command.docArgs, '--masters')?.split(','), layout.masters, `${row.unit} heartbeats to the metadata hosts clients name`)
    }
    docCommands.set(row.address, command)
  }
  for (const execStart of layout.failoverExecStarts) {
    const command = parseExecStart(execStart)
    t.doesNotThrow(() => resolveDocConfig(command), `after a failover: ${command.role} --host ${flagValue(command.docArgs, '--host') ?? ''} is accepted as written`)
  }
  t.equal(layout.failoverExecStarts.length, 2, 'the failover swap gives both metadata hosts their new command')
  t.same(layout.connectMasters, layout.masters, 'connect({ masters }) and GRANARY_MASTER name the same URLs')
  t.same(layout.masters, ['http://10.0.0.11:9000', 'http://10.0.0.12:9000'], 'clients name the master, then the shadow')

  // One-off commands: every host's state folder, then the secret made on the master host and copied.
  for (const line of layout.prepare) {
    if (line.startsWith('useradd ')) continue   // the servers run as this test's user
    const install = /^install -d -o granary -g granary -m (0[0-7]{3}) (\S+)$/.exec(line)
    if (install === null) throw new Error(`"every host" line this test cannot run on loopback: ${line}`)
    for (const host of hosts.values()) {
      const dir = (install[2] as string).replace(docStateDir, host.stateDir)
      mkdirSync(dir, { recursive: true })
      chmodSync(dir, parseInt(install[1] as string, 8))
    }
  }
  const secretHost = hostOf(layout.secret.host)
  t.equal(secretHost.row.role, 'master', 'the secret is made on the master host')
  const copiedTo = new Set<string>()
  for (const line of layout.secret.lines) {
    const local = /^sudo -u granary (sh -c '[^']*')$/.exec(line)
    const scp = /^scp -p (\S+) root@(10\.0\.0\.\d+):(\S+)$/.exec(line)
    const chown = /^ssh root@(10\.0\.0\.\d+) chown granary:granary (\S+)$/.exec(line)
    if (local !== null) {
      const ran = await sh((local[1] as string).replaceAll(docStateDir, secretHost.stateDir), {}, 10_000)
      t.equal(ran.code, 0, `ran on ${secretHost.row.address}: ${local[1] as string} ${ran.stderr}`)
    } else if (scp !== null) {
      // scp -p: the same bytes, mode and times on the other host.
      const from = (scp[1] as string).replace(docStateDir, secretHost.stateDir)
      const to = (scp[3] as string).replace(docStateDir, hostOf(scp[2] as string).stateDir)
      copyFileSync(from, to)
      const st = statSync(from)
      chmodSync(to, st.mode & 0o7777)
      utimesSync(to, st.atime, st.mtime)
      copiedTo.add(scp[2] as string)
    } else if (chown !== null) {
      t.ok(existsSync((chown[2] as string).replace(docStateDir, hostOf(chown[1] as string).stateDir)), `${chown[1] as string} has the file it chowns`)
    } else {
      throw new Error(`secret line this test cannot run on loopback: ${line}`)
    }
  }
  t.same([...copiedTo].sort(), layout.hosts.filter((h) => h !== secretHost.row).map((h) => h.address).sort(), 'the secret is copied to every other host')
  const secretText = readFileSync(join(secretHost.stateDir, 'secret'), 'utf8')
  t.match(secretText.trim(), /^[0-9a-f]{64}$/, 'the secret is 32 bytes of hex')
  for (const host of hosts.values()) {
    const file = join(host.stateDir, 'secret')
    t.equal(statSync(file).mode & 0o777, 0o600, `${host.row.address}: the secret has mode 0600`)
    t.equal(readFileSync(file, 'utf8'), secretText, `${host.row.address}: the same secret`)
  }

  // Start, in the documented order, each step once the one before is ready (its ready line); the chunkservers,
  // consecutive steps that depend on nothing but the metadata hosts ("then the chunkservers"), together.
  const started = new Map<string, { host: Host, spawned: SpawnedRole, args: string[] }>()
  const steps = layout.start.map((line) => {
    const step = /^ssh root@(10\.0\.0\.\d+) systemctl enable --now (\S+)$/.exec(line)
    if (step === null) throw new Error(`start line this test cannot run: ${line}`)
    const host = hostOf(step[1] as string)
    t.equal(`${step[2] as string}.service`, host.row.unit, `${host.row.address} starts its own unit`)
    const command = parseExecStart(unitCommand(layout, step[2] as string))
    t.same(command, docCommands.get(host.row.address), `${step[2] as string} is the unit checked above`)
    return { unit: step[2] as string, host, command }
  })
  t.same(steps.map((s) => s.command.role), ['master', 'shadow', 'chunkserver', 'chunkserver', 'chunkserver'], 'the master first, then the shadow, then the chunkservers')
  const groups: Array<typeof steps> = []
  for (const step of steps) {
    const last = groups.at(-1)
    if (last !== undefined && step.command.role === 'chunkserver' && last[0]?.command.role === 'chunkserver') last.push(step)
    else groups.push([step])
  }
  for (const group of groups) {
    const results = await Promise.allSettled(group.map(async ({ unit, host, command }) => {
      const args = mapArgs(host, command.docArgs)
      const logPath = join(root, 'logs', `${host.address}-${command.role}.log`)
      const spawned = await spawnRole({ role: command.role, args, logPath, readyTimeoutMs })
      running.push({ name: unit, host, logPath, spawned })
      started.set(host.row.address, { host, spawned, args })
      t.equal(spawned.ready.url, loopback(host.row.advertises), `${host.row.address} (${command.role}) is ready and advertises ${loopback(host.row.advertises)}`)
    }))
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
  }
  t.same([...started.keys()].sort(), layout.hosts.map((h) => h.address).sort(), 'every host of the table was started')
  const server = (docAddress: string): { host: Host, spawned: SpawnedRole, args: string[] } => started.get(docAddress) as { host: Host, spawned: SpawnedRole, args: string[] }
  const masterUrl = server('10.0.0.11').spawned.ready.url
  const shadowUrl = server('10.0.0.12').spawned.ready.url
  const shadowId = server('10.0.0.12').spawned.ready.shadowId as string
  // serverId (from each chunkserver's ready line) → the URL its host must be known by.
  const chunkservers = layout.hosts.filter((h) => h.role === 'chunkserver').map((h) => ({ address: loopback(h.address), serverId: server(h.address).spawned.ready.serverId as string }))
  const expectedUrl = new Map(chunkservers.map((cs) => [cs.serverId, `http://${cs.address}:9100`]))
  t.equal(expectedUrl.size, 3, 'three chunkservers with their own ids')

  // The doc's checks, through sh, jq and the real CLI, mapped to loopback: poll each until it holds.
  const haveJq = (await sh('command -v jq', {}, 5_000)).code === 0
  adminKeyFile = join(hostOf('10.0.0.11').stateDir, 'meta', 'credentials')
  t.ok(existsSync(adminKeyFile), 'the master made its first admin key where the doc says')
  const checkEnv = { GRANARY_MASTER: loopback(layout.masters.join(',')), GRANARY_TEST_NODE: process.execPath, GRANARY_TEST_CLI: cliPath, GRANARY_CREDENTIALS: adminKeyFile }
  // The lines are independent (as a monitoring system would run them): all at once.
  const runChecks = async (when: string): Promise<void> => {
    await Promise.all(layout.checks.map(async (line) => {
      if (!line.startsWith('granary ')) throw new Error(`check line this test cannot run: ${line}`)
      if (line.includes('| jq ') && !haveJq) { t.comment(`skipped (no jq here): ${line}`); return }
      const script = `granary () { "$GRANARY_TEST_NODE" "$GRANARY_TEST_CLI" "$@"; }\n${loopback(line)}`
      const checkStartedAt = Date.now()
      let attempts = 0
      await until(`${when}: ${line}`, settleTimeoutMs, async () => {
        attempts++
        const ran = await sh(script, checkEnv, 15_000)
        return ran.code === 0 ? true : `exit ${String(ran.code)} ${ran.stdout.trim()} ${ran.stderr.trim()}`
      }, 100).catch((err: Error) => { throw new Error(`${err.message}\n${logTails()}`) })
      t.pass(`${when} (${attempts} ${attempts === 1 ? 'run' : 'runs'}, ${Date.now() - checkStartedAt} ms): ${line}`)
    }))
  }
  phase('five servers ready')
  // Ready for writes: the master holds its lease from the chunkservers and its shadow is in sync.
  await until('the master leased and its shadow in sync', settleTimeoutMs, async () => {
    const m = await reportAt(masterUrl)
    const shadow = await reportAt(shadowUrl)
    if (typeof m === 'string') return m
    if (typeof shadow === 'string') return shadow
    const alive = m.servers.filter((s) => s.alive).length
    return m.role === 'master' && m.lease?.held === true && alive === 3 && m.isr?.length === 1 && shadow.following?.inSync === true
      ? true : JSON.stringify({ lease: m.lease, alive, isr: m.isr, inSync: shadow.following?.inSync })
  }).catch((err: Error) => { throw new Error(`${err.message}\n${logTails()}`) })
  phase('leased, shadow in sync')

  // The client as the doc builds it: a 200 MiB file streamed in (hashed as it is generated) and read back.
  const fs = connect({ masters: layout.connectMasters.map(loopback), credentials: adminKeyFile })
  t.teardown(async () => { await fs.close() })
  const sent = createHash('sha256')
  async function * generate (): AsyncGenerator<Buffer> {
    for (let done = 0; done < fileBytes; done += MiB) {
      const piece = randomBytes(MiB)
      sent.update(piece)
      yield piece
    }
  }
  const path = '/deploy/200MiB.bin'
  const putStartedAt = Date.now()
  const stat = await fs.writeFile(path, generate())
  const putMs = Date.now() - putStartedAt
  t.equal(stat.sizeBytes, fileBytes, '200 MiB stored')
  const got = createHash('sha256')
  let readBytes = 0
  const getStartedAt = Date.now()
  for await (const piece of fs.createReadStream(path) as AsyncIterable<Buffer>) { got.update(piece); readBytes += piece.length }
  const getMs = Date.now() - getStartedAt
  t.equal(readBytes, fileBytes, 'read back 200 MiB')
  t.equal(got.digest('hex'), sent.digest('hex'), 'the bytes read back are the bytes sent (sha256)')
  t.comment(`put ${putMs} ms, get ${getMs} ms`)

  phase('200 MiB put and read back')
  // Every chunkserver URL anyone is told is its own host's address.
  const otherAddresses = (own: string): string[] => [...hosts.values()].map((h) => h.address).filter((a) => a !== own)
  const checkText = (what: string, text: string): void => {
    t.notOk(text.includes('0.0.0.0'), `${what}: no 0.0.0.0`)
    t.notOk(/127\.0\.0\.1(?!\d)/.test(text), `${what}: no 127.0.0.1 (a default address leaking through)`)
  }
  const checkServer = (what: string, entry: { serverId: string, url: string }): void => {
    const want = expectedUrl.get(entry.serverId)
    t.equal(entry.url, want, `${what}: ${entry.serverId} is at its own host's address`)
    const text = JSON.stringify(entry)
    const foreign = otherAddresses(new URL(want ?? 'http://none').hostname).filter((a) => new RegExp(`${a.replace(/\./g, '\\.')}(?!\\d)`).test(text))
    t.same(foreign, [], `${what}: ${entry.serverId}'s entry names no other host`)
  }
  for (const [role, url] of [['master', masterUrl], ['shadow', shadowUrl]] as const) {
    const report = await getText(`${url}/cluster/report`)
    t.equal(report.status, 200, `${role} answers /cluster/report`)
    checkText(`${role} /cluster/report`, report.text)
    const parsed = JSON.parse(report.text) as ClusterReport
    t.same(parsed.servers.map((s) => s.serverId).sort(), [...expectedUrl.keys()].sort(), `${role} knows exactly the three chunkservers`)
    for (const entry of parsed.servers) checkServer(`${role} /cluster/report`, entry)
    if (role === 'master') t.same(parsed.shadows?.map((s) => s.url), [shadowUrl], 'the master knows its shadow by the shadow host\'s address')
    else t.equal(parsed.following?.masterUrl, masterUrl, 'the shadow follows the master host\'s address')

    const health = await getText(`${url}/healthz`)
    t.equal(health.status, 200, `${role} answers /healthz`)
    checkText(`${role} /healthz`, health.text)
    t.same(((JSON.parse(health.text) as HealthReply).metadataServers ?? []).slice().sort(), [masterUrl, shadowUrl].sort(),
      `${role} /healthz names the metadata hosts by their own addresses`)

    const open = await getText(`${url}/fs/open?path=${encodeURIComponent(path)}`)
    t.equal(open.status, 200, `${role} answers /fs/open`)
    checkText(`${role} /fs/open`, open.text)
    const reply = JSON.parse(open.text) as OpenReply
    t.equal(reply.chunks.length, Math.ceil(fileBytes / stat.chunkSizeBytes), `${role}: every chunk is listed`)
    for (const chunk of reply.chunks) {
      t.equal(chunk.replicas.length, 3, `${role}: chunk ${chunk.chunkIndex} has three replicas`)
      for (const replica of chunk.replicas) checkServer(`${role} /fs/open chunk ${chunk.chunkIndex}`, replica)
    }
  }

  // The field table: each field exists where the doc says to ask, and literal healthy values hold (polled: a
  // shadow may be a record behind for a moment).
  const reportOf = async (askedOf: 'master' | 'shadow'): Promise<ClusterReport | string> => await reportAt(askedOf === 'master' ? masterUrl : shadowUrl)
  for (const row of layout.fieldRows) {
    for (const [i, field] of row.fields.entries()) {
      const healthy = row.healthy[i] ?? ''
      const literal = healthy === 'absent' ? undefined : healthy === 'true' ? true : healthy === 'false' ? false
        : /^\d+$/.test(healthy) ? Number(healthy) : /^[a-z]+$/.test(healthy) && healthy !== 'absent' ? healthy : null
      await until(`${field} of the ${row.askedOf} is ${healthy}`, settleTimeoutMs, async () => {
        const report = await reportOf(row.askedOf)
        if (typeof report === 'string') return report
        const values = valuesAt(report, field)
        if (healthy === 'absent') return values.every((v) => v === undefined) ? true : JSON.stringify(values)
        if (values.length === 0 || values.some((v) => v === undefined)) return `missing: ${JSON.stringify(values)}`
        if (literal !== null && values.some((v) => v !== literal)) return JSON.stringify(values)
        return true
      })
      t.pass(`report field ${field} (the ${row.askedOf}): ${healthy}`)
    }
  }
  const finalReport = await reportOf('master')
  if (typeof finalReport === 'string') throw new Error(finalReport)
  t.same(finalReport.isr, [shadowId], 'isr is the shadow\'s id')
  t.equal(finalReport.lease?.voters, 3, 'all three chunkservers vote')

  phase('addresses and report fields checked')
  await runChecks('after the 200 MiB put')
  phase('the doc\'s checks hold')
  t.comment(`whole run ${Date.now() - startedAt} ms`)
})
