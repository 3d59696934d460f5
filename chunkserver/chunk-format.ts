// The chunk file format: one file per (chunk handle, version), self-describing, checked on every read.
//
//   ${dataDir}/chunks/XX/<handle>_<version>.chunk      XX = the handle's last two hex digits (256 folders)
//
//   offset                      size                 contents
//   0                           lengthBytes          the chunk's data bytes, as the client sent them
//   lengthBytes                 4 × blockCount       CRC table: CRC32 (uint32 LE) of each 64 KiB block of data;
//                                                    the last block may be short; blockCount = ceil(length / 64 KiB)
//   lengthBytes + 4×blockCount  40 (footerBytes)     footer, all integers little-endian:
//       +0   8  magic 'GRNCHUNK'
//       +8   4  formatVersion (1)
//       +12  4  blockSizeBytes (65536)
//       +16  8  lengthBytes (uint64)
//       +24  4  blockCount
//       +28  4  chunkCrc32: CRC32 of all data bytes (what the client commits to the master)
//       +32  4  tableCrc32: CRC32 of the CRC table bytes
//       +36  4  footerCrc32: CRC32 of footer bytes +0..+35
//
// File size = lengthBytes + 4 × blockCount + 40, so a scan can check a file from its size and footer alone.
// The trailer sits after the data (not in a header) so a write streams the data once, front to back, and
// appends the table it computed on the way.
import { crc32 } from '../shared/checksum.js'
import { blockSizeBytes } from '../shared/limits.js'
import { assert } from '../shared/assert.js'
import type { ChunkHandle } from '../shared/ids.js'

export const chunkMagic = Buffer.from('GRNCHUNK', 'latin1')
export const chunkFormatVersion = 1
export const footerBytes = 40
export const crcBytes = 4
const footerCrcOffset = 36

export interface ChunkFooter {
  lengthBytes: number
  blockCount: number
  chunkCrc32: number
  tableCrc32: number
}

export function blockCountOf (lengthBytes: number): number {
  return Math.floor((lengthBytes + blockSizeBytes - 1) / blockSizeBytes)
}

export function trailerBytesOf (lengthBytes: number): number {
  return blockCountOf(lengthBytes) * crcBytes + footerBytes
}

export function fileBytesOf (lengthBytes: number): number {
  return lengthBytes + trailerBytesOf(lengthBytes)
}

// The CRC table and footer, written after the data.
export function encodeTrailer (blockCrcs: readonly number[], lengthBytes: number, chunkCrc32: number): Buffer {
  assert(blockCrcs.length === blockCountOf(lengthBytes), 'one CRC per block')
  const trailer = Buffer.allocUnsafe(trailerBytesOf(lengthBytes))
  for (let i = 0; i < blockCrcs.length; i++) trailer.writeUInt32LE(blockCrcs[i] as number, i * crcBytes)
  const tableBytes = blockCrcs.length * crcBytes
  const footer = trailer.subarray(tableBytes)
  chunkMagic.copy(footer, 0)
  footer.writeUInt32LE(chunkFormatVersion, 8)
  footer.writeUInt32LE(blockSizeBytes, 12)
  footer.writeBigUInt64LE(BigInt(lengthBytes), 16)
  footer.writeUInt32LE(blockCrcs.length, 24)
  footer.writeUInt32LE(chunkCrc32 >>> 0, 28)
  footer.writeUInt32LE(crc32(trailer.subarray(0, tableBytes)), 32)
  footer.writeUInt32LE(crc32(footer.subarray(0, footerCrcOffset)), footerCrcOffset)
  return trailer
}

// Checks a footer read from the end of a file of `fileBytes` bytes; returns the reason (a string) when it is
// not a valid footer for a file of that size, so the caller can log and skip the file.
export function decodeFooter (footer: Buffer, fileBytes: number): ChunkFooter | string {
  if (footer.length !== footerBytes) return 'short footer'
  if (!footer.subarray(0, 8).equals(chunkMagic)) return 'bad magic'
  if (footer.readUInt32LE(footerCrcOffset) !== crc32(footer.subarray(0, footerCrcOffset))) return 'footer checksum mismatch'
  if (footer.readUInt32LE(8) !== chunkFormatVersion) return `unknown format version ${footer.readUInt32LE(8)}`
  if (footer.readUInt32LE(12) !== blockSizeBytes) return `block size ${footer.readUInt32LE(12)} is not ${blockSizeBytes}`
  const lengthBig = footer.readBigUInt64LE(16)
  if (lengthBig > BigInt(Number.MAX_SAFE_INTEGER)) return 'length out of range'
  const lengthBytes = Number(lengthBig)
  const blockCount = footer.readUInt32LE(24)
  if (blockCount !== blockCountOf(lengthBytes)) return 'block count does not match length'
  if (fileBytesOf(lengthBytes) !== fileBytes) return `file is ${fileBytes} bytes, footer says ${fileBytesOf(lengthBytes)}`
  return { lengthBytes, blockCount, chunkCrc32: footer.readUInt32LE(28), tableCrc32: footer.readUInt32LE(32) }
}

// Reads the CRC table out of a trailer buffer (table + footer) after checking the table's own CRC.
export function decodeTable (trailer: Buffer, footer: ChunkFooter): Uint32Array | null {
  const tableBytes = footer.blockCount * crcBytes
  assert(trailer.length === tableBytes + footerBytes, 'trailer buffer holds the table and the footer')
  if (crc32(trailer.subarray(0, tableBytes)) !== footer.tableCrc32) return null
  const table = new Uint32Array(footer.blockCount)
  for (let i = 0; i < footer.blockCount; i++) table[i] = trailer.readUInt32LE(i * crcBytes)
  return table
}

// '0123456789abcdef_3.chunk' → { chunkHandle, version }, or null for any other name.
const chunkFileName = /^([0-9a-f]{16})_([1-9][0-9]{0,15})\.chunk$/

export function parseChunkFileName (name: string): { chunkHandle: ChunkHandle, version: number } | null {
  const match = chunkFileName.exec(name)
  if (match === null) return null
  const version = Number(match[2])
  if (!Number.isSafeInteger(version)) return null
  return { chunkHandle: match[1] as ChunkHandle, version }
}

export function chunkFileNameOf (chunkHandle: ChunkHandle, version: number): string {
  return `${chunkHandle}_${version}.chunk`
}

export function chunkFolderOf (chunkHandle: ChunkHandle): string {
  return chunkHandle.slice(-2)
}
