// Where a client finds its access key (docs/API.md "Credentials"), first match wins:
//   1. given: connect({ credentials }) or the CLI's --credentials FILE
//   2. $GRANARY_CREDENTIALS (a file)
//   3. the local cluster's: ./granary-data/credentials (what `granary up` writes in its data folder)
//   4. ~/.config/granary/credentials
// None found: requests go unsigned, and a server with authentication on answers GRN_UNAUTHENTICATED.
import { existsSync, readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { GranaryError } from '../shared/errors.js'
import { credentialsFileName, parseCredentials, type Credentials } from '../shared/auth.js'

export type { Credentials } from '../shared/auth.js'
export const credentialsFileBytesMax = 4_096
export const localClusterDataDir = 'granary-data'

export interface FoundCredentials { credentials: Credentials, from: string }

export function findCredentials (given: Credentials | string | undefined, env: NodeJS.ProcessEnv = process.env): FoundCredentials | null {
  if (typeof given === 'object') return { credentials: parseCredentials(JSON.stringify(given), 'the credentials option'), from: 'the credentials option' }
  if (typeof given === 'string' && given !== '') return { credentials: readCredentialsFile(given), from: given }
  const fromEnv = env.GRANARY_CREDENTIALS
  if (fromEnv !== undefined && fromEnv !== '') return { credentials: readCredentialsFile(fromEnv), from: '$GRANARY_CREDENTIALS' }
  for (const file of [resolve(localClusterDataDir, credentialsFileName), join(homedir(), '.config', 'granary', credentialsFileName)]) {
    if (existsSync(file)) return { credentials: readCredentialsFile(file), from: file }
  }
  return null
}

export function readCredentialsFile (file: string): Credentials {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`cannot read credentials file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`])
  }
  if (Buffer.byteLength(text) > credentialsFileBytesMax) throw new GranaryError('GRN_INVALID_ARGUMENT', [`credentials file ${file} is over ${credentialsFileBytesMax} bytes`])
  return parseCredentials(text, file)
}
