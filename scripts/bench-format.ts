// How every bench section prints: one aligned line per figure, medians, fixed number formats; dropping the
// page cache before a cold read; and the disk's own rate (dd), the baseline the data path is measured against.
import { execFileSync } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { once } from 'node:events'
import net from 'node:net'
import tls from 'node:tls'
import type { Duplex } from 'node:stream'
import { createHash } from 'node:crypto'
import { crc32 } from 'node:zlib'
import type { TestCertificate } from '../test/helpers/tls.js'
export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] as number
}

export function fmt (n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

export function line (name: string, value: string, extra = ''): void {
  process.stdout.write(`${name.padEnd(44)} ${value.padStart(14)}  ${extra}\n`)
}

// user + system CPU a process has used so far, in µs (Linux /proc; clock ticks of 10 ms). A busy machine
// distorts a CPU figure far less than a rate.
export function processCpuUs (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
  return (Number(fields[11]) + Number(fields[12])) * 10_000
}

// Drops the OS page cache (needs root) so a read measures the disk, not memory; false when it cannot.
export function dropPageCache (): boolean {
  try { execFileSync('sync'); writeFileSync('/proc/sys/vm/drop_caches', '3\n'); return true } catch { return false }
}

// dd writes 1 GiB of zeros into `dir` and fdatasyncs it: the disk's sequential write rate in MB/s (MiB/s).
export function ddMBps (dir: string): number {
  const file = join(dir, 'dd.bin')
  const started = process.hrtime.bigint()
  execFileSync('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', 'count=1024', 'conv=fdatasync'], { stdio: 'ignore' })
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  rmSync(file, { force: true })
  return 1024 / seconds
}

const MiB = 1024 * 1024

// The CPU one network hop costs per GiB on this machine, both ends (in this process): 1 GiB written in 1 MiB
// pieces to a loopback socket and read on the other side, plain TCP, or Node's TLS with `certificate` (signed by
// the CA in its caFile). The physical figure beside a path that adds a hop (the S3 gateway) or encrypts each one.
export async function hopCpuSPerGiB (certificate?: TestCertificate & { caFile: string }): Promise<number> {
  const piece = Buffer.alloc(MiB, 7)
  const onConnection = (socket: Duplex): void => { socket.resume(); socket.on('end', () => { socket.end() }) }
  const server = certificate === undefined
    ? net.createServer(onConnection)
    : tls.createServer({ cert: readFileSync(certificate.cert), key: readFileSync(certificate.key) }, onConnection)
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const { port } = server.address() as net.AddressInfo
  try {
    const socket = certificate === undefined ? net.connect(port, '127.0.0.1') : tls.connect({ port, host: '127.0.0.1', ca: readFileSync(certificate.caFile) })
    await once(socket, certificate === undefined ? 'connect' : 'secureConnect')
    const before = process.cpuUsage()
    for (let sent = 0; sent < 1024 * MiB; sent += MiB) if (!socket.write(piece)) await once(socket, 'drain')
    socket.end()
    await once(socket, 'close')
    const used = process.cpuUsage(before)
    return (used.user + used.system) / 1e6
  } finally {
    server.close()
  }
}

// The CPU-s one GiB (`pattern` repeated) costs each digest on this machine (1 MiB updates, as a stream gets them).
export function digestCpuSPerGiB (pattern: Buffer): Record<'md5' | 'sha256' | 'crc32', number> {
  const cpuOf = (fn: (piece: Buffer) => void): number => {
    const before = process.cpuUsage()
    for (let done = 0; done < 1024 * MiB; done += MiB) fn(pattern.subarray(done % pattern.length, done % pattern.length + MiB))
    const used = process.cpuUsage(before)
    return (used.user + used.system) / 1e6
  }
  const md5 = createHash('md5')
  const sha256 = createHash('sha256')
  let crc = 0
  const out = { md5: cpuOf((piece) => { md5.update(piece) }), sha256: cpuOf((piece) => { sha256.update(piece) }), crc32: cpuOf((piece) => { crc = crc32(piece, crc) }) }
  md5.digest()
  sha256.digest()
  return out
}
