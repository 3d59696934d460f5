// One pino logger per process, one JSON object per line on stdout. Servers log {"msg":"ready","port":…}
// once listening; the supervisor and test harness wait for that line, so there are no port races.
import { pino, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

export function createLogger (name: string, level: LevelWithSilent = 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid, role: name } })
}

export const readyMessage = 'ready'
