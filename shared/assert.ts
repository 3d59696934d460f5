// Assertions catch Granary's own bugs (TigerStyle): a failed one is a programmer error, never bad input.
// Faults from outside (bad input, dead peers, flipped bits) are GranaryErrors instead (shared/errors.ts).
export class AssertionError extends Error {
  override name = 'AssertionError'
  readonly code = 'GRN_ASSERTION'
}

export function assert (condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message)
}
