/**
 * The relay exit policy: which resolved addresses and ports a seller may connect to on a
 * buyer's behalf. Applied after DNS resolution, to every resolved address.
 */
import { isIP } from 'node:net'
import ipaddr from 'ipaddr.js'
import { SparebandError } from './errors.ts'

type IP = ipaddr.IPv4 | ipaddr.IPv6
type Cidr = [IP, number]

/** Why a built-in range is refused. */
type RangeCategory = 'unspecified' | 'loopback' | 'private' | 'link-local' | 'multicast' | 'cgnat' | 'broadcast' | 'reserved'

/** Stable codes of a refused exit, one per rule. */
export type ExitRefusalCode =
  | 'ERR_EXIT_NOT_IP'
  | 'ERR_EXIT_BAD_PORT'
  | 'ERR_EXIT_PORT_DENIED'
  | 'ERR_EXIT_PORT_NOT_ALLOWED'
  | 'ERR_EXIT_OWN_ADDRESS'
  | 'ERR_EXIT_DENY_LIST'
  | 'ERR_EXIT_UNSPECIFIED'
  | 'ERR_EXIT_LOOPBACK'
  | 'ERR_EXIT_PRIVATE'
  | 'ERR_EXIT_LINK_LOCAL'
  | 'ERR_EXIT_MULTICAST'
  | 'ERR_EXIT_CGNAT'
  | 'ERR_EXIT_BROADCAST'
  | 'ERR_EXIT_RESERVED'

/** The verdict on one address and port. */
export type ExitDecision =
  | { allowed: true }
  | { allowed: false, code: ExitRefusalCode, reason: string }

/** What an operator can configure; see {@link exitPolicy}. */
export interface ExitPolicyOptions {
  /** The node's own addresses (any interface); never connected to, whatever the allow list says. */
  ownAddresses?: readonly string[]
  /** Ports never connected to. Default `[25]` (SMTP). */
  deniedPorts?: readonly number[]
  /** When set, the only ports connected to. */
  allowedPorts?: readonly number[]
  /** CIDRs that override the built-in refusals (e.g. a LAN an operator chooses to serve, or loopback in tests). */
  allowCidrs?: readonly string[]
  /** CIDRs always refused; they win over `allowCidrs`. */
  denyCidrs?: readonly string[]
}

/** A validated, parsed exit policy, built by {@link exitPolicy}. */
export interface ExitPolicy {
  readonly ownAddresses: ReadonlySet<string>
  readonly deniedPorts: ReadonlySet<number>
  readonly allowedPorts: ReadonlySet<number> | null
  readonly allowCidrs: readonly Cidr[]
  readonly denyCidrs: readonly Cidr[]
}

/** Ports refused when the operator configures none. */
export const DEFAULT_DENIED_PORTS: readonly number[] = [25]

/** Raised when an exit policy option is not a valid address, CIDR or port. */
export class InvalidExitPolicyError extends SparebandError {
  constructor (message: string) {
    super('ERR_INVALID_EXIT_POLICY', message)
  }
}

interface BuiltInRange {
  cidr: Cidr
  category: RangeCategory
  name: string
}

function builtIn (cidr: string, category: RangeCategory, name: string): BuiltInRange {
  return { cidr: ipaddr.parseCIDR(cidr), category, name }
}

/** IPv4 special-purpose ranges, first match wins. */
const IPV4_RANGES: readonly BuiltInRange[] = [
  builtIn('0.0.0.0/8', 'unspecified', '"this network" 0.0.0.0/8'),
  builtIn('10.0.0.0/8', 'private', 'private 10.0.0.0/8'),
  builtIn('100.64.0.0/10', 'cgnat', 'carrier-grade NAT 100.64.0.0/10'),
  builtIn('127.0.0.0/8', 'loopback', 'loopback 127.0.0.0/8'),
  builtIn('169.254.0.0/16', 'link-local', 'link-local 169.254.0.0/16'),
  builtIn('172.16.0.0/12', 'private', 'private 172.16.0.0/12'),
  builtIn('192.0.0.0/24', 'reserved', 'IETF protocol assignments 192.0.0.0/24'),
  builtIn('192.0.2.0/24', 'reserved', 'documentation 192.0.2.0/24'),
  builtIn('192.88.99.0/24', 'reserved', 'deprecated 6to4 relay anycast 192.88.99.0/24'),
  builtIn('192.168.0.0/16', 'private', 'private 192.168.0.0/16'),
  builtIn('198.18.0.0/15', 'reserved', 'benchmarking 198.18.0.0/15'),
  builtIn('198.51.100.0/24', 'reserved', 'documentation 198.51.100.0/24'),
  builtIn('203.0.113.0/24', 'reserved', 'documentation 203.0.113.0/24'),
  builtIn('224.0.0.0/4', 'multicast', 'multicast 224.0.0.0/4'),
  builtIn('255.255.255.255/32', 'broadcast', 'limited broadcast 255.255.255.255'),
  builtIn('240.0.0.0/4', 'reserved', 'reserved 240.0.0.0/4')
]

/**
 * IPv6 special-purpose ranges checked before the embedded-IPv4 forms, first match wins.
 * The unspecified address `::` is refused as the IPv4-compatible form of 0.0.0.0.
 */
const IPV6_RANGES: readonly BuiltInRange[] = [
  builtIn('::1/128', 'loopback', 'loopback ::1'),
  builtIn('fc00::/7', 'private', 'unique local fc00::/7'),
  builtIn('fe80::/10', 'link-local', 'link-local fe80::/10'),
  builtIn('fec0::/10', 'private', 'deprecated site-local fec0::/10'),
  builtIn('ff00::/8', 'multicast', 'multicast ff00::/8'),
  builtIn('2001:db8::/32', 'reserved', 'documentation 2001:db8::/32'),
  builtIn('3fff::/20', 'reserved', 'documentation 3fff::/20')
]

/**
 * IETF protocol assignments (benchmarking 2001:2::/48, ORCHID, AMT, ...): refused, except
 * Teredo (2001::/32) which is judged by its embedded addresses.
 */
const IETF_PROTOCOL_ASSIGNMENTS = builtIn('2001::/23', 'reserved', 'IETF protocol assignments 2001::/23')
/**
 * Everything outside global unicast 2000::/3 that is not an embedded-IPv4 form is refused
 * (discard-only 100::/64, local-use NAT64 64:ff9b:1::/48, SRv6 5f00::/16, unassigned space).
 */
const GLOBAL_UNICAST = ipaddr.parseCIDR('2000::/3')

/** An IPv6 form that carries IPv4 addresses, which are checked in its place. */
interface EmbeddingForm {
  cidr: Cidr
  name: string
  embedded: (ip: ipaddr.IPv6) => ipaddr.IPv4[]
}

const lastWord = (ip: ipaddr.IPv6): ipaddr.IPv4[] => [ipv4FromParts(ip.parts[6], ip.parts[7])]

const EMBEDDING_FORMS: readonly EmbeddingForm[] = [
  { cidr: ipaddr.parseCIDR('::ffff:0:0/96'), name: 'IPv4-mapped', embedded: lastWord },
  { cidr: ipaddr.parseCIDR('::/96'), name: 'IPv4-compatible', embedded: lastWord },
  { cidr: ipaddr.parseCIDR('::ffff:0:0:0/96'), name: 'IPv4-translated', embedded: lastWord },
  { cidr: ipaddr.parseCIDR('64:ff9b::/96'), name: 'NAT64', embedded: lastWord },
  { cidr: ipaddr.parseCIDR('2002::/16'), name: '6to4', embedded: (ip) => [ipv4FromParts(ip.parts[1], ip.parts[2])] },
  {
    cidr: ipaddr.parseCIDR('2001::/32'),
    name: 'Teredo',
    // server at bits 32-63, client (obfuscated: bitwise NOT) at bits 96-127
    embedded: (ip) => [ipv4FromParts(ip.parts[2], ip.parts[3]), ipv4FromParts(~ip.parts[6] & 0xffff, ~ip.parts[7] & 0xffff)]
  }
]

const CATEGORY_CODES: Record<RangeCategory, ExitRefusalCode> = {
  unspecified: 'ERR_EXIT_UNSPECIFIED',
  loopback: 'ERR_EXIT_LOOPBACK',
  private: 'ERR_EXIT_PRIVATE',
  'link-local': 'ERR_EXIT_LINK_LOCAL',
  multicast: 'ERR_EXIT_MULTICAST',
  cgnat: 'ERR_EXIT_CGNAT',
  broadcast: 'ERR_EXIT_BROADCAST',
  reserved: 'ERR_EXIT_RESERVED'
}

const ALLOWED: ExitDecision = Object.freeze({ allowed: true })

/**
 * Validates and parses exit policy options. Throws {@link InvalidExitPolicyError} for an
 * address, CIDR or port that does not parse, so a bad config fails at start.
 */
export function exitPolicy (options: ExitPolicyOptions = {}): ExitPolicy {
  return {
    ownAddresses: new Set((options.ownAddresses ?? []).map((address) => {
      const ip = parseIp(address)
      if (ip === null) throw new InvalidExitPolicyError(`own address "${address}" is not an IP address`)
      return addressKey(ip)
    })),
    deniedPorts: new Set((options.deniedPorts ?? DEFAULT_DENIED_PORTS).map(assertPolicyPort)),
    allowedPorts: options.allowedPorts === undefined ? null : new Set(options.allowedPorts.map(assertPolicyPort)),
    allowCidrs: (options.allowCidrs ?? []).map(parsePolicyCidr),
    denyCidrs: (options.denyCidrs ?? []).map(parsePolicyCidr)
  }
}

/**
 * Whether the exit may connect to `address` (a resolved IPv4 or IPv6 literal, never a
 * host name) on `port`. Checks, in order: the address parses; the port is valid, not
 * denied and (with an allow list of ports) allowed; the address is not one of the node's
 * own and not in the deny list; then, unless the allow list covers it, not in a built-in
 * special-purpose range. IPv6 forms that embed IPv4 addresses (mapped, compatible,
 * translated, NAT64, 6to4, Teredo) are judged by the embedded addresses.
 */
export function checkExit (address: string, port: number, policy: ExitPolicy): ExitDecision {
  const ip = parseIp(address)
  if (ip === null) {
    return refuse('ERR_EXIT_NOT_IP', `"${String(address)}" is not an IP address; the exit connects only to resolved addresses`)
  }
  if (!isPort(port)) {
    return refuse('ERR_EXIT_BAD_PORT', `port ${String(port)} is not an integer between 1 and 65535`)
  }
  if (policy.deniedPorts.has(port)) {
    return refuse('ERR_EXIT_PORT_DENIED', `port ${port} is denied by this exit's policy`)
  }
  if (policy.allowedPorts !== null && !policy.allowedPorts.has(port)) {
    return refuse('ERR_EXIT_PORT_NOT_ALLOWED', `port ${port} is not among the ports this exit allows`)
  }
  return checkIp(ip, policy)
}

function checkIp (ip: IP, policy: ExitPolicy): ExitDecision {
  const shown = displayAddress(ip)
  if (policy.ownAddresses.has(addressKey(ip))) {
    return refuse('ERR_EXIT_OWN_ADDRESS', `${shown} is an address of this node`)
  }
  const denied = policy.denyCidrs.find((cidr) => inCidr(ip, cidr))
  if (denied !== undefined) {
    return refuse('ERR_EXIT_DENY_LIST', `${shown} is in ${cidrString(denied)}, denied by this exit's policy`)
  }
  if (policy.allowCidrs.some((cidr) => inCidr(ip, cidr))) return ALLOWED
  if (ip.kind() === 'ipv4') return checkBuiltIn(ip, IPV4_RANGES) ?? ALLOWED
  return checkIpv6(ip as ipaddr.IPv6, policy)
}

function checkIpv6 (ip: ipaddr.IPv6, policy: ExitPolicy): ExitDecision {
  const builtInRefusal = checkBuiltIn(ip, IPV6_RANGES)
  if (builtInRefusal !== null) return builtInRefusal
  const form = EMBEDDING_FORMS.find((f) => inCidr(ip, f.cidr))
  if (form !== undefined) {
    for (const v4 of form.embedded(ip)) {
      const decision = checkIp(v4, policy)
      if (!decision.allowed) {
        return refuse(decision.code, `${displayAddress(ip)} is ${form.name} for ${v4.toString()}: ${decision.reason}`)
      }
    }
    return ALLOWED
  }
  return checkBuiltIn(ip, [IETF_PROTOCOL_ASSIGNMENTS]) ??
    (inCidr(ip, GLOBAL_UNICAST) ? ALLOWED : refuse('ERR_EXIT_RESERVED', `${displayAddress(ip)} is outside global unicast 2000::/3`))
}

function checkBuiltIn (ip: IP, ranges: readonly BuiltInRange[]): ExitDecision | null {
  const range = ranges.find((r) => inCidr(ip, r.cidr))
  if (range === undefined) return null
  return refuse(CATEGORY_CODES[range.category], `${displayAddress(ip)} is ${range.name}; the exit never connects there`)
}

function refuse (code: ExitRefusalCode, reason: string): ExitDecision {
  return { allowed: false, code, reason }
}

/** Parses a canonical IPv4 (dotted quad, no leading zeros) or IPv6 literal; `null` otherwise. */
function parseIp (address: unknown): IP | null {
  if (typeof address !== 'string') return null
  const family = isIP(address)
  try {
    if (family === 4) return ipaddr.IPv4.parse(address)
    if (family === 6) return ipaddr.IPv6.parse(address)
  } catch {
    return null
  }
  return null
}

function parsePolicyCidr (cidr: string): Cidr {
  const slash = typeof cidr === 'string' ? cidr.lastIndexOf('/') : -1
  const ip = slash > 0 ? parseIp(cidr.slice(0, slash)) : null
  const bitsText = slash > 0 ? cidr.slice(slash + 1) : ''
  const bits = /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : NaN
  if (ip === null || !(bits <= (ip.kind() === 'ipv4' ? 32 : 128))) {
    throw new InvalidExitPolicyError(`"${String(cidr)}" is not a CIDR such as 192.168.1.0/24 or fd00::/8`)
  }
  return [ip, bits]
}

function assertPolicyPort (port: number): number {
  if (!isPort(port)) throw new InvalidExitPolicyError(`port ${String(port)} is not an integer between 1 and 65535`)
  return port
}

function isPort (port: unknown): port is number {
  return Number.isInteger(port) && (port as number) >= 1 && (port as number) <= 65535
}

function inCidr (ip: IP, cidr: Cidr): boolean {
  return ip.kind() === cidr[0].kind() && ip.match(cidr)
}

/** Identity of an address for own-address comparison: IPv4-mapped folded to IPv4, zone dropped. */
function addressKey (ip: IP): string {
  if (ip.kind() === 'ipv4') return ip.toString()
  const v6 = ip as ipaddr.IPv6
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString()
  return new ipaddr.IPv6(v6.parts).toNormalizedString()
}

function displayAddress (ip: IP): string {
  return ip.kind() === 'ipv4' ? ip.toString() : (ip as ipaddr.IPv6).toRFC5952String()
}

function cidrString (cidr: Cidr): string {
  return `${displayAddress(cidr[0])}/${cidr[1]}`
}

function ipv4FromParts (high: number, low: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff])
}
