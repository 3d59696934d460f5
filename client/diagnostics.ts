// The client logs nothing. What it would have logged is published on diagnostics_channel (undici's way), so an
// application subscribes to what it cares about: `diagnostics_channel.subscribe('granary:client:retry', fn)`.
import diagnosticsChannel from 'node:diagnostics_channel'

export const channelNames = {
  retry: 'granary:client:retry',                     // { what, attempt, delayMs, code, message }
  failover: 'granary:client:failover',               // { what, from, to, code }
  replicaError: 'granary:client:replica-error',      // { chunkHandle, url, offsetBytes, code, message }
  pipelineRetry: 'granary:client:pipeline-retry',    // { path, chunkIndex, excludeServerIds, code, message }
  abandonError: 'granary:client:abandon-error',      // { path, code, message }: best-effort abandon failed
  reserveError: 'granary:client:reserve-error',      // { code, message }: reserving small files failed; writes go the usual way a while
} as const

const channels = {
  retry: diagnosticsChannel.channel(channelNames.retry),
  failover: diagnosticsChannel.channel(channelNames.failover),
  replicaError: diagnosticsChannel.channel(channelNames.replicaError),
  pipelineRetry: diagnosticsChannel.channel(channelNames.pipelineRetry),
  abandonError: diagnosticsChannel.channel(channelNames.abandonError),
  reserveError: diagnosticsChannel.channel(channelNames.reserveError),
}

export type ChannelKey = keyof typeof channels

// Builds the message only when someone listens: publishing is free when nobody subscribed.
export function publish (key: ChannelKey, message: () => Record<string, unknown>): void {
  const channel = channels[key]
  if (channel.hasSubscribers) channel.publish(message())
}

export function describeError (err: unknown): { code: string, message: string } {
  const e = err as { code?: unknown, message?: unknown }
  return { code: typeof e?.code === 'string' ? e.code : 'UNKNOWN', message: typeof e?.message === 'string' ? e.message : String(err) }
}
