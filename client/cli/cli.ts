#!/usr/bin/env node
// The `granary` command. All logic is in main.ts (testable in-process); this file only binds it to the
// real process: its streams, Ctrl-C, and an exit code.
import { setFlagsFromString } from 'node:v8'
import { serverCommandNames } from './server-commands.js'
import { loadCliBundle } from './bundle.js'

const argv = process.argv.slice(2)
const server = serverCommandNames.has(argv[0] ?? '')

// A client command is a short process: V8 would compile undici's HTTP parser (WebAssembly) a second time, in the
// background, for speed the process never lives to use, and Node waits for that compile before it exits
// (80-150 ms of every `granary cat` here). Baseline compilation only; set before the first request compiles it,
// and before the bundle's code cache is read (V8 checks a cache against the flags it was made with).
if (!server) setFlagsFromString('--liftoff-only')

// A client command runs from the CLI bundle when it is fresh (bundle.ts); servers, and any command when the
// bundle is missing, stale or turned off (GRANARY_CLI_BUNDLE=off), from the ES modules. Servers are long-lived
// and load the master, chunkserver or gateway modules, which the bundle leaves out.
const { main, isBrokenPipe } = (server ? undefined : loadCliBundle(process.env, argv[0])) ?? await import('./main.js')

// `granary cat big | head`: once the reader is gone there is nothing left to say, and nothing to say it to.
process.stdout.on('error', (err) => { if (isBrokenPipe(err)) process.exit(0) })

// Ctrl-C aborts a client operation (a put abandons its file, a get removes its temp file); a second Ctrl-C
// exits at once. Servers (up, master, chunkserver) handle their own signals.
const controller = new AbortController()
if (!server) {
  process.once('SIGINT', () => {
    controller.abort()
    process.once('SIGINT', () => { process.exit(130) })
  })
}

const code = await main(argv, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env, signal: controller.signal })
if (controller.signal.aborted && code !== 0) process.exitCode = 130
else process.exitCode = code
