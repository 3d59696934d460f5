// Branded ids: the compiler rejects an inode id where a chunk handle is expected.
import { randomBytes } from 'node:crypto'

export type InodeId = number & { readonly brand: 'InodeId' }
export type ChunkHandle = string & { readonly brand: 'ChunkHandle' }   // 16 lower-case hex digits: term (8), then a counter within it (8)
export type ServerId = string & { readonly brand: 'ServerId' }         // 'cs-' + 12 hex digits, made once per data folder
export type LeaseId = string & { readonly brand: 'LeaseId' }           // 32 hex digits
export type RequestId = string & { readonly brand: 'RequestId' }       // client-chosen, for idempotent retries
export type ShadowId = string & { readonly brand: 'ShadowId' }         // 'sh-' + 12 hex digits, made once per shadow data folder

export const rootInodeId = 1 as InodeId
export const chunkHandlePattern = /^[0-9a-f]{16}$/
export const serverIdPattern = /^cs-[0-9a-f]{12}$/
export const shadowIdPattern = /^sh-[0-9a-f]{12}$/

export function chunkHandleFromNumber (n: number): ChunkHandle {
  return n.toString(16).padStart(16, '0') as ChunkHandle
}

// A handle's high 32 bits are the master term that made it, the low 32 a counter within that term, so a master
// of a newer term (a promoted shadow that missed the old master's last allocations, or a database rolled back
// by a power loss and then won in a new term) can never hand out a handle an older master already used.
// Handles made before terms were carried have a zero high half: no master has term 0.
export const chunkHandleTermMax = 2 ** 21 - 1           // term × 2^32 + counter stays a safe integer
export const chunkHandlesPerTermMax = 2 ** 32

export function firstChunkNumberOfTerm (term: number): number {
  if (!Number.isSafeInteger(term) || term < 1 || term > chunkHandleTermMax) throw new RangeError(`term ${term} cannot be carried in a chunk handle`)
  return term * chunkHandlesPerTermMax
}

export function termOfChunkHandle (chunkHandle: ChunkHandle): number {
  return Number.parseInt(chunkHandle.slice(0, 8), 16)
}

// Random bytes for ids come from a pool refilled 4 KiB at a time (node's randomUUID keeps such a cache too): a
// randomBytes call per id cost ~10 µs on the master (a lease per create) and the client (an id per mutation).
// The bytes are the same CSPRNG's; each is handed out once.
const randomPoolBytes = 4096
let randomPool = Buffer.alloc(0)
let randomPoolAt = 0
function pooledRandom (count: number): Buffer {
  if (randomPoolAt + count > randomPool.length) {
    randomPool = randomBytes(randomPoolBytes)
    randomPoolAt = 0
  }
  randomPoolAt += count
  return randomPool.subarray(randomPoolAt - count, randomPoolAt)
}

export function newLeaseId (): LeaseId { return pooledRandom(16).toString('hex') as LeaseId }
export function newServerId (): ServerId { return `cs-${randomBytes(6).toString('hex')}` as ServerId }
export function newRequestId (): RequestId { return pooledRandom(12).toString('base64url') as RequestId }
export function newShadowId (): ShadowId { return `sh-${randomBytes(6).toString('hex')}` as ShadowId }
// Random hex from the same pool, for ids that are only labels (an S3 request id).
export function randomHex (byteCount: number): string { return pooledRandom(byteCount).toString('hex') }
