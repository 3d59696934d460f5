// Proves that gateway/payload.ts hands a body on in pieces of bodyPieceBytes whatever sizes it arrives in (the
// socket's ≤ 64 KiB reads), never larger than what the body has left, without copying pieces already that large,
// and that the bytes and digests are the ones sent.
import t from 'tap'
import { pipeline } from 'node:stream/promises'
import { Readable, Writable } from 'node:stream'
import { createHash, randomBytes } from 'node:crypto'
import { PayloadReader, type Verified } from '../../../gateway/payload.js'
import { bodyPieceBytes } from '../../../gateway/limits.js'

async function run (body: Buffer, inputBytes: number, headers: Record<string, string>): Promise<{ out: Buffer[], inputs: Buffer[], verified: Verified | undefined }> {
  const inputs: Buffer[] = []
  for (let at = 0; at < body.length; at += inputBytes) inputs.push(body.subarray(at, at + inputBytes))
  const out: Buffer[] = []
  let verified: Verified | undefined
  const reader = new PayloadReader({ mode: { kind: 'unsigned' }, headers, sizeBytesMax: 1 << 30, onVerified: (v) => { verified = v } })
  await pipeline(Readable.from(inputs), reader, new Writable({ write (piece: Buffer, _e, callback) { out.push(piece); callback() } }))
  return { out, inputs, verified }
}

const md5 = (bytes: Buffer): string => createHash('md5').update(bytes).digest('hex')

t.test('a body read in small pieces leaves in whole pieces of bodyPieceBytes', async (t) => {
  const body = randomBytes(3 * bodyPieceBytes + bodyPieceBytes / 2)
  for (const headers of [{ 'content-length': String(body.length) }, {}] as Array<Record<string, string>>) {
    const { out, verified } = await run(body, 65_537, headers)
    t.same(out.map((piece) => piece.length), [bodyPieceBytes, bodyPieceBytes, bodyPieceBytes, bodyPieceBytes / 2], `piece sizes (${Object.keys(headers).join() || 'no length'})`)
    t.ok(Buffer.concat(out).equals(body), 'the same bytes')
    t.equal(verified?.md5Hex, md5(body), 'the MD5 of the body')
    t.equal(verified?.sizeBytes, body.length)
  }
})

t.test('a small body is one piece of its own size', async (t) => {
  const body = randomBytes(4096)
  const { out, verified } = await run(body, 1000, { 'content-length': '4096' })
  t.same(out.map((piece) => piece.length), [4096])
  t.equal(out[0]?.buffer.byteLength ?? 0, 4096, 'no larger allocation behind it')
  t.equal(verified?.md5Hex, md5(body))
})

t.test('pieces already large enough go on without a copy', async (t) => {
  const body = randomBytes(2 * bodyPieceBytes + 10)
  const { out, inputs } = await run(body, body.length, { 'content-length': String(body.length) })
  t.same(out.map((piece) => piece.length), [bodyPieceBytes, bodyPieceBytes, 10])
  t.equal(out[0]?.buffer, inputs[0]?.buffer, 'the first piece shares the input memory')
  t.equal(out[1]?.buffer, inputs[0]?.buffer, 'so does the second')
  t.ok(Buffer.concat(out).equals(body))
})

t.test('an empty body passes nothing on and has the MD5 of nothing', async (t) => {
  const { out, verified } = await run(Buffer.alloc(0), 1, { 'content-length': '0' })
  t.same(out, [])
  t.equal(verified?.md5Hex, 'd41d8cd98f00b204e9800998ecf8427e')
})
