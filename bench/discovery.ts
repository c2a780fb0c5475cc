/**
 * Discovery benchmark: 50 libp2p nodes on loopback form the private DHT (some
 * of them sellers); fresh buyers that know one DHT peer time a DHT search up
 * to the first verified offer. Baseline in the same run: a fresh buyer that
 * already knows a seller's address dials it and fetches its offer.
 *
 * Prints `{"bench":"discovery","nodes":50,"medianMs":…,"p90Ms":…,…}`.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { pino } from 'pino'
import { zeroAddress, type Address } from 'viem'
import { SellerDiscovery } from '../daemon/buyer/discovery.ts'
import { fetchOffer } from '../daemon/buyer/fetch-offer.ts'
import { createNode, type SparebandNode } from '../daemon/node/create-node.ts'
import { advertiser, type Advertiser } from '../daemon/services/advertiser.ts'
import { offerService, type OfferTerms } from '../daemon/services/offer-service.ts'
import type { Libp2p } from '@libp2p/interface'

const NODES = 50
const SELLERS = 25
const QUERIES = 20
const START_BATCH = 10
const SEARCH_TIMEOUT_MS = 10_000
const CHAIN_ID = 31337
const CONTRACT: Address = '0x5FbDB2315678afecb367f032d93F642f64180aa3'
const PAYOUT: Address = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'
const logger = pino({ level: 'silent' })

const running: Array<Libp2p<any>> = []
const deadline = setTimeout(() => {
  process.stderr.write('discovery bench: over its 110 s budget, giving up\n')
  process.exit(1)
}, 110_000)

function terms (i: number): OfferTerms {
  return {
    payout: PAYOUT,
    chainId: CHAIN_ID,
    contract: CONTRACT,
    tokens: [{ token: zeroAddress, pricePerGiB: BigInt(1_000 + i) }],
    spareUplinkBps: 10_000_000,
    services: ['relay'],
    region: 'eu',
    reachability: 'public'
  }
}

function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]
}

function round (ms: number): number {
  return Math.round(ms * 10) / 10
}

async function start<S extends Record<string, unknown>> (init: Parameters<typeof createNode<S>>[0]): Promise<SparebandNode<S>> {
  const node = await createNode<S>(init)
  running.push(node)
  return node
}

async function freshBuyer (bootstrapPeer: Libp2p<any>): Promise<SparebandNode> {
  const buyer = await start({ privateKey: await generateKeyPair('Ed25519'), bootstrap: [bootstrapPeer.getMultiaddrs()[0].toString()], dhtServer: false, mdns: false })
  // the clock starts once the buyer is connected to the one peer it knows
  for (let i = 0; i < 500 && buyer.getConnections(bootstrapPeer.peerId).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5))
  return buyer
}

async function stop (node: Libp2p<any>): Promise<void> {
  running.splice(running.indexOf(node), 1)
  await node.stop()
}

try {
  // build the DHT first: every node joins (sellers without capacity yet), then refreshes its routing table, so
  // that the network is settled as a long-running one would be; only then do the sellers advertise
  let selling = false
  const boot = await start({ privateKey: await generateKeyPair('Ed25519') })
  const dhtPeers: Array<SparebandNode<any>> = [boot]
  const sellers: Array<SparebandNode<{ advertiser: Advertiser }>> = []
  for (let i = 1; i < NODES; i += START_BATCH) {
    const batch = await Promise.all(Array.from({ length: Math.min(START_BATCH, NODES - i) }, async (_, j) => {
      const index = i + j
      const known = [boot, dhtPeers[Math.floor(Math.random() * dhtPeers.length)]]
      const bootstrap = [...new Set(known.map((n) => n.getMultiaddrs()[0].toString()))]
      const privateKey = await generateKeyPair('Ed25519')
      if (index > SELLERS) return start({ privateKey, bootstrap })
      const seller = await start({
        privateKey,
        bootstrap,
        services: {
          advertiser: advertiser({ logger, region: 'eu', spareCapacity: () => ({ spareUplinkBps: selling ? 10_000_000 : 0 }) }),
          offer: offerService({ logger, terms: () => terms(index) })
        }
      })
      sellers.push(seller)
      return seller
    }))
    dhtPeers.push(...batch)
  }
  for (let i = 0; i < dhtPeers.length; i += START_BATCH) {
    await Promise.all(dhtPeers.slice(i, i + START_BATCH).map(async (node) => node.services.dht.refreshRoutingTable()))
  }
  const plainPeers = dhtPeers.filter((node) => !sellers.includes(node))
  selling = true
  await Promise.all(sellers.map(async (seller) => seller.services.advertiser.refresh()))
  // a provide can miss every DHT peer under this start-up load; the advertiser then retries after 1 s, 2 s, …
  for (let i = 0; i < 1_500 && !sellers.every((s) => s.services.advertiser.advertising); i++) await new Promise((resolve) => setTimeout(resolve, 20))
  if (!sellers.every((s) => s.services.advertiser.advertising)) throw new Error('not every seller advertised')
  await new Promise((resolve) => setTimeout(resolve, 5_000))

  const searchMs: number[] = []
  const baselineMs: number[] = []
  let misses = 0
  for (let q = 0; q < QUERIES; q++) {
    // buyers join through a DHT node that does not sell, so every offer needs a lookup and a new connection
    const entry = plainPeers[Math.floor(Math.random() * plainPeers.length)]

    const buyer = await freshBuyer(entry)
    const discovery = new SellerDiscovery(buyer, { chainId: CHAIN_ID, contract: CONTRACT, token: zeroAddress, logger })
    const t0 = performance.now()
    let first: number | undefined
    for await (const _candidate of discovery.find({ timeoutMs: SEARCH_TIMEOUT_MS })) {
      first = performance.now() - t0
      break
    }
    // a search that found nothing counts with its whole time limit, so misses weigh on the percentiles
    if (first == null) misses++
    searchMs.push(first ?? SEARCH_TIMEOUT_MS)
    await stop(buyer)

    const seller = sellers[Math.floor(Math.random() * sellers.length)]
    const direct = await start({ privateKey: await generateKeyPair('Ed25519'), dhtServer: false, mdns: false })
    await direct.peerStore.merge(seller.peerId, { multiaddrs: seller.getMultiaddrs() })
    const t1 = performance.now()
    await fetchOffer(direct, seller.peerId, { chainId: CHAIN_ID, contract: CONTRACT })
    baselineMs.push(performance.now() - t1)
    await stop(direct)
  }

  searchMs.sort((a, b) => a - b)
  baselineMs.sort((a, b) => a - b)
  const medianMs = percentile(searchMs, 0.5)
  const baselineMedianMs = percentile(baselineMs, 0.5)
  process.stdout.write(JSON.stringify({
    bench: 'discovery',
    nodes: NODES,
    sellers: SELLERS,
    queries: QUERIES,
    misses,
    medianMs: round(medianMs),
    p90Ms: round(percentile(searchMs, 0.9)),
    baselineMedianMs: round(baselineMedianMs),
    baselineP90Ms: round(percentile(baselineMs, 0.9)),
    ratio: round(medianMs / baselineMedianMs),
    rssMB: Math.round(process.memoryUsage().rss / 2 ** 20)
  }) + '\n')
} finally {
  await Promise.all(running.splice(0).map(async (node) => node.stop()))
  clearTimeout(deadline)
}
