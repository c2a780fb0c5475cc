import { publicKeyFromProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PeerId, PrivateKey, PublicKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { Type, type StaticDecode } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { isAddress, zeroAddress, type Address } from 'viem'
import { SparebandError } from './errors.ts'
import { Amount, ChainId, EvmAddress, Hex16, SafeInteger } from './messages/fields.ts'

/** Domain prefix of the bytes an offer signature covers; no other signed spareband object starts with it. */
export const OFFER_SIGNING_PREFIX = 'spareband/offer/v1\n'
/** Longest validity (`expiresAt - issuedAt`) an offer may claim. */
export const MAX_OFFER_LIFETIME_MS = 60 * 60 * 1000
/** Default tolerance for an `issuedAt` ahead of the verifier's clock. */
export const DEFAULT_OFFER_CLOCK_SKEW_MS = 60 * 1000
/** Most tokens one offer may list. */
export const MAX_OFFER_TOKENS = 16
/** Most listen addresses one offer may list. */
export const MAX_OFFER_LISTEN_ADDRS = 16

/** A strict unpadded base64url string of at most `maxLength` characters. */
function Base64Url (maxLength: number) {
  return Type.String({ minLength: 1, maxLength, pattern: '^[A-Za-z0-9_-]+$' })
}

const offerBodyProperties = {
  /** The seller's libp2p peer id (base58btc or CID form). */
  peerId: Type.String({ minLength: 1, maxLength: 128, pattern: '^[0-9A-Za-z]+$' }),
  /** The seller's libp2p public key, protobuf-encoded, base64url: RSA and ECDSA peer ids do not embed it. */
  publicKey: Base64Url(2048),
  /** Address that receives settlements (may be a cold address). */
  payout: EvmAddress,
  chainId: ChainId,
  /** The `SpareChannels` contract buyers must open channels on. */
  contract: EvmAddress,
  /** Accepted tokens (`address(0)` = native coin) and the price of one GiB in base units. */
  tokens: Type.Array(Type.Object({ token: EvmAddress, pricePerGiB: Amount }, { additionalProperties: false }), { minItems: 1, maxItems: MAX_OFFER_TOKENS }),
  /** Uplink capacity the seller can sell right now, in bits per second. */
  spareUplinkBps: SafeInteger,
  services: Type.Array(Type.Union([Type.Literal('relay'), Type.Literal('gateway')]), { minItems: 1, maxItems: 2, uniqueItems: true }),
  /** Short region tag, also used in DHT region keys, e.g. `eu-west` or `de`. */
  region: Type.String({ maxLength: 32, pattern: '^[a-z0-9][a-z0-9-]{0,31}$' }),
  /** Whether strangers can dial the seller directly (libp2p AutoNAT's verdict). */
  reachability: Type.Union([Type.Literal('public'), Type.Literal('private'), Type.Literal('unknown')]),
  listenAddrs: Type.Array(Type.String({ maxLength: 256, pattern: '^/[!-~]+$' }), { maxItems: MAX_OFFER_LISTEN_ADDRS }),
  /** Unix ms. */
  issuedAt: SafeInteger,
  /** Unix ms; the offer is void from this instant on. */
  expiresAt: SafeInteger,
  /** The nonce of the request this offer answers, if the request carried one. */
  nonce: Type.Optional(Hex16)
}

/** Schema of the signed part of an offer. */
export const OfferBodySchema = Type.Object(offerBodyProperties, { additionalProperties: false })
/** Schema of an offer with its signature, as carried by the offer protocol. */
export const SignedOfferSchema = Type.Object({ ...offerBodyProperties, signature: Base64Url(1400) }, { additionalProperties: false })

/** The signed part of an offer. */
export type OfferBody = StaticDecode<typeof OfferBodySchema>
/** An offer with the base64url signature of its body by the seller's libp2p key. */
export type SignedOffer = StaticDecode<typeof SignedOfferSchema>
/** What a seller fills in; the peer id and public key come from its private key. */
export type OfferFields = Omit<OfferBody, 'peerId' | 'publicKey'>
/** A service a seller sells. */
export type OfferService = OfferBody['services'][number]

/** Stable codes of {@link OfferError}. */
export type OfferErrorCode =
  | 'ERR_OFFER_MALFORMED'
  | 'ERR_OFFER_PAYOUT'
  | 'ERR_OFFER_LIFETIME'
  | 'ERR_OFFER_PEER_MISMATCH'
  | 'ERR_OFFER_PUBLIC_KEY'
  | 'ERR_OFFER_EXPIRED'
  | 'ERR_OFFER_NOT_YET_VALID'
  | 'ERR_OFFER_CHAIN_MISMATCH'
  | 'ERR_OFFER_NONCE_MISMATCH'
  | 'ERR_OFFER_SIGNATURE'

/** Raised when an offer cannot be created or must not be trusted. */
export class OfferError extends SparebandError {
  declare readonly code: OfferErrorCode

  constructor (code: OfferErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
  }
}

const offerBodyCheck = TypeCompiler.Compile(OfferBodySchema)
const utf8 = new TextEncoder()

/**
 * The bytes an offer signature covers: {@link OFFER_SIGNING_PREFIX} then the
 * body's wire form (amounts as decimal strings) as canonical JSON: keys sorted
 * by UTF-16 code unit, no whitespace. With only strings and safe integers in
 * the body this is RFC 8785 (JCS).
 */
export function offerSigningBytes (body: OfferBody): Uint8Array {
  let wire: unknown
  try {
    wire = offerBodyCheck.Encode(body)
  } catch (err) {
    const first = offerBodyCheck.Errors(body).First()
    const where = first === undefined ? '' : ` (${first.path}: ${first.message})`
    throw new OfferError('ERR_OFFER_MALFORMED', `offer does not match the offer schema${where}; fix the seller's offer settings`, { cause: err })
  }
  return utf8.encode(OFFER_SIGNING_PREFIX + canonicalJson(wire))
}

/** Creates an offer signed by the seller's libp2p private key. */
export async function createOffer (fields: OfferFields, privateKey: PrivateKey): Promise<SignedOffer> {
  const body: OfferBody = {
    ...fields,
    peerId: peerIdFromPrivateKey(privateKey).toString(),
    publicKey: toBase64Url(publicKeyToProtobuf(privateKey.publicKey))
  }
  assertPayout(body.payout)
  const signed = offerSigningBytes(body)
  assertOfferRules(body)
  const signature = await privateKey.sign(signed)
  return { ...body, signature: toBase64Url(signature) }
}

/** What the buyer knows and expects when it checks an offer. */
export interface VerifyOfferOptions {
  /** The peer the buyer dialed and fetched the offer from. */
  expectedPeerId: PeerId
  /** The buyer's clock, unix ms. */
  nowMs: number
  /** The chain the buyer pays on; the offer must name it. */
  chainId?: number
  /** The channel contract the buyer uses; the offer must name it. */
  contract?: Address
  /** The nonce the buyer sent in its request; the offer must echo it. */
  nonce?: string
  /** Tolerance for an `issuedAt` ahead of `nowMs`; default {@link DEFAULT_OFFER_CLOCK_SKEW_MS}. */
  maxClockSkewMs?: number
}

/**
 * Returns the offer if it may be trusted, else throws {@link OfferError}: the
 * body must match the schema and rules, come from `expectedPeerId` (whose key
 * is the offer's public key), be valid at `nowMs`, name the expected chain,
 * contract and nonce, and carry a valid signature.
 */
export async function verifyOffer (offer: SignedOffer, options: VerifyOfferOptions): Promise<SignedOffer> {
  const { signature, ...body } = offer
  assertPayout(body.payout)
  const signed = offerSigningBytes(body)
  assertOfferRules(body)

  let peerId: PeerId
  try {
    peerId = peerIdFromString(body.peerId)
  } catch (err) {
    throw new OfferError('ERR_OFFER_MALFORMED', 'offer peerId is not a libp2p peer id', { cause: err })
  }
  if (!peerId.equals(options.expectedPeerId)) {
    throw new OfferError('ERR_OFFER_PEER_MISMATCH', `offer is for peer ${clip(body.peerId)} but came from ${options.expectedPeerId.toString()}; ignore this seller`)
  }
  let publicKey: PublicKey
  try {
    publicKey = publicKeyFromProtobuf(fromBase64Url(body.publicKey))
  } catch (err) {
    throw new OfferError('ERR_OFFER_PUBLIC_KEY', 'offer publicKey is not a libp2p public key; ignore this seller', { cause: err })
  }
  if (!peerIdFromPublicKey(publicKey).equals(peerId)) {
    throw new OfferError('ERR_OFFER_PUBLIC_KEY', 'offer publicKey does not belong to the offer peerId; ignore this seller')
  }

  const skew = options.maxClockSkewMs ?? DEFAULT_OFFER_CLOCK_SKEW_MS
  if (options.nowMs >= body.expiresAt) {
    throw new OfferError('ERR_OFFER_EXPIRED', `offer expired at ${body.expiresAt} (unix ms), it is now ${options.nowMs}; fetch a fresh one (or check this machine's clock)`)
  }
  if (body.issuedAt > options.nowMs + skew) {
    throw new OfferError('ERR_OFFER_NOT_YET_VALID', `offer is issued ${body.issuedAt - options.nowMs} ms in the future, more than the ${skew} ms clock skew allowed; check both clocks`)
  }

  if (options.chainId !== undefined && body.chainId !== options.chainId) {
    throw new OfferError('ERR_OFFER_CHAIN_MISMATCH', `offer is for chain ${body.chainId}, this buyer pays on chain ${options.chainId}; pick another seller`)
  }
  if (options.contract !== undefined && body.contract.toLowerCase() !== options.contract.toLowerCase()) {
    throw new OfferError('ERR_OFFER_CHAIN_MISMATCH', `offer is for contract ${body.contract}, this buyer uses ${options.contract}; pick another seller`)
  }
  if (options.nonce !== undefined && body.nonce !== options.nonce) {
    throw new OfferError('ERR_OFFER_NONCE_MISMATCH', 'offer does not echo the nonce of our request (a replayed offer?); ignore this seller')
  }

  let valid = false
  try {
    valid = await publicKey.verify(signed, fromBase64Url(signature))
  } catch {
    // a signature the key type cannot even parse is as bad as a wrong one
  }
  if (!valid) throw new OfferError('ERR_OFFER_SIGNATURE', 'offer signature is not valid for its body and public key; ignore this seller')
  return offer
}

/** Settlements go to the payout address: it must be a real, non-zero address with a valid checksum. */
function assertPayout (payout: unknown): void {
  if (typeof payout !== 'string' || !isAddress(payout) || payout.toLowerCase() === zeroAddress) {
    throw new OfferError('ERR_OFFER_PAYOUT', 'offer payout must be a non-zero EVM address with a valid checksum; fix the payout address setting')
  }
}

/** Rules beyond the schema that hold for every well-formed offer, whoever checks it and when. */
function assertOfferRules (body: OfferBody): void {
  const lifetime = body.expiresAt - body.issuedAt
  if (lifetime <= 0 || lifetime > MAX_OFFER_LIFETIME_MS) {
    throw new OfferError('ERR_OFFER_LIFETIME', `offer lifetime is ${lifetime} ms; it must be positive and at most ${MAX_OFFER_LIFETIME_MS} ms`)
  }
  const tokens = new Set(body.tokens.map(({ token }) => token.toLowerCase()))
  if (tokens.size !== body.tokens.length) {
    throw new OfferError('ERR_OFFER_MALFORMED', 'offer lists a token twice; give each token one price')
  }
  for (const addr of body.listenAddrs) {
    try {
      multiaddr(addr)
    } catch (err) {
      throw new OfferError('ERR_OFFER_MALFORMED', `offer listen address ${clip(JSON.stringify(addr))} is not a multiaddr`, { cause: err })
    }
  }
}

/** Canonical JSON of strings, safe integers, arrays and objects (undefined members are left out). */
function canonicalJson (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (typeof value === 'object' && value !== null) {
    const members = Object.keys(value).sort()
      .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`)
    return `{${members.join(',')}}`
  }
  return JSON.stringify(value)
}

function toBase64Url (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url')
}

function fromBase64Url (text: string): Uint8Array {
  return Buffer.from(text, 'base64url')
}

function clip (text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text
}
