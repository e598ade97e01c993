/**
 * The MCP face of a tunnel controller: three tools (start / stop / status) and four JSON
 * resources (`tunnel://status|url|config|metrics`) with `resources/subscribe` support.
 *
 * A factory apart from its transport: the in-editor HTTP host creates one server per session, the
 * CLI one over stdio, tests one over an in-memory pair; all close over the same controller.
 */
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  ErrorCode,
  McpError,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  type CallToolResult,
  type ReadResourceResult,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { Disposable } from '../core/util/events';
import type { ReachabilityView } from '../core/doctor/monitor';
import { validateTarget, MAX_TARGET_PATH_LENGTH } from '../core/model/target';
import { checkPolicy, describePolicy, type ToolPolicy } from '../core/policy/toolPolicy';
import {
  DEFAULT_TARGET,
  isTunnelBusyError,
  type TunnelBusyError,
  isLive,
  joinUrl,
  localUrlOf,
  snapshotOf,
  type TunnelApi,
  type TunnelSnapshot,
  type TunnelState,
  type TunnelStatus,
  type TunnelTarget,
} from '../core/model/tunnelState';

export type McpLogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface TunnelMcpServerOptions {
  /** Reported as `serverInfo.version`. */
  version: string;
  /** Non-loopback hosts the user allowed `start_tunnel` to expose; a function is read at each call. */
  allowedHosts?: readonly string[] | (() => readonly string[]);
  /** How the user allows another host on this host (for the refusal), e.g. "start mcp-tunnel with --allow-host H". */
  howToAllowHost?: string;
  /**
   * Asked before a tool call exposes a target that is not already live. Resolving `false` makes
   * `start_tunnel` return an error saying the user declined; not given = no prompt.
   */
  confirmStart?: (target: TunnelTarget) => Promise<boolean>;
  /**
   * What this host does when an agent asks for `access: "open"` (no share secret):
   * `ask` (the user decides through `confirmStart`), `allow` (the operator allowed it up front),
   * `refuse` (an error naming `openRefusedFix`). Default: `ask` with `confirmStart`, else `refuse`.
   * The tool's schema says which, so the agent is told what really happens.
   */
  openAccess?: 'ask' | 'allow' | 'refuse';
  /** The fix named when `open` is refused, e.g. "restart mcp-tunnel with --allow-open". */
  openRefusedFix?: string;
  /**
   * Registers `share_mcp_server`: shares a server from the user's mcp.json by name (a stdio
   * server runs on this machine, so the host decides: its setting, the user's consent naming the
   * command line, the check). Not given (the CLI): no such tool.
   */
  shareServer?: (name: string) => Promise<AgentShareResult>;
  /**
   * The reachability doctor's latest result per share (`reachable` in get_tunnel_status and
   * tunnel://status, for the first share). Not given: `reachable` is always null.
   */
  reachability?: ReachabilityView;
  log?: (level: McpLogLevel, message: string) => void;
}


/** What the host's `shareServer` answers: the new (or existing) share, or why not and what to do. */
export type AgentShareResult =
  | { ok: true; share_id: string; name: string; command: string | null; tools: number | null; mcp_url: string | null }
  | { ok: false; message: string };

/** `serverInfo.name`: VS Code lists the tools as `mcp_<name>_<tool>`. */
export const MCP_SERVER_NAME = 'mcp-tunnel';

export const TOOL_NAMES = ['start_tunnel', 'stop_tunnel', 'get_tunnel_status', 'list_shares'] as const;

export const RESOURCE_URIS = {
  status: 'tunnel://status',
  url: 'tunnel://url',
  config: 'tunnel://config',
  metrics: 'tunnel://metrics',
  shares: 'tunnel://shares',
  activity: 'tunnel://activity',
} as const;
/** Calls a tunnel://activity read returns at most (the newest). */
const ACTIVITY_LIMIT = 100;

/** `tunnel://shares/<id>/activity` → `<id>`. */
function shareActivityId(uri: string): string | undefined {
  const m = /^tunnel:\/\/shares\/([^/]+)\/activity$/.exec(uri);
  return m?.[1];
}

/** One share: `tunnel://shares/<id>` (a resource template). */
export const SHARE_URI_PREFIX = 'tunnel://shares/';
export type ResourceUri = (typeof RESOURCE_URIS)[keyof typeof RESOURCE_URIS];
const ALL_URIS: readonly ResourceUri[] = Object.values(RESOURCE_URIS);

// A Record literal must name every status exactly once, so this list cannot drift from TunnelStatus.
const STATUS_SET: Record<TunnelStatus, true> = { stopped: true, starting: true, connecting: true, active: true, reconnecting: true, stopping: true, failed: true, restarting: true };
const STATUSES = Object.keys(STATUS_SET) as [TunnelStatus, ...TunnelStatus[]];

const statusSchema = z.enum(STATUSES).describe('Tunnel state: stopped, starting, connecting (URL known, not reachable yet), active, reconnecting, stopping or failed.');
const nullableString = (description: string) => z.string().nullable().describe(description);

const startOutput = {
  status: statusSchema,
  url: nullableString('Public base URL (https://<random>.trycloudflare.com), null until assigned.'),
  mcp_url: nullableString('Public URL of the MCP endpoint: url + path, with the share secret in the path in secret mode. Give this to MCP clients; treat it like a password.'),
  local_url: nullableString('The local origin being exposed, e.g. http://localhost:8002.'),
  pid: z.number().int().nullable().describe('Process id of cloudflared.'),
  access: z
    .enum(['secret', 'open'])
    .nullable()
    .describe('secret: only requests carrying the share secret (already in mcp_url) reach the server; open: anyone with the URL. Null when no tunnel runs.'),
  share_id: z.string().nullable().describe('The share this target is on the tunnel (one tunnel carries several); stop it alone with stop_tunnel({share_id}).'),
  policy: z
    .object({ tools: z.array(z.string()).nullable(), read_only: z.boolean(), summary: z.string() })
    .nullable()
    .describe("The share's tool policy (which tools remote clients may see and call); null when every tool of the server is shared."),
  message: z.string().describe('What happened and what to do next.'),
};
const shareSchema = z.object({
  id: z.string(),
  name: z.string().describe('host:port/path of the local server.'),
  access: z.enum(['secret', 'open']),
  local_url: z.string(),
  local_mcp_url: z.string(),
  mcp_url: z.string().nullable().describe('Public MCP URL of this share (carries its secret in secret mode; treat it like a password).'),
  created_at: z.string(),
  requests: z.number().int(),
  errors: z.number().int(),
  last_request_at: z.string().nullable(),
  reachable: z.boolean().nullable().describe('Whether the local server answers; null until checked.'),
  problem: z.string().nullable().describe('Why it does not, and what to do.'),
  policy: startOutput.policy,
});
const listSharesOutput = {
  status: z.string().describe('The tunnel status (see get_tunnel_status).'),
  url: z.string().nullable().describe('The tunnel\'s public base URL.'),
  shares: z.array(shareSchema).describe('Every share on the tunnel, the first being the one get_tunnel_status describes.'),
};
const stopOutput = {
  status: statusSchema,
  message: z.string().describe('What happened.'),
};
const shareServerInput = {
  name: z.unknown().meta({ type: 'string', description: "The server's name in the user's mcp.json (workspace .vscode/mcp.json, user mcp.json, or the mcp setting)." }),
};
const shareServerOutput = {
  share_id: z.string().describe('The share, for stop_tunnel({share_id}) and list_shares.'),
  name: z.string(),
  command: z.string().nullable().describe('What runs on the user\'s machine (stdio servers), one process per client session.'),
  tools: z.number().int().nullable().describe('Tools the server listed when it was checked.'),
  mcp_url: z.string().nullable().describe('Public MCP URL of this share (carries its secret; treat it like a password).'),
};
const stopInput = {
  share_id: z
    .unknown()
    .meta({ type: 'string', description: 'Stop only this share (from start_tunnel or list_shares); the others go on. Omit it to stop the whole tunnel and every share.' })
    .optional(),
};
const statusOutput = {
  status: statusSchema,
  active: z.boolean().describe('True when the public URL works.'),
  url: startOutput.url,
  mcp_url: startOutput.mcp_url,
  local_url: startOutput.local_url,
  pid: startOutput.pid,
  access: startOutput.access,
  uptime_seconds: z.number().int().min(0).describe('Seconds since the first edge connection; 0 when not active.'),
  started_at: nullableString('When cloudflared was started (ISO 8601).'),
  reachable: z
    .object({
      state: z.string().describe('ok, checking, waiting-dns, dns, not-registered, rate-limited, edge-error, host-rejected, accept-refused, nothing-listening, unauthorized, not-mcp, server-error, sse-buffered or unreachable.'),
      ok: z.boolean(),
      message: z.string(),
      fix: z.string().nullable(),
      status: z.number().int().nullable(),
      rtt_ms: z.number().nullable(),
      first_event_ms: z.number().nullable(),
      checked_at: z.string(),
    })
    .nullable()
    .describe('Whether a client on the internet gets an MCP answer through the public URL, as last checked from this machine (the first share); null before a check.'),
  last_error: z
    .object({
      code: z.string(),
      message: z.string(),
      exit_code: z.number().int().nullable(),
      signal: z.string().nullable(),
    })
    .nullable()
    .describe('Why the last run failed, if it did.'),
};

type StartOutput = { [K in keyof typeof startOutput]: z.infer<(typeof startOutput)[K]> };
type StopOutput = { [K in keyof typeof stopOutput]: z.infer<(typeof stopOutput)[K]> };
type ListSharesOutput = { [K in keyof typeof listSharesOutput]: z.infer<(typeof listSharesOutput)[K]> };
type StatusOutput = { [K in keyof typeof statusOutput]: z.infer<(typeof statusOutput)[K]> };

// Input schemas are lenient at runtime (any JSON value) but advertise the real contract: bad
// values then reach validateTarget, whose isError result says what is wrong and what is allowed,
// instead of a generic schema-validation error.
const startInput = (openAccess: 'ask' | 'allow' | 'refuse') => ({
  port: z
    .unknown()
    .meta({ type: 'integer', minimum: 1, maximum: 65535, default: DEFAULT_TARGET.port, description: `TCP port of the local server to expose (1–65535). Default ${DEFAULT_TARGET.port}.` })
    .optional(),
  host: z
    .unknown()
    .meta({
      type: 'string',
      default: DEFAULT_TARGET.host,
      description: `Host of the local server. Must be loopback (localhost, 127.0.0.1, ::1) unless the user allowed another host. Default "${DEFAULT_TARGET.host}".`,
    })
    .optional(),
  path: z
    .unknown()
    .meta({
      type: 'string',
      default: DEFAULT_TARGET.path,
      maxLength: MAX_TARGET_PATH_LENGTH,
      description: `Path of the MCP endpoint on the local server, starting with "/". Default "${DEFAULT_TARGET.path}".`,
    })
    .optional(),
  access: z
    .unknown()
    .meta({
      type: 'string',
      enum: ['secret', 'open'],
      description:
        'Who gets through the public URL. "secret" (the user\'s default unless they configured otherwise): only requests carrying the share secret, which mcp_url includes, reach the server. ' +
        `"open": anyone with the URL; ${OPEN_ACCESS_TEXT[openAccess]} Omit it to use the user's setting.`,
    })
    .optional(),
  tools: z
    .unknown()
    .meta({
      type: 'array',
      items: { type: 'string' },
      description:
        'Share only these tools of the server (by name): remote clients see just them in tools/list, and a call of any other is refused by the tunnel without reaching the server. Omit it to share every tool.',
    })
    .optional(),
  read_only: z
    .unknown()
    .meta({ type: 'boolean', description: 'Share only the tools the server marks read-only (annotations.readOnlyHint: true). Combines with tools. Default false.' })
    .optional(),
});

/** What the schema tells an agent about `access: "open"` on this host: what really happens. */
const OPEN_ACCESS_TEXT = {
  ask: 'the user is asked first.',
  allow: 'allowed here without asking (the user started this server allowing it).',
  refuse: 'refused by this server unless the user started it allowing open tunnels.',
} as const;

/**
 * Build an MCP server over `controller`. Connect it to one transport; closing it (or its
 * transport) drops its resource subscriptions and its listeners on the controller.
 */
export function createTunnelMcpServer(controller: TunnelApi, options: TunnelMcpServerOptions): McpServer {
  const log = (level: McpLogLevel, message: string): void => options.log?.(level, message);
  const allowedHosts = (): readonly string[] => (typeof options.allowedHosts === 'function' ? options.allowedHosts() : (options.allowedHosts ?? []));
  const openAccess = options.openAccess ?? (options.confirmStart ? 'ask' : 'refuse');
  /** tunnel://activity (or one share's): the newest calls, without their bodies. */
  const activityView = (shareId?: string): Record<string, unknown> => {
    const all = controller.activity(shareId);
    const calls = all.slice(-ACTIVITY_LIMIT).map(({ request_body: _q, response_body: _r, ...rest }) => ({ ...rest, at: new Date(rest.at).toISOString() }));
    return { ...(shareId ? { share_id: shareId } : {}), recorded: all.length, calls };
  };

  /** The doctor's word on the first share, without the host (the URL says it). */
  const reachableOf = (): StatusOutput['reachable'] => {
    const first = controller.listShares()[0];
    const r = first ? options.reachability?.result(first.id) : undefined;
    if (!r) return null;
    return { state: r.state, ok: r.ok, message: r.message, fix: r.fix, status: r.status, rtt_ms: r.rtt_ms, first_event_ms: r.first_event_ms, checked_at: r.checked_at };
  };

  /** What list_shares returns and tunnel://shares holds. */
  const sharesView = (): ListSharesOutput => {
    const s = controller.snapshot();
    return { status: s.status, url: s.url, shares: controller.listShares() };
  };
  const server = new McpServer(
    { name: MCP_SERVER_NAME, title: 'MCP Tunnel', version: options.version },
    {
      capabilities: { resources: { subscribe: true, listChanged: true } },
      instructions:
        'Publishes a local MCP server (or any local HTTP service) on the internet through a Cloudflare quick tunnel. ' +
        'start_tunnel returns a public mcp_url (by default carrying a share secret that the tunnel requires) that works while the tunnel runs; stop_tunnel ends it. ' +
        'Read tunnel://status or call get_tunnel_status to see the current state.',
    },
  );

  server.registerTool(
    'start_tunnel',
    {
      title: 'Start tunnel',
      description:
        'Expose a local HTTP server (by default the MCP server at http://localhost:8002/mcp) on a public https://*.trycloudflare.com URL ' +
        'and wait until it is reachable. Returns the public mcp_url to hand to MCP clients. In secret mode (the default) mcp_url carries a share secret ' +
        'and requests without it are refused; in open mode anyone with the URL can reach the local server. ' +
        'One tunnel carries several shares: a different target while a tunnel runs becomes another share on the same public host, with its own secret (share_id). ' +
        'If the same target is already shared, returns it. ' +
        'Only loopback hosts are allowed unless the user configured others.',
      inputSchema: startInput(openAccess),
      outputSchema: startOutput,
      annotations: { title: 'Start tunnel', readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    },
    async (args): Promise<CallToolResult> => {
      const checked = validateTarget(args, { allowedHosts: allowedHosts(), ...(options.howToAllowHost ? { howToAllow: options.howToAllowHost } : {}) });
      if (!checked.ok) return errorResult(checked.message);
      const target = checked.target;
      let policy: ToolPolicy | undefined;
      try {
        policy = checkPolicy({ tools: args.tools, readOnly: args.read_only });
      } catch (err) {
        return errorResult(`Invalid tool policy: ${errorText(err)} Pass tools as a list of tool names (e.g. ["echo"]) and read_only as true or false, or omit them.`);
      }
      const where = joinUrl(localUrlOf(target), target.path);
      if (target.access === 'open' && openAccess === 'refuse') {
        return errorResult(
          `Refused: this MCP server does not open tunnels without the share secret (access "open" was asked for ${where}). ` +
            `Start it with access "secret" (or omit access); to allow open tunnels, the user must ${options.openRefusedFix ?? 'allow them where this server is configured'}.`,
        );
      }

      const current = controller.state;
      const alreadyLive = isLive(current) && controller.findShare(target) !== undefined;
      // The same server in the other access mode is a conflict, not a new share: say so before asking anyone.
      const here = joinUrl(localUrlOf(target), target.path);
      const conflict = isLive(current) && target.access ? controller.listShares().find((x) => x.local_mcp_url === here && x.access !== target.access) : undefined;
      if (conflict) {
        return errorResult(
          `A tunnel to ${where} is already running in ${conflict.access} mode; to run it in ${target.access ?? 'another'} mode, stop that share first (stop_tunnel with share_id "${conflict.id}"), then start_tunnel again.`,
        );
      }
      if (!alreadyLive && options.confirmStart) {
        let consent: boolean;
        try {
          consent = await options.confirmStart(target);
        } catch (err) {
          return errorResult(`Could not ask the user to confirm exposing ${where}: ${errorText(err)}`);
        }
        if (!consent) {
          return errorResult(`The user declined to expose ${where} through a public tunnel. Do not retry unless the user asks for it.`);
        }
      }

      const before = controller.findShare(target);
      let state: TunnelState;
      try {
        state = await controller.start(target, policy ? { policy } : {});
      } catch (err) {
        if (isTunnelBusyError(err)) return errorResult(busyMessage(err));
        log('error', `start_tunnel ${where} failed: ${errorText(err)}`);
        return errorResult(`Could not start a tunnel to ${where}: ${errorText(err)}`);
      }
      const tunnel = snapshotOf(state, Date.now(), controller.lastError);
      // The share of this target, not the tunnel's primary one: its own URL, secret and mode.
      const share = controller.findShare(target);
      const snap: TunnelSnapshot = share ? { ...tunnel, mcp_url: share.mcp_url, local_url: share.local_url, access: share.access } : tunnel;
      log('info', `start_tunnel ${where} -> ${snap.status}${snap.url ? ` ${snap.url}` : ''}`);
      const out: StartOutput = {
        status: snap.status,
        url: snap.url,
        mcp_url: snap.mcp_url,
        local_url: snap.local_url ?? localUrlOf(target),
        pid: snap.pid,
        access: snap.access,
        share_id: share?.id ?? null,
        policy: share?.policy ?? null,
        message:
          startMessage(snap, where) +
          (share?.problem ? ` Note: ${share.problem}` : '') +
          // An existing share keeps its policy: an agent cannot change what the user shared.
          (before && policy && describePolicy(policy) !== before.policy?.summary
            ? ` This server was already shared ${before.policy ? `with the policy "${before.policy.summary}"` : 'with every tool'}; that is unchanged (the user changes it in VS Code: MCP Tunnel: Choose Shared Tools…).`
            : ''),
      };
      return structuredResult(out, !(snap.status === 'active' || snap.status === 'connecting' || snap.status === 'reconnecting'));
    },
  );

  server.registerTool(
    'stop_tunnel',
    {
      title: 'Stop tunnel',
      description:
        'Stop the running tunnel and every share on it: its public URL stops working for good (a later start gets a new random URL). ' +
        'With share_id, stop only that share (its URL and secret stop working; the others go on; the last one stops the tunnel). ' +
        'Stopping when nothing runs is not an error.',
      inputSchema: stopInput,
      outputSchema: stopOutput,
      annotations: { title: 'Stop tunnel', readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    async (args): Promise<CallToolResult> => {
      const shareId = args.share_id;
      if (shareId !== undefined && shareId !== null) {
        if (typeof shareId !== 'string') return errorResult(`Invalid share_id: it must be a string from start_tunnel or list_shares.`);
        const share = controller.listShares().find((x) => x.id === shareId);
        if (!share) {
          const ids = controller.listShares().map((x) => x.id);
          return errorResult(`No share ${JSON.stringify(shareId)} on the tunnel${ids.length ? ` (shares: ${ids.join(', ')})` : ' (none is running)'}. Call list_shares.`);
        }
        await controller.stopShare(shareId);
        const after = controller.state;
        log('info', `stop_tunnel ${shareId} -> ${after.status}`);
        return structuredResult<StopOutput>({
          status: after.status,
          message: after.status === 'stopped' ? `Share ${share.name} stopped; it was the last one, so the tunnel stopped too.` : `Share ${share.name} stopped; its URL no longer works. The other shares go on.`,
        });
      }
      const before = controller.state;
      // A tunnel with an automatic restart due is about to run again: stopping cancels that.
      const restartDue = before.status === 'restarting';
      if (before.status === 'stopped' || before.status === 'failed') {
        return structuredResult<StopOutput>({ status: before.status, message: 'No tunnel was running; nothing to stop.' });
      }
      const url = 'url' in before ? before.url : undefined;
      try {
        await controller.stop();
      } catch (err) {
        log('error', `stop_tunnel failed: ${errorText(err)}`);
        return errorResult(`Could not stop the tunnel: ${errorText(err)}`);
      }
      const after = controller.state;
      log('info', `stop_tunnel -> ${after.status}`);
      return structuredResult<StopOutput>({
        status: after.status,
        message:
          after.status === 'stopped'
            ? restartDue
              ? 'The automatic restart of the failed tunnel was cancelled; it stays stopped.'
              : `Tunnel stopped${url ? `; ${url} no longer works` : ''}.`
            : `Stop requested; the tunnel is now ${after.status}.`,
      });
    },
  );

  const shareServer = options.shareServer;
  if (shareServer) {
    server.registerTool(
      'share_mcp_server',
      {
        title: 'Share an MCP server from mcp.json',
        description:
          "Share one of the user's configured MCP servers (by its name in mcp.json) on the tunnel, with its own secret link. " +
          'A stdio server runs on the user\'s machine through the built-in bridge, so this is off unless the user turned on the machine setting ' +
          'mcpTunnel.mcp.allowStdioShares, and each share then waits for the user to confirm it in a dialog naming the command line. ' +
          'An http server on this machine is shared like start_tunnel. Returns the share and its mcp_url.',
        inputSchema: shareServerInput,
        outputSchema: shareServerOutput,
        annotations: { title: 'Share an MCP server', readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
      },
      async (args): Promise<CallToolResult> => {
        if (typeof args.name !== 'string' || args.name.trim() === '') return errorResult("Invalid name: give the server's name as written in mcp.json.");
        let r: AgentShareResult;
        try {
          r = await shareServer(args.name);
        } catch (err) {
          return errorResult(`Could not share ${JSON.stringify(args.name)}: ${errorText(err)}`);
        }
        log('info', `share_mcp_server ${JSON.stringify(args.name)} -> ${r.ok ? r.share_id : 'refused'}`);
        if (!r.ok) return errorResult(r.message);
        const { ok: _ok, ...out } = r;
        return structuredResult(out);
      },
    );
  }

  server.registerTool(
    'get_tunnel_status',
    {
      title: 'Get tunnel status',
      description:
        'Report the tunnel: status, whether the public URL works (active), whether a client on the internet gets an answer (reachable, with the cause and fix when not), ' +
        'the public url and mcp_url, the local origin, cloudflared pid, uptime and the last error. Changes nothing.',
      inputSchema: {},
      outputSchema: statusOutput,
      annotations: { title: 'Get tunnel status', readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    (): CallToolResult => {
      const s = controller.snapshot();
      return structuredResult<StatusOutput>({
        status: s.status,
        active: s.active,
        url: s.url,
        mcp_url: s.mcp_url,
        local_url: s.local_url,
        pid: s.pid,
        access: s.access,
        uptime_seconds: s.uptime_seconds,
        started_at: s.started_at,
        reachable: reachableOf(),
        last_error: s.last_error,
      });
    },
  );

  server.registerTool(
    'list_shares',
    {
      title: 'List shares',
      description:
        'List the shares the tunnel carries: for each, its id, local server, access mode, public mcp_url (with its secret), ' +
        'request and error counts, and whether its local server answers. Changes nothing.',
      inputSchema: {},
      outputSchema: listSharesOutput,
      annotations: { title: 'List shares', readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    (): CallToolResult => structuredResult<ListSharesOutput>(sharesView()),
  );

  const readers: Record<ResourceUri, () => Record<string, unknown>> = {
    [RESOURCE_URIS.status]: () => ({ ...controller.snapshot(), reachable: reachableOf() }),
    [RESOURCE_URIS.url]: () => {
      const s = controller.snapshot();
      return { available: s.active && s.url !== null, url: s.url, mcp_url: s.mcp_url };
    },
    [RESOURCE_URIS.config]: () => {
      const state = controller.state;
      const s = controller.snapshot();
      const target = 'target' in state ? state.target : undefined;
      return {
        status: s.status,
        pid: s.pid,
        url: s.url,
        mcp_url: s.mcp_url,
        local_url: s.local_url,
        local_mcp_url: s.local_mcp_url,
        target: target ? { host: target.host, port: target.port, path: target.path, access: target.access ?? null } : null,
        access: s.access,
        default_target: { ...DEFAULT_TARGET },
        allowed_hosts: [...allowedHosts()],
        cloudflared_version: controller.cloudflared?.version ?? null,
        cloudflared_path: controller.cloudflared?.path ?? null,
        metrics_address: s.metrics_address,
        started_at: s.started_at,
        server_version: options.version,
      };
    },
    [RESOURCE_URIS.shares]: () => sharesView(),
    [RESOURCE_URIS.activity]: () => activityView(),
    [RESOURCE_URIS.metrics]: () => {
      const s = controller.snapshot();
      const m = controller.metrics;
      return {
        status: s.status,
        active: s.active,
        uptime_seconds: s.uptime_seconds,
        total_requests: m?.totalRequests ?? 0,
        request_errors: m?.requestErrors ?? 0,
        concurrent_requests: m?.concurrentRequests ?? 0,
        responses_by_code: { ...(m?.responsesByCode ?? {}) },
        edge_locations: m && m.edgeLocations.length > 0 ? [...m.edgeLocations] : s.edge_locations,
        ready_connections: m?.readyConnections ?? 0,
        ha_connections: m?.haConnections ?? null,
        read_at: m ? new Date(m.readAt).toISOString() : null,
      };
    },
  };

  const resourceMeta: Record<ResourceUri, { name: string; title: string; description: string }> = {
    [RESOURCE_URIS.status]: { name: 'status', title: 'Tunnel status', description: 'The tunnel state as JSON: status, active, public and local URLs, pid, uptime, edge locations, last error.' },
    [RESOURCE_URIS.url]: { name: 'url', title: 'Tunnel URL', description: 'The public URL as JSON: { available, url, mcp_url }. available is true once the URL works.' },
    [RESOURCE_URIS.config]: { name: 'config', title: 'Tunnel configuration', description: 'How the tunnel runs as JSON: target, local URL, cloudflared version and path, metrics address, allowed hosts.' },
    [RESOURCE_URIS.metrics]: { name: 'metrics', title: 'Tunnel metrics', description: 'Traffic through the tunnel as JSON: requests, errors, concurrent requests, responses by status code, edge locations.' },
    [RESOURCE_URIS.shares]: { name: 'shares', title: 'Shares', description: 'Every share on the tunnel as JSON: id, local server, access, public mcp_url (with its secret), requests, errors, reachable. tunnel://shares/{id} is one of them.' },
    [RESOURCE_URIS.activity]: {
      name: 'activity',
      title: 'Activity (inspector)',
      description: `Who called what through the tunnel, newest last (at most ${ACTIVITY_LIMIT}): time, share, client (from its initialize), country, method, tool / resource / prompt, status, JSON-RPC error code, duration. Bodies are left out (secrets are redacted anyway). tunnel://shares/{id}/activity is one share's.`,
    },
  };

  for (const uri of ALL_URIS) {
    const meta = resourceMeta[uri];
    server.registerResource(meta.name, uri, { title: meta.title, description: meta.description, mimeType: 'application/json' }, async (): Promise<ReadResourceResult> => {
      // Metrics are polled only while watched: a reader that does not subscribe gets a fresh read.
      if ((uri === RESOURCE_URIS.metrics || uri === RESOURCE_URIS.shares) && !metricsWatch) await controller.refreshMetrics();
      return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify(readers[uri](), null, 2) }] };
    });
  }
  const shareById = (id: string) => controller.listShares().find((x) => x.id === id);
  server.registerResource(
    'share-activity',
    new ResourceTemplate(`${SHARE_URI_PREFIX}{id}/activity`, {
      list: () => ({ resources: controller.listShares().map((x) => ({ uri: `${SHARE_URI_PREFIX}${x.id}/activity`, name: `activity of ${x.name}`, mimeType: 'application/json' })) }),
    }),
    { title: "One share's activity", description: 'The calls through one share (see tunnel://activity).', mimeType: 'application/json' },
    (uri, variables): ReadResourceResult => {
      const id = String(variables['id'] ?? '');
      if (!shareById(id)) throw new McpError(ErrorCode.InvalidParams, `No share ${JSON.stringify(id)} on the tunnel; read tunnel://shares for the list.`);
      return { contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify(activityView(id), null, 2) }] };
    },
  );
  server.registerResource(
    'share',
    new ResourceTemplate(`${SHARE_URI_PREFIX}{id}`, {
      list: () => ({ resources: controller.listShares().map((x) => ({ uri: `${SHARE_URI_PREFIX}${x.id}`, name: `share ${x.name}`, mimeType: 'application/json' })) }),
    }),
    { title: 'One share', description: 'One share of the tunnel as JSON (see tunnel://shares).', mimeType: 'application/json' },
    (uri, variables): ReadResourceResult => {
      const id = String(variables['id'] ?? '');
      const share = shareById(id);
      if (!share) throw new McpError(ErrorCode.InvalidParams, `No share ${JSON.stringify(id)} on the tunnel; read tunnel://shares for the list.`);
      return { contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify(share, null, 2) }] };
    },
  );

  // --- resources/subscribe (McpServer does not handle it) -------------------------------------
  // Each subscribed URI remembers a fingerprint of what the client last saw, without the fields
  // that change by the clock alone; an event sends `resources/updated` only when it changed.
  const subscribed = new Map<string, string>();
  let listeners: Disposable[] | undefined;
  /** Held while tunnel://metrics is subscribed: the controller polls only while someone watches. */
  let metricsWatch: Disposable | undefined;
  const syncMetricsWatch = (): void => {
    if (subscribed.has(RESOURCE_URIS.metrics)) metricsWatch ??= controller.watchMetrics();
    else {
      metricsWatch?.dispose();
      metricsWatch = undefined;
    }
  };

  const fingerprint = (uri: string): string => {
    const activityOf = shareActivityId(uri);
    const value =
      activityOf !== undefined ? activityView(activityOf) : uri.startsWith(SHARE_URI_PREFIX) ? (shareById(uri.slice(SHARE_URI_PREFIX.length)) ?? { gone: true }) : readers[uri as ResourceUri]();
    const { uptime_seconds: _uptime, read_at: _readAt, ...rest } = value as Record<string, unknown>;
    return JSON.stringify(rest);
  };
  const shareUris = (): string[] => [...subscribed.keys()].filter((u) => u.startsWith(SHARE_URI_PREFIX));
  const notify = (uris: readonly string[]): void => {
    for (const uri of uris) {
      const last = subscribed.get(uri);
      if (last === undefined) continue;
      const next = fingerprint(uri);
      if (next === last) continue;
      subscribed.set(uri, next);
      server.server.sendResourceUpdated({ uri }).catch((err: unknown) => log('debug', `resources/updated ${uri} not sent: ${errorText(err)}`));
    }
  };
  const attach = (): void => {
    listeners ??= [
      controller.onDidChangeState(() => notify([...ALL_URIS, ...shareUris()])),
      controller.onDidChangeMetrics(() => notify([RESOURCE_URIS.metrics, RESOURCE_URIS.shares, ...shareUris()])),
      controller.onDidChangeShares(() => notify([...ALL_URIS, ...shareUris()])),
      ...(options.reachability ? [options.reachability.onDidChange(() => notify([RESOURCE_URIS.status]))] : []),
      // Calls can come by the thousand: at most one round of updates per 250 ms.
      controller.onDidRecordActivity(() => {
        activityTimer ??= setTimeout(() => {
          activityTimer = undefined;
          notify([RESOURCE_URIS.activity, ...shareUris().filter((u) => shareActivityId(u) !== undefined)]);
        }, 250);
      }),
      { dispose: () => activityTimer && clearTimeout(activityTimer) },
    ];
  };
  let activityTimer: NodeJS.Timeout | undefined;
  const detach = (): void => {
    for (const d of listeners ?? []) d.dispose();
    listeners = undefined;
  };
  const knownUri = (raw: string): string => {
    const uri = raw.replace(/\/+$/, '');
    if ((ALL_URIS as readonly string[]).includes(uri)) return uri;
    const activityOf = shareActivityId(uri);
    if (activityOf !== undefined && shareById(activityOf)) return uri;
    if (uri.startsWith(SHARE_URI_PREFIX) && shareById(uri.slice(SHARE_URI_PREFIX.length))) return uri;
    throw new McpError(ErrorCode.InvalidParams, `Unknown resource ${JSON.stringify(raw)}; subscribable resources: ${ALL_URIS.join(', ')}, ${SHARE_URI_PREFIX}<id> and ${SHARE_URI_PREFIX}<id>/activity of a live share.`);
  };

  server.server.setRequestHandler(SubscribeRequestSchema, (request) => {
    const uri = knownUri(request.params.uri);
    subscribed.set(uri, fingerprint(uri));
    attach();
    syncMetricsWatch();
    return {};
  });
  server.server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
    // A share's URI may be gone by now (the share stopped): unsubscribing from it is still fine.
    if (!subscribed.delete(request.params.uri.replace(/\/+$/, ''))) knownUri(request.params.uri);
    syncMetricsWatch();
    if (subscribed.size === 0) detach();
    return {};
  });

  // Protocol calls `onclose` when the transport closes (either side): drop everything we hold.
  const previousOnClose = server.server.onclose;
  server.server.onclose = () => {
    previousOnClose?.();
    subscribed.clear();
    syncMetricsWatch();
    detach();
  };

  return server;
}

function startMessage(s: TunnelSnapshot, where: string): string {
  switch (s.status) {
    case 'active':
      return s.access === 'secret'
        ? `Tunnel active: ${where} is reachable at ${s.mcp_url ?? '?'}. The URL carries a share secret: give it only to the intended client (requests without it get 401); call stop_tunnel when done.`
        : `Tunnel active: ${where} is public at ${s.mcp_url ?? s.url ?? '?'}. Anyone with this URL can reach it; call stop_tunnel when done.`;
    case 'connecting':
      return `The public URL ${s.mcp_url ?? s.url ?? '?'} is assigned but Cloudflare's edge has not registered a connection yet; it usually works within seconds. Check get_tunnel_status.`;
    case 'reconnecting':
      return `The tunnel to ${where} lost its edge connection and is reconnecting; ${s.mcp_url ?? s.url ?? 'the URL'} will work again once it is back. Check get_tunnel_status.`;
    case 'failed':
      return `The tunnel to ${where} failed${s.last_error ? `: ${s.last_error.message}` : '.'}`;
    case 'restarting':
      return `The tunnel to ${where} stopped unexpectedly${s.last_error ? ` (${s.last_error.message})` : ''} and restarts by itself at ${s.restart_at ?? 'once'}; a quick tunnel then has a new URL. Check get_tunnel_status.`;
    default:
      return `The tunnel to ${where} did not start (it is ${s.status}); it was probably stopped while starting.`;
  }
}

function busyMessage(err: TunnelBusyError): string {
  return `${err.message} Stop that share first (stop_tunnel with its share_id from list_shares), then start_tunnel again.`;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function errorResult(message: string): CallToolResult {
  return { isError: true, content: [{ type: 'text', text: message }] };
}

/** The same JSON as `structuredContent` and as text, for clients that read only `content`. */
function structuredResult<T extends object>(value: T, isError = false): CallToolResult {
  const structuredContent = { ...value } as Record<string, unknown>;
  return { content: [{ type: 'text', text: JSON.stringify(structuredContent) }], structuredContent, ...(isError ? { isError: true } : {}) };
}
