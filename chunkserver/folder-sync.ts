// Group fsync of chunk folders, the way the master group-commits: a rename into a folder is durable once that
// folder has been fsynced AFTER the rename. Writes that finish while a folder's fsync is in flight join the
// next round, which starts the moment the current one ends, so N concurrent small writes into a folder cost
// two folder fsyncs, not N, and an idle folder costs one, at once (no timer: waiting never adds latency).
// A write waits at most for the round in flight plus its own (folderSyncRoundsWaitedMax). Each folder's
// descriptor stays open (at most folderSyncFdsMax of them: the 256 chunk folders and a few more), so a round
// is one fsync call instead of open + fsync + close on the thread pool.
import { open, type FileHandle } from 'node:fs/promises'
import { assert } from '../shared/assert.js'

export const folderSyncRoundsWaitedMax = 2   // the round in flight when a write arrives, then the one that covers it
export const folderSyncFdsMax = 512          // open folder descriptors kept; past it the least recently used is closed

interface Waiter { resolve: () => void, reject: (err: Error) => void }
interface FolderState { handle: Promise<FileHandle> | null, running: boolean, waiting: Waiter[] }

export class FolderSync {
  readonly #folders = new Map<string, FolderState>()   // insertion order = least recently used first
  #closed = false
  rounds = 0        // fsync calls made (for tests and the bench)
  get keptCount (): number { return this.#folders.size }
  requests = 0      // sync() calls served

  // Resolves once `folder` has been fsynced after this call began.
  sync (folder: string): Promise<void> {
    assert(!this.#closed, 'sync after close')
    this.requests++
    let state = this.#folders.get(folder)
    if (state === undefined) {
      state = { handle: null, running: false, waiting: [] }
      this.#evictIfFull()
    } else {
      this.#folders.delete(folder)   // move to the most recently used end
    }
    this.#folders.set(folder, state)
    const done = new Promise<void>((resolve, reject) => { (state as FolderState).waiting.push({ resolve, reject }) })
    if (!state.running) void this.#run(folder, state)
    return done
  }

  async #run (folder: string, state: FolderState): Promise<void> {
    state.running = true
    while (state.waiting.length > 0) {
      const round = state.waiting
      state.waiting = []
      try {
        state.handle ??= open(folder, 'r')
        await (await state.handle).sync()
        this.rounds++
        for (const waiter of round) waiter.resolve()
      } catch (err) {
        // A failed open or fsync: nobody of this round is durable. Forget the descriptor so the next round
        // opens the folder anew (it may have been recreated).
        const handle = state.handle
        state.handle = null
        void handle?.then(async (h) => { await h.close() }, () => {})
        for (const waiter of round) waiter.reject(err as Error)
      }
    }
    state.running = false
  }

  #evictIfFull (): void {
    if (this.#folders.size < folderSyncFdsMax) return
    for (const [folder, state] of this.#folders) {
      if (state.running) continue
      this.#folders.delete(folder)
      void state.handle?.then(async (h) => { await h.close() }, () => {})
      return
    }
  }

  // Closes every kept descriptor once the rounds in flight are done.
  async close (): Promise<void> {
    this.#closed = true
    const handles = [...this.#folders.values()].map((state) => state.handle)
    this.#folders.clear()
    await Promise.all(handles.map(async (handle) => { await (await handle?.catch(() => null))?.close().catch(() => {}) }))
  }
}

// One per process: every chunk write of this chunkserver shares the rounds.
export const folderSync = new FolderSync()
