// Headless Chromium driven over the Chrome DevTools Protocol on a pipe (--remote-debugging-pipe: JSON messages
// ended by a NUL byte, ours on fd 3, Chromium's on fd 4), for the status page test. Written by hand instead of
// puppeteer-core: the test needs five commands (attach, navigate, evaluate, screenshot, close), the pipe needs
// no WebSocket and no port, and puppeteer-core's current major wants Node 22 while this package runs on 20.
// Uses the system browser (Debian's `chromium`; CHROMIUM_PATH overrides); chromiumUnavailable() says why not.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable, Writable } from 'node:stream'

const commandTimeoutMs = 30_000            // one CDP command's answer
const messageBytesMax = 64 * 1024 * 1024   // a screenshot of a long page fits; anything bigger is a bug

export function chromiumPath (): string { return process.env.CHROMIUM_PATH ?? 'chromium' }

// Null when a headless Chromium can be started here, else why not.
export function chromiumUnavailable (): string | null {
  const run = spawnSync(chromiumPath(), ['--version'], { encoding: 'utf8', timeout: 20_000 })
  if (run.error !== undefined) return `${chromiumPath()}: ${run.error.message} (apt-get install -y chromium, or set CHROMIUM_PATH)`
  return run.status === 0 ? null : `${chromiumPath()} --version exited ${String(run.status)}: ${run.stderr}`
}

interface Pending { resolve: (result: Record<string, unknown>) => void, reject: (err: Error) => void, timer: NodeJS.Timeout }

export class Browser {
  readonly #child: ChildProcess
  readonly #profileDir: string
  readonly #out: Writable
  readonly #pending = new Map<number, Pending>()
  #nextId = 1
  #buffer = Buffer.alloc(0)
  #exited: Promise<void>

  private constructor (child: ChildProcess, profileDir: string) {
    this.#child = child
    this.#profileDir = profileDir
    this.#out = child.stdio[3] as Writable
    const input = child.stdio[4] as Readable
    input.on('data', (data: Buffer) => { this.#onData(data) })
    this.#exited = new Promise((resolve) => child.once('exit', () => {
      for (const pending of this.#pending.values()) { clearTimeout(pending.timer); pending.reject(new Error('chromium exited')) }
      this.#pending.clear()
      resolve()
    }))
  }

  static async launch (options: { width?: number, height?: number } = {}): Promise<Browser> {
    const profileDir = mkdtempSync(join(tmpdir(), 'granary-chromium-'))
    const child = spawn(chromiumPath(), [
      '--headless=new', '--remote-debugging-pipe', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
      '--no-default-browser-check', '--disable-extensions', '--disable-background-networking', '--hide-scrollbars', '--mute-audio',
      `--user-data-dir=${profileDir}`, `--window-size=${options.width ?? 1280},${options.height ?? 1024}`, 'about:blank'
    ], { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] })
    const browser = new Browser(child, profileDir)
    await browser.send('Browser.getVersion')
    return browser
  }

  #onData (data: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, data])
    if (this.#buffer.length > messageBytesMax) throw new Error(`a CDP message over ${messageBytesMax} bytes`)
    for (let end = this.#buffer.indexOf(0); end !== -1; end = this.#buffer.indexOf(0)) {
      const message = JSON.parse(this.#buffer.subarray(0, end).toString('utf8')) as { id?: number, result?: Record<string, unknown>, error?: { message: string } }
      this.#buffer = this.#buffer.subarray(end + 1)
      if (message.id === undefined) continue   // an event: nothing here waits on events
      const pending = this.#pending.get(message.id)
      if (pending === undefined) continue
      this.#pending.delete(message.id)
      clearTimeout(pending.timer)
      if (message.error !== undefined) pending.reject(new Error(`CDP: ${message.error.message}`))
      else pending.resolve(message.result ?? {})
    }
  }

  send (method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`CDP ${method}: no answer within ${commandTimeoutMs} ms`))
      }, commandTimeoutMs)
      this.#pending.set(id, { resolve, reject, timer })
      this.#out.write(JSON.stringify({ id, method, params, ...(sessionId === undefined ? {} : { sessionId }) }) + '\0')
    })
  }

  // A new tab, attached (flat session), at `url`.
  async open (url: string, options: { width?: number, height?: number } = {}): Promise<Page> {
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' }) as { targetId: string }
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true }) as { sessionId: string }
    const page = new Page(this, sessionId)
    await page.send('Page.enable')
    await page.send('Emulation.setDeviceMetricsOverride', { width: options.width ?? 1280, height: options.height ?? 1024, deviceScaleFactor: 1, mobile: false })
    await page.send('Page.navigate', { url })
    return page
  }

  async close (): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      await this.send('Browser.close').catch(() => {})
      const timer = setTimeout(() => { this.#child.kill('SIGKILL') }, 5_000)
      await this.#exited
      clearTimeout(timer)
    }
    rmSync(this.#profileDir, { recursive: true, force: true })
  }
}

export class Page {
  readonly #browser: Browser
  readonly #sessionId: string

  constructor (browser: Browser, sessionId: string) {
    this.#browser = browser
    this.#sessionId = sessionId
  }

  send (method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return this.#browser.send(method, params, this.#sessionId)
  }

  // Runs `expression` in the page (awaiting a promise) and returns its value as JSON; a thrown error rejects.
  async evaluate<T> (expression: string): Promise<T> {
    const reply = await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }) as {
      result: { value?: T }, exceptionDetails?: { text: string, exception?: { description?: string } }
    }
    if (reply.exceptionDetails !== undefined) throw new Error(`in the page: ${reply.exceptionDetails.exception?.description ?? reply.exceptionDetails.text}`)
    return reply.result.value as T
  }

  // A PNG of the whole page (beyond the viewport).
  async screenshot (): Promise<Buffer> {
    const { data } = await this.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true }) as { data: string }
    return Buffer.from(data, 'base64')
  }
}
