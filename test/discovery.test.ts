import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { pino } from 'pino'
import { zeroAddress, type Address } from 'viem'
import { SellerDiscovery, rankCandidates, type SellerCandidate } from '../daemon/buyer/discovery.ts'
import { fetchOffer, OfferUnavailableError } from '../daemon/buyer/fetch-offer.ts'
import { framedStream } from '../daemon/framing.ts'
import { advertiser } from '../daemon/services/advertiser.ts'
import { offerService, type OfferTerms } from '../daemon/services/offer-service.ts'
import { createOffer, type SignedOffer } from '../protocol/offer.ts'
import { offerCodecs } from '../protocol/messages/offer.ts'
import { OFFER_PROTOCOL } from '../protocol/protocol-ids.ts'
import { NodeSet, dialAddress, waitFor } from './helpers/libp2p-nodes.ts'
import type { PrivateKey, Stream } from '@libp2p/interface'

const logger = pino({ level: process.env.LOG ?? 'silent' }, pino.destination(2))
const CHAIN_ID = 31337
const CONTRACT: Address = '0x5FbDB2315678afecb367f032d93F642f64180aa3'
const PAYOUT: Address = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'
const OTHER_TOKEN: Address = '0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512'

function terms (pricePerGiB: bigint, overrides: Partial<OfferTerms> = {}): OfferTerms {
  return {
    payout: PAYOUT,
    chainId: CHAIN_ID,
    contract: CONTRACT,
    tokens: [{ token: zeroAddress, pricePerGiB }],
    spareUplinkBps: 10_000_000,
    services: ['relay'],
    region: 'eu',
    reachability: 'public',
    ...overrides
  }
}

/** Reads the offer request on `stream` and answers with whatever `forge` makes of it. */
function answerWith (forge: (nonce: string | undefined) => Promise<SignedOffer>) {
  return async (stream: Stream): Promise<void> => {
    const framed = framedStream(stream, { maxMessageBytes: offerCodecs.fromBuyer.maxMessageBytes })
    const request = offerCodecs.fromBuyer.decode(await framed.read())
    const offer = await forge(request.nonce)
    // bypass the codec's encode-side checks: a hostile seller sends whatever bytes it likes
    const wire = JSON.stringify({ v: 1, type: 'offer', offer }, (_key, value: unknown) => typeof value === 'bigint' ? value.toString() : value)
    await framed.write(new TextEncoder().encode(wire))
    await stream.close()
  }
}

async function signedBy (key: PrivateKey, nonce: string | undefined, over: { issuedAt?: number, expiresAt?: number } = {}): Promise<SignedOffer> {
  const issuedAt = over.issuedAt ?? Date.now()
  return createOffer({ ...terms(1n), listenAddrs: [], issuedAt, expiresAt: over.expiresAt ?? issuedAt + 60_000, nonce }, key)
}

describe('seller discovery through the DHT', () => {
  const nodes = new NodeSet()
  const honest: Array<{ id: string, price: bigint }> = []
  const hostile: Record<string, string> = {}
  let bootstrap: string[]
  let idle: string
  let wrongChain: string
  let otherToken: string

  before(async () => {
    const boot = await nodes.start()
    bootstrap = [dialAddress(boot)]
    const seller = async (spare: number, offerTerms: () => OfferTerms | null) => nodes.start({
      bootstrap,
      services: {
        advertiser: advertiser({ logger, region: 'eu', spareCapacity: () => ({ spareUplinkBps: spare }) }),
        offer: offerService({ logger, terms: offerTerms })
      }
    })
    for (const price of [300n, 100n, 200n]) {
      const node = await seller(10_000_000, () => terms(price))
      honest.push({ id: node.peerId.toString(), price })
    }
    idle = (await seller(0, () => terms(1n, { spareUplinkBps: 0 }))).peerId.toString()
    wrongChain = (await seller(10_000_000, () => terms(1n, { chainId: 1 }))).peerId.toString()
    otherToken = (await seller(10_000_000, () => terms(1n, { tokens: [{ token: OTHER_TOKEN, pricePerGiB: 1n }] }))).peerId.toString()

    // hostile sellers advertise like honest ones but answer with forged offers, all priced 1 (cheapest)
    const forgers: Record<string, (key: PrivateKey, nonce: string | undefined) => Promise<SignedOffer>> = {
      ERR_OFFER_SIGNATURE: async (key, nonce) => ({ ...await signedBy(key, nonce), tokens: [{ token: zeroAddress, pricePerGiB: 0n }] }),
      ERR_OFFER_EXPIRED: async (key, nonce) => signedBy(key, nonce, { issuedAt: Date.now() - 120_000, expiresAt: Date.now() - 60_000 }),
      ERR_OFFER_PEER_MISMATCH: async (_key, nonce) => signedBy(await generateKeyPair('Ed25519'), nonce),
      ERR_OFFER_NONCE_MISMATCH: async (key) => signedBy(key, '0'.repeat(32))
    }
    for (const [code, forge] of Object.entries(forgers)) {
      const privateKey = await generateKeyPair('Ed25519')
      const node = await nodes.start({ privateKey, bootstrap, services: { advertiser: advertiser({ logger, spareCapacity: () => ({ spareUplinkBps: 1 }) }) } })
      await node.handle(OFFER_PROTOCOL, answerWith(async (nonce) => forge(privateKey, nonce)))
      hostile[node.peerId.toString()] = code
    }
    await waitFor(() => nodes.running().every((n) => n.services.advertiser == null || n.services.advertiser.advertising || n.peerId.toString() === idle), 15_000, 'sellers to advertise')
  })

  after(async () => { await nodes.stopAll() })

  it('finds every honest seller from one bootstrap peer, verifies their offers and ranks them by price', async () => {
    const buyer = await nodes.start({ bootstrap, dhtServer: false, mdns: false })
    const discovery = new SellerDiscovery(buyer, { chainId: CHAIN_ID, contract: CONTRACT, token: zeroAddress, logger })
    const candidates = await discovery.discover({ timeoutMs: 10_000 })

    assert.deepEqual(candidates.map((c) => c.peerId.toString()), [...honest].sort((a, b) => Number(a.price - b.price)).map((h) => h.id))
    for (const c of candidates) {
      assert.equal(c.offer.peerId, c.peerId.toString())
      assert.equal(c.offer.chainId, CHAIN_ID)
      assert.ok(c.offer.expiresAt > Date.now())
      assert.ok(c.latencyMs > 0 && c.latencyMs < 5_000)
      assert.ok(c.offer.listenAddrs.length > 0)
    }

    const seen = new Map(discovery.seen().map((s) => [s.peerId, s]))
    assert.equal(seen.has(idle), false, 'a seller without spare capacity is not advertised, so never seen')
    for (const [id, code] of Object.entries(hostile)) {
      assert.equal(seen.get(id)?.status, 'rejected', `hostile seller (${code})`)
      assert.equal(seen.get(id)?.error?.code, code)
    }
    assert.equal(seen.get(wrongChain)?.status, 'rejected')
    assert.equal(seen.get(wrongChain)?.error?.code, 'ERR_OFFER_CHAIN_MISMATCH')
    assert.equal(seen.get(otherToken)?.status, 'unsuitable')
    assert.equal(seen.get(otherToken)?.error?.code, 'ERR_TOKEN_NOT_ACCEPTED')
    for (const h of honest) assert.equal(seen.get(h.id)?.status, 'verified')
  })

  it('looks up region keys, and stops at maxCandidates', async () => {
    const buyer = await nodes.start({ bootstrap, dhtServer: false, mdns: false })
    const discovery = new SellerDiscovery(buyer, { chainId: CHAIN_ID, contract: CONTRACT, token: zeroAddress, logger })
    const eu = await discovery.discover({ region: 'eu' })
    assert.deepEqual(new Set(eu.map((c) => c.peerId.toString())), new Set(honest.map((h) => h.id)))
    assert.equal((await discovery.discover({ region: 'us', timeoutMs: 2_000 })).length, 0)
    assert.equal((await discovery.discover({ maxCandidates: 1 })).length, 1)
  })
})

describe('offer protocol against hostile peers', () => {
  const nodes = new NodeSet()
  after(async () => { await nodes.stopAll() })

  /** A raw offer stream from `from` to `to`, and a promise of how it ended. */
  async function rawStream (from: Awaited<ReturnType<typeof nodes.start>>, to: Awaited<ReturnType<typeof nodes.start>>) {
    const stream = await from.dialProtocol(to.peerId, OFFER_PROTOCOL)
    const ended = (async () => {
      let bytes = 0
      try {
        for await (const chunk of stream) bytes += chunk.byteLength
        return { bytes, status: stream.status, error: undefined }
      } catch (err) {
        return { bytes, status: stream.status, error: err as Error }
      }
    })()
    return { stream, ended }
  }

  it('closes only the offending stream on garbage, oversize frames and stalls, and keeps answering', async () => {
    const seller = await nodes.start({ services: { offer: offerService({ logger, terms: () => terms(100n), streamTimeoutMs: 300, maxInboundStreams: 2 }) } })
    const attacker = await nodes.start({ mdns: false })
    const buyer = await nodes.start({ mdns: false })
    await attacker.peerStore.merge(seller.peerId, { multiaddrs: seller.getMultiaddrs() })
    await buyer.peerStore.merge(seller.peerId, { multiaddrs: seller.getMultiaddrs() })
    const fetch = async () => fetchOffer(buyer, seller.peerId, { chainId: CHAIN_ID, contract: CONTRACT })

    // a stalled stream holds one of the attacker's two stream slots until the seller's timeout
    const stalled = await rawStream(attacker, seller)
    // an announced 1 GiB frame
    const oversize = await rawStream(attacker, seller)
    oversize.stream.send(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x04]))
    const oversizeEnd = await oversize.ended
    assert.equal(oversizeEnd.bytes, 0)
    assert.notEqual(oversizeEnd.status, 'open')
    assert.equal((await fetch()).offer.peerId, seller.peerId.toString(), 'other peers are still served')

    // garbage inside a well-formed frame
    const garbage = await rawStream(attacker, seller)
    garbage.stream.send(Uint8Array.from([5, 0x7b, 0x7b, 0x7b, 0xff, 0x00]))
    const garbageEnd = await garbage.ended
    assert.equal(garbageEnd.bytes, 0)
    assert.notEqual(garbageEnd.status, 'open')

    const stalledEnd = await stalled.ended
    assert.equal(stalledEnd.bytes, 0)
    assert.notEqual(stalledEnd.status, 'open')
    assert.ok(seller.getConnections(attacker.peerId).length > 0, 'the attacker’s connection itself is not torn down')
    assert.equal((await fetch()).offer.peerId, seller.peerId.toString())
  })

  it('limits concurrent offer streams per connection', async () => {
    const seller = await nodes.start({ services: { offer: offerService({ logger, terms: () => terms(100n), streamTimeoutMs: 2_000, maxInboundStreams: 2 }) } })
    const attacker = await nodes.start({ mdns: false })
    await attacker.peerStore.merge(seller.peerId, { multiaddrs: seller.getMultiaddrs() })
    const held = [await rawStream(attacker, seller), await rawStream(attacker, seller)]
    // the seller resets a third concurrent stream once negotiated (the dialer may learn it only then)
    const started = Date.now()
    const third = await rawStream(attacker, seller).catch(() => undefined)
    if (third != null) {
      const end = await third.ended
      assert.equal(end.bytes, 0)
      assert.notEqual(end.status, 'open')
    }
    assert.ok(Date.now() - started < 1_000, 'the third stream is refused at once, not by the stream timeout')
    for (const h of held) assert.equal(h.stream.status, 'open', 'the streams within the limit are untouched')
    for (const h of held) h.stream.abort(new Error('test done'))
  })

  it('reports a seller that is not selling as unavailable', async () => {
    const seller = await nodes.start({ services: { offer: offerService({ logger, terms: () => null }) } })
    const buyer = await nodes.start({ mdns: false })
    await buyer.peerStore.merge(seller.peerId, { multiaddrs: seller.getMultiaddrs() })
    await assert.rejects(fetchOffer(buyer, seller.peerId, { chainId: CHAIN_ID, contract: CONTRACT }), (err: unknown) => {
      assert.ok(err instanceof OfferUnavailableError)
      assert.equal(err.code, 'ERR_NOT_SELLING')
      return true
    })
  })
})

describe('rankCandidates', () => {
  it('orders by price in the buyer’s token, then by latency', () => {
    const peerId = peerIdFromString('12D3KooWGaCjt67hnYLh5XyhpEG6WJxgpPYoQ3s9Eq9GFjm4wWK1')
    const c = (pricePerGiB: bigint, latencyMs: number): SellerCandidate => ({ peerId, offer: {} as SignedOffer, pricePerGiB, latencyMs })
    const ranked = rankCandidates([c(200n, 1), c(100n, 50), c(100n, 5), c(300n, 0)])
    assert.deepEqual(ranked.map((r) => [r.pricePerGiB, r.latencyMs]), [[100n, 5], [100n, 50], [200n, 1], [300n, 0]])
  })
})
