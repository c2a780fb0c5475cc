import { isIPv4 } from 'node:net'
import { AdapterConfigError, InvalidGatewayClientError } from './errors.ts'
import type { BandwidthLimits, GatewayClient } from './adapter.ts'

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/
const IFNAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,14}$/

/**
 * Returns the client with its MAC in canonical lower-case form, or throws
 * {@link InvalidGatewayClientError}. Values end up inside nft commands, so only
 * strict forms pass.
 */
export function normalizeGatewayClient (client: GatewayClient): GatewayClient {
  if (typeof client.ip !== 'string' || !isIPv4(client.ip)) {
    throw new InvalidGatewayClientError(`gateway client ip must be a dotted-quad IPv4 address, got ${JSON.stringify(client.ip)}`)
  }
  const mac = typeof client.mac === 'string' ? client.mac.toLowerCase().replaceAll('-', ':') : ''
  if (!MAC.test(mac)) {
    throw new InvalidGatewayClientError(`gateway client mac must look like 02:00:5e:10:00:01, got ${JSON.stringify(client.mac)}`)
  }
  if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) {
    throw new InvalidGatewayClientError(`gateway client mac ${mac} is a multicast address; give the client's unicast MAC`)
  }
  return { ip: client.ip, mac }
}

/** Throws {@link AdapterConfigError} unless `name` is a valid Linux interface name (at most 15 chars, no quotes or spaces). */
export function assertInterfaceName (name: string, what: string): void {
  if (typeof name !== 'string' || !IFNAME.test(name)) {
    throw new AdapterConfigError(`${what} must be a network interface name such as "br-lan" or "wlan0" (1-15 letters, digits, "_", ".", "@", "-"), got ${JSON.stringify(name)}`)
  }
}

/** Throws {@link AdapterConfigError} unless every limit is null or a positive whole number of bytes per second. */
export function assertBandwidthLimits (limits: BandwidthLimits): void {
  for (const [key, value] of Object.entries(limits)) {
    if (value !== null && (!Number.isSafeInteger(value) || value <= 0)) {
      throw new AdapterConfigError(`bandwidth limit ${key} must be null (no limit) or a positive whole number of bytes per second, got ${String(value)}`)
    }
  }
}
