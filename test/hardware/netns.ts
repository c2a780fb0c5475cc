/**
 * Test topology of network namespaces: client ── gateway ── upstream, joined by veth
 * pairs, with addresses only inside those namespaces. Names carry a random suffix.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'

/** The three namespaces and their addresses. */
export interface Topology {
  client: string
  gateway: string
  upstream: string
  /** Interface names inside the namespaces. */
  clientIf: 'eth0'
  lanIf: 'lan0'
  wanIf: 'wan0'
  upstreamIf: 'eth0'
  clientIp: string
  clientMac: string
  gatewayLanIp: string
  gatewayWanIp: string
  upstreamIp: string
  /** Deletes the namespaces (and with them the veths); safe to call twice. */
  destroy(): void
}

function ip (...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

/** Runs argv inside a namespace and returns stdout. */
export function inNs (ns: string, ...argv: string[]): string {
  return ip('netns', 'exec', ns, ...argv)
}

/** Null when namespaces can be made here, else why not (for an explicit skip). */
export function netnsUnavailable (): string | null {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces (run as root; CI does)'
  const probe = `sbprobe-${randomBytes(3).toString('hex')}`
  try {
    ip('netns', 'add', probe)
    ip('netns', 'del', probe)
    execFileSync('nft', ['--version'], { stdio: 'ignore' })
    return null
  } catch (err) {
    return `network namespaces or nft unavailable: ${(err as Error).message.split('\n')[0]}`
  }
}

/**
 * Creates the topology. With `routeBack` the upstream namespace routes the client
 * subnet back through the gateway (a bare forwarding path that works without NAT).
 */
export function createTopology (options: { routeBack?: boolean } = {}): Topology {
  const suffix = randomBytes(3).toString('hex')
  const t: Topology = {
    client: `sbc-${suffix}`,
    gateway: `sbg-${suffix}`,
    upstream: `sbu-${suffix}`,
    clientIf: 'eth0',
    lanIf: 'lan0',
    wanIf: 'wan0',
    upstreamIf: 'eth0',
    clientIp: '10.91.1.2',
    clientMac: `02:5b:${suffix.slice(0, 2)}:${suffix.slice(2, 4)}:${suffix.slice(4, 6)}:02`,
    gatewayLanIp: '10.91.1.1',
    gatewayWanIp: '10.91.2.1',
    upstreamIp: '10.91.2.2',
    destroy () {
      for (const ns of [t.client, t.gateway, t.upstream]) {
        try { ip('netns', 'del', ns) } catch {}
      }
    }
  }
  try {
    for (const ns of [t.client, t.gateway, t.upstream]) {
      ip('netns', 'add', ns)
      inNs(ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1')
      ip('-n', ns, 'link', 'set', 'lo', 'up')
    }
    ip('-n', t.client, 'link', 'add', 'eth0', 'address', t.clientMac, 'type', 'veth', 'peer', 'name', 'lan0', 'netns', t.gateway)
    ip('-n', t.upstream, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'wan0', 'netns', t.gateway)
    ip('-n', t.client, 'addr', 'add', `${t.clientIp}/24`, 'dev', 'eth0')
    ip('-n', t.gateway, 'addr', 'add', `${t.gatewayLanIp}/24`, 'dev', 'lan0')
    ip('-n', t.gateway, 'addr', 'add', `${t.gatewayWanIp}/24`, 'dev', 'wan0')
    ip('-n', t.upstream, 'addr', 'add', `${t.upstreamIp}/24`, 'dev', 'eth0')
    for (const [ns, dev] of [[t.client, 'eth0'], [t.gateway, 'lan0'], [t.gateway, 'wan0'], [t.upstream, 'eth0']]) ip('-n', ns, 'link', 'set', dev, 'up')
    ip('-n', t.client, 'route', 'add', 'default', 'via', t.gatewayLanIp)
    ip('-n', t.gateway, 'route', 'add', 'default', 'via', t.upstreamIp)
    if (options.routeBack === true) ip('-n', t.upstream, 'route', 'add', '10.91.1.0/24', 'via', t.gatewayWanIp)
  } catch (err) {
    t.destroy()
    throw err
  }
  return t
}
