// undici's Agent with its request() method, loaded without the rest of undici. undici's index requires its
// whole surface at once (fetch, WebSocket, cookies, the cache stores, mocks, proxy agents: 110 modules, ~110 ms
// of every `granary cat` process on this 2-core machine, measured with scripts/bench-gray.ts beside a loaded
// cluster); a client needs one Agent and its request(): 31 modules, ~45 ms. The Agent is the same class either
// way (the same files, one require cache), so an application that also loads undici itself shares it.
//
// undici's index adds request() and its siblings to Dispatcher.prototype (Object.assign(Dispatcher.prototype,
// api)); this does the same, with the same functions. undici has no "exports" map, so these paths are public to
// require; if a release moves them, the whole package is loaded instead (same behaviour, only slower), and
// test/unit/client/undici-agent.test.ts fails so the move is noticed.
import { createRequire } from 'node:module'
import type { Agent as UndiciAgent } from 'undici'

const requireFromHere = createRequire(import.meta.url)

export type AgentClass = typeof UndiciAgent

export const undiciAgentPaths = {
  agent: 'undici/lib/dispatcher/agent.js',
  dispatcher: 'undici/lib/dispatcher/dispatcher.js',
  api: 'undici/lib/api/index.js',
} as const

function loadAgent (): { Agent: AgentClass, lean: boolean } {
  try {
    const Agent = requireFromHere(undiciAgentPaths.agent) as AgentClass
    const Dispatcher = requireFromHere(undiciAgentPaths.dispatcher) as { prototype: object }
    const api = requireFromHere(undiciAgentPaths.api) as Record<string, unknown>
    if (typeof Agent !== 'function' || typeof api.request !== 'function' || !(Agent.prototype instanceof (Dispatcher as unknown as AgentClass))) throw new Error('undici moved its Agent')
    Object.assign(Dispatcher.prototype, api)
    return { Agent, lean: true }
  } catch {
    return { Agent: (requireFromHere('undici') as { Agent: AgentClass }).Agent, lean: false }
  }
}

const loaded = loadAgent()
export const Agent: AgentClass = loaded.Agent
export type Agent = UndiciAgent
// false: the deep paths were not found and the whole of undici was loaded (the test above says so).
export const agentLoadedLean: boolean = loaded.lean
