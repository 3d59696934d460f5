// Does for a process of a granary/testing cluster what `granary up`'s supervisor does for its master: waits
// for it to die (any signal or exit), then starts it again at once — or after restartDelayMs, to keep the
// master down for a while — on the same data folder and port. Like granary up, a master is restarted from a
// warm spare (client/cluster/up-standby.ts: a master process already loaded, activated by "go") when one is ready,
// else started cold. Every restart is recorded with its times, so a test can report detection and recovery.
//
//   const supervisor = supervise(cluster.master, { restartDelayMs: 1000 })
//   await cluster.master.kill()              // the supervisor notices and restarts it
//   await supervisor.restarted(1)            // resolves once the first restart is ready
//   await supervisor.stop()                  // before cluster.stop(), which would otherwise be "restarted"
import { SpareMaster, spareDelayMs } from '../client/cluster/up-standby.js'
import type { ClusterProcess } from './cluster.js'

export interface RestartRecord {
  exitedAtMs: number           // epoch ms the supervisor saw the exit
  startedAtMs: number          // it began starting the process again (after restartDelayMs)
  readyAtMs: number | null     // the process logged ready (null: the start failed)
  spare: boolean               // the warm spare was activated (else a cold start)
  error: string | null
}

export interface Supervisor {
  readonly restarts: readonly RestartRecord[]
  restarted: (count: number) => Promise<void>   // resolves when `count` restarts have been attempted and settled
  stop: () => Promise<void>                     // stop watching; a restart under way is awaited
}

export interface SuperviseOptions {
  restartDelayMs?: number
  restartsMax?: number
  spare?: boolean              // keep a warm spare for a master (default true, as granary up does)
}

const restartsMaxDefault = 20   // bounded, as up.ts bounds its restarts: a process that cannot start is not hot-looped
const readyTimeoutMs = 30_000

export function supervise (proc: ClusterProcess, options: SuperviseOptions = {}): Supervisor {
  const restartDelayMs = options.restartDelayMs ?? 0
  const restartsMax = options.restartsMax ?? restartsMaxDefault
  const spare = options.spare !== false && proc.role === 'master' ? new SpareMaster() : undefined
  const prepareSpare = (): void => { spare?.prepare({ args: proc.startArgs, logPath: proc.logPath, readyTimeoutMs }, spareDelayMs) }
  const restarts: RestartRecord[] = []
  const waiters: Array<{ count: number, resolve: () => void }> = []
  let stopped = false
  let starting: Promise<void> | null = null   // a restart under way (stop() waits for it)
  const wake = (): void => {
    for (const waiter of waiters.filter((w) => restarts.length >= w.count)) {
      waiters.splice(waiters.indexOf(waiter), 1)
      waiter.resolve()
    }
  }
  const restart = async (record: RestartRecord): Promise<void> => {
    const taken = await spare?.take({ args: proc.startArgs, logPath: proc.logPath, readyTimeoutMs }).catch(() => undefined)
    if (taken !== undefined) proc.adopt(taken)
    else await proc.start()
    record.spare = taken !== undefined
    record.readyAtMs = Date.now()
    prepareSpare()
  }
  const loop = async (): Promise<void> => {
    while (!stopped && restarts.length < restartsMax) {
      await proc.waitExited()
      if (stopped) return
      const record: RestartRecord = { exitedAtMs: Date.now(), startedAtMs: 0, readyAtMs: null, spare: false, error: null }
      if (restartDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, restartDelayMs))
      if (stopped) return
      record.startedAtMs = Date.now()
      starting = restart(record).catch((err: unknown) => { record.error = (err as Error).message })
      await starting
      starting = null
      restarts.push(record)
      wake()
      if (record.error !== null) return
    }
  }
  prepareSpare()
  void loop()
  return {
    restarts,
    restarted: async (count) => {
      if (restarts.length >= count) return
      await new Promise<void>((resolve) => { waiters.push({ count, resolve }) })
    },
    stop: async () => {
      stopped = true
      spare?.stop()
      // The loop may be parked on waitExited() of a live process: that is not awaited (it returns when the
      // process exits). A restart already under way is, so cluster.stop() finds the new process and kills it.
      if (starting !== null) await starting
    }
  }
}
