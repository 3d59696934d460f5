// Proves the put's Buffer pool (client/buffer-pool.ts): a given-back Buffer (or a view of one) is lent again,
// the pool never keeps more than keptMax and never makes a taker wait, a double give-back throws (two readers
// would share memory), foreign Buffers are ignored, and readPooledPieces reads a file exactly, short last piece
// included, into pooled Buffers.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BufferPool, readPooledPieces } from '../../../client/buffer-pool.js'
import { pattern } from './helpers.js'

t.test('Buffers given back are lent again, views included; beyond keptMax they are fresh and not kept', async (t) => {
  const pool = new BufferPool(1024, 2)
  const a = pool.take()
  const b = pool.take()
  const c = pool.take()   // over keptMax: fresh, not kept
  t.equal(a.length, 1024)
  t.not(a.buffer, b.buffer, 'separate memory')
  t.equal(a.byteOffset, 0, 'its own memory, not a slice of a shared slab')
  pool.give(c)
  t.equal(pool.freeCount, 0, 'a Buffer the pool did not keep is not kept')
  pool.give(a.subarray(0, 10))
  t.equal(pool.freeCount, 1, 'a view gives back its whole Buffer')
  const again = pool.take()
  t.equal(again.buffer, a.buffer, 'the same memory is lent again')
  t.equal(again.length, 1024, 'whole, not the view')
  t.equal(pool.reusedCount, 1)
  pool.give(b)
  pool.give(again)
  t.equal(pool.freeCount, 2)
  t.throws(() => { pool.give(b) }, /given back once per loan/, 'a second give-back of the same loan throws')
  pool.give(Buffer.alloc(1024))
  t.equal(pool.freeCount, 2, 'a foreign Buffer is ignored')
  t.throws(() => new BufferPool(0, 1), /positive size/)
})

t.test('readPooledPieces reads a file exactly into pooled Buffers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'granary-pool-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const data = pattern(10 * 1000 + 123, 3)
  const path = join(dir, 'f.bin')
  writeFileSync(path, data)
  const pool = new BufferPool(1000, 4)
  const file = await open(path, 'r')
  const got: Buffer[] = []
  try {
    for await (const piece of readPooledPieces(file, pool)) {
      got.push(Buffer.from(piece))   // a copy: the piece goes back to the pool at once
      pool.give(piece)
    }
  } finally {
    await file.close()
  }
  t.same(got.map((p) => p.length), [...Array(10).fill(1000), 123], 'whole pieces, then the short last one')
  t.ok(Buffer.concat(got).equals(data), 'the bytes of the file')
  t.ok(pool.reusedCount >= 9, `one Buffer served the whole read (${pool.reusedCount} reuses)`)
})
