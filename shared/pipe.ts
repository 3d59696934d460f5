// stream.pipeline's contract — each stream piped into the next, the first error destroys them all, done when the
// last has finished — without the AbortController that Node 20's pipeline aborts at the end of every call, which
// builds a DOMException, stack and all: ~45 µs of the S3 gateway's CPU per small PUT (profiled). For a pipeline
// run per request; where a pipeline runs once per large transfer, node:stream/promises' is as good.
import { finished, type Duplex, type Readable, type Writable } from 'node:stream'

export async function pipe (source: Readable, ...rest: [...Duplex[], Writable]): Promise<void> {
  const streams: Array<Readable | Duplex | Writable> = [source, ...rest]
  await new Promise<void>((resolve, reject) => {
    let settled = false
    const settle = (err: Error | null | undefined, index: number): void => {
      if (settled) return
      if (err === null || err === undefined) {
        if (index === streams.length - 1) { settled = true; resolve() }
        return
      }
      settled = true
      // The finished() listeners stay: an error a stream emits as it is destroyed lands there, not unhandled.
      for (const stream of streams) if (!stream.destroyed) stream.destroy(err)
      reject(err)
    }
    streams.forEach((stream, index) => {
      finished(stream, { readable: index < streams.length - 1, writable: index > 0 }, (err) => { settle(err, index) })
    })
    for (let i = 0; i + 1 < streams.length; i++) (streams[i] as Readable).pipe(streams[i + 1] as Writable)
  })
}
