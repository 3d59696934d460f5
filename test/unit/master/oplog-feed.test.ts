// The oplog feed's long polls: what wakes a parked poll, and what is never parked (master/oplog-feed.ts).
import t from 'tap'
import { EventEmitter } from 'node:events'
import { OplogFeed } from '../../../master/oplog-feed.js'

// A poll's response as the feed sees it: an emitter with http.ServerResponse's `closed`.
class Response extends EventEmitter {
  closed = false
  hangUp (): void { this.closed = true; this.emit('close') }
}

t.test('a poll whose shadow hung up before it parked is not parked', async (t) => {
  const feed = new OplogFeed(5)
  const response = new Response()
  response.hangUp()
  const waited = feed.wait(5, 60_000, response)
  t.equal(feed.waiterCount, 0, 'it holds no place among the parked polls')
  feed.close()   // were it parked, this releases it (the test fails on the count above, not on a 60 s wait)
  await waited
  t.equal(response.listenerCount('close'), 0, 'and leaves no listener on the response')
})

t.test('a parked poll ends on its shadow hanging up, on the next commit, or when the feed closes', async (t) => {
  const feed = new OplogFeed(5)
  const hungUp = new Response()
  const first = feed.wait(5, 60_000, hungUp)
  const second = feed.wait(5, 60_000, new Response())
  const third = feed.wait(6, 60_000, new Response())
  t.equal(feed.waiterCount, 3, 'all three parked')
  hungUp.hangUp()
  await first
  t.equal(feed.waiterCount, 2, 'the one whose shadow hung up is released')
  t.equal(hungUp.listenerCount('close'), 0, 'its listener removed')
  feed.notify(6)
  await second
  t.equal(feed.waiterCount, 1, 'a commit past its seq releases the second; the third waits for seq 7')
  feed.close()
  await third
  t.equal(feed.waiterCount, 0, 'closing the feed releases the rest')
})
