// A tiny "app" that stores uploads in Granary: it streams a buffer in 256 KiB pieces through the library's
// write stream (so the upload takes a while and can be interrupted), and tells its caller when a chosen
// point has been reached. docs/TESTING.md uses it to show a recovery test.
import type { GranaryClient } from '../../client/index.js'

export interface Upload { halfway: Promise<void>, done: Promise<void> }

export function uploadBuffer (fs: GranaryClient, path: string, data: Buffer, isHalfway: (sentBytes: number) => boolean): Upload {
  let markHalfway: () => void = () => {}
  const halfway = new Promise<void>((resolve) => { markHalfway = resolve })
  const done = (async () => {
    const out = fs.createWriteStream(path)
    const finished = new Promise<void>((resolve, reject) => { out.once('finish', resolve); out.once('error', reject) })
    const pieceBytes = 256 * 1024
    for (let sent = 0; sent < data.length; sent += pieceBytes) {
      if (!out.write(data.subarray(sent, sent + pieceBytes))) await new Promise((resolve) => out.once('drain', resolve))
      if (isHalfway(sent + pieceBytes)) markHalfway()
      await new Promise((resolve) => setImmediate(resolve))
    }
    out.end()
    await finished
    markHalfway()
  })()
  return { halfway, done }
}
