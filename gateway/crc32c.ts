// CRC32C (Castagnoli), the checksum S3 clients send as x-amz-checksum-crc32c. node:zlib has only CRC32
// (IEEE); a byte-wise table is enough here (the gateway computes it only when a client asked for it).
const table = new Uint32Array(256)
for (let n = 0; n < 256; n++) {
  let c = n
  for (let k = 0; k < 8; k++) c = (c & 1) !== 0 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
  table[n] = c >>> 0
}

// Incremental like zlib's crc32(data, previous).
export function crc32c (data: Uint8Array, previous = 0): number {
  let crc = (previous ^ 0xffffffff) >>> 0
  for (let i = 0; i < data.length; i++) crc = (table[(crc ^ (data[i] as number)) & 0xff] as number) ^ (crc >>> 8)
  return (crc ^ 0xffffffff) >>> 0
}
