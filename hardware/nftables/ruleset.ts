/**
 * Pure builders of the nft command batches that make up spareband's own table
 * `inet spareband`. Nothing here runs a command; `gateway.ts` feeds these batches to
 * `nft -f -`, where each batch is one atomic kernel transaction.
 *
 * Layout of the table:
 * - maps `client_up` (ipv4 . mac → counter) and `client_down` (ipv4 → counter): being
 *   in both maps *is* admission; each element points at the client's named counters
 *   `up_<hex ip>` / `down_<hex ip>`;
 * - chain `forward` (hook forward, priority filter - 5) matches traffic from and to
 *   the LAN interface. Without limits it does one map lookup per packet, which is the
 *   admission check and the per-client count at once; with limits it jumps to
 *   `from_clients` / `to_clients`, which police, then count. Anything else from or to
 *   the LAN (unadmitted clients, IPv6) is counted in `dropped_unpaid` and dropped;
 * - chain `postrouting` (hook postrouting, priority srcnat + 5), only with masquerade,
 *   masquerades admitted clients on the upstream interface. Without it the table uses
 *   no connection tracking at all (a routed LAN, or a router that NATs already);
 * - chains `exit_out` / `exit_in` (hooks output/input) count the daemon's own exit
 *   traffic, matched by socket uid/gid, through dynamic sets of flows.
 */
import { assertBandwidthLimits, assertInterfaceName } from '../validate.ts'
import { AdapterConfigError } from '../errors.ts'
import type { BandwidthLimits, GatewayClient } from '../adapter.ts'

/** Family of spareband's table. */
export const TABLE_FAMILY = 'inet'
/** Name of spareband's table; no other table is ever touched. */
export const TABLE_NAME = 'spareband'
/** `family name` as nft commands take it. */
export const TABLE = `${TABLE_FAMILY} ${TABLE_NAME}`

/**
 * Start of the table's comment recording `net.ipv4.ip_forward` as the first start found
 * it. `add table` keeps the comment of an existing table, so the value survives a crash
 * and a restart, and a clean stop restores it even then.
 */
export const FORWARDING_COMMENT_PREFIX = 'spareband: ip_forward was '

/** Priority of the forward chain: just before the usual filter chains (fw4's is `filter`). */
export const FORWARD_PRIORITY = 'filter - 5'
/** Priority of the NAT chain: after the usual srcnat chains, so an existing masquerade (fw4) wins. */
export const NAT_PRIORITY = 'srcnat + 5'

/**
 * Names of the table-wide named counters. There is no total of the clients' traffic:
 * that is the sum of their counters, and one counter less per packet is cheaper.
 */
export const TOTAL_COUNTERS = {
  unpaid: 'dropped_unpaid',
  exitTx: 'exit_tx',
  exitRx: 'exit_rx'
} as const

/** Which of the daemon's sockets count as relay-exit traffic. */
export interface ExitMatch {
  /** Socket owner uid (`meta skuid`). */
  uid?: number
  /** Socket owner gid (`meta skgid`). */
  gid?: number
  /** Local ports that are not exit traffic (e.g. the libp2p listen port). */
  excludeLocalPorts?: number[]
}

/** Everything the table's rules depend on. */
export interface GatewayRuleset {
  /** Interface the clients are on (hotspot/LAN, e.g. `br-guest`, `wlan0`). */
  lanInterface: string
  /** Upstream interface (e.g. `wan`, `eth0`). */
  wanInterface: string
  /** Masquerade admitted clients on the upstream interface. */
  masquerade: boolean
  limits: BandwidthLimits
  exitMatch: ExitMatch | null
  /** `net.ipv4.ip_forward` before the start (`0` or `1`), recorded in a new table's comment; null when spareband leaves forwarding alone. */
  forwardingBefore?: string | null
  /** The table exists with a NAT chain (an earlier start masqueraded): removed when `masquerade` is off. */
  natChainExists?: boolean
}

/** The named counters of one client: `up_0a000002` / `down_0a000002` for 10.0.0.2. */
export function clientCounterNames (ip: string): { up: string, down: string } {
  const hex = ip.split('.').map((octet) => Number(octet).toString(16).padStart(2, '0')).join('')
  return { up: `up_${hex}`, down: `down_${hex}` }
}

/** The IPv4 address a per-client counter name stands for, or null if the name is not one. */
export function ipOfCounterName (name: string): { ip: string, direction: 'up' | 'down' } | null {
  const m = /^(up|down)_([0-9a-f]{8})$/.exec(name)
  if (m === null) return null
  const n = parseInt(m[2], 16)
  return { ip: [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.'), direction: m[1] as 'up' | 'down' }
}

/**
 * Token-bucket burst for a byte-rate limit. The kernel's bucket for `limit rate …
 * bytes/second burst B bytes` holds one second of rate plus B, so a client that was
 * idle may move that much at once before the rate applies. B must hold at least one
 * GRO/GSO aggregate (up to 64 KiB, sometimes more), or such packets would always be
 * over the rate and dropped.
 */
export function limitBurstBytes (bytesPerSec: number): number {
  return Math.max(256 * 1024, Math.ceil(bytesPerSec / 10))
}

function limitExpr (bytesPerSec: number): string {
  return `limit rate over ${bytesPerSec} bytes/second burst ${limitBurstBytes(bytesPerSec)} bytes`
}

function assertRuleset (r: GatewayRuleset): void {
  assertInterfaceName(r.lanInterface, 'lanInterface')
  assertInterfaceName(r.wanInterface, 'wanInterface')
  if (r.lanInterface === r.wanInterface) {
    throw new AdapterConfigError(`lanInterface and wanInterface must differ, both are "${r.lanInterface}"`)
  }
  assertBandwidthLimits(r.limits)
  const m = r.exitMatch
  if (m !== null) {
    if (m.uid === undefined && m.gid === undefined) {
      throw new AdapterConfigError('exitMatch needs a uid or a gid: the uid (or gid) the daemon\'s exit sockets run as')
    }
    for (const id of [m.uid, m.gid]) {
      if (id !== undefined && (!Number.isSafeInteger(id) || id < 0 || id > 0xffffffff)) {
        throw new AdapterConfigError(`exitMatch uid/gid must be a whole number from 0 to 2^32-1, got ${id}`)
      }
    }
    for (const port of m.excludeLocalPorts ?? []) {
      if (!Number.isSafeInteger(port) || port < 1 || port > 65535) {
        throw new AdapterConfigError(`exitMatch.excludeLocalPorts must hold ports from 1 to 65535, got ${port}`)
      }
    }
  }
}

/** Declarations: `add` of an object that exists with the same definition is a no-op, so this is idempotent. */
function declarations (forwardingBefore: string | null): string[] {
  const lines = [forwardingBefore === null ? `add table ${TABLE}` : `add table ${TABLE} { comment "${FORWARDING_COMMENT_PREFIX}${forwardingBefore}"; }`]
  for (const name of Object.values(TOTAL_COUNTERS)) lines.push(`add counter ${TABLE} ${name}`)
  lines.push(
    `add map ${TABLE} client_up { type ipv4_addr . ether_addr : counter; }`,
    `add map ${TABLE} client_down { type ipv4_addr : counter; }`,
    `add set ${TABLE} meter_up { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1m; }`,
    `add set ${TABLE} meter_down { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1m; }`,
    `add set ${TABLE} exit_flows4 { type ipv4_addr . inet_service . inet_service; size 65535; flags dynamic,timeout; timeout 15m; }`,
    `add set ${TABLE} exit_flows6 { type ipv6_addr . inet_service . inet_service; size 65535; flags dynamic,timeout; timeout 15m; }`,
    `add chain ${TABLE} forward { type filter hook forward priority ${FORWARD_PRIORITY}; policy accept; }`,
    `add chain ${TABLE} from_clients`,
    `add chain ${TABLE} to_clients`,
    `add chain ${TABLE} exit_out { type filter hook output priority filter - 5; policy accept; }`,
    `add chain ${TABLE} exit_in { type filter hook input priority filter - 5; policy accept; }`
  )
  return lines
}

/**
 * Rules of the forward path, which depend on the LAN interface and the limits
 * (flushes the meters, whose elements carry the old rate).
 *
 * `ip saddr`/`ip daddr` imply `meta nfproto ipv4` in an inet table, so IPv6 never
 * matches a client and falls through to the drop: gateway clients are IPv4 only, and
 * nothing from or to the LAN is forwarded unmetered.
 */
function forwardRules (lanInterface: string, limits: BandwidthLimits): string[] {
  const lan = `"${lanInterface}"`
  const lines = [
    `flush chain ${TABLE} forward`,
    `flush chain ${TABLE} from_clients`,
    `flush chain ${TABLE} to_clients`,
    `flush set ${TABLE} meter_up`,
    `flush set ${TABLE} meter_down`
  ]
  const forward = (body: string): void => { lines.push(`add rule ${TABLE} forward ${body}`) }
  const dirs = [
    { match: `iifname ${lan}`, chain: 'from_clients', key: 'ip saddr . ether saddr', ip: 'ip saddr', map: 'client_up', meter: 'meter_up' },
    { match: `oifname ${lan}`, chain: 'to_clients', key: 'ip daddr', ip: 'ip daddr', map: 'client_down', meter: 'meter_down' }
  ]
  if (limits.perClientBytesPerSec === null && limits.totalBytesPerSec === null) {
    // One map lookup per packet: the per-client counter's lookup is the admission check
    // (a key not in the map ends the rule unmatched, and a later rule drops the packet).
    for (const d of dirs) forward(`${d.match} counter name ${d.key} map @${d.map} accept`)
  } else {
    for (const d of dirs) {
      forward(`${d.match} meta nfproto ipv4 jump ${d.chain}`)
      const rule = (body: string): void => { lines.push(`add rule ${TABLE} ${d.chain} ${body}`) }
      rule(`${d.key} != @${d.map} return`)
      if (limits.perClientBytesPerSec !== null) rule(`update @${d.meter} { ${d.ip} ${limitExpr(limits.perClientBytesPerSec)} } drop`)
      if (limits.totalBytesPerSec !== null) rule(`${limitExpr(limits.totalBytesPerSec)} drop`)
      rule(`counter name ${d.key} map @${d.map} accept`)
    }
  }
  for (const d of dirs) forward(`${d.match} counter name "${TOTAL_COUNTERS.unpaid}" drop`)
  return lines
}

function exitRules (m: ExitMatch | null): string[] {
  const lines = [`flush chain ${TABLE} exit_out`, `flush chain ${TABLE} exit_in`]
  if (m === null) return lines
  const owner = [m.uid !== undefined ? `meta skuid ${m.uid}` : '', m.gid !== undefined ? `meta skgid ${m.gid}` : ''].filter((s) => s !== '').join(' ')
  const ports = m.excludeLocalPorts ?? []
  const excluded = ports.length === 0 ? '' : ` th sport != { ${ports.join(', ')} }`
  for (const [flows, addr] of [['exit_flows4', 'ip'], ['exit_flows6', 'ip6']]) {
    lines.push(
      `add rule ${TABLE} exit_out ${owner} meta l4proto { tcp, udp }${excluded} meta nfproto ${addr === 'ip' ? 'ipv4' : 'ipv6'} update @${flows} { ${addr} daddr . th dport . th sport } counter name "${TOTAL_COUNTERS.exitTx}"`,
      `add rule ${TABLE} exit_in meta l4proto { tcp, udp } ${addr} saddr . th sport . th dport @${flows} counter name "${TOTAL_COUNTERS.exitRx}"`
    )
  }
  return lines
}

/**
 * The batch `start` runs: declares every object (keeping admitted clients and their
 * counters if the table survived a crash) and replaces every rule.
 */
export function startBatch (r: GatewayRuleset): string {
  assertRuleset(r)
  const forwarding = r.forwardingBefore ?? null
  if (forwarding !== null && !/^[01]$/.test(forwarding)) throw new AdapterConfigError(`forwardingBefore must be "0" or "1", got ${JSON.stringify(forwarding)}`)
  const lines = [
    ...declarations(forwarding),
    ...forwardRules(r.lanInterface, r.limits),
    ...exitRules(r.exitMatch)
  ]
  if (r.masquerade) {
    lines.push(
      `add chain ${TABLE} postrouting { type nat hook postrouting priority ${NAT_PRIORITY}; policy accept; }`,
      `flush chain ${TABLE} postrouting`,
      `add rule ${TABLE} postrouting oifname "${r.wanInterface}" ip saddr @client_down masquerade`
    )
  } else if (r.natChainExists === true) {
    // Never declared without masquerade, so a kernel without NAT support can still run a routed gateway.
    lines.push(`delete chain ${TABLE} postrouting`)
  }
  return lines.join('\n') + '\n'
}

/** The batch that replaces the bandwidth limits (the whole forward path, atomically). */
export function limitsBatch (lanInterface: string, limits: BandwidthLimits): string {
  assertInterfaceName(lanInterface, 'lanInterface')
  assertBandwidthLimits(limits)
  return forwardRules(lanInterface, limits).join('\n') + '\n'
}

/** The batch that admits a client: its two counters and its two map elements, atomically. */
export function admitBatch (client: GatewayClient): string {
  const names = clientCounterNames(client.ip)
  return [
    `add counter ${TABLE} ${names.up}`,
    `add counter ${TABLE} ${names.down}`,
    `add element ${TABLE} client_up { ${client.ip} . ${client.mac} : "${names.up}" }`,
    `add element ${TABLE} client_down { ${client.ip} : "${names.down}" }`
  ].join('\n') + '\n'
}

/** The batch that removes a client from both maps (its counters stop moving but stay, to be read). */
export function evictBatch (client: GatewayClient): string {
  return [
    `delete element ${TABLE} client_up { ${client.ip} . ${client.mac} }`,
    `delete element ${TABLE} client_down { ${client.ip} }`
  ].join('\n') + '\n'
}

/** The batch that reads and zeroes one evicted client's counters (for `nft -j -f -`). */
export function resetClientCountersBatch (ip: string): string {
  const names = clientCounterNames(ip)
  return `reset counter ${TABLE} ${names.up}\nreset counter ${TABLE} ${names.down}\n`
}

/** The batch that deletes one evicted client's counters. */
export function deleteClientCountersBatch (ip: string): string {
  const names = clientCounterNames(ip)
  return `delete counter ${TABLE} ${names.up}\ndelete counter ${TABLE} ${names.down}\n`
}

/** The batch `stop` runs first: all LAN traffic is dropped, so the final read is final. */
export function freezeBatch (lanInterface: string): string {
  assertInterfaceName(lanInterface, 'lanInterface')
  return [
    `flush chain ${TABLE} forward`,
    `add rule ${TABLE} forward iifname "${lanInterface}" drop`,
    `add rule ${TABLE} forward oifname "${lanInterface}" drop`
  ].join('\n') + '\n'
}

/** The batch that removes spareband's table and everything in it. */
export function deleteTableBatch (): string {
  return `delete table ${TABLE}\n`
}
