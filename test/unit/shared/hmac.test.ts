// shared/hmac.ts: HMAC-SHA256 from prepared pads must equal node:crypto's createHmac for every key and message,
// including keys longer than a block, messages past the scratch buffer, non-ASCII text, and calls with
// different keys interleaved (the scratch is shared).
import t from 'tap'
import { createHmac, randomBytes } from 'node:crypto'
import { HmacSha256, hmacKey, hmacKeysCachedMax, hmacScratchBytes } from '../../../shared/hmac.js'

t.test('RFC 4231 test vectors (HMAC-SHA-256)', async (t) => {
  const cases: Array<[string, Buffer | string, string, string]> = [
    ['case 1', Buffer.alloc(20, 0x0b), 'Hi There', 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'],
    ['case 2: a short key', 'Jefe', 'what do ya want for nothing?', '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'],
    ['case 6: a key longer than a block', Buffer.alloc(131, 0xaa), 'Test Using Larger Than Block-Size Key - Hash Key First', '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54'],
    ['case 7: long key and long message', Buffer.alloc(131, 0xaa), 'This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.', '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2']
  ]
  for (const [name, key, message, expected] of cases) t.equal(new HmacSha256(key).hex(message), expected, name)
})

t.test('equals createHmac for random keys and messages, interleaved, short and past the scratch', async (t) => {
  const keys: Array<Buffer | string> = [randomBytes(32), randomBytes(64), randomBytes(65), randomBytes(200), 'S'.repeat(40), 'ключ-🔑', '']
  const messages = ['', 'a', 'GRN1\nPOST\n/fs/batch\n1765000000000\n0123456789abcdef000000000001\n' + 'e'.repeat(64), 'ü€😀'.repeat(100),
    'x'.repeat(hmacScratchBytes - 64), 'x'.repeat(hmacScratchBytes - 63), '€'.repeat(Math.floor(hmacScratchBytes / 3)), 'y'.repeat(3 * hmacScratchBytes)]
  let compared = 0
  for (let round = 0; round < 3; round++) {
    for (const message of messages) {
      for (const key of keys) {
        const what = `key ${typeof key === 'string' ? JSON.stringify(key) : `${key.length} bytes`}, message of ${message.length} chars`
        const expected = createHmac('sha256', key).update(message, 'utf8').digest()
        t.equal(hmacKey(key).hex(message), expected.toString('hex'), what)
        t.same(hmacKey(key).digest(message), expected, `${what} (digest)`)
        t.equal(hmacKey(key).base64url(message), expected.toString('base64url'), `${what} (base64url)`)
        compared++
      }
    }
  }
  t.equal(compared, 3 * messages.length * keys.length)
})

t.test('a prepared key is a copy: changing the caller\'s buffer afterwards does not change it', async (t) => {
  const key = randomBytes(32)
  const prepared = new HmacSha256(key)
  const before = prepared.hex('message')
  key.fill(0)
  t.equal(prepared.hex('message'), before)
  t.not(new HmacSha256(key).hex('message'), before)
})

t.test('the string-key cache is bounded and stays correct when it starts over', async (t) => {
  const first = hmacKey('key-0')
  for (let i = 1; i <= hmacKeysCachedMax; i++) hmacKey(`key-${i}`)
  t.not(hmacKey('key-0'), first, 'the cache started over past its bound')
  t.equal(hmacKey('key-0').hex('m'), createHmac('sha256', 'key-0').update('m').digest('hex'))
  t.equal(hmacKey('key-0'), hmacKey('key-0'), 'a cached key is reused')
})
