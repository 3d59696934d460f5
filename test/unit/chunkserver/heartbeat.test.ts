// Proves the heartbeat against fake masters: a full report on first contact and when asked, deltas otherwise
// (per master), delete commands executed, newer terms adopted and persisted, and a master that fails or goes
// away neither crashes the chunkserver nor loses changes (the next heartbeat after a failure is a full report);
// a copy finished on a replicate command is reported at once rather than a heartbeat interval later, and so
// is the copy already held when a replicate command names it (the master had lost its replica row).
// A chunk file whose footer is unreadable at start-up is reported corrupt, and the master's delete removes it.
// A reply saying moreCommands brings the next heartbeat as soon as its deletes have run, not an interval later,
// and at most commandFollowUpBeatsMax such heartbeats follow in a row before the server rests an interval.
// A deposed master's refusal names its successor, which is then heartbeaten; the deposed one gets only probes
// until its health stops saying fencedByTerm (it came back as a shadow).
// Commands in a reply whose term is older than the newest this server has seen (a deposed master) never run.
// A candidate this server voted for is beaten every few ms (not at the interval) until it answers as a master
// of the voted term, so the new master's first echoes come at once; then the interval applies again.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { createServer, request as httpRequest, type Server } from 'node:http'
import { readFileSync, writeFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { signRequestWithSecret } from '../../../shared/auth.js'
import { startFixture, putChunk, newHandle, chunkFiles, signedReplyHeaders } from './fixtures/servers.js'
import type { HeartbeatReply, HeartbeatRequest } from '../../../shared/protocol.js'
import { healthPath, heartbeatPath, tokenHeader, votePath } from '../../../shared/protocol.js'
import { commandFollowUpBeatsMax, leaseMsMin } from '../../../shared/limits.js'
import { crc32 } from '../../../shared/checksum.js'

interface FakeMaster {
  url: string
  beats: HeartbeatRequest[]
  probes: number                // GET healthPath: what an unreachable master gets before any report is built
  posts: number                 // heartbeat POSTs, refused ones included
  health: object                // what GET healthPath answers (with 200) while reply() says 200 for heartbeats
  reply: (beat: HeartbeatRequest) => { statusCode: number, body: Partial<HeartbeatReply> | object }
  close: () => Promise<void>
  server: Server
}

async function fakeMaster (): Promise<FakeMaster> {
  const master: FakeMaster = {
    url: '', beats: [], probes: 0, posts: 0, health: {}, server: createServer(),
    reply: () => ({ statusCode: 200, body: { term: 0, heartbeatIntervalMs: 20, needFullReport: false, commands: [] } }),
    close: async () => { master.server.closeAllConnections(); await new Promise((resolve) => master.server.close(resolve)) }
  }
  master.server.on('request', (req, res) => {
    let text = ''
    req.on('data', (d: Buffer) => { text += d.toString() })
    req.on('end', () => {
      if (req.method === 'GET' && req.url === healthPath) {
        master.probes++
        const up = master.reply({} as HeartbeatRequest).statusCode === 200 || 'fencedByTerm' in master.health
        const text = JSON.stringify(master.health)
        res.writeHead(up ? 200 : 503, signedReplyHeaders(req, up ? 200 : 503, text)).end(text)
        return
      }
      const beat = JSON.parse(text) as HeartbeatRequest
      if (req.url === heartbeatPath) master.posts++
      const { statusCode, body } = req.url === heartbeatPath ? master.reply(beat) : { statusCode: 404, body: {} }
      if (statusCode === 200) master.beats.push(beat)
      const replyText = JSON.stringify(body)
      res.writeHead(statusCode, signedReplyHeaders(req, statusCode, replyText)).end(replyText)
    })
  })
  await new Promise<void>((resolve) => master.server.listen(0, '127.0.0.1', resolve))
  master.url = `http://127.0.0.1:${(master.server.address() as { port: number }).port}`
  return master
}

async function until (what: string, predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

t.test('heartbeats: full report, deltas, commands, term', async (t) => {
  const master = await fakeMaster()
  const shadow = await fakeMaster()
  t.teardown(async () => { await master.close(); await shadow.close() })
  const f = await startFixture(t, 1, { masters: `${master.url},${shadow.url}` })
  const server = f.servers[0] as typeof f.servers[0]

  await until('first heartbeats', () => master.beats.length > 0 && shadow.beats.length > 0)
  const first = master.beats[0] as HeartbeatRequest
  t.match(first, { serverId: server.serverId, url: server.url, chunkCount: 0, activeWrites: 0, term: 0 })
  t.same(first.fullReport, [], 'first contact sends a full report')
  t.same(shadow.beats[0]?.fullReport, [], 'every master gets its own')
  t.ok(first.capacityBytes > 0 && first.freeBytes > 0)

  const handle = newHandle()
  const written = randomBytes(10_000)
  t.equal((await putChunk(server.url, handle, 4, f.token(handle, 4, 'write'), written)).statusCode, 200)
  const chunk = { chunkHandle: handle, version: 4, lengthBytes: 10_000, crc32: crc32(written) }
  await until('the added delta', () => master.beats.some((b) => b.added?.length === 1))
  const added = master.beats.find((b) => b.added?.length === 1) as HeartbeatRequest
  t.same(added.added, [chunk])
  t.equal(added.fullReport, undefined, 'deltas, not a full report')
  t.equal(added.chunkCount, 1)
  t.equal(master.beats.filter((b) => b.added?.length === 1).length, 1, 'a delta is sent once')
  await until('the shadow delta', () => shadow.beats.some((b) => b.added?.length === 1))

  // The master asks for a delete and announces a newer term.
  let sentCommand = false
  master.reply = () => {
    const commands = sentCommand ? [] : [{ type: 'delete', chunkHandle: handle, version: 4 }]
    sentCommand = true
    return { statusCode: 200, body: { term: 9, heartbeatIntervalMs: 20, needFullReport: false, commands } }
  }
  await until('the removed delta', () => master.beats.some((b) => b.removed?.length === 1))
  t.same(chunkFiles(f.dataDirs[0] as string), [], 'the delete command removed the file')
  t.same(master.beats.find((b) => b.removed?.length === 1)?.removed, [chunk])
  await until('the new term', () => master.beats.some((b) => b.term === 9))
  t.equal(readFileSync(`${f.dataDirs[0] as string}/term`, 'utf8').trim(), '9', 'term persisted')

  // Asked for a full report: the next heartbeat carries one.
  master.reply = () => ({ statusCode: 200, body: { term: 9, heartbeatIntervalMs: 20, needFullReport: true, commands: [] } })
  const before = master.beats.length
  await until('a requested full report', () => master.beats.slice(before + 1).some((b) => b.fullReport !== undefined))
})

t.test('a failing or vanished master is retried and gets a full report', async (t) => {
  const master = await fakeMaster()
  t.teardown(async () => { await master.close() })
  const f = await startFixture(t, 1, { masters: master.url })
  const server = f.servers[0] as typeof f.servers[0]
  await until('first heartbeat', () => master.beats.length > 0)

  master.reply = () => ({ statusCode: 503, body: { code: 'GRN_UNAVAILABLE' } })
  await until('the refusal seen (a probe follows it)', () => master.probes > 0)
  const handle = newHandle()
  const written = randomBytes(1000)
  t.equal((await putChunk(server.url, handle, 1, f.token(handle, 1, 'write'), written)).statusCode, 200, 'writes go on while the master refuses')
  const count = master.beats.length
  master.reply = () => ({ statusCode: 200, body: { term: 0, heartbeatIntervalMs: 20, needFullReport: false, commands: [] } })
  await until('heartbeats again', () => master.beats.length > count)
  t.same(master.beats[count]?.fullReport, [{ chunkHandle: handle, version: 1, lengthBytes: 1000, crc32: crc32(written) }], 'after a failure: a full report')

  // Gone entirely (connection refused): the chunkserver keeps serving.
  await master.close()
  await sleep(150)   // a few heartbeat attempts find nobody; the put below must succeed whatever they did
  const other = newHandle()
  t.equal((await putChunk(server.url, other, 1, f.token(other, 1, 'write'), randomBytes(1000))).statusCode, 200)
})

t.test('a deposed master names its successor: the chunkserver beats the successor and only probes the deposed one', async (t) => {
  const deposed = await fakeMaster()
  const successor = await fakeMaster()
  t.teardown(async () => { await deposed.close(); await successor.close() })
  const f = await startFixture(t, 1, { masters: deposed.url })
  await until('first heartbeat', () => deposed.beats.length > 0)
  deposed.health = { role: 'master', term: 1, seq: 0, safeMode: false, fencedByTerm: 2 }
  deposed.reply = () => ({ statusCode: 503, body: { code: 'GRN_NOT_MASTER', details: { role: 'master', masterUrl: successor.url, term: 1, fencedByTerm: 2 } } })
  await until('the successor learned and beaten', () => successor.beats.length > 0)
  t.same(successor.beats[0]?.fullReport, [], 'the successor gets a full report first')
  const postsAfterRefusal = deposed.posts
  const probesBefore = deposed.probes
  const successorBefore = successor.beats.length
  await until('probes of the deposed master and heartbeats to the successor', () => deposed.probes >= probesBefore + 3 && successor.beats.length >= successorBefore + 3)
  t.equal(deposed.posts, postsAfterRefusal, 'no heartbeat (no report built) to a master whose health says deposed, while the successor got three')
  // It comes back as a shadow (health without fencedByTerm, heartbeats taken): full heartbeats resume.
  deposed.health = { role: 'shadow', term: 2, seq: 0, safeMode: false }
  deposed.reply = () => ({ statusCode: 200, body: { term: 2, heartbeatIntervalMs: 20, needFullReport: false, commands: [] } })
  const beatsBefore = deposed.beats.length
  await until('heartbeats to the restarted shadow', () => deposed.beats.length > beatsBefore)
  t.ok(deposed.beats[beatsBefore]?.fullReport !== undefined, 'starting with a full report')
})

t.test('heartbeats keep going while a write streams, and report it as load', async (t) => {
  const master = await fakeMaster()
  t.teardown(async () => { await master.close() })
  const f = await startFixture(t, 1, { masters: master.url })
  const server = f.servers[0] as typeof f.servers[0]
  await until('first heartbeat', () => master.beats.length > 0)
  const handle = newHandle()
  const totalBytes = 4 * 1024 * 1024
  const done = new Promise<number>((resolve, reject) => {
    const req = httpRequest(`${server.url}/chunks/${handle}?version=1`, {
      method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': totalBytes, [tokenHeader]: f.token(handle, 1, 'write') }
    }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)) })
    req.on('error', reject)
    void (async () => {
      for (let sent = 0; sent < totalBytes; sent += 512 * 1024) {
        req.write(randomBytes(512 * 1024))
        await sleep(60)
      }
      req.end()
    })()
  })
  await sleep(200)
  const during = master.beats.length
  await until('heartbeats during the write', () => master.beats.length >= during + 3)
  t.ok(master.beats.slice(during).some((b) => b.activeWrites === 1), 'the write in progress is reported as load')
  t.equal(await done, 200)
  await until('the added delta', () => master.beats.some((b) => b.added?.some((c) => c.chunkHandle === handle) === true))
})

t.test('moreCommands: the next heartbeat comes as soon as the deletes ran, within a bound', async (t) => {
  const master = await fakeMaster()
  t.teardown(async () => { await master.close() })
  const f = await startFixture(t, 1, { masters: master.url })
  const server = f.servers[0] as typeof f.servers[0]
  const handles = Array.from({ length: 5 }, () => newHandle())
  for (const handle of handles) t.equal((await putChunk(server.url, handle, 1, f.token(handle, 1, 'write'), randomBytes(5000))).statusCode, 200)
  t.equal(chunkFiles(f.dataDirs[0] as string).length, 5)

  // One delete per reply, with a 3 s interval: without follow-ups the five would take 12 s.
  const intervalMs = 3000
  const pending = handles.map((chunkHandle) => ({ type: 'delete', chunkHandle, version: 1 }))
  let replies = 0
  master.reply = () => {
    replies++
    const commands = pending.splice(0, 1)
    return { statusCode: 200, body: { term: 1, heartbeatIntervalMs: intervalMs, needFullReport: false, commands, moreCommands: pending.length > 0 } }
  }
  const startedMs = Date.now()
  await until('every chunk deleted', () => chunkFiles(f.dataDirs[0] as string).length === 0, 2000)
  t.ok(Date.now() - startedMs < intervalMs, `five batches in ${Date.now() - startedMs} ms, under one interval`)
  await until('the last follow-up', () => replies >= 5)
  await sleep(300)
  t.equal(replies, 5, 'the reply without moreCommands is followed by a normal interval, not another heartbeat')

  // A master that always says "more" gets 1 + commandFollowUpBeatsMax heartbeats, then an interval's rest.
  await until('the resting heartbeat', () => replies === 6, intervalMs + 2000)
  let always = 0
  master.reply = () => {
    always++
    return { statusCode: 200, body: { term: 1, heartbeatIntervalMs: intervalMs, needFullReport: false, commands: [], moreCommands: true } }
  }
  await until('the follow-up burst', () => always >= 1 + commandFollowUpBeatsMax, intervalMs + 5000)
  await sleep(500)
  t.equal(always, 1 + commandFollowUpBeatsMax, 'the burst is bounded')
})

t.test('a finished copy is reported at once, not at the next interval', async (t) => {
  const master = await fakeMaster()
  t.teardown(async () => { await master.close() })
  const f = await startFixture(t, 2, { masters: master.url })
  const [source, target] = f.servers as [typeof f.servers[0], typeof f.servers[0]]
  await until('first heartbeats', () => master.beats.some((b) => b.serverId === target.serverId))
  const handle = newHandle()
  const data = randomBytes(200_000)
  t.equal((await putChunk(source.url, handle, 2, f.token(handle, 2, 'write', { pipeline: [source] }), data)).statusCode, 200)
  // From now on a minute between heartbeats; the target's next reply carries one replicate command.
  let sentCommand = false
  master.reply = (beat) => {
    const commands = beat.serverId !== target.serverId || sentCommand ? [] : [{
      type: 'replicate', chunkHandle: handle, version: 2, lengthBytes: data.length, crc32: crc32(data),
      sources: [{ serverId: source.serverId, url: source.url }], token: f.token(handle, 2, 'read')
    }]
    if (commands.length > 0) sentCommand = true
    return { statusCode: 200, body: { term: 1, heartbeatIntervalMs: 60_000, needFullReport: false, commands } }
  }
  await until('the command sent', () => sentCommand)
  const sentAtMs = Date.now()
  await until('the copy reported', () => master.beats.some((b) => b.serverId === target.serverId && b.added?.some((c) => c.chunkHandle === handle) === true))
  t.ok(Date.now() - sentAtMs < 5000, 'reported within seconds, though the interval is a minute')
  t.equal(chunkFiles(f.dataDirs[1] as string).length, 1, 'the target stores the copy')
})

t.test('a replicate command for a copy already held: that copy is reported at once', async (t) => {
  const master = await fakeMaster()
  t.teardown(async () => { await master.close() })
  const f = await startFixture(t, 1, { masters: master.url })
  const server = f.servers[0] as typeof f.servers[0]
  const handle = newHandle()
  const data = randomBytes(50_000)
  t.equal((await putChunk(server.url, handle, 3, f.token(handle, 3, 'write'), data)).statusCode, 200)
  const chunk = { chunkHandle: handle, version: 3, lengthBytes: data.length, crc32: crc32(data) }
  await until('the added delta', () => master.beats.some((b) => b.added?.some((c) => c.chunkHandle === handle) === true))
  // The master lost the row (say, a report it refused) and plans a copy onto this server, a minute apart.
  let sentAtBeat = -1
  master.reply = () => {
    const commands = sentAtBeat >= 0 ? [] : [{
      type: 'replicate', chunkHandle: handle, version: 3, lengthBytes: data.length, crc32: crc32(data),
      sources: [{ serverId: 'cs-000000000009', url: 'http://127.0.0.1:9' }], token: f.token(handle, 3, 'read')
    }]
    if (commands.length > 0) sentAtBeat = master.beats.length
    return { statusCode: 200, body: { term: 1, heartbeatIntervalMs: 60_000, needFullReport: false, commands } }
  }
  await until('the command sent', () => sentAtBeat >= 0)
  const sentAtMs = Date.now()
  await until('the held copy reported', () => master.beats.slice(sentAtBeat + 1).some((b) => b.added?.some((c) => c.chunkHandle === handle) === true))
  t.ok(Date.now() - sentAtMs < 5000, 'reported within seconds, though the interval is a minute')
  t.same(master.beats.slice(sentAtBeat + 1).find((b) => (b.added?.length ?? 0) > 0)?.added, [chunk], 'as the chunk it is, the way a finished copy is reported')
  t.equal(chunkFiles(f.dataDirs[0] as string).length, 1, 'the copy is kept, not fetched again')
})

t.test('a chunk file with a bad footer at start-up is reported corrupt, and the master\'s delete removes it', async (t) => {
  const master = await fakeMaster()
  t.teardown(async () => { await master.close() })
  const f = await startFixture(t, 1, { masters: master.url })
  const handle = newHandle()
  t.equal((await putChunk((f.servers[0] as typeof f.servers[0]).url, handle, 5, f.token(handle, 5, 'write'), randomBytes(20_000))).statusCode, 200)
  const file = `${f.dataDirs[0] as string}/chunks/${chunkFiles(f.dataDirs[0] as string)[0] as string}`
  const bytes = readFileSync(file)
  ;(bytes[bytes.length - 3] as number) ^= 0xff   // in the footer
  writeFileSync(file, bytes)

  // The master (another good replica exists) orders the reported replica deleted.
  let deleteSent = false
  master.reply = (beat) => {
    const commands = deleteSent || beat.corrupt === undefined ? [] : [{ type: 'delete', chunkHandle: handle, version: 5 }]
    if (commands.length > 0) deleteSent = true
    return { statusCode: 200, body: { term: 1, heartbeatIntervalMs: 20, needFullReport: false, commands } }
  }
  const before = master.beats.length
  await f.restart(0)
  await until('the corrupt report', () => master.beats.slice(before).some((b) => b.corrupt !== undefined))
  const first = master.beats.slice(before).find((b) => b.fullReport !== undefined)
  t.same(first?.fullReport, [], 'the unreadable file is not offered as a replica')
  t.same(master.beats.slice(before).find((b) => b.corrupt !== undefined)?.corrupt, [{ chunkHandle: handle, version: 5, lengthBytes: 0 }], 'it is reported corrupt')
  await until('the file deleted', () => chunkFiles(f.dataDirs[0] as string).length === 0)
  const after = master.beats.length
  await until('two more heartbeats', () => master.beats.length >= after + 2)
  t.ok(master.beats.slice(after).every((b) => b.corrupt === undefined), 'and is no longer reported once deleted')
})

t.test('commands in a reply of an older term are not run', async (t) => {
  const master = await fakeMaster()
  t.teardown(async () => { await master.close() })
  const f = await startFixture(t, 1, { masters: master.url })
  const server = f.servers[0] as typeof f.servers[0]
  const handle = newHandle()
  // A write token of term 3 (a newer master) raises this server's term to 3.
  t.equal((await putChunk(server.url, handle, 1, f.token(handle, 1, 'write', { term: 3 }), randomBytes(5000))).statusCode, 200)
  await until('a heartbeat at term 3', () => master.beats.some((b) => b.term === 3))
  // The term-2 master (deposed, not knowing it) orders the chunk deleted, and says more commands wait.
  let olderReplies = 0
  master.reply = () => {
    olderReplies++
    return { statusCode: 200, body: { term: 2, heartbeatIntervalMs: 20, needFullReport: false, commands: [{ type: 'delete', chunkHandle: handle, version: 1 }], moreCommands: true } }
  }
  await until('three replies of term 2', () => olderReplies >= 3)
  const before = master.beats.length
  await until('two heartbeats after them', () => master.beats.length >= before + 2)
  t.equal(chunkFiles(f.dataDirs[0] as string).length, 1, 'the delete of an older term did not run')
  t.ok(master.beats.slice(before).every((b) => b.term === 3), 'nor did the older term replace the newer')
  // The same command from a master of term 3 runs.
  master.reply = () => ({ statusCode: 200, body: { term: 3, heartbeatIntervalMs: 20, needFullReport: false, commands: [{ type: 'delete', chunkHandle: handle, version: 1 }] } })
  await until('the file deleted', () => chunkFiles(f.dataDirs[0] as string).length === 0)
  t.pass('a current-term delete runs')
})

t.test('a vote granted: the candidate is beaten every few ms until it answers as master of that term, then at the interval', async (t) => {
  const master = await fakeMaster()
  const candidate = await fakeMaster()
  t.teardown(async () => { await master.close(); await candidate.close() })
  const slow = { term: 0, heartbeatIntervalMs: 1000, needFullReport: false, commands: [] }
  master.reply = () => ({ statusCode: 200, body: slow })
  candidate.reply = () => ({ statusCode: 200, body: { ...slow, role: 'shadow' } })
  const f = await startFixture(t, 1, { masters: `${master.url},${candidate.url}`, heartbeatIntervalMs: 1000, leaseMs: leaseMsMin })
  const server = f.servers[0] as typeof f.servers[0]
  await until('first heartbeats', () => master.beats.length > 0 && candidate.beats.length > 0)
  await sleep(leaseMsMin + 20)   // the promise a start gives lapses
  const before = candidate.beats.length
  const voteBody = JSON.stringify({ term: 1, candidateId: 'sh-00000000000a', candidateUrl: candidate.url, force: true })
  const vote = await fetch(`${server.url}${votePath}`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...signRequestWithSecret(f.secret, 'POST', votePath, voteBody) }, body: voteBody
  })
  t.equal(vote.status, 200, 'granted')
  await sleep(100)
  const whileShadow = candidate.beats.length - before
  t.ok(whileShadow >= 3, `beaten ${whileShadow} times in 100 ms while it still answers as a shadow (interval 1 s)`)
  // As a master does: an echo is asked for at once until one arrives.
  candidate.reply = (beat) => ({ statusCode: 200, body: { ...slow, term: 1, role: 'master', instanceId: 'abcd', sentAtMs: 1, isrEpoch: 0, isr: [], leaseWanted: beat.lease === undefined } })
  await until('a beat answered as master', () => candidate.beats.some((b) => b.term === 1))
  await sleep(50)
  const settled = candidate.beats.length
  await sleep(150)
  t.ok(candidate.beats.length - settled <= 1, `then at most one more beat in 150 ms (${candidate.beats.length - settled}): the interval again`)
  t.ok(candidate.beats.some((b) => b.lease?.instanceId === 'abcd'), 'the master reply was echoed')
})
