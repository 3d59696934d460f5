// An undici Agent trusting a CA file, for the CLI's few one-off calls outside a client's Transport (admin
// promote, fsck); undefined = undici's global dispatcher (the system's CAs). The caller closes it. It lives
// here, not in shared/tls.ts, because shared/tls.ts is loaded by every command's argument parsing (through
// shared/config.ts): importing undici there made even `granary --version` load all of undici (~110 ms).
import { Agent } from 'undici'
import { loadCa } from '../../shared/tls.js'

export function caDispatcher (what: string, caFile: string): Agent | undefined {
  const ca = loadCa(what, caFile)
  return ca === undefined ? undefined : new Agent({ connect: { ca } })
}
