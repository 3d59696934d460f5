// The CLI's grammar: every command with its options, argument counts, usage text and examples, and the
// parser that turns argv into a checked ParsedCommand. Anything wrong here is a usage error (exit 2), found
// before the cluster is contacted.
import { parseArgs } from 'node:util'
import { GranaryError } from '../../shared/errors.js'
import { parseMasterList, checkChunkSize, masterDefaults, chunkserverDefaults, shadowDefaults, kebab } from '../../shared/config.js'
import * as limits from '../../shared/limits.js'
import { parseLocation, isMarkedRemote, mastersFor, type Location } from './location.js'
import { serverCommandNames } from './server-commands.js'
import { assert } from '../../shared/assert.js'

type OptionSpec = { type: 'boolean' | 'string', short?: string, help: string, placeholder?: string }

export interface CommandSpec {
  name: string
  kind: 'client' | 'server' | 'local'      // local: runs without a cluster (completion)
  summary: string
  usage: string
  options: Record<string, OptionSpec>
  positionalsMin: number
  positionalsMax: number
  // Which positionals are Granary paths (checked here; gr:/ and granary:// prefixes are accepted and stripped).
  // 'marked': only those written with a prefix are (cp, sync: there a plain path is local).
  remoteArgs: 'all' | 'none' | number[] | 'marked'
  localWith?: string                        // a boolean option that makes every argument local (checksum --local)
  notes?: string[]
  examples: string[]
  ownHelp?: boolean                         // a server command that prints its own --help
}

export const globalOptions: Record<string, OptionSpec> = {
  master: { type: 'string', short: 'm', placeholder: 'URLS', help: 'master URL, then shadows, comma-separated (else $GRANARY_MASTER, else http://127.0.0.1:9000)' },
  json: { type: 'boolean', help: 'print data as JSON (for scripts)' },
  credentials: { type: 'string', placeholder: 'FILE', help: 'access key file (else $GRANARY_CREDENTIALS, ./granary-data/credentials, ~/.config/granary/credentials)' },
  'ca-file': { type: 'string', placeholder: 'FILE', help: 'CA that signed the servers\' certificates, for https:// URLs (else $GRANARY_CA_FILE, else the system CAs)' },
  'deadline-ms': { type: 'string', placeholder: 'MS', help: 'budget of each operation, retries included (default 10000)' },
  quiet: { type: 'boolean', short: 'q', help: 'print only data and errors: no progress bars, summaries or notes' },
  help: { type: 'boolean', help: "show this help (also -h, except for ls and du where -h means human sizes)" },
}

// What every exit status means (the same for server commands); generalHelp and docs/API.md list them.
export const exitStatuses: ReadonlyArray<readonly [number, string]> = [
  [0, 'ok'],
  [1, 'the operation failed'],
  [2, 'usage error (bad command, option or argument)'],
  [3, 'not found (a missing path, or a glob that matches nothing)'],
  [4, 'cluster unreachable, or out of its deadline budget'],
  [130, 'interrupted (Ctrl-C)'],
]

const humanOption: OptionSpec = { type: 'boolean', short: 'h', help: 'sizes in KiB, MiB, GiB (--help for help)' }
const globNote = "REMOTE may be a glob: *, ?, [a-z] within a name, ** for any folders (quote it from the shell)."


const force = (what: string): OptionSpec => ({ type: 'boolean', short: 'f', help: what })

export const commands: CommandSpec[] = [
  { name: 'up', kind: 'server', summary: 'start a local cluster (master, shadow, 3 chunkservers) and supervise it', usage: 'granary up [flags]',
    options: {}, positionalsMin: 0, positionalsMax: 0, remoteArgs: 'none', notes: ['Keeps running in the foreground; Ctrl-C stops the whole cluster.', "Run 'granary up --help' for its flags."],
    examples: ['granary up', 'GRANARY_MASTER=http://127.0.0.1:9000 granary ls /'], ownHelp: true },
  { name: 'chaos', kind: 'server', summary: 'SIGKILL the master under a write workload; print each outage and verify every file', usage: 'granary chaos [flags]',
    options: {}, positionalsMin: 0, positionalsMax: 0, remoteArgs: 'none', notes: ['Starts its own cluster with granary up in a temporary folder.', "Run 'granary chaos --help' for its flags."],
    examples: ['granary chaos', 'granary chaos --ops-per-second 100 --file-size 4K --duration-ms 20000 --kill-at-ms 5000,12000 --down-ms 1000'], ownHelp: true },
  { name: 'master', kind: 'server', summary: 'run a master', usage: 'granary master [flags]',
    options: {}, positionalsMin: 0, positionalsMax: 0, remoteArgs: 'none', notes: serverFlagNotes(masterDefaults),
    examples: ['granary master --port 9000 --data-dir /var/lib/granary/master --secret-file /var/lib/granary/secret --create-secret'] },
  { name: 'shadow', kind: 'server', summary: "run a shadow master: tails the master's log, serves reads while it is down", usage: 'granary shadow [flags]',
    options: {}, positionalsMin: 0, positionalsMax: 0, remoteArgs: 'none', notes: ['Takes the master flags, plus --master URL (the master to follow); --promote [--force] promotes it once caught up.', ...serverFlagNotes(shadowDefaults)],
    examples: ['granary shadow --port 9001 --data-dir /var/lib/granary/shadow --secret-file /var/lib/granary/secret --master http://127.0.0.1:9000'] },
  { name: 'chunkserver', kind: 'server', summary: 'run a chunkserver', usage: 'granary chunkserver [flags]',
    options: {}, positionalsMin: 0, positionalsMax: 0, remoteArgs: 'none', notes: serverFlagNotes(chunkserverDefaults),
    examples: ['granary chunkserver --port 9101 --data-dir /srv/granary/cs1 --masters http://127.0.0.1:9000'] },
  { name: 's3', kind: 'server', summary: 'run an S3 gateway (docs/S3.md): any S3 client reaches the cluster through it', usage: 'granary s3 [flags]',
    options: {}, positionalsMin: 0, positionalsMax: 0, remoteArgs: 'none',
    notes: ['Flags: --port (9300) --host --advertise-url --masters --region --access-key-id --secret-access-key --chunk-size-bytes --replication --cors-origins --log-level.',
      'The key pair may also come from GRANARY_S3_ACCESS_KEY_ID and GRANARY_S3_SECRET_ACCESS_KEY.'],
    examples: ['granary s3 --port 9300 --masters http://127.0.0.1:9000,http://127.0.0.1:9001 --access-key-id granary --secret-access-key s3cr3tkey'] },
  { name: 'put', kind: 'client', summary: 'copy a local file (or stdin) into Granary', usage: 'granary put [options] LOCAL|- REMOTE',
    options: {
      force: force('replace an existing file (atomically, when the upload completes)'),
      recursive: { type: 'boolean', short: 'r', help: 'copy a whole folder: LOCAL is a folder, or - for a tar on stdin; REMOTE receives its contents' },
      replication: { type: 'string', placeholder: 'N', help: `copies of each chunk (${limits.replicationMin}..${limits.replicationMax}, default 3)` },
      'chunk-size': { type: 'string', placeholder: 'BYTES', help: 'chunk size: bytes or with a suffix, e.g. 1M, 64MiB (a multiple of 64 KiB)' },
    },
    positionalsMin: 2, positionalsMax: 2, remoteArgs: [1],
    notes: ['Parent directories are created. A REMOTE that ends with / or is a directory gets the file under its local name.',
      'An existing file is refused unless --force. Nothing is visible until the whole file is stored.',
      'With -r, files keep their modes and mtimes (folders their modes); symlinks are refused; tar entries',
      "with '..' or absolute names are refused (nothing is written outside REMOTE)."],
    examples: ['granary put ./movie.mkv /videos/', 'tar c docs | granary put - /backups/docs.tar', 'granary put --force --replication 2 --chunk-size 16M big.bin /data/big.bin',
      'granary put -r ./photos /backup/photos', 'tar c -C src . | granary put -r - /backup/src'] },
  { name: 'get', kind: 'client', summary: 'copy a Granary file to a local file (or stdout)', usage: 'granary get [options] REMOTE [LOCAL|-]',
    options: {
      force: force('replace an existing local file'),
      recursive: { type: 'boolean', short: 'r', help: 'copy a whole folder: LOCAL (made if missing) receives its contents, or - for a tar on stdout' },
      'preserve-permissions': { type: 'boolean', help: 'with -r, keep setuid, setgid and sticky bits (stripped by default)' },
    },
    positionalsMin: 1, positionalsMax: 2, remoteArgs: [0],
    notes: ['LOCAL defaults to the file name in the current folder; a folder gets the file under its name.',
      'Bytes go to a temporary file beside LOCAL that is renamed when complete: a failed get leaves nothing behind.',
      'With -r, files and folders get their stored modes (without setuid, setgid and sticky bits unless',
      '--preserve-permissions), and files their Granary mtimes.', `${globNote} Several matches go into the folder LOCAL.`],
    examples: ['granary get /videos/movie.mkv', 'granary get /data/big.bin /tmp/', 'granary get /logs/today.log - | grep ERROR',
      'granary get -r /backup/photos ./photos', 'granary get -r /backup/src - | tar t'] },
  { name: 'cp', kind: 'client', summary: 'copy files in any direction: local to Granary, Granary to local, Granary to Granary', usage: 'granary cp [options] SOURCE... TARGET',
    options: {
      recursive: { type: 'boolean', short: 'r', help: 'copy folders with everything in them' },
      'no-clobber': { type: 'boolean', short: 'n', help: 'refuse to replace an existing file (GRN_EXISTS) instead of replacing it' },
      replication: { type: 'string', placeholder: 'N', help: `copies of each chunk written to Granary (${limits.replicationMin}..${limits.replicationMax}; default: the source's, or 3)` },
      'chunk-size': { type: 'string', placeholder: 'BYTES', help: "chunk size of files written to Granary (default: the source's, or 64M)" },
    },
    positionalsMin: 2, positionalsMax: 1000, remoteArgs: 'marked',
    notes: ['Granary paths are written gr:/path or granary://HOST:PORT/path (which also names the master); a plain',
      'path is local. Like cp(1): an existing target file is replaced (atomically, when the copy completes) unless -n;',
      'a TARGET that is a folder or ends with / receives each SOURCE under its name; with several SOURCEs (or a glob',
      'matching several) TARGET is a folder (made on Granary if missing). A folder SOURCE needs -r: copied into an',
      'existing folder TARGET under its own name, else TARGET becomes the copy. Granary to Granary copies through',
      'this client (bytes are read and written again; nothing is shared between the two files).', globNote],
    examples: ['granary cp big.iso gr:/isos/', 'granary cp gr:/isos/big.iso ./copy.iso', 'granary cp -r ./photos gr:/backup/',
      "granary cp 'gr:/logs/2026-*.gz' ./logs/", 'granary cp gr:/a.bin gr:/b.bin', 'granary cp granary://10.0.0.5:9000/data/x.csv .'] },
  { name: 'sync', kind: 'client', summary: 'make TARGET a copy of SOURCE, sending only files whose size or CRC32 differ', usage: 'granary sync [options] SOURCE TARGET',
    options: {
      delete: { type: 'boolean', help: 'also delete files and folders under TARGET that SOURCE lacks (Granary: to /.trash)' },
      'dry-run': { type: 'boolean', help: 'print what would be copied and deleted; change nothing' },
      replication: { type: 'string', placeholder: 'N', help: `copies of each chunk written to Granary (${limits.replicationMin}..${limits.replicationMax}, default 3)` },
    },
    positionalsMin: 2, positionalsMax: 2, remoteArgs: 'marked',
    notes: ['SOURCE and TARGET are folders, local or gr:/path (either way round, or both on Granary). A file is',
      'skipped when TARGET has it with the same size and whole-file CRC32 (the stored one on Granary, computed for a',
      'local file only when the sizes match), so a second sync sends nothing. Prints one line per file copied or',
      'deleted and a summary (--json: the lists; -q: nothing). Modification times are not compared.'],
    examples: ['granary sync ./site gr:/www', 'granary sync --delete --dry-run gr:/www ./site-copy', 'granary sync --json ./data gr:/data | jq .copied'] },
  { name: 'cat', kind: 'client', summary: 'write Granary files to stdout', usage: 'granary cat REMOTE...',
    options: {}, positionalsMin: 1, positionalsMax: 1000, remoteArgs: 'all', examples: ['granary cat /etc/motd', 'granary cat /logs/a.log /logs/b.log | head'] },
  { name: 'ls', kind: 'client', summary: 'list a directory', usage: 'granary ls [options] [REMOTE...]',
    options: {
      long: { type: 'boolean', short: 'l', help: 'also show type, size, modification time and replication' },
      recursive: { type: 'boolean', short: 'R', help: 'list every folder below too (paths relative to REMOTE)' },
      human: humanOption,
    },
    positionalsMin: 0, positionalsMax: 1000, remoteArgs: 'all',
    notes: ['Directories end with /. REMOTE defaults to /.', globNote, 'A glob lists the entries it matches (full paths), not their contents.'],
    examples: ['granary ls', 'granary ls -lh /videos', 'granary ls -R /backup', "granary ls '/logs/**/*.gz'", 'granary ls --json /videos | jq ".[].sizeBytes"'] },
  { name: 'stat', kind: 'client', summary: 'show a file or directory', usage: 'granary stat [options] REMOTE',
    options: {}, positionalsMin: 1, positionalsMax: 1, remoteArgs: 'all', examples: ['granary stat /videos/movie.mkv', 'granary stat --json /videos'] },
  { name: 'mkdir', kind: 'client', summary: 'make directories', usage: 'granary mkdir [options] REMOTE...',
    options: { parents: { type: 'boolean', short: 'p', help: 'make parent directories as needed; no error if it exists' } },
    positionalsMin: 1, positionalsMax: 1000, remoteArgs: 'all', examples: ['granary mkdir /videos', 'granary mkdir -p /a/b/c'] },
  { name: 'mv', kind: 'client', summary: 'move or rename a file or directory', usage: 'granary mv SOURCE TARGET',
    options: {}, positionalsMin: 2, positionalsMax: 2, remoteArgs: 'all', notes: ['A TARGET that ends with / or is a directory receives SOURCE under its name.'],
    examples: ['granary mv /inbox/a.txt /archive/', 'granary mv /old-name /new-name'] },
  { name: 'rm', kind: 'client', summary: 'remove files or directories', usage: 'granary rm [options] REMOTE...',
    options: {
      recursive: { type: 'boolean', short: 'r', help: 'remove directories and everything in them' },
      force: force('ignore paths that do not exist'),
      'skip-trash': { type: 'boolean', help: 'delete for good at once instead of moving to /.trash' },
    },
    positionalsMin: 1, positionalsMax: 1000, remoteArgs: 'all',
    notes: ['Deleted entries move to /.trash/<deletion time>/<their path> and stay there for the master\'s',
      '--trash-retention-ms (default 24 h); then their chunks are deleted. \'granary restore PATH\' brings one back.',
      'Removing something inside /.trash, or with --skip-trash, deletes it for good at once.', globNote],
    examples: ["granary rm '/tmp/*.bin'", 'granary rm -r /old-project', 'granary rm --skip-trash -r /scratch', 'granary rm -r /.trash   # empty the trash'] },
  { name: 'restore', kind: 'client', summary: 'bring a deleted file or directory back from the trash', usage: 'granary restore REMOTE [TARGET]',
    options: {}, positionalsMin: 1, positionalsMax: 2, remoteArgs: 'all',
    notes: ['REMOTE is the path it was deleted from (its newest copy in the trash is restored) or its place in',
      '/.trash (see \'granary ls /.trash\'). TARGET defaults to the path it was deleted from; missing parent',
      'folders are made. An existing TARGET is never replaced (GRN_EXISTS). mv out of /.trash works too.'],
    examples: ['granary restore /docs/report.pdf', 'granary restore /docs/report.pdf /docs/report-old.pdf', 'granary restore /.trash/2026-11-21T10:15:30.123Z/docs'] },
  { name: 'checksum', kind: 'client', summary: "print files' whole-file CRC32 (stored at write; --local computes it for local files)", usage: 'granary checksum [--local] PATH...',
    options: { local: { type: 'boolean', help: 'PATHs are local files: compute the same CRC32 of their bytes, to compare with a stored copy' } },
    positionalsMin: 1, positionalsMax: 1000, remoteArgs: 'all', localWith: 'local',
    notes: ['Prints CRC32 (8 hex digits), size in bytes and path, one file a line. Granary combines the CRC32 of a',
      "file's chunks when the file completes (no second pass over the bytes); files written before Granary 0.1's",
      'schema 2 have none (GRN_NOT_FOUND names them). Equal CRC32 and size: the bytes are almost surely equal.'],
    examples: ['granary checksum /isos/big.iso', 'granary checksum --local big.iso', 'granary checksum --json /a /b'] },
  { name: 'du', kind: 'client', summary: 'show the total size of a tree', usage: 'granary du [options] [REMOTE...]',
    options: { human: humanOption }, positionalsMin: 0, positionalsMax: 1000, remoteArgs: 'all', notes: [globNote],
    examples: ['granary du /videos', 'granary du -h /videos', "granary du '/users/*'", 'granary du --json /'] },
  { name: 'admin', kind: 'client', summary: 'cluster administration: promote a shadow to master; access keys', usage: 'granary admin promote --shadow URL [--force] | admin keys create --name NAME [--read-only] [--prefix /PATH] [--admin] | admin keys list | admin keys revoke ID',
    options: {
      shadow: { type: 'string', placeholder: 'URL', help: 'the shadow to promote' },
      force: force('skip the in-sync check: promote a shadow that is behind (what it lacks is lost); the chunkserver vote is never skipped'),
      name: { type: 'string', placeholder: 'NAME', help: 'keys create: what the key is for (shown by keys list)' },
      'read-only': { type: 'boolean', help: 'keys create: the key may read, never write' },
      prefix: { type: 'string', placeholder: '/PATH', help: 'keys create: the key may touch only this folder and what is under it' },
      admin: { type: 'boolean', help: 'keys create: the key may also administer (keys, fsck, report, promote)' },
    },
    positionalsMin: 1, positionalsMax: 3, remoteArgs: 'none',
    notes: ['A planned hand-over: the master stops taking mutations, drains, and hands its lease to the shadow, which',
      'wins the chunkservers\' vote for a newer term at once (nothing acknowledged is lost). With the master gone, the',
      'shadow asks for votes once the master\'s lease has lapsed at the chunkservers (about 1 s). Shadows also do this',
      'by themselves unless started with --no-auto-promote. Chunkservers then refuse the old master\'s tokens.',
      'Refused (GRN_NOT_CAUGHT_UP, with the lag) unless the shadow has applied everything its master had, or --force.',
      'keys create prints the new key\'s id and secret (the only time the secret is shown; --json prints',
      '{"accessKeyId", "secretAccessKey", ...}, a credentials file). keys revoke takes effect at the next request.'],
    examples: ['granary admin promote --shadow http://127.0.0.1:9001', 'granary admin promote --shadow http://10.0.0.2:9001 --force',
      'granary admin keys create --name backups --prefix /backups --json > backups.credentials', 'granary admin keys list', 'granary admin keys revoke GKABCDEFGHIJKLMNOPQR'] },
  { name: 'fsck', kind: 'client', summary: 'list files whose chunks have fewer live replicas than wanted, or none', usage: 'granary fsck [options] [REMOTE]',
    options: {}, positionalsMin: 0, positionalsMax: 1, remoteArgs: 'all',
    notes: ['REMOTE defaults to /. Exits 0 when every chunk has its full replication, 1 (GRN_DATA_AT_RISK) when any chunk is under-replicated or missing.'],
    examples: ['granary fsck', 'granary fsck /videos --json | jq ".files[].path"'] },
  { name: 'report', kind: 'client', summary: 'show the chunkservers and cluster totals', usage: 'granary report [options]',
    options: {}, positionalsMin: 0, positionalsMax: 0, remoteArgs: 'none', examples: ['granary report', 'granary report --json | jq ".servers[] | select(.alive | not)"'] },
  { name: 'completion', kind: 'local', summary: 'print a shell completion script (bash, zsh or fish)', usage: 'granary completion bash|zsh|fish',
    options: {}, positionalsMin: 1, positionalsMax: 1, remoteArgs: 'none',
    notes: ['Generated from this command table: commands, their options, and local file names where a command takes them.'],
    examples: ['source <(granary completion bash)', 'granary completion zsh > "${fpath[1]}/_granary"', 'granary completion fish > ~/.config/fish/completions/granary.fish'] },
]

const serverCommandsInTable = commands.filter((c) => c.kind === 'server').map((c) => c.name)
assert(serverCommandsInTable.length === serverCommandNames.size && serverCommandsInTable.every((name) => serverCommandNames.has(name)),
  'server-commands.ts lists exactly the server commands of the command table')

export function isServerCommand (name: string | undefined): boolean {
  return commands.some((c) => c.name === name && c.kind === 'server')
}

export type OptionValues = Record<string, string | boolean | undefined>

export type ParsedCommandLine =
  | { kind: 'help', text: string }
  | { kind: 'version' }
  | { kind: 'server', spec: CommandSpec, argv: string[] }
  | { kind: 'client' | 'local', spec: CommandSpec, values: OptionValues, positionals: string[], client: ClientFlags }

export interface ClientFlags {
  masters: string[]
  deadlineMs: number | undefined
  json: boolean
  credentials: string | undefined   // --credentials FILE; else connect() looks where client/credentials.ts says
  caFile: string | undefined        // --ca-file FILE; else connect() reads $GRANARY_CA_FILE
  quiet: boolean
}

function usageError (message: string, command?: string): GranaryError {
  const hint = command === undefined ? "run 'granary --help' for the commands" : `see 'granary ${command} --help'`
  return new GranaryError('GRN_INVALID_ARGUMENT', [], undefined, `${message} (${hint})`)
}

// argv without node and the script. Throws GranaryError for anything a user typed wrong.
export function parseCommandLine (argv: readonly string[], env: NodeJS.ProcessEnv = {}): ParsedCommandLine {
  const [first, ...rest] = argv
  if (first === undefined) throw usageError('no command given')
  if (first === '--version' || first === '-V' || first === 'version') return { kind: 'version' }
  if (first === '--help' || first === '-h' || first === 'help') {
    const topic = first === 'help' ? rest[0] : undefined
    const spec = topic === undefined ? undefined : commands.find((c) => c.name === topic)
    if (topic !== undefined && spec === undefined) throw usageError(`unknown command '${topic}'`)
    return { kind: 'help', text: spec === undefined ? generalHelp() : commandHelp(spec) }
  }
  if (first.startsWith('-')) throw usageError(`put the command first: granary COMMAND [options], not '${first}'`)
  const spec = commands.find((c) => c.name === first)
  if (spec === undefined) throw usageError(`unknown command '${first}'`)
  const helpShort = !ownsShortH(spec)
  if ((rest.includes('--help') || (helpShort && rest.includes('-h'))) && spec.ownHelp !== true) return { kind: 'help', text: commandHelp(spec) }
  if (spec.kind === 'server') return { kind: 'server', spec, argv: rest }
  const { values, positionals: typed } = parseOptions(spec, rest)
  if (values.help === true) return { kind: 'help', text: commandHelp(spec) }   // e.g. `get -fh`
  if (typed.length < spec.positionalsMin) throw usageError(`${spec.name} needs ${describeCount(spec)}; got ${typed.length}`, spec.name)
  if (typed.length > spec.positionalsMax) throw usageError(`${spec.name} takes ${describeCount(spec)}; got ${typed.length}`, spec.name)
  const { positionals, locations } = spec.localWith !== undefined && values[spec.localWith] === true ? { positionals: typed, locations: [] } : checkRemoteArgs(spec, typed)
  checkCommandOptions(spec, values, positionals)
  const client = clientFlags(values, env, spec.name)
  try { client.masters = mastersFor(locations, client.masters) } catch (err) { throw usageError(reason(err), spec.name) }
  return { kind: spec.kind, spec, values, positionals, client }
}

// ls and du take -h for human sizes; elsewhere -h still means help.
function ownsShortH (spec: CommandSpec): boolean {
  return Object.values(spec.options).some((o) => o.short === 'h')
}

function parseOptions (spec: CommandSpec, args: string[]): { values: OptionValues, positionals: string[] } {
  const known: Record<string, OptionSpec> = { ...globalOptions, ...spec.options }
  if (!ownsShortH(spec)) known.help = { ...globalOptions.help as OptionSpec, short: 'h' }
  const options = Object.fromEntries(Object.entries(known).map(([name, o]) => [name, o.short === undefined ? { type: o.type } : { type: o.type, short: o.short }]))
  // strict: false plus tokens, so that every mistake gets our own clear sentence instead of Node's.
  const { tokens } = parseArgs({ args, options, allowPositionals: true, strict: false, tokens: true })
  const values: OptionValues = {}
  const positionals: string[] = []
  for (const token of tokens) {
    if (token.kind === 'positional') { positionals.push(token.value); continue }
    if (token.kind === 'option-terminator') continue
    const option = known[token.name]
    if (option === undefined) throw usageError(`unknown option '${token.rawName}' for ${spec.name}`, spec.name)
    if (option.type === 'string' && (token.value === undefined || token.value === '')) throw usageError(`option '${token.rawName}' needs a value`, spec.name)
    if (option.type === 'boolean' && token.value !== undefined) throw usageError(`option '${token.rawName}' takes no value`, spec.name)
    values[token.name] = option.type === 'boolean' ? true : token.value
  }
  return { values, positionals }
}

function describeCount (spec: CommandSpec): string {
  const { positionalsMin: min, positionalsMax: max } = spec
  const args = spec.usage.replace(/^granary \S+ (\[options\] )?/, '')
  if (min === max) return min === 0 ? 'no arguments' : `${min} argument${min === 1 ? '' : 's'} (${args})`
  return max >= 1000 ? `at least ${min} argument${min === 1 ? '' : 's'} (${args})` : `${min} to ${max} arguments (${args})`
}

// Granary-path arguments are checked (GRN_INVALID_PATH for '..', control bytes, over-long names) and, for
// commands whose arguments are all Granary paths, their gr:/granary:// prefix is stripped (the path stays as
// typed: a trailing / and glob characters carry meaning). cp and sync keep their arguments as typed.
function checkRemoteArgs (spec: CommandSpec, typed: string[]): { positionals: string[], locations: Location[] } {
  const locations: Location[] = []
  const positionals = typed.map((arg, i) => {
    const remote = spec.remoteArgs === 'all' || (Array.isArray(spec.remoteArgs) && spec.remoteArgs.includes(i)) ||
      (spec.remoteArgs === 'marked' && isMarkedRemote(arg))
    if (!remote) return arg
    let location: Location
    try { location = parseLocation(arg, true) } catch (err) {
      if ((err as { code?: unknown }).code === 'GRN_INVALID_PATH') throw err
      throw usageError(reason(err), spec.name)
    }
    locations.push(location)
    if (spec.remoteArgs === 'marked') return arg
    return pathAsTyped(arg)
  })
  return { positionals, locations }
}

// '/x', 'gr:/x/' or 'granary://h:9000/x/' → '/x' or '/x/'.
function pathAsTyped (arg: string): string {
  if (arg.startsWith('gr:')) return arg.slice(3)
  if (arg.startsWith('granary://')) return arg.slice('granary://'.length).replace(/^[^/]*/, '') || '/'
  return arg
}

function checkCommandOptions (spec: CommandSpec, values: OptionValues, positionals: string[]): void {
  if (values.replication !== undefined) parseReplication(values.replication as string)
  if (values['chunk-size'] !== undefined) parseSize(values['chunk-size'] as string)
  if (spec.name === 'admin' && positionals[0] === 'promote' && values.shadow === undefined) throw usageError('admin promote needs --shadow URL', 'admin')
  if (spec.name === 'admin' && positionals[0] === 'keys' && positionals[1] === 'create' && values.name === undefined) throw usageError('admin keys create needs --name NAME', 'admin')
  if (spec.name === 'completion' && !['bash', 'zsh', 'fish'].includes(positionals[0] ?? '')) throw usageError(`completion takes bash, zsh or fish, not '${positionals[0] ?? ''}'`, 'completion')
  if ((spec.name === 'cp' || spec.name === 'sync') && !positionals.some(isMarkedRemote)) {
    throw usageError(`${spec.name} needs at least one Granary path, written gr:/path or granary://HOST:PORT/path (a plain path is local)`, spec.name)
  }
}

function clientFlags (values: OptionValues, env: NodeJS.ProcessEnv, command: string): ClientFlags {
  const masterArg = (values.master as string | undefined) ?? env.GRANARY_MASTER ?? 'http://127.0.0.1:9000'
  let masters: string[]
  try { masters = parseMasterList(masterArg) } catch (err) { throw usageError(reason(err), command) }
  const deadline = values['deadline-ms'] as string | undefined
  if (deadline !== undefined && !/^[1-9]\d{0,9}$/.test(deadline)) throw usageError(`--deadline-ms must be a positive whole number of milliseconds, got '${deadline}'`, command)
  return { masters, deadlineMs: deadline === undefined ? undefined : Number(deadline), json: values.json === true, quiet: values.quiet === true, credentials: values.credentials as string | undefined, caFile: values['ca-file'] as string | undefined }
}

export function parseReplication (text: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN
  if (!(n >= limits.replicationMin && n <= limits.replicationMax)) {
    throw usageError(`--replication must be a whole number from ${limits.replicationMin} to ${limits.replicationMax}, got '${text}'`, 'put')
  }
  return n
}

const sizeUnits: Record<string, number> = { '': 1, b: 1, k: limits.KiB, kb: limits.KiB, kib: limits.KiB, m: limits.MiB, mb: limits.MiB, mib: limits.MiB, g: limits.GiB, gb: limits.GiB, gib: limits.GiB }

// '1048576', '1M', '64MiB', '512k' → bytes (binary units: chunk sizes are powers of two in practice).
export function parseSize (text: string): number {
  const match = /^(\d+)\s*([a-zA-Z]*)$/.exec(text.trim())
  const unit = sizeUnits[(match?.[2] ?? '?').toLowerCase()]
  if (match === null || unit === undefined) throw usageError(`--chunk-size must be bytes, optionally with K, M or G (e.g. 64M), got '${text}'`, 'put')
  const bytes = Number(match[1]) * unit
  try { checkChunkSize(bytes) } catch (err) { throw usageError(reason(err), 'put') }
  return bytes
}

// The sentence of a config check without the table's 'invalid argument: ' lead-in (the code already says it).
function reason (err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  return message.startsWith('invalid argument: ') ? message.slice('invalid argument: '.length) : message
}

function serverFlagNotes (defaults: Record<string, unknown>): string[] {
  return ['Flags (default in brackets):', ...Object.entries(defaults).map(([key, value]) => `  --${kebab(key)}${typeof value === 'boolean' ? '' : ' VALUE'}  [${String(value)}]`)]
}

// ---- help text --------------------------------------------------------------------------------------------
export function generalHelp (): string {
  const width = Math.max(...commands.map((c) => c.name.length))
  return [
    'granary: a distributed file store. Usage: granary COMMAND [options] [arguments]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Options for every client command:',
    ...optionLines(globalOptions),
    '',
    'Examples:',
    '  granary up                                 # a local cluster in ./granary-data',
    '  granary put ./photo.jpg /pictures/         # upload',
    '  granary ls -l /pictures',
    '  granary get /pictures/photo.jpg copy.jpg   # download',
    '  granary cp -r ./site gr:/www/              # cp in any direction; gr:/path names Granary',
    "  granary ls '/logs/**/*.gz'                 # remote globs: ls, cp, rm, get, du",
    '  granary sync ./site gr:/www --delete       # send only what differs (size and CRC32)',
    '  granary cat /notes.txt | less',
    '',
    'Granary paths: /path for commands that only take Granary paths; gr:/path or granary://HOST:PORT/path anywhere',
    '(cp and sync need the prefix, since a plain path is local there).',
    '',
    `Exit status (server commands too): ${exitStatuses.map(([code, meaning]) => `${code} ${meaning}`).join(', ')}.`,
    "Run 'granary COMMAND --help' for a command's options; 'granary --version' for the version.",
    '',
  ].join('\n')
}

export function commandHelp (spec: CommandSpec): string {
  const lines = [`${spec.usage}`, '', `${spec.summary[0]?.toUpperCase() ?? ''}${spec.summary.slice(1)}.`]
  if (spec.notes !== undefined) lines.push('', ...spec.notes)
  if (Object.keys(spec.options).length > 0) lines.push('', 'Options:', ...optionLines(spec.options))
  if (spec.kind === 'client') lines.push('', 'Common options:', ...optionLines(globalOptions))
  if (spec.kind === 'server' && spec.ownHelp !== true) lines.push('', 'Exit status: 0 stopped cleanly, 1 failed, 2 usage error (an unknown flag or a bad value).')
  lines.push('', 'Examples:', ...spec.examples.map((e) => `  ${e}`), '')
  return lines.join('\n')
}

function optionLines (options: Record<string, OptionSpec>): string[] {
  const labels = Object.entries(options).map(([name, o]) => {
    const flag = `${o.short === undefined ? '    ' : `-${o.short}, `}--${name}${o.placeholder === undefined ? '' : ` ${o.placeholder}`}`
    return [flag, o.help] as const
  })
  const width = Math.max(...labels.map(([flag]) => flag.length))
  return labels.map(([flag, help]) => `  ${flag.padEnd(width)}  ${help}`)
}
