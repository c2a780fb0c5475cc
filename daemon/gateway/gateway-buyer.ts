/**
 * The buyer's side of gateway mode (a device on a seller's hotspot or LAN): find
 * the gateway by mDNS, then open a `gateway` payment session metered by the
 * device's own interface counters ({@link InterfaceMeter}).
 *
 * The gateway is the spareband peer whose LAN address is this device's default
 * route's next hop (a hotspot is the router of the devices on it) and whose
 * verified offer includes the `gateway` service.
 */
import type { Libp2p, PeerId, PeerInfo } from '@libp2p/interface'
import type { Address } from 'viem'
import { SparebandError } from '../../protocol/errors.ts'
import type { SignedOffer } from '../../protocol/offer.ts'
import { defaultRoute } from '../../hardware/ip-route.ts'
import type { CommandRunner } from '../../hardware/command.ts'
import { fetchOffer } from '../buyer/fetch-offer.ts'
import { openBuyerPaymentSession, type BuyerPaymentInit, type BuyerPaymentSession } from '../payment/buyer-payment-session.ts'
import type { InterfaceMeter } from './interface-meter.ts'

/** Raised when no gateway answers on the LAN in time. */
export class GatewayNotFoundError extends SparebandError {
  constructor (message: string) {
    super('ERR_NO_GATEWAY', message)
  }
}

/** Options of {@link findGateway}. */
export interface FindGatewayOptions {
  /** Runs `ip` to read the default route. */
  runner: CommandRunner
  /** The chain and contract the buyer pays on; the offer must name them. */
  chainId: number
  contract: Address
  /** Give up after this long. Default 15 s (libp2p's mDNS asks again every 10 s). */
  timeoutMs?: number
}

/** A gateway found on the LAN. */
export interface FoundGateway {
  peer: PeerId
  offer: SignedOffer
  /** The gateway's LAN address (the default route's next hop). */
  address: string
  /** This device's interface towards it: the one to meter. */
  interface: string
}

/**
 * Waits for mDNS (the node must run libp2p's mDNS discovery) to report the peer at
 * the default route's next hop, fetches and verifies its offer and returns it once it
 * offers the `gateway` service. Throws {@link GatewayNotFoundError} after the timeout.
 */
export async function findGateway (node: Pick<Libp2p, 'addEventListener' | 'removeEventListener' | 'dialProtocol' | 'peerStore'>, options: FindGatewayOptions): Promise<FoundGateway> {
  const route = await defaultRoute(options.runner)
  if (route?.gateway == null) throw new GatewayNotFoundError('this device has no default route through a router; join the seller\'s hotspot (or LAN) first')
  const address = route.gateway
  const timeoutMs = options.timeoutMs ?? 15_000
  return await new Promise<FoundGateway>((resolve, reject) => {
    const tried = new Set<string>()
    let done = false
    const finish = (err: Error | undefined, found?: FoundGateway): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      node.removeEventListener('peer:discovery', onDiscovery)
      if (err !== undefined) reject(err)
      else resolve(found as FoundGateway)
    }
    const timer = setTimeout(() => {
      finish(new GatewayNotFoundError(`no spareband gateway answered at ${address} within ${timeoutMs} ms; check that the hotspot runs spareband in gateway mode and that mDNS (UDP 5353) is not filtered`))
    }, timeoutMs)
    const consider = (peer: PeerInfo): void => {
      const key = peer.id.toString()
      if (done || tried.has(key)) return
      if (!peer.multiaddrs.some((a) => a.getComponents()[0]?.value === address)) return
      tried.add(key)
      fetchOffer(node, peer.id, { chainId: options.chainId, contract: options.contract })
        .then(({ offer }) => {
          if (offer.services.includes('gateway')) finish(undefined, { peer: peer.id, offer, address, interface: route.interface })
          else tried.delete(key)
        }, () => { tried.delete(key) })
    }
    const onDiscovery = (evt: CustomEvent<PeerInfo>): void => { consider(evt.detail) }
    node.addEventListener('peer:discovery', onDiscovery)
    // peers mDNS reported before we started listening
    node.peerStore.all().then((peers) => {
      for (const p of peers) consider({ id: p.id, multiaddrs: p.addresses.map((a) => a.multiaddr) })
    }, () => {})
  })
}

/** Options of {@link openGatewaySession}. */
export interface GatewaySessionInit extends Omit<BuyerPaymentInit, 'service' | 'meteredBytes'> {
  /** The device's running interface meter (it keeps counting across sessions). */
  meter: InterfaceMeter
  /** Bytes this buyer had metered on the channel when the meter started (0 for a new channel). */
  meterBase: bigint
}

/**
 * Opens a gateway session whose meter is the interface meter: it starts at
 * `meterBase + meter.totalBytes` and follows every later poll until the session closes.
 */
export async function openGatewaySession (init: GatewaySessionInit): Promise<BuyerPaymentSession> {
  const { meter, meterBase, ...rest } = init
  const at = await meter.poll()
  const session = await openBuyerPaymentSession({ ...rest, service: 'gateway', meteredBytes: meterBase + at })
  // bytes counted while the session opened, then every later poll
  if (meter.totalBytes > at) session.meter(Number(meter.totalBytes - at))
  const onBytes = (delta: bigint): void => { session.meter(Number(delta)) }
  meter.on('bytes', onBytes)
  session.once('closed', () => { meter.off('bytes', onBytes) })
  return session
}
