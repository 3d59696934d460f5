import t from 'tap'
import { PassThrough, Readable, Transform, Writable } from 'node:stream'
import { createHash } from 'node:crypto'
import { pipe } from '../../../shared/pipe.js'

function collector (): Writable & { bytes: Buffer[] } {
  const bytes: Buffer[] = []
  return Object.assign(new Writable({ write (piece: Buffer, _encoding, done) { bytes.push(piece); done() } }), { bytes })
}

t.test('bytes go through every stream, in order, and the promise waits for the last to finish', async (t) => {
  const pieces = Array.from({ length: 50 }, (_, i) => Buffer.alloc(1000 + i, i))
  let finishedLast = false
  const sink = collector()
  sink.on('finish', () => { finishedLast = true })
  await pipe(Readable.from(pieces), new PassThrough({ highWaterMark: 16 }), new PassThrough(), sink)
  t.equal(finishedLast, true)
  t.equal(createHash('sha256').update(Buffer.concat(sink.bytes)).digest('hex'), createHash('sha256').update(Buffer.concat(pieces)).digest('hex'))
})

t.test('an error in the middle rejects with it and destroys every stream', async (t) => {
  const boom = new Error('bad piece')
  let seen = 0
  const failing = new Transform({ transform (piece: Buffer, _encoding, done) { seen++; done(seen === 3 ? boom : null, piece) } })
  const source = new Readable({ read () { this.push(Buffer.alloc(100)) } })   // endless: only the error stops it
  const sink = collector()
  await t.rejects(pipe(source, failing, sink), boom)
  t.equal(source.destroyed, true)
  t.equal(failing.destroyed, true)
  t.equal(sink.destroyed, true)
  t.equal(sink.errored, boom, 'the sink is destroyed with the error (a file being written is abandoned, not completed)')
})

t.test('an error in flush (after every byte went through) still rejects and never finishes the sink', async (t) => {
  const boom = new Error('checksum mismatch')
  const checker = new Transform({ transform (piece: Buffer, _encoding, done) { done(null, piece) }, flush (done) { done(boom) } })
  const sink = collector()
  let finishedSink = false
  sink.on('finish', () => { finishedSink = true })
  await t.rejects(pipe(Readable.from([Buffer.from('abc')]), checker, sink), boom)
  t.equal(finishedSink, false)
  t.equal(sink.destroyed, true)
})

t.test('a source that closes before its end rejects (premature close) and destroys the sink', async (t) => {
  const source = new Readable({ read () {} })
  source.push(Buffer.from('partial'))
  const sink = collector()
  setImmediate(() => { source.destroy() })
  await t.rejects(pipe(source, sink), { code: 'ERR_STREAM_PREMATURE_CLOSE' })
  t.equal(sink.destroyed, true)
})

t.test('a sink that fails on write rejects and stops the source', async (t) => {
  const boom = new Error('disk full')
  const source = new Readable({ read () { this.push(Buffer.alloc(10)) } })
  const sink = new Writable({ write (_piece, _encoding, done) { done(boom) } })
  await t.rejects(pipe(source, sink), boom)
  t.equal(source.destroyed, true)
})
