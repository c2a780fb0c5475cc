/**
 * The buyer daemon (`spareband connect`): a libp2p node in DHT client mode,
 * seller discovery, the chain client funded by the hot key, the buyer's own
 * LevelDB and the {@link BuyerClient} with its local proxies, composed from a
 * validated config and the node's keys.
 */
import { join } from 'node:path'
import type { Logger } from 'pino'
import { SparebandError } from '../../protocol/errors.ts'
import { createSpareChannelsClient, type SpareChannelsClient } from '../chain/client.ts'
import type { NodeKeys } from '../config/keys.ts'
import type { Config } from '../config/schema.ts'
import { createNode, type SparebandNode } from '../node/create-node.ts'
import { BuyerClient } from './buyer-client.ts'
import { BuyerStore } from './buyer-store.ts'
import { SellerDiscovery } from './discovery.ts'

/** Raised when the configured chain is not the one the RPC endpoint serves. */
export class ChainMismatchError extends SparebandError {
  constructor (rpcUrl: string, expected: number, actual: number) {
    super('ERR_CHAIN_MISMATCH', `the RPC endpoint ${rpcUrl} serves chain ${actual}, the configuration says ${expected}; fix chain.chainId or chain.rpcUrl`)
  }
}

/** Options of {@link startBuyer}. */
export interface BuyerInit {
  config: Config
  keys: NodeKeys
  logger: Logger
  /** Listen addresses of the buyer's node. Default none: a buyer only dials out. */
  listen?: string[]
  /** How often the chain client polls for receipts, in ms. Default 1 s (a devnet mines at once: use ~50). */
  pollingIntervalMs?: number
  /** Time a seller that failed is left out of new searches (see {@link BuyerClient}). */
  retryFailedAfterMs?: number
}

/** A running buyer. */
export interface Buyer {
  node: SparebandNode
  discovery: SellerDiscovery
  chain: SpareChannelsClient
  store: BuyerStore
  client: BuyerClient
  /** Closes the session politely, then stops the proxies, the node and the store. */
  stop: () => Promise<void>
}

/**
 * Starts a buyer: checks the chain, opens the store, starts the node (joining
 * the DHT through `config.bootstrap`), finds a seller, opens or reuses a
 * channel, opens a payment session and serves the proxies of `config.buyer`.
 */
export async function startBuyer (init: BuyerInit): Promise<Buyer> {
  const { config, keys } = init
  const log = init.logger
  const chain = createSpareChannelsClient({
    rpcUrl: config.chain.rpcUrl,
    chainId: config.chain.chainId,
    contract: config.chain.contract,
    account: keys.hot,
    pollingIntervalMs: init.pollingIntervalMs
  })
  const served = await chain.publicClient.getChainId()
  if (served !== config.chain.chainId) throw new ChainMismatchError(config.chain.rpcUrl, config.chain.chainId, served)

  const stoppers: Array<() => Promise<void>> = []
  const stopAll = async (): Promise<void> => {
    for (const stop of stoppers.splice(0)) await stop().catch((err: unknown) => { log.warn({ err }, 'error while stopping the buyer') })
  }
  try {
    const store = await BuyerStore.open(join(config.dataDir, 'buyer'))
    stoppers.unshift(async () => { await store.close() })
    const node = await createNode({
      privateKey: keys.peerKey,
      listen: init.listen ?? [],
      bootstrap: config.bootstrap,
      mdns: config.mdns,
      dhtServer: false
    })
    stoppers.unshift(async () => { await node.stop() })
    const discovery = new SellerDiscovery(node, {
      chainId: config.chain.chainId,
      contract: config.chain.contract,
      token: config.buyer.token,
      logger: log
    })
    const client = new BuyerClient({
      node,
      discovery,
      chain,
      sessionKey: keys.session,
      store,
      token: config.buyer.token,
      deposit: BigInt(config.buyer.deposit),
      spendCap: BigInt(config.buyer.spendCap),
      tolerance: { bytes: BigInt(config.buyer.toleranceBytes), basisPoints: 100n },
      region: config.buyer.region,
      socks: hostPort(config.buyer.socksListen),
      http: hostPort(config.buyer.httpListen),
      retryFailedAfterMs: init.retryFailedAfterMs,
      logger: log
    })
    stoppers.unshift(async () => { await client.stop() })
    await client.start()
    log.info({ peerId: node.peerId.toString(), socks: client.socksAddress, http: client.httpAddress }, 'buyer started')
    return { node, discovery, chain, store, client, stop: stopAll }
  } catch (err) {
    await stopAll()
    throw err
  }
}

/** Splits `host:port` (IPv6 in brackets) as the config schema allows it. */
export function hostPort (value: string): { host: string, port: number } {
  const colon = value.lastIndexOf(':')
  const host = value.slice(0, colon).replace(/^\[(.*)\]$/, '$1')
  return { host, port: Number(value.slice(colon + 1)) }
}
