// The example from docs/TESTING.md, verbatim in substance: an app's upload survives a master SIGKILL in the
// middle of it, and the bytes read back equal the bytes sent (sha256). Imports the kit by its public name.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { startCluster } from 'granary/testing'
import { uploadBuffer } from '../../examples/upload-app/app.js'

t.test('an upload survives a master crash', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, test: t })
  const fs = cluster.client({ deadlineMs: 30_000 })
  const data = randomBytes(24 * 1024 * 1024)

  const upload = uploadBuffer(fs, '/uploads/report.bin', data, (sent) => sent >= data.length / 2)
  await upload.halfway
  await cluster.master.kill()
  await cluster.master.start()
  await upload.done

  const back = await fs.readFile('/uploads/report.bin')
  t.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(data).digest('hex'))
})
