/**
 * Assembles the spareband libp2p node: TCP, Noise, Yamux, identify, ping and
 * the private kad-dht, plus optional bootstrap and mDNS peer discovery. The
 * caller brings the persistent peer key and any spareband services.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bootstrap } from '@libp2p/bootstrap'
import { identify, type Identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper, removePrivateAddressesMapper, removePublicAddressesMapper, type KadDHT } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { ping, type Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2pOptions, type ServiceFactoryMap } from 'libp2p'
import { DHT_PROTOCOL } from '../../protocol/protocol-ids.ts'
import type { Libp2p, PeerDiscovery, PeerInfo, PrivateKey, ServiceMap } from '@libp2p/interface'

/** Listen address of a development or test node: loopback, any free port. */
export const DEFAULT_LISTEN = ['/ip4/127.0.0.1/tcp/0']

/** Addresses always allowed to connect, even past the per-host rate limit: the loopback ranges. */
export const LOOPBACK_ALLOW = ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128']

/**
 * Which peer addresses the DHT hands out and accepts: `any` (LAN and public,
 * e.g. loopback tests and mixed fleets), `public` (the open internet), `lan`
 * (one private network).
 */
export type DhtAddressScope = 'any' | 'public' | 'lan'

/** Services every spareband node runs. */
export type CoreServices = {
  identify: Identify
  ping: Ping
  dht: KadDHT
}

/** What a service factory receives: libp2p's components, the core services and the other services by name. */
export type NodeComponents<S extends ServiceMap = ServiceMap> = Parameters<ServiceFactoryMap<CoreServices & S>['dht']>[0]

/** Factories of the spareband services of a node, keyed by service name. */
export type ServiceFactories<S extends ServiceMap> = { [K in keyof S]: (components: NodeComponents<S>) => S[K] }

/** Options of {@link createNode}. */
export interface CreateNodeInit<S extends ServiceMap = ServiceMap> {
  /** The node's persistent peer key (its identity); stored by the daemon. */
  privateKey: PrivateKey
  /** Multiaddrs to listen on. Default {@link DEFAULT_LISTEN}. */
  listen?: string[]
  /** Multiaddrs to announce instead of the listen addresses (e.g. a port-forwarded public address). */
  announce?: string[]
  /** Multiaddrs (with `/p2p/<peer id>`) of DHT peers to join through. */
  bootstrap?: string[]
  /** Delay before dialing the bootstrap peers, in ms. Default 0. */
  bootstrapDelayMs?: number
  /** Find peers on the local network by mDNS. Default: on unless every listen address is loopback. */
  mdns?: boolean
  /**
   * Answer DHT queries (store provider records for others). Default true. Buyers pass false: their
   * lookups then start at once instead of after the DHT's self-query, and end empty while no DHT peer is known.
   */
  dhtServer?: boolean
  /** Address filter of the DHT. Default `any`. */
  dhtAddressScope?: DhtAddressScope
  /** Connection allow list (CIDR multiaddrs) exempt from connection limits. Default {@link LOOPBACK_ALLOW}. */
  allow?: string[]
  /** Most open connections. Default 300 (libp2p's default). */
  maxConnections?: number
  /** Where libp2p keeps the peer store and the DHT's provider records. Default: in memory. */
  datastore?: Libp2pOptions['datastore']
  /** Spareband services, created after the core services so they can use `components.dht` and `components.ping`. */
  services?: ServiceFactories<S>
}

/** A running spareband libp2p node. */
export type SparebandNode<S extends ServiceMap = ServiceMap> = Libp2p<CoreServices & S>

/** Creates and starts a spareband libp2p node. Stop it with `node.stop()`. */
export async function createNode<S extends ServiceMap = ServiceMap> (init: CreateNodeInit<S>): Promise<SparebandNode<S>> {
  const listen = init.listen ?? DEFAULT_LISTEN
  const useMdns = init.mdns ?? !listen.every(isLoopbackListen)
  const peerDiscovery: Array<(components: any) => PeerDiscovery> = []
  if (init.bootstrap != null && init.bootstrap.length > 0) {
    peerDiscovery.push(bootstrap({ list: init.bootstrap, timeout: init.bootstrapDelayMs ?? 0 }))
  }
  if (useMdns) {
    peerDiscovery.push(mdns())
  }

  const core: ServiceFactoryMap<CoreServices> = {
    identify: identify(),
    ping: ping(),
    dht: kadDHT({
      protocol: DHT_PROTOCOL,
      clientMode: init.dhtServer === false,
      // a server's first query waits for its first self-query: run that as soon as a peer is known, not after kad-dht's 1 s default
      initialQuerySelfInterval: 0,
      // a client only looks up, so it need not wait for the self-query nor for a first peer: its lookups start at once
      // and end empty while it knows no DHT peer (buyer discovery retries until one answers)
      allowQueryWithZeroPeers: init.dhtServer === false,
      peerInfoMapper: DHT_MAPPERS[init.dhtAddressScope ?? 'any']
    })
  }

  return createLibp2p<CoreServices & S>({
    privateKey: init.privateKey,
    datastore: init.datastore,
    addresses: {
      listen,
      announce: init.announce
    },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery,
    connectionManager: {
      allow: init.allow ?? LOOPBACK_ALLOW,
      maxConnections: init.maxConnections
    },
    services: { ...core, ...init.services } as ServiceFactoryMap<CoreServices & S>
  })
}

const DHT_MAPPERS: Record<DhtAddressScope, (peer: PeerInfo) => PeerInfo> = {
  any: passthroughMapper,
  public: removePrivateAddressesMapper,
  lan: removePublicAddressesMapper
}

function isLoopbackListen (addr: string): boolean {
  const host = multiaddr(addr).getComponents()[0]?.value ?? ''
  return host.startsWith('127.') || host === '::1' || host === 'localhost'
}
