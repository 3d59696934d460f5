// Proves a put that reuses its Buffers (client/buffer-pool.ts: the CLI's put reads its local file into a pool
// and gets each Buffer back through onBufferReleased) never corrupts data when a pipeline fails: a chunkserver
// is SIGKILLed mid-put, the chunks it was in the pipeline of are resent from the client's kept Buffers while the
// pool keeps refilling the Buffers of committed chunks, and the file reads back byte-identical (sha256).
// Twice: in-process with the library (pieces of 1.5 MiB that straddle the 1 MiB chunks, the pool's reuse
// counted), and `granary put FILE` spawned as a user runs it.
import t from 'tap'
import diagnosticsChannel from 'node:diagnostics_channel'
import { createHash, randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { pipeline } from 'node:stream/promises'
import { startCluster } from '../../testing/cluster.js'
import { BufferPool, readPooledPieces } from '../../client/buffer-pool.js'
import { channelNames } from '../../client/diagnostics.js'
import { cliPath } from '../../shared/process.js'

const MiB = 1024 * 1024
const fileBytes = 96 * MiB
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

t.test('pooled put Buffers survive a chunkserver SIGKILLed mid-put: library and CLI', async (t) => {
  // Five chunkservers: after one is killed per part, three are still left for replication 3.
  const cluster = await startCluster({ chunkservers: 5, chunkSizeBytes: MiB, test: t })
  const fs = cluster.client({ deadlineMs: 120_000 })
  const dir = t.testdir({})
  const data = randomBytes(fileBytes)
  const source = join(dir, 'source.bin')
  writeFileSync(source, data)
  const retries: unknown[] = []
  const onRetry = (message: unknown): void => { retries.push(message) }
  diagnosticsChannel.subscribe(channelNames.pipelineRetry, onRetry)
  t.teardown(() => { diagnosticsChannel.unsubscribe(channelNames.pipelineRetry, onRetry) })

  t.test('library: readPooledPieces + onBufferReleased', async (t) => {
    const victim = cluster.chunkservers[0]
    if (victim === undefined) throw new Error('five chunkservers were asked for')
    const pool = new BufferPool(3 * MiB / 2, 8)
    const file = await open(source, 'r')
    let readBytes = 0
    let killing: Promise<void> | undefined
    let victimChunksAtKill = 0
    async function * pieces (): AsyncGenerator<Buffer> {
      for await (const piece of readPooledPieces(file, pool)) {
        readBytes += piece.length
        if (killing === undefined && readBytes >= 30 * MiB) {
          victimChunksAtKill = cluster.chunkFiles(0).length
          killing = victim?.kill()   // not awaited: the put keeps streaming while the process dies
        }
        yield piece
      }
    }
    try {
      await pipeline(pieces(), fs.createWriteStream('/pooled.bin', { onBufferReleased: (buffer) => { pool.give(buffer) } }))
    } finally {
      await file.close()
    }
    await killing
    t.ok(victimChunksAtKill > 0, `the victim held ${victimChunksAtKill} chunks when it was killed mid-put`)
    t.ok(retries.length > 0, `pipelines through the victim were resent (${retries.length} retries)`)
    t.ok(pool.reusedCount > 10, `the pool lent Buffers again ${pool.reusedCount} times, so reuse met the resends`)
    t.match(await fs.stat('/pooled.bin'), { sizeBytes: fileBytes, chunkCount: fileBytes / MiB }, 'every byte, every chunk')
    t.equal(sha(await fs.readFile('/pooled.bin')), sha(data), 'reads back byte-identical')
  })

  t.test('CLI: granary put FILE', async (t) => {
    const victim = cluster.chunkservers[1]
    if (victim === undefined) throw new Error('five chunkservers were asked for')
    const chunksBefore = cluster.chunkFiles(1).length
    const child = spawn(process.execPath, [cliPath, 'put', source, '/cli.bin', '--chunk-size', '1M', '--master', cluster.masters.join(','), '--deadline-ms', '120000'], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const exited = new Promise<number | null>((resolve, reject) => { child.once('error', reject); child.once('close', resolve) })
    // Killed once the put has stored a few chunks on it, while the CLI still runs.
    await cluster.waitFor(() => child.exitCode !== null || cluster.chunkFiles(1).length >= chunksBefore + 8, { timeoutMs: 60_000, what: 'the put to reach the victim' })
    const runningAtKill = child.exitCode === null
    await victim.kill()
    const code = await exited
    t.ok(runningAtKill, 'the victim was killed while the put was still running')
    t.equal(code, 0, `granary put exited 0 ${stderr}`)
    t.match(await fs.stat('/cli.bin'), { sizeBytes: fileBytes, chunkCount: fileBytes / MiB }, 'every byte, every chunk')
    t.equal(sha(await fs.readFile('/cli.bin')), sha(data), 'reads back byte-identical')
  })
})
