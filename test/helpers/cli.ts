// Runs the built `granary` CLI as a user would (a child process), collecting its exit code and output.
import { spawn } from 'node:child_process'
import { cliPath } from '../../shared/process.js'

export interface CliRun { code: number | null, stdout: Buffer, stderr: string }

export function granary (args: string[], env: NodeJS.ProcessEnv, stdin?: Buffer): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    let err = ''
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }))
    child.stdin.on('error', () => {})
    child.stdin.end(stdin)
  })
}
