import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { getAddress, zeroAddress } from 'viem'
import {
  createOffer,
  DEFAULT_OFFER_CLOCK_SKEW_MS,
  MAX_OFFER_LIFETIME_MS,
  OFFER_SIGNING_PREFIX,
  offerCodecs,
  offerSigningBytes,
  verifyOffer,
  type OfferBody,
  type OfferErrorCode,
  type OfferFields,
  type SignedOffer
} from '../protocol/messages/index.ts'

const NOW = 1_750_000_000_000
const CONTRACT = getAddress('0x5fbdb2315678afecb367f032d93f642f64180aa3')
const TOKEN = getAddress('0xe7f1725e7734ce288f8367e1bb143e90bb3f0512')
const NONCE = '0123456789abcdef0123456789abcdef'

const seller = await generateKeyPair('Ed25519')
const other = await generateKeyPair('Ed25519')
const sellerPeer = peerIdFromPrivateKey(seller)

function fields (overrides: Partial<OfferFields> = {}): OfferFields {
  return {
    payout: getAddress('0x70997970c51812dc3a010c7d01b50e0d17dc79c8'),
    chainId: 31337,
    contract: CONTRACT,
    tokens: [{ token: zeroAddress, pricePerGiB: 2n * 10n ** 15n }, { token: TOKEN, pricePerGiB: 5_000_000n }],
    spareUplinkBps: 50_000_000,
    services: ['relay', 'gateway'],
    region: 'eu-west',
    reachability: 'public',
    listenAddrs: ['/ip4/127.0.0.1/tcp/4001', '/ip6/::1/tcp/4001'],
    issuedAt: NOW,
    expiresAt: NOW + 10 * 60 * 1000,
    nonce: NONCE,
    ...overrides
  }
}

/** Signs any body, bypassing createOffer's own checks, as a hostile or buggy seller could. */
async function signRaw (body: OfferBody, key: PrivateKey): Promise<SignedOffer> {
  const signature = await key.sign(offerSigningBytes(body))
  return { ...body, signature: Buffer.from(signature).toString('base64url') }
}

function bodyOf (key: PrivateKey, overrides: Partial<OfferFields> = {}): OfferBody {
  return {
    ...fields(overrides),
    peerId: peerIdFromPrivateKey(key).toString(),
    publicKey: Buffer.from(publicKeyToProtobuf(key.publicKey)).toString('base64url')
  }
}

const verifyOptions = { expectedPeerId: sellerPeer, nowMs: NOW, chainId: 31337, contract: CONTRACT, nonce: NONCE }

async function rejects (promise: Promise<unknown>, code: OfferErrorCode): Promise<void> {
  await assert.rejects(promise, (err: any) => {
    assert.equal(err.name, 'OfferError')
    assert.equal(err.code, code, err.message)
    return true
  })
}

describe('createOffer and verifyOffer', () => {
  for (const type of ['Ed25519', 'secp256k1', 'RSA'] as const) {
    it(`round-trips a ${type} offer through the offer codec and verifies it`, async () => {
      const key = type === 'RSA' ? await generateKeyPair('RSA', 2048) : await generateKeyPair(type)
      const peer = peerIdFromPrivateKey(key)
      // RSA peer ids are hashes: the offer's own public key is what makes them verifiable
      assert.equal(peerIdFromString(peer.toString()).publicKey === undefined, type === 'RSA')
      const offer = await createOffer(fields(), key)
      assert.equal(offer.peerId, peer.toString())
      const bytes = offerCodecs.fromSeller.encode({ v: 1, type: 'offer', offer })
      const decoded = offerCodecs.fromSeller.decode(bytes)
      assert.equal(decoded.type, 'offer')
      assert.deepEqual(decoded, { v: 1, type: 'offer', offer })
      assert.equal(decoded.offer.tokens[0].pricePerGiB, 2n * 10n ** 15n)
      assert.equal(await verifyOffer(decoded.offer, { ...verifyOptions, expectedPeerId: peer }), decoded.offer)
    })
  }

  it('signs the domain prefix followed by canonical JSON whatever the key order', async () => {
    const body = bodyOf(seller)
    const reordered = Object.fromEntries(Object.entries(body).reverse()) as OfferBody
    const bytes = offerSigningBytes(body)
    assert.deepEqual(offerSigningBytes(reordered), bytes)
    const text = new TextDecoder().decode(bytes)
    assert.ok(text.startsWith(OFFER_SIGNING_PREFIX))
    const json = text.slice(OFFER_SIGNING_PREFIX.length)
    assert.equal(json, JSON.stringify(JSON.parse(json)), 'no whitespace')
    assert.deepEqual(Object.keys(JSON.parse(json)), Object.keys(JSON.parse(json)).sort())
    assert.ok(json.includes('"pricePerGiB":"2000000000000000"'), 'amounts are signed as decimal strings')
  })

  it('rejects a signature over the JSON without the domain prefix', async () => {
    const body = bodyOf(seller)
    const unprefixed = offerSigningBytes(body).subarray(new TextEncoder().encode(OFFER_SIGNING_PREFIX).length)
    const signature = Buffer.from(await seller.sign(unprefixed)).toString('base64url')
    await rejects(verifyOffer({ ...body, signature }, verifyOptions), 'ERR_OFFER_SIGNATURE')
  })

  it('rejects a body changed after signing', async () => {
    const offer = await createOffer(fields(), seller)
    await rejects(verifyOffer({ ...offer, tokens: [{ token: zeroAddress, pricePerGiB: 1n }] }, verifyOptions), 'ERR_OFFER_SIGNATURE')
    await rejects(verifyOffer({ ...offer, spareUplinkBps: offer.spareUplinkBps + 1 }, verifyOptions), 'ERR_OFFER_SIGNATURE')
  })

  it('rejects a damaged or truncated signature', async () => {
    const offer = await createOffer(fields(), seller)
    const bytes = Buffer.from(offer.signature, 'base64url')
    bytes[0] ^= 1
    await rejects(verifyOffer({ ...offer, signature: bytes.toString('base64url') }, verifyOptions), 'ERR_OFFER_SIGNATURE')
    await rejects(verifyOffer({ ...offer, signature: 'AA' }, verifyOptions), 'ERR_OFFER_SIGNATURE')
  })

  it('rejects an offer from another peer than the one dialed', async () => {
    const offer = await createOffer(fields(), other)
    await rejects(verifyOffer(offer, verifyOptions), 'ERR_OFFER_PEER_MISMATCH')
  })

  for (const type of ['Ed25519', 'RSA'] as const) {
    it(`rejects a ${type} peer id claimed with someone else's public key and signature`, async () => {
      const victim = type === 'RSA' ? await generateKeyPair('RSA', 2048) : await generateKeyPair('Ed25519')
      const attacker = type === 'RSA' ? await generateKeyPair('RSA', 2048) : await generateKeyPair('Ed25519')
      const forged = await signRaw({ ...bodyOf(attacker), peerId: peerIdFromPrivateKey(victim).toString() }, attacker)
      await rejects(verifyOffer(forged, { ...verifyOptions, expectedPeerId: peerIdFromPrivateKey(victim) }), 'ERR_OFFER_PUBLIC_KEY')
    })
  }

  it('rejects a public key that is not a libp2p key', async () => {
    const offer = await signRaw({ ...bodyOf(seller), publicKey: 'AAAA' }, seller)
    await rejects(verifyOffer(offer, verifyOptions), 'ERR_OFFER_PUBLIC_KEY')
  })

  it('rejects an expired offer and accepts it until the last millisecond', async () => {
    const offer = await createOffer(fields(), seller)
    await verifyOffer(offer, { ...verifyOptions, nowMs: offer.expiresAt - 1 })
    await rejects(verifyOffer(offer, { ...verifyOptions, nowMs: offer.expiresAt }), 'ERR_OFFER_EXPIRED')
  })

  it('rejects an offer issued further in the future than the clock skew allows', async () => {
    const offer = await createOffer(fields(), seller)
    await verifyOffer(offer, { ...verifyOptions, nowMs: NOW - DEFAULT_OFFER_CLOCK_SKEW_MS })
    await rejects(verifyOffer(offer, { ...verifyOptions, nowMs: NOW - DEFAULT_OFFER_CLOCK_SKEW_MS - 1 }), 'ERR_OFFER_NOT_YET_VALID')
    await rejects(verifyOffer(offer, { ...verifyOptions, nowMs: NOW - 2, maxClockSkewMs: 1 }), 'ERR_OFFER_NOT_YET_VALID')
  })

  it('rejects an offer that lives longer than the cap, or not at all', async () => {
    await verifyOffer(await createOffer(fields({ expiresAt: NOW + MAX_OFFER_LIFETIME_MS }), seller), verifyOptions)
    const tooLong = await signRaw(bodyOf(seller, { expiresAt: NOW + MAX_OFFER_LIFETIME_MS + 1 }), seller)
    await rejects(verifyOffer(tooLong, verifyOptions), 'ERR_OFFER_LIFETIME')
    const backwards = await signRaw(bodyOf(seller, { issuedAt: NOW, expiresAt: NOW }), seller)
    await rejects(verifyOffer(backwards, { ...verifyOptions, nowMs: NOW - 1 }), 'ERR_OFFER_LIFETIME')
    await rejects(createOffer(fields({ expiresAt: NOW + MAX_OFFER_LIFETIME_MS + 1 }), seller), 'ERR_OFFER_LIFETIME')
  })

  it('rejects an offer for another chain or contract, comparing addresses case-insensitively', async () => {
    const offer = await createOffer(fields(), seller)
    await verifyOffer(offer, { ...verifyOptions, contract: CONTRACT.toLowerCase() as `0x${string}` })
    await verifyOffer(offer, { expectedPeerId: sellerPeer, nowMs: NOW })
    await rejects(verifyOffer(offer, { ...verifyOptions, chainId: 1 }), 'ERR_OFFER_CHAIN_MISMATCH')
    await rejects(verifyOffer(offer, { ...verifyOptions, contract: TOKEN }), 'ERR_OFFER_CHAIN_MISMATCH')
  })

  it('rejects an offer that does not echo the request nonce', async () => {
    const withoutNonce = await createOffer(fields({ nonce: undefined }), seller)
    await rejects(verifyOffer(withoutNonce, verifyOptions), 'ERR_OFFER_NONCE_MISMATCH')
    const otherNonce = await createOffer(fields({ nonce: 'f'.repeat(32) }), seller)
    await rejects(verifyOffer(otherNonce, verifyOptions), 'ERR_OFFER_NONCE_MISMATCH')
  })

  it('rejects a zero or badly checksummed payout address', async () => {
    const zero = await signRaw(bodyOf(seller, { payout: zeroAddress }), seller)
    await rejects(verifyOffer(zero, verifyOptions), 'ERR_OFFER_PAYOUT')
    const good = getAddress('0x70997970c51812dc3a010c7d01b50e0d17dc79c8')
    const badChecksum = (good.slice(0, 2) + good[2].toLowerCase() + good.slice(3).replace('C', 'c')) as `0x${string}`
    assert.notEqual(badChecksum.toLowerCase() === badChecksum, true, 'still mixed case')
    const bad = { ...(await signRaw(bodyOf(seller), seller)), payout: badChecksum }
    await rejects(verifyOffer(bad, verifyOptions), 'ERR_OFFER_PAYOUT')
    await rejects(createOffer(fields({ payout: zeroAddress }), seller), 'ERR_OFFER_PAYOUT')
  })

  it('rejects a token listed twice, an unparsable listen address, and a body outside the schema', async () => {
    const twice = await signRaw(bodyOf(seller, { tokens: [{ token: TOKEN, pricePerGiB: 1n }, { token: TOKEN.toLowerCase() as `0x${string}`, pricePerGiB: 2n }] }), seller)
    await rejects(verifyOffer(twice, verifyOptions), 'ERR_OFFER_MALFORMED')
    const badAddr = await signRaw(bodyOf(seller, { listenAddrs: ['/ip4/999.0.0.1/tcp/1'] }), seller)
    await rejects(verifyOffer(badAddr, verifyOptions), 'ERR_OFFER_MALFORMED')
    await rejects(createOffer(fields({ region: 'EU West' }), seller), 'ERR_OFFER_MALFORMED')
    await rejects(createOffer(fields({ services: [] }), seller), 'ERR_OFFER_MALFORMED')
    const offer = await createOffer(fields(), seller)
    await rejects(verifyOffer({ ...offer, extra: 1 } as SignedOffer, verifyOptions), 'ERR_OFFER_MALFORMED')
  })
})
