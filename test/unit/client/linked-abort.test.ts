// client/linked-abort.ts: a request's abort follows its caller's signal while linked, and leaves no listener
// on the caller's signal once released (a long read releases one per chunk).
import t from 'tap'
import { getEventListeners } from 'node:events'
import { LinkedAbort } from '../../../client/linked-abort.js'

t.test('the caller aborting aborts the request, with the caller\'s reason', async (t) => {
  const caller = new AbortController()
  const link = new LinkedAbort(caller.signal)
  t.equal(link.signal.aborted, false)
  const reason = new Error('caller gave up')
  caller.abort(reason)
  t.equal(link.signal.aborted, true)
  t.equal(link.signal.reason, reason)
})

t.test('released, the request no longer follows the caller, and the caller keeps no listener', async (t) => {
  const caller = new AbortController()
  const links = Array.from({ length: 100 }, () => new LinkedAbort(caller.signal))
  t.equal(getEventListeners(caller.signal, 'abort').length, 100, 'one listener per linked request')
  for (const link of links) link.release()
  t.equal(getEventListeners(caller.signal, 'abort').length, 0, 'none once released')
  caller.abort(new Error('late'))
  t.ok(links.every((link) => !link.signal.aborted), 'a released request is not aborted by its caller')
  links[0]?.release()   // twice is harmless
})

t.test('abort(reason) aborts the request alone and unlinks it', async (t) => {
  const caller = new AbortController()
  const link = new LinkedAbort(caller.signal)
  const other = new LinkedAbort(caller.signal)
  const reason = new Error('another replica answered first')
  link.abort(reason)
  t.equal(link.signal.reason, reason)
  t.equal(other.signal.aborted, false, 'the caller and its other requests go on')
  t.equal(caller.signal.aborted, false)
  t.equal(getEventListeners(caller.signal, 'abort').length, 1, 'only the other request is still linked')
  other.release()
})

t.test('a caller already aborted, or none', async (t) => {
  const caller = new AbortController()
  caller.abort(new Error('before'))
  const link = new LinkedAbort(caller.signal)
  t.equal(link.signal.aborted, true, 'aborted at once')
  t.equal((link.signal.reason as Error).message, 'before')
  t.equal(getEventListeners(caller.signal, 'abort').length, 0, 'no listener left on an aborted caller')
  const alone = new LinkedAbort()
  t.equal(alone.signal.aborted, false)
  alone.abort(new Error('own'))
  t.equal(alone.signal.aborted, true)
})
