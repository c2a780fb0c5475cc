/**
 * The seller daemon (`spareband start`): one libp2p node with the advertiser,
 * the offer service, the payment service and the relay exit; LevelDB state;
 * batch settlement and a chain watcher; spare capacity from the hardware adapter.
 */
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { getAddress, type Address } from 'viem'
import type { Logger } from 'pino'
import type { HardwareAdapter } from '../hardware/adapter.ts'
import type { SharingPolicy } from '../hardware/spare-capacity.ts'
import { exitPolicy } from '../protocol/exit-policy.ts'
import { secp256k1Backend } from '../protocol/secp256k1.ts'
import { VoucherVerifier } from '../protocol/voucher-verify.ts'
import type { Registry } from 'prom-client'
import { startApiServer } from './api/server.ts'
import { CapacityMonitor } from './capacity-monitor.ts'
import { createSpareChannelsClient, type SpareChannelsClient } from './chain/client.ts'
import { ChainWatcher } from './chain/watcher.ts'
import type { Config } from './config/schema.ts'
import type { NodeKeys } from './config/keys.ts'
import { startKernelMetering, type KernelMetering } from './gateway/kernel-metering.ts'
import { createNode, type SparebandNode } from './node/create-node.ts'
import { sellerPaymentService, type SellerPaymentService, type SessionInfo } from './payment/seller-payment-service.ts'
import { relayExit, type RelayExit } from './relay/exit-service.ts'
import { advertiser, type Advertiser } from './services/advertiser.ts'
import { offerService, type OfferService } from './services/offer-service.ts'
import { Settler } from './settlement/settler.ts'
import { SellerStore } from './state/store.ts'

/** Options of {@link startSeller}. */
export interface SellerInit {
  config: Config
  keys: NodeKeys
  adapter: HardwareAdapter
  logger: Logger
  /** How often the chain client polls for receipts and blocks, in ms. Default 1 s (a devnet mines at once: use ~50). */
  chainPollingIntervalMs?: number
}

/** The services of a seller's libp2p node. */
export type SellerServices = { advertiser: Advertiser, offer: OfferService, payment: SellerPaymentService, relay: RelayExit }

/** A seller's state at a glance (`spareband status`). */
export interface SellerStatus {
  peerId: string
  addresses: string[]
  payout: Address
  hotAddress: Address
  chainId: number
  contract: Address
  spareUplinkBps: number
  sharing: string
  lastAdvertisedAt: number | undefined
  sessions: SessionInfo[]
  owed: Array<{ channelId: string, token: string, owed: bigint }>
  verifierBackend: string
}

/** A running seller. */
export interface Seller {
  node: SparebandNode<SellerServices>
  store: SellerStore
  chain: SpareChannelsClient
  settler: Settler
  status: () => Promise<SellerStatus>
  /**
   * The seller's Prometheus metrics. prom-client (and its process metrics: event-loop
   * delay, GC) loads on the first call, i.e. the first scrape: a seller nobody scrapes
   * does not carry it.
   */
  metrics: () => Promise<Registry>
  /** Base URL of the control API and dashboard, e.g. `http://127.0.0.1:8742/`. */
  apiUrl: string
  /** Base URL of the metrics-only listener, when `metricsListen` is set. */
  metricsUrl: string | undefined
  /** Kernel metering: the gateway (hotspot/LAN buyers) and the relay-exit reconciliation, when either runs. */
  kernelMetering: KernelMetering | undefined
  stop: () => Promise<void>
}

/** How long the first scrape waits after creating the metrics, so that the process metrics have samples. */
const FIRST_SCRAPE_DELAY_MS = 50

/** Starts a seller from a validated config and its keys. */
export async function startSeller (init: SellerInit): Promise<Seller> {
  const { config, keys, adapter } = init
  const log = init.logger
  const backend = secp256k1Backend()
  if (backend.fallbackReason !== undefined) log.warn({ reason: backend.fallbackReason }, 'native secp256k1 unavailable; verifying vouchers with @noble/curves (slower)')

  const payout = getAddress(config.seller.payoutAddress ?? keys.hot.address)
  const chain = createSpareChannelsClient({ rpcUrl: config.chain.rpcUrl, chainId: config.chain.chainId, contract: config.chain.contract, account: keys.hot, pollingIntervalMs: init.chainPollingIntervalMs })
  const verifier = new VoucherVerifier({ chainId: config.chain.chainId, verifyingContract: config.chain.contract })
  const prices = new Map(config.seller.prices.map((p) => [p.token.toLowerCase(), BigInt(p.pricePerGiB)]))
  const store = await SellerStore.open({ dataDir: join(config.dataDir, 'seller') })
  const stoppers: Array<() => Promise<void> | void> = [() => store.close()]
  try {
    await adapter.start()
    stoppers.unshift(async () => { await adapter.stop() })
    let node: SparebandNode<SellerServices> | undefined
    let metering: KernelMetering | undefined
    const soldBytes = (): bigint => {
      const relayed = node?.services.payment.relayedBytes() ?? { up: 0n, down: 0n }
      return relayed.up + relayed.down + (metering?.gateway?.countedBytes() ?? 0n)
    }
    const capacity = new CapacityMonitor({ adapter, policy: sharingPolicy(config), soldBytes, store, logger: log })
    await capacity.start()
    stoppers.unshift(() => capacity.stop())
    const spareBps = (): number => Math.floor(capacity.current().spareBytesPerSec * 8)

    metering = await startKernelMetering({
      adapter,
      store,
      gateway: config.gateway,
      creditWindowBytes: BigInt(config.seller.creditWindowBytes),
      relayedBytes: () => node?.services.payment.relayedBytes() ?? { up: 0n, down: 0n },
      logger: log
    })
    // after the node (its sessions end first), before the adapter (which deletes the table)
    if (metering !== undefined) stoppers.unshift(() => metering.stop())
    node = await createNode<SellerServices>({
      privateKey: keys.peerKey,
      listen: config.listen,
      bootstrap: config.bootstrap,
      mdns: config.mdns,
      services: {
        advertiser: advertiser({ spareCapacity: () => ({ spareUplinkBps: spareBps() }), region: config.seller.region, logger: log }),
        offer: offerService({
          terms: () => spareBps() <= 0 ? null : {
            payout,
            chainId: config.chain.chainId,
            contract: config.chain.contract,
            tokens: config.seller.prices.map((p) => ({ token: p.token as Address, pricePerGiB: BigInt(p.pricePerGiB) })),
            spareUplinkBps: spareBps(),
            services: metering?.gateway !== undefined ? ['relay', 'gateway'] : ['relay'],
            region: config.seller.region,
            reachability: 'unknown'
          },
          logger: log
        }),
        payment: sellerPaymentService({
          store,
          readChannel: (id) => chain.getChannel(id),
          verifier,
          chainId: config.chain.chainId,
          contract: config.chain.contract,
          payee: payout,
          prices,
          creditWindowBytes: BigInt(config.seller.creditWindowBytes),
          maxSessions: config.seller.maxSessions,
          available: () => spareBps() > 0,
          gateway: metering?.gateway,
          logger: log
        }),
        relay: relayExit({
          gate: { authorize: async (peer, id) => await (node as SparebandNode<SellerServices>).services.payment.authorize(peer, id) },
          policy: exitPolicy({
            ownAddresses: ownAddresses(),
            deniedPorts: config.seller.exitPolicy.denyPorts,
            allowedPorts: config.seller.exitPolicy.allowPorts,
            allowCidrs: config.seller.exitPolicy.allowCidrs,
            denyCidrs: config.seller.exitPolicy.denyCidrs
          }),
          maxStreamsPerPeer: config.seller.maxStreamsPerPeer,
          maxStreams: config.seller.maxStreams,
          logger: log
        })
      }
    })
    const started = node
    stoppers.unshift(() => started.stop())
    metering?.announce(() => started.getMultiaddrs())

    const settler = new Settler({
      store,
      chain,
      logger: log,
      intervalMs: config.seller.settleIntervalSec * 1000,
      threshold: BigInt(config.seller.settleThreshold),
      gasPriceCap: BigInt(Math.round(config.chain.gasPriceCapGwei * 1e9))
    })
    await settler.start()
    stoppers.unshift(() => settler.stop())
    const watcher = new ChainWatcher({ store, chain, logger: log, settler })
    watcher.addEventListener('close-requested', (e) => started.services.payment.onChannelEvent(e.detail.channelId, { closeDeadline: Number(e.detail.closeDeadline) }))
    watcher.addEventListener('topped-up', (e) => started.services.payment.onChannelEvent(e.detail.channelId, { deposit: e.detail.deposit }))
    await watcher.start()
    stoppers.unshift(() => watcher.stop())

    const sessions = (): SessionInfo[] => started.services.payment.sessions()
    const status = async (): Promise<SellerStatus> => ({
      peerId: started.peerId.toString(),
      addresses: started.getMultiaddrs().map(String),
      payout,
      hotAddress: keys.hot.address,
      chainId: config.chain.chainId,
      contract: config.chain.contract,
      spareUplinkBps: spareBps(),
      sharing: capacity.current().reason,
      lastAdvertisedAt: started.services.advertiser.lastAdvertisedAt,
      sessions: sessions(),
      owed: (await settler.owed()).map((o) => ({ channelId: o.channel.channelId, token: o.channel.token, owed: o.owed })),
      verifierBackend: verifier.backend
    })
    let registry: Promise<Registry> | undefined
    const metrics = async (): Promise<Registry> => await (registry ??= import('./metrics.ts').then(async ({ createSellerMetrics }) => {
      const created = createSellerMetrics({ store, settler, sessions, relayedBytes: () => started.services.payment.relayedBytes(), voucherOutcomes: () => started.services.payment.voucherOutcomes(), exitDivergence: () => metering?.reconciler?.current().divergence ?? null, capacity: () => capacity.current() })
      // the event-loop delay monitor (10 ms resolution) reports NaN until it has samples
      await new Promise((resolve) => setTimeout(resolve, FIRST_SCRAPE_DELAY_MS))
      return created
    }))
    const api = await startApiServer({
      seller: { store, settler, sessions, status, tokens: config.seller.prices.map((p) => p.token as Address), settleNow: async (o) => await settler.settleNow(o) },
      metrics,
      listen: config.apiListen,
      allowRemote: config.apiAllowRemote,
      metricsListen: config.metricsListen,
      dataDir: config.dataDir,
      logger: log
    })
    stoppers.unshift(() => api.stop())

    log.info({ peerId: started.peerId.toString(), addrs: started.getMultiaddrs().map(String), payout, contract: config.chain.contract, api: api.url }, 'seller started')
    return {
      node: started,
      store,
      chain,
      settler,
      status,
      metrics,
      apiUrl: api.url,
      metricsUrl: api.metricsUrl,
      kernelMetering: metering,
      stop: async () => {
        for (const stop of stoppers) await stop()
      }
    }
  } catch (err) {
    for (const stop of stoppers) await Promise.resolve(stop()).catch(() => {})
    throw err
  }
}

/** The operator's sharing rules from the config. */
function sharingPolicy (config: Config): SharingPolicy {
  const s = config.seller
  const days = (['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const).filter((_, i) => s.schedule.days.includes(i))
  const always = days.length === 7 && s.schedule.fromHour === 0 && s.schedule.toHour === 24
  return {
    schedule: always ? null : [{ days: [...days], start: hh(s.schedule.fromHour), end: hh(s.schedule.toHour) }],
    bandwidthLimitBytesPerSec: s.bandwidthLimitMbps === undefined ? null : s.bandwidthLimitMbps * 125_000,
    monthlyCapBytes: s.monthlyCapGiB === undefined ? null : BigInt(Math.round(s.monthlyCapGiB * 2 ** 30)),
    capResetDay: 1,
    reserveFraction: 0.1
  }
}

function hh (hour: number): string {
  return `${String(hour).padStart(2, '0')}:00`
}

/** Every address of this machine's interfaces: the exit never connects to them. */
function ownAddresses (): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address.split('%')[0]))
}
