/**
 * The well-known DHT keys sellers provide and buyers look up: one global relay
 * key and one key per region. Each is a CIDv1 (raw codec) of the sha2-256
 * multihash of a fixed string, so every node derives the same key.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import * as raw from 'multiformats/codecs/raw'
import { SparebandError } from '../../protocol/errors.ts'

/** Multicodec code of sha2-256. */
const SHA2_256 = 0x12

/** Region names: lower-case letters, digits and dashes, e.g. `eu-west` or `de`. */
const REGION_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/

/** Raised when a region name cannot be part of a DHT key. */
export class InvalidRegionError extends SparebandError {
  constructor (region: string) {
    super('ERR_INVALID_REGION', `region "${region}" is invalid; use 1-63 lower-case letters, digits or dashes (e.g. "eu-west")`)
  }
}

/** The CID of the sha2-256 hash of `text`, raw codec. */
export function keyFromString (text: string): CID {
  return CID.createV1(raw.code, Digest.create(SHA2_256, sha256(new TextEncoder().encode(text))))
}

/** The key every relay seller provides: `spareband:relay:v1`. */
export function relayKey (): CID {
  return keyFromString('spareband:relay:v1')
}

/** The key sellers of one region provide: `spareband:region:<region>:v1`. */
export function regionKey (region: string): CID {
  if (!REGION_PATTERN.test(region)) throw new InvalidRegionError(region)
  return keyFromString(`spareband:region:${region}:v1`)
}
