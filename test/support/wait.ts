/** Waiting in tests: one `sleep` and one `waitFor` for the unit tests, the e2e rigs, the suite and the bench. */

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Polls `fn` every `everyMs` until it returns something other than `undefined` or `false`, and
 * returns that; after `ms` it throws "timed out waiting for <what>".
 */
export async function waitFor<T>(fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 5000, what = 'condition', everyMs = 25): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}
