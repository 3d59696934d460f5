// HMAC-SHA256 (RFC 2104) as two one-shot SHA-256 calls over pads computed once per key. createHmac builds a
// native object per call: of its ~1.8 µs per short message here, ~1.3 µs is the constructor (measured with a
// CPU profile of the request verifier). Every signed control-plane request is signed by its sender and checked
// by its server, every chunk PUT and GET checks a chunk token, so this runs on each of them.
// H(K ⊕ opad ‖ H(K ⊕ ipad ‖ m)), K the key zero-padded to SHA-256's 64-byte block (hashed first when longer).
import { createHash, createHmac, hash } from 'node:crypto'

const blockBytes = 64
const digestBytes = 32
export const hmacScratchBytes = 16 * 1024          // messages up to this, minus one block, are hashed from a scratch buffer; longer ones go through createHmac
export const hmacKeysCachedMax = 1024               // prepared keys kept per process (string keys: access key secrets); past it the cache starts over

// One scratch for the inner hash's input, shared by every key: JavaScript runs one call at a time.
const scratch = Buffer.allocUnsafe(hmacScratchBytes)

export class HmacSha256 {
  readonly #key: Buffer
  readonly #innerPad: Buffer                            // K ⊕ ipad
  readonly #outer = Buffer.allocUnsafe(blockBytes + digestBytes)   // K ⊕ opad, then the inner digest

  constructor (key: Buffer | string) {
    this.#key = Buffer.from(typeof key === 'string' ? Buffer.from(key, 'utf8') : key)   // a copy: the caller may reuse its buffer
    const block = Buffer.alloc(blockBytes)
    ;(this.#key.length > blockBytes ? createHash('sha256').update(this.#key).digest() : this.#key).copy(block)
    this.#innerPad = Buffer.allocUnsafe(blockBytes)
    for (let i = 0; i < blockBytes; i++) {
      this.#innerPad[i] = (block[i] as number) ^ 0x36
      this.#outer[i] = (block[i] as number) ^ 0x5c
    }
  }

  digest (text: string): Buffer {
    return Buffer.from(this.#mac(text, 'binary'), 'latin1')
  }

  hex (text: string): string {
    return this.#mac(text, 'hex')
  }

  base64url (text: string): string {
    return this.#mac(text, 'base64url')
  }

  // The digests travel as strings between the two hashes: crypto.hash making a Buffer cost 0.8 µs where
  // making a string cost 0.35 (measured).
  #mac (text: string, encoding: 'hex' | 'binary' | 'base64url'): string {
    const room = hmacScratchBytes - blockBytes
    // text.length bounds the UTF-8 length from below, 3 × text.length from above: measure only when in doubt.
    if (text.length > room || (text.length * 3 > room && Buffer.byteLength(text, 'utf8') > room)) {
      return createHmac('sha256', this.#key).update(text, 'utf8').digest(encoding)
    }
    this.#innerPad.copy(scratch, 0)
    const textBytes = scratch.write(text, blockBytes, 'utf8')
    this.#outer.write(hash('sha256', scratch.subarray(0, blockBytes + textBytes), 'binary'), blockBytes, 'binary')
    return hash('sha256', this.#outer, encoding)
  }
}

// The prepared key for `key`: Buffers by identity (a server's few long-lived keys), strings by value.
const byBuffer = new WeakMap<Buffer, HmacSha256>()
const byString = new Map<string, HmacSha256>()

export function hmacKey (key: Buffer | string): HmacSha256 {
  if (typeof key !== 'string') {
    let prepared = byBuffer.get(key)
    if (prepared === undefined) {
      prepared = new HmacSha256(key)
      byBuffer.set(key, prepared)
    }
    return prepared
  }
  let prepared = byString.get(key)
  if (prepared === undefined) {
    if (byString.size >= hmacKeysCachedMax) byString.clear()
    prepared = new HmacSha256(key)
    byString.set(key, prepared)
  }
  return prepared
}
