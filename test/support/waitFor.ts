/**
 * Polls until `done` holds, for what timers, back-offs and other processes
 * lead to on their own schedule; the bound only ends a broken test.
 */
export async function waitFor(done: () => boolean, what = 'timed out waiting', intervalMs = 2): Promise<void> {
  for (const until = Date.now() + 10_000; !done(); ) {
    if (Date.now() > until) throw new Error(what);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
