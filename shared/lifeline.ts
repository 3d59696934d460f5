// A spawned Granary process (shared/process.ts sets GRANARY_LIFELINE=1) exits when its parent's end of the
// stdin pipe closes: the supervisor or test run that started it has died, even by SIGKILL, and nobody is
// left to stop it. Without the variable (a process an operator started by hand, or under systemd) this does nothing.
export function watchLifeline (onParentGone: () => void): void {
  if (process.env.GRANARY_LIFELINE !== '1') return
  const stdin = process.stdin
  stdin.on('data', () => {})
  stdin.once('end', onParentGone)
  stdin.once('close', onParentGone)
  stdin.on('error', onParentGone)
  stdin.resume()
}
