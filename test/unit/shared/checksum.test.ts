// Proves that the single-pass checksums (block CRCs, chunk CRC combined from them) equal zlib's CRC32 of
// the whole chunk and of each 64 KiB block, for any split of the input.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { BlockCrcs, crc32Combine } from '../../../shared/checksum.js'
import { blockSizeBytes } from '../../../shared/limits.js'

t.test('BlockCrcs matches zlib', async (t) => {
  const lengths = [0, 1, blockSizeBytes - 1, blockSizeBytes, blockSizeBytes + 1, 3 * blockSizeBytes, 700_001]
  for (let i = 0; i < 30; i++) lengths.push(Math.floor(Math.random() * 900_000))
  for (const lengthBytes of lengths) {
    const data = randomBytes(lengthBytes)
    const ours = new BlockCrcs()
    for (let offset = 0; offset < lengthBytes;) {
      const take = Math.min(lengthBytes - offset, 1 + Math.floor(Math.random() * 150_000))
      ours.update(data.subarray(offset, offset + take))
      offset += take
    }
    const a = ours.finish()
    const expected: number[] = []
    for (let offset = 0; offset < lengthBytes; offset += blockSizeBytes) expected.push(crc32(data.subarray(offset, offset + blockSizeBytes)))
    t.equal(a.chunkCrc32, crc32(data), `chunk CRC, ${lengthBytes} bytes`)
    t.same(a.blockCrcs, expected, `block CRCs, ${lengthBytes} bytes`)
    t.equal(a.lengthBytes, lengthBytes)
  }
})

t.test('crc32Combine', async (t) => {
  const data = randomBytes(300_000)
  for (const cut of [0, 1, 65_536, 123_457, 300_000]) {
    t.equal(crc32Combine(crc32(data.subarray(0, cut)), crc32(data.subarray(cut)), data.length - cut), crc32(data), `cut at ${cut}`)
  }
})
