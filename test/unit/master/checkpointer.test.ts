// Proves the WAL checkpointer (master/checkpointer.ts): a worker thread with its own connection copies what the
// master commits into master.db without the master's connection checkpointing (its autocheckpoint is raised to
// the fallback bound), the data reads back whole from the file alone once the WAL is gone, and close() stops
// the worker so the master can close its connection. An in-memory database gets no checkpointer.
import t from 'tap'
import { copyFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import pino from 'pino'
import { openDb } from '../../../master/db.js'
import { Checkpointer, mainCheckpointPages } from '../../../master/checkpointer.js'

const log = pino({ level: process.env.CP_DEBUG === '1' ? 'debug' : 'silent' }, pino.destination(2))

t.test('commits reach master.db through the worker; close stops it', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'master.db')
  const db = openDb(file, 'normal')
  const checkpointer = Checkpointer.start(db, log, 20)
  t.ok(checkpointer !== null)
  t.teardown(async () => { await checkpointer?.close(); if (db.open) db.close() })
  t.equal(db.pragma('wal_autocheckpoint', { simple: true }), mainCheckpointPages, 'the master\'s own autocheckpoint is only the fallback')
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)')
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)')
  for (let i = 0; i < 200; i++) insert.run(Buffer.alloc(4000, i % 256))   // ~200 pages, far below the fallback
  const sizeBefore = statSync(file).size
  // Waits on the condition itself (bounded by tap's timeout), not on a guessed delay.
  while ((checkpointer?.framesCheckpointed ?? 0) < 200) await sleep(10)
  t.ok(statSync(file).size > sizeBefore + 200 * 4000, 'master.db grew by what was committed')
  // The file alone, without its WAL, holds every row: copy just master.db and open the copy.
  const copy = join(dir, 'copy.db')
  copyFileSync(file, copy)
  const alone = new Database(copy, { readonly: true })
  t.equal((alone.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n, 200)
  alone.close()
  await checkpointer?.close()
  const checkpointsAtClose = checkpointer?.checkpoints ?? 0
  insert.run(Buffer.alloc(10))
  await sleep(100)
  t.equal(checkpointer?.checkpoints, checkpointsAtClose, 'nothing is checkpointed after close')
  db.close()
})

t.test('an in-memory database has no checkpointer', async (t) => {
  const db = openDb(':memory:', 'normal')
  t.teardown(() => db.close())
  t.equal(Checkpointer.start(db, log), null)
})
