/**
 * Everything a cloudflared run needs before its spawn, in order: the binary, a named tunnel's
 * token, the access gate, the empty config file, the edge protocol. One `AbortSignal` cancels it
 * (a stop, a start timeout): each step runs to its end (so what it made is known), then the signal
 * is looked at once, in `step()`. On abort or failure what was made is undone — the gate closed,
 * the config file removed — so a cancelled start leaves nothing behind. The run record needs the
 * PID and is written after the spawn (orphans.ts).
 */
import { promises as fs } from 'node:fs';
import { CloudflaredError, type EdgeProtocol } from '../cloudflared/locate';
import type { LogLevel } from '../cloudflared/log';
import type { AccessGate } from '../gate/accessGate';
import type { CloudflaredInfo, TunnelError, TunnelErrorCode } from '../model/tunnelState';
import { ensureStateDir, runConfigPath } from './orphans';

export interface RunPreparationSteps {
  /** Finds the binary and its version; throws `CloudflaredError` (its message names the fix). */
  findCloudflared(): Promise<CloudflaredInfo>;
  /**
   * A named tunnel, if one is set: its hostname and token (read when the step runs, never logged).
   * Settings are read when their step runs, so a change made during the preparation applies.
   */
  named(): { hostname: string; token: () => Promise<string | undefined> } | undefined;
  /** Starts the gate with its routes. Whatever it returns is closed again if the run is cancelled. */
  startGate(): Promise<AccessGate>;
  stateDir: string;
  runId: string;
  /** The protocol setting (`auto` when unset), read when its step runs. */
  protocol(): EdgeProtocol | undefined;
  /** When QUIC was last seen blocked here (protocolMemory), if lately. */
  quicBlockedAt(): Promise<number | undefined>;
  log(level: LogLevel, message: string): void;
}

export interface PreparedRun {
  cloudflared: CloudflaredInfo;
  /** A named tunnel's token and public URL. */
  named?: { token: string; url: string };
  gate: AccessGate;
  /** The empty config file cloudflared gets (`--config`), so no user config.yml hijacks the run. */
  configPath: string;
  protocol: EdgeProtocol;
  /** Set when the protocol is HTTP/2 because QUIC was remembered blocked. */
  http2Since?: number;
}

/** A step failed: `error` says why, in words a user acts on. Nothing the preparation made is left. */
export class RunPreparationError extends Error {
  constructor(readonly error: TunnelError) {
    super(error.message);
    this.name = 'RunPreparationError';
  }
}

/** The preparation was cancelled through its signal. Nothing it made is left. */
export class RunPreparationAborted extends Error {
  constructor() {
    super('The start was cancelled.');
    this.name = 'RunPreparationAborted';
  }
}

const fail = (code: TunnelErrorCode, message: string): RunPreparationError => new RunPreparationError({ code, message, lastLines: [] });

export async function prepareRun(steps: RunPreparationSteps, signal: AbortSignal): Promise<PreparedRun> {
  /** The one cancel check: after each step, whatever it did. */
  const step = async <T>(work: () => Promise<T>): Promise<T> => {
    if (signal.aborted) throw new RunPreparationAborted();
    const value = await work();
    if (signal.aborted) throw new RunPreparationAborted();
    return value;
  };
  /** What the steps made so far: undone on abort or failure. */
  const made: { gate?: AccessGate; configPath?: string } = {};
  try {
    const cloudflared = await step(async () => {
      try {
        return await steps.findCloudflared();
      } catch (err) {
        throw fail(err instanceof CloudflaredError ? err.code : 'not-found', err instanceof Error ? err.message : String(err));
      }
    });

    let named: PreparedRun['named'];
    const n = steps.named();
    if (n) {
      const hostname = n.hostname.trim().replace(/^https?:\/\//, '').replace(/\/.*$/, '');
      const token = await step(async () => {
        try {
          return (await n.token())?.trim();
        } catch (err) {
          steps.log('warn', `Could not read the tunnel token: ${(err as Error).message}`);
          return undefined;
        }
      });
      if (!token) {
        throw fail('no-token', 'The named tunnel has no token. Set it with "MCP Tunnel: Set Tunnel Token…" (CLI: the CLOUDFLARED_TUNNEL_TOKEN variable or --token-file), or switch back to a quick tunnel.');
      }
      if (!hostname) {
        throw fail('no-token', 'The named tunnel has no hostname. Set mcpTunnel.namedTunnel.hostname (CLI: --hostname) to the hostname you routed to the tunnel in Cloudflare.');
      }
      named = { token, url: `https://${hostname}` };
    }

    // The gate is in the path in every mode: an open share lets everything through, but a dead
    // host still means a dead gate, so a leftover cloudflared answers 502 and never the origin.
    await step(async () => {
      try {
        made.gate = await steps.startGate();
      } catch (err) {
        throw fail('spawn-failed', `The access gate could not start: ${(err as Error).message}`);
      }
    });

    const path = runConfigPath(steps.stateDir, steps.runId);
    await step(async () => {
      try {
        // 0700: run records and config files are nobody else's to read or plant.
        await ensureStateDir(steps.stateDir);
        made.configPath = path;
        await fs.writeFile(path, '{}\n', { mode: 0o600 });
      } catch (err) {
        throw fail('spawn-failed', `Could not write cloudflared's config file in ${steps.stateDir}: ${(err as Error).message}`);
      }
    });

    // Where QUIC failed before, a quick tunnel in `auto` would wait for it and never connect.
    let protocol: EdgeProtocol = steps.protocol() ?? 'auto';
    let http2Since: number | undefined;
    if (protocol === 'auto') {
      const since = await step(() => steps.quicBlockedAt().catch(() => undefined));
      if (since !== undefined) {
        protocol = 'http2';
        http2Since = since;
        steps.log('info', `QUIC (UDP 7844) failed on this network on ${new Date(since).toLocaleString()}: starting with HTTP/2. Remembered for 7 days, or until a QUIC connection works; set the protocol setting to choose yourself.`);
      }
    }
    if (!made.gate) throw new RunPreparationAborted();
    return { cloudflared, ...(named ? { named } : {}), gate: made.gate, configPath: path, protocol, ...(http2Since !== undefined ? { http2Since } : {}) };
  } catch (err) {
    // Undo what was made; the caller learns why it stopped.
    await Promise.all([made.gate?.close().catch(() => undefined), made.configPath ? fs.rm(made.configPath, { force: true }).catch(() => undefined) : undefined]);
    throw err instanceof RunPreparationError || err instanceof RunPreparationAborted ? err : fail('spawn-failed', `cloudflared could not be prepared: ${(err as Error).message}`);
  }
}
