/**
 * Makes the gateway findable by mDNS on its LAN. Buyers run libp2p's mDNS discovery
 * (`_p2p._udp.local`, answers carry `dnsaddr=<multiaddr>` TXT records); libp2p's own
 * responder sends through the default multicast route, which on a router is the
 * upstream link, so LAN devices would never hear it. This responder is bound to the
 * LAN interface: it answers only queries from the LAN subnet, only with the node's
 * addresses on the LAN, and multicasts the answer out of the LAN interface.
 */
import { randomBytes } from 'node:crypto'
import { networkInterfaces } from 'node:os'
import multicastDns from 'multicast-dns'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import { SparebandError } from '../../protocol/errors.ts'

/** The service name libp2p's mDNS discovery queries. */
export const LIBP2P_MDNS_SERVICE = '_p2p._udp.local'

/** Raised when the gateway cannot be announced on its LAN. */
export class GatewayConfigError extends SparebandError {
  constructor (message: string) {
    super('ERR_GATEWAY_CONFIG', message)
  }
}

/** Options of {@link LanAnnouncer}. */
export interface LanAnnouncerInit {
  lanInterface: string
  /** The node's current addresses (with `/p2p/<id>`); those on the LAN are announced. */
  addresses: () => Multiaddr[]
  logger: Logger
}

/** The LAN interface's IPv4 address and prefix. */
interface LanAddress {
  address: string
  /** The subnet as a 32-bit number and mask. */
  network: number
  mask: number
}

/** See the module comment. */
export class LanAnnouncer {
  readonly #init: LanAnnouncerInit
  readonly #log: Logger
  readonly #peerName = randomBytes(16).toString('hex')
  #mdns: multicastDns.MulticastDNS | undefined
  #answered = 0

  constructor (init: LanAnnouncerInit) {
    this.#init = init
    this.#log = init.logger.child({ component: 'lan-announcer' })
  }

  /** Queries answered so far. */
  get answered (): number {
    return this.#answered
  }

  /** Starts answering mDNS queries on the LAN interface. */
  start (): void {
    if (this.#mdns !== undefined) return
    const lan = lanAddress(this.#init.lanInterface)
    const mdns = multicastDns({ interface: lan.address, bind: '0.0.0.0', reuseAddr: true, loopback: false })
    mdns.on('query', (query, rinfo) => {
      if (!inSubnet(rinfo.address, lan)) return
      if (!query.questions.some((q) => q.name === LIBP2P_MDNS_SERVICE && (q.type === 'PTR' || (q.type as string) === 'ANY'))) return
      const addrs = this.#init.addresses().filter((a) => onLan(a, lan.address)).map((a) => `dnsaddr=${a.toString()}`).filter((t) => t.length <= 255)
      if (addrs.length === 0) return
      const name = `${this.#peerName}.${LIBP2P_MDNS_SERVICE}`
      mdns.respond([
        { name: LIBP2P_MDNS_SERVICE, type: 'PTR', class: 'IN', ttl: 120, data: name },
        ...addrs.map((data) => ({ name, type: 'TXT' as const, class: 'IN' as const, ttl: 120, data }))
      ], (err) => {
        if (err !== null && err !== undefined) this.#log.debug({ err: err.message }, 'cannot send an mDNS answer')
      })
      this.#answered++
    })
    mdns.on('warning', (err: Error) => { this.#log.debug({ err: err.message }, 'mDNS warning') })
    mdns.on('error', (err: Error) => { this.#log.warn({ err: err.message }, 'mDNS responder failed; LAN buyers cannot discover the gateway') })
    this.#mdns = mdns
    this.#log.info({ lan: this.#init.lanInterface, address: lan.address }, 'answering mDNS discovery on the LAN')
  }

  /** Stops answering. */
  async stop (): Promise<void> {
    const mdns = this.#mdns
    this.#mdns = undefined
    if (mdns !== undefined) await new Promise<void>((resolve) => { mdns.destroy(() => resolve()) })
  }
}

function ipToNumber (ip: string): number {
  return ip.split('.').reduce((n, octet) => ((n << 8) | Number(octet)) >>> 0, 0)
}

function lanAddress (iface: string): LanAddress {
  const entry = (networkInterfaces()[iface] ?? []).find((a) => a.family === 'IPv4')
  if (entry === undefined) {
    throw new GatewayConfigError(`the LAN interface "${iface}" has no IPv4 address; give it one (the hotspot's subnet) or fix gateway.lanInterface in the config`)
  }
  const mask = ipToNumber(entry.netmask)
  return { address: entry.address, network: ipToNumber(entry.address) & mask, mask }
}

function inSubnet (ip: string, lan: LanAddress): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(ip) && ((ipToNumber(ip) & lan.mask) >>> 0) === (lan.network >>> 0)
}

function onLan (addr: Multiaddr, lanIp: string): boolean {
  const [host, transport] = addr.getComponents()
  return host?.name === 'ip4' && host.value === lanIp && transport?.name === 'tcp'
}
