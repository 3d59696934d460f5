// Test kit (not a test file): hosts in network namespaces, so a test can cut a link, not just freeze a process.
// startCluster({ hosts: N, network: 'namespaces' }) puts each host in a namespace of its own, joined to a bridge
// in a "switch" namespace; the test process reaches them through one veth into that bridge. Addresses are
// 10.231.S.(i+2) in these namespaces only (S differs per cluster, so parallel test files do not meet); nothing
// is routed beyond them. Needs root and iproute2 (`ip netns`): networkNamespacesUnavailable() says why not, and
// tests that need it skip with that reason.
//
//   host.cut()            the host's link goes down: nothing reaches it, it reaches nothing (a pulled cable)
//   host.cut([a, b])      blackhole routes both ways between the host and hosts a, b only: a partial partition
//                         (say, the master cut from its chunkservers and shadow while clients still reach it)
//   host.heal()           everything cut is restored
//
// Names start `grn<pid>`, so a namespace left by a test process that died is recognised and removed by the next
// cluster that starts (its pid is gone).
import { execFileSync } from 'node:child_process'
import { GranaryError } from '../shared/errors.js'
import { isAlive } from '../shared/process.js'

const subnetFirst = 1
const subnetCount = 250
let clusterSeq = 0

export function networkNamespacesUnavailable (): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux'
  if (process.getuid?.() !== 0) return 'network namespaces need root'
  try {
    const probe = `grn${process.pid}probe`
    ip(['netns', 'add', probe])
    ip(['netns', 'del', probe])
    return null
  } catch (err) {
    return `ip netns does not work here: ${(err as Error).message.split('\n')[0] ?? ''}`
  }
}

function ip (args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 })
}

export interface NamespaceHost { namespace: string, address: string, switchPort: string }

export class NamespaceNetwork {
  readonly prefix: string
  readonly subnet: string
  readonly rootAddress: string
  readonly hosts: NamespaceHost[]
  readonly #switch: string
  readonly #rootLink: string
  readonly #cuts = new Map<string, Array<{ namespace: string, target: string } | { link: string }>>()
  #up = false

  constructor (hostCount: number) {
    const seq = clusterSeq++
    this.prefix = `grn${process.pid}c${seq}`
    this.subnet = `10.231.${freeSubnet(process.pid * 7 + seq)}`
    this.rootAddress = `${this.subnet}.1`
    this.#switch = `${this.prefix}sw`
    this.#rootLink = `g${process.pid % 100000}c${seq}`.slice(0, 15)   // interface names are at most 15 bytes
    this.hosts = Array.from({ length: hostCount }, (_, i) => ({ namespace: `${this.prefix}h${i}`, address: `${this.subnet}.${i + 2}`, switchPort: `p${i}` }))
  }

  // Builds the switch, the hosts and the test process's link. Throws GRN_UNAVAILABLE naming the step that failed.
  create (): void {
    removeOrphans()
    const step = (what: string, args: string[]): void => {
      try { ip(args) } catch (err) {
        throw new GranaryError('GRN_UNAVAILABLE', ['network namespaces', `${what} failed: ${(err as Error).message.split('\n')[0] ?? ''}`])
      }
    }
    this.#up = true
    step('the switch namespace', ['netns', 'add', this.#switch])
    step('the bridge', ['-n', this.#switch, 'link', 'add', 'br0', 'type', 'bridge'])
    step('the bridge up', ['-n', this.#switch, 'link', 'set', 'br0', 'up'])
    for (const host of this.hosts) {
      step(`host ${host.namespace}`, ['netns', 'add', host.namespace])
      step(`${host.namespace} lo`, ['-n', host.namespace, 'link', 'set', 'lo', 'up'])
      step(`${host.namespace} link`, ['-n', this.#switch, 'link', 'add', host.switchPort, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.namespace])
      step(`${host.namespace} port`, ['-n', this.#switch, 'link', 'set', host.switchPort, 'master', 'br0', 'up'])
      step(`${host.namespace} address`, ['-n', host.namespace, 'addr', 'add', `${host.address}/24`, 'dev', 'eth0'])
      step(`${host.namespace} eth0 up`, ['-n', host.namespace, 'link', 'set', 'eth0', 'up'])
    }
    step('the test process link', ['-n', this.#switch, 'link', 'add', 'root', 'type', 'veth', 'peer', 'name', this.#rootLink, 'netns', '1'])
    step('the test process port', ['-n', this.#switch, 'link', 'set', 'root', 'master', 'br0', 'up'])
    step('the test process address', ['addr', 'add', `${this.rootAddress}/24`, 'dev', this.#rootLink])
    step('the test process link up', ['link', 'set', this.#rootLink, 'up'])
  }

  host (index: number): NamespaceHost {
    const host = this.hosts[index]
    if (host === undefined) throw new GranaryError('GRN_INVALID_ARGUMENT', [`no host ${index} in this network`])
    return host
  }

  // Cuts host `index` off: from everyone (its switch port down), or from the hosts listed only (blackhole routes
  // in both namespaces, so neither side's packets leave).
  cut (index: number, from?: number[]): void {
    const host = this.host(index)
    const undo = this.#cuts.get(host.namespace) ?? []
    if (from === undefined) {
      ip(['-n', this.#switch, 'link', 'set', host.switchPort, 'down'])
      undo.push({ link: host.switchPort })
    } else {
      for (const other of from.map((i) => this.host(i))) {
        ip(['-n', host.namespace, 'route', 'add', 'blackhole', `${other.address}/32`])
        ip(['-n', other.namespace, 'route', 'add', 'blackhole', `${host.address}/32`])
        undo.push({ namespace: host.namespace, target: other.address }, { namespace: other.namespace, target: host.address })
      }
    }
    this.#cuts.set(host.namespace, undo)
  }

  heal (index: number): void {
    const host = this.host(index)
    for (const cut of this.#cuts.get(host.namespace) ?? []) {
      if ('link' in cut) ip(['-n', this.#switch, 'link', 'set', cut.link, 'up'])
      else ip(['-n', cut.namespace, 'route', 'del', 'blackhole', `${cut.target}/32`])
    }
    this.#cuts.delete(host.namespace)
  }

  // Removes every namespace of this network (their links go with them). Safe to call twice.
  destroy (): void {
    if (!this.#up) return
    this.#up = false
    for (const namespace of [this.#switch, ...this.hosts.map((h) => h.namespace)]) {
      try { ip(['netns', 'del', namespace]) } catch {}
    }
    try { ip(['link', 'del', this.#rootLink]) } catch {}   // normally gone with its peer already
  }
}

// A /24 under 10.231 that no link of this machine uses yet (another test process's cluster may hold one).
function freeSubnet (seed: number): number {
  let used = ''
  try { used = ip(['-4', 'addr', 'show']) } catch {}
  for (let step = 0; step < subnetCount; step++) {
    const s = subnetFirst + ((seed + step) % subnetCount)
    if (!used.includes(`10.231.${s}.`)) return s
  }
  throw new GranaryError('GRN_UNAVAILABLE', ['network namespaces', 'every 10.231.x subnet is in use'])
}

// Namespaces (and the root link) of test processes that are gone: removed before a new network is made.
function removeOrphans (): void {
  let names: string[]
  try { names = ip(['netns', 'list']).split('\n').map((line) => line.split(' ')[0] ?? '') } catch { return }
  for (const name of names) {
    const match = /^grn(\d+)c\d+/.exec(name)
    if (match === null || isAlive(Number(match[1]))) continue
    try { ip(['netns', 'del', name]) } catch {}
  }
}
