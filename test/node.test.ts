import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { MemoryDatastore } from 'datastore-core'
import { pino } from 'pino'
import { relayKey, regionKey, keyFromString, InvalidRegionError } from '../daemon/node/provider-keys.ts'
import { advertiser, type Advertiser, type AdvertisedDetail, type SpareCapacity } from '../daemon/services/advertiser.ts'
import { DHT_PROTOCOL } from '../protocol/protocol-ids.ts'
import { NodeSet, dialAddress, waitFor } from './helpers/libp2p-nodes.ts'
import type { KadDHT } from '@libp2p/kad-dht'
import type { CID } from 'multiformats/cid'

const logger = pino({ level: process.env.LOG ?? 'silent' }, pino.destination(2))

/** Peer ids of the providers of `key` that `dht` finds, bounded by `timeoutMs`. */
async function findProviderIds (dht: KadDHT, key: CID, timeoutMs = 5_000): Promise<Set<string>> {
  const ids = new Set<string>()
  for await (const event of dht.findProviders(key, { signal: AbortSignal.timeout(timeoutMs) })) {
    if (event.name === 'PROVIDER') for (const p of event.providers) ids.add(p.id.toString())
  }
  return ids
}

function nextAdvert (service: Advertiser): Promise<AdvertisedDetail> {
  return new Promise((resolve) => service.addEventListener('advertised', (evt) => { resolve(evt.detail) }, { once: true }))
}

describe('provider keys', () => {
  it('are deterministic CIDv1 raw sha2-256 keys, distinct per region', () => {
    assert.equal(relayKey().toString(), keyFromString('spareband:relay:v1').toString())
    assert.equal(relayKey().version, 1)
    assert.equal(relayKey().code, 0x55)
    assert.equal(relayKey().multihash.code, 0x12)
    assert.equal(regionKey('eu').toString(), keyFromString('spareband:region:eu:v1').toString())
    assert.notEqual(regionKey('eu').toString(), regionKey('us').toString())
    assert.throws(() => regionKey('EU West'), InvalidRegionError)
  })
})

describe('createNode', () => {
  const nodes = new NodeSet()
  after(async () => { await nodes.stopAll() })

  it('keeps the caller’s peer key, listens on loopback and speaks only the private DHT protocol', async () => {
    const privateKey = await generateKeyPair('Ed25519')
    const node = await nodes.start({ privateKey })
    assert.ok(node.peerId.equals(peerIdFromPrivateKey(privateKey)))
    assert.ok(node.getMultiaddrs().length > 0)
    for (const addr of node.getMultiaddrs()) assert.match(addr.toString(), /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//)
    const protocols = node.getProtocols()
    assert.ok(protocols.includes(DHT_PROTOCOL), `${DHT_PROTOCOL} missing from ${protocols.join(', ')}`)
    assert.ok(!protocols.some((p) => p.startsWith('/ipfs/kad')), 'must not join the public IPFS DHT')
    assert.equal(node.services.dht.getMode(), 'server')
  })

  it('runs the DHT in client mode for a node that does not serve it', async () => {
    const node = await nodes.start({ dhtServer: false })
    assert.equal(node.services.dht.getMode(), 'client')
  })
})

describe('advertiser', () => {
  const nodes = new NodeSet()
  after(async () => { await nodes.stopAll() })

  it('makes sellers with spare capacity findable by relay and region key through the DHT, and no others', async () => {
    const boot = await nodes.start()
    const bootstrap = [dialAddress(boot)]
    const sellerSpecs = [
      { region: 'eu', spare: 10_000_000 },
      { region: 'eu', spare: 5_000_000 },
      { region: 'us', spare: 1_000_000 },
      { region: 'eu', spare: 0 }
    ]
    const sellers = await Promise.all(sellerSpecs.map(async ({ region, spare }) => {
      const node = await nodes.start({ bootstrap, services: { advertiser: advertiser({ logger, region, spareCapacity: () => ({ spareUplinkBps: spare }) }) } })
      return { node, spare, region }
    }))
    const withCapacity = sellers.filter((s) => s.spare > 0)
    await waitFor(() => withCapacity.every((s) => s.node.services.advertiser.advertising), 10_000, 'sellers to advertise')
    assert.equal(sellers[3].node.services.advertiser.advertising, false)
    assert.equal(sellers[3].node.services.advertiser.lastAdvertisedAt, undefined)

    // the looker knows only the bootstrap peer and has no mDNS: it can only learn sellers through the DHT
    // (a DHT server: its lookups wait for a first peer, where a client's would end empty at once)
    const buyer = await nodes.start({ bootstrap, mdns: false })
    const relay = await findProviderIds(buyer.services.dht, relayKey())
    assert.deepEqual(relay, new Set(withCapacity.map((s) => s.node.peerId.toString())))
    const eu = await findProviderIds(buyer.services.dht, regionKey('eu'))
    assert.deepEqual(eu, new Set(withCapacity.filter((s) => s.region === 'eu').map((s) => s.node.peerId.toString())))
  })

  it('repeats a young advert while the DHT forms, then keeps to its interval', async () => {
    const boot = await nodes.start()
    const seller = await nodes.start({
      bootstrap: [dialAddress(boot)],
      services: { advertiser: advertiser({ logger, spareCapacity: () => ({ spareUplinkBps: 1_000_000 }), reprovideIntervalMs: 3_600_000, capacityCheckIntervalMs: 3_600_000, earlyReprovideDelaysMs: [100, 200] }) }
    })
    const service = seller.services.advertiser
    const adverts: number[] = []
    service.addEventListener('advertised', (e) => { adverts.push(e.detail.at) })
    const deadline = Date.now() + 5000
    while (adverts.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal(adverts.length, 3, 'the first advert and two early repeats')
    await new Promise((resolve) => setTimeout(resolve, 600))
    assert.equal(adverts.length, 3, 'no more adverts before the regular interval')
    assert.ok(adverts[1] - adverts[0] >= 100 && adverts[2] - adverts[1] >= 200)
  })

  it('re-provides only after its interval, withdraws without capacity and comes back with it', async () => {
    const boot = await nodes.start()
    const capacity: SpareCapacity = { spareUplinkBps: 1_000_000 }
    const datastore = new MemoryDatastore()
    /** The provider records the seller's DHT keeps; only its own here, as no other node provides. */
    const ownRecords = async (): Promise<number> => {
      let count = 0
      for await (const _key of datastore.queryKeys({ prefix: '/dht/provider/' })) count++
      return count
    }
    const seller = await nodes.start({
      datastore,
      bootstrap: [dialAddress(boot)],
      services: { advertiser: advertiser({ logger, spareCapacity: () => capacity, reprovideIntervalMs: 300, capacityCheckIntervalMs: 3_600_000 }) }
    })
    const service = seller.services.advertiser
    const first = await nextAdvert(service)
    assert.equal(first.first, true)
    assert.equal(first.peers, 1)
    assert.deepEqual(first.keys.map(String), [relayKey().toString()])
    assert.equal(await ownRecords(), 1)
    const firstAt = service.lastAdvertisedAt
    assert.equal(firstAt, first.at)

    await service.refresh()
    assert.equal(service.lastAdvertisedAt, firstAt, 'must not provide again before the interval')

    await new Promise((resolve) => setTimeout(resolve, 350))
    const again = nextAdvert(service)
    await service.refresh()
    assert.equal((await again).first, false)
    assert.ok((service.lastAdvertisedAt ?? 0) > (firstAt ?? 0))

    capacity.spareUplinkBps = 0
    const withdrawn = new Promise((resolve) => service.addEventListener('withdrawn', resolve, { once: true }))
    await service.refresh()
    await withdrawn
    assert.equal(service.advertising, false)
    assert.equal(await ownRecords(), 0, 'kad-dht must no longer re-provide the keys by itself')
    await new Promise((resolve) => setTimeout(resolve, 350))
    let advertised = false
    service.addEventListener('advertised', () => { advertised = true }, { once: true })
    await service.refresh()
    assert.equal(advertised, false, 'must not re-provide without capacity')

    capacity.spareUplinkBps = 2_000_000
    const back = nextAdvert(service)
    await service.refresh()
    assert.equal((await back).first, false)
    assert.equal(service.advertising, true)
    assert.equal(await ownRecords(), 1)
  })
})
