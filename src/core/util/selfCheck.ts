/**
 * The tunnel's own reachability checks, told apart from traffic by the gate of the same process:
 * they carry this header with a token drawn at start-up (unguessable, never logged, stripped before
 * the origin). Such a request still needs the share's secret; it is only not counted as a request,
 * not recorded by the inspector and does not reset an idle timer.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';

export const SELF_CHECK_HEADER = 'x-mcp-tunnel-self-check';
const TOKEN = randomBytes(24).toString('base64url');
const TOKEN_BYTES = Buffer.from(TOKEN);

/** The header the monitor's checks send. */
export function selfCheckHeaders(): Record<string, string> {
  return { [SELF_CHECK_HEADER]: TOKEN };
}

/** True when the request is this process's own check. */
export function isSelfCheck(headers: Record<string, string | string[] | undefined>): boolean {
  const v = headers[SELF_CHECK_HEADER];
  if (typeof v !== 'string' || v.length !== TOKEN.length) return false;
  return timingSafeEqual(Buffer.from(v), TOKEN_BYTES);
}
