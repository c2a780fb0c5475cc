/**
 * Fast voucher signature verification. Computes the EIP-712 digest by hand from a
 * cached domain separator and type hash (no viem encoding on the hot path, keccak from
 * hash-wasm), recovers the signer with the native secp256k1 addon (or noble as a
 * fallback) and rejects high-s signatures explicitly, since neither backend nor viem does.
 */
import { createKeccak } from 'hash-wasm'
import { checksumAddress, domainSeparator, isAddress, type Address } from 'viem'
import { secp256k1Backend, type Secp256k1Backend, type Secp256k1BackendName } from './secp256k1.ts'
import {
  InvalidVoucherError,
  MAX_VOUCHER_AMOUNT,
  MAX_VOUCHER_BYTES,
  VOUCHER_TYPES,
  voucherDomain,
  type SignedVoucher,
  type Voucher,
  type VoucherDomain
} from './voucher.ts'

// hash-wasm's keccak is ~7x faster than @noble/hashes on 64–128-byte inputs, which is a
// sixth of a verification; one shared hasher is safe because every use is synchronous.
const keccak = await createKeccak(256)

function keccak256 (data: Uint8Array): Uint8Array {
  keccak.init()
  keccak.update(data)
  return keccak.digest('binary')
}

/** keccak256 of the EIP-712 type string `Voucher(bytes32 channelId,uint256 cumulativeAmount,uint256 cumulativeBytes)`. */
export const VOUCHER_TYPE_HASH: Uint8Array = keccak256(new TextEncoder().encode(
  `Voucher(${VOUCHER_TYPES.Voucher.map((field) => `${field.type} ${field.name}`).join(',')})`
))

/** n/2 of secp256k1, big-endian: a signature with s above it is the malleated twin of a low-s one. */
const HALF_CURVE_ORDER = Buffer.from('7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0', 'hex')

const SIGNATURE_HEX_LENGTH = 2 + 65 * 2
const CHANNEL_ID_HEX_LENGTH = 2 + 32 * 2
const ADDRESS_HEX_LENGTH = 2 + 20 * 2

/** Options of a {@link VoucherVerifier}. */
export interface VoucherVerifierOptions {
  /** secp256k1 implementation; defaults to the process-wide {@link secp256k1Backend}. */
  secp256k1?: Secp256k1Backend
}

/**
 * Verifies voucher signatures for one chain and contract. Synchronous and not
 * re-entrant (it reuses its buffers); use one instance per domain.
 *
 * Field errors (a channel id that is not 32 bytes of hex, an amount or byte count out
 * of the contract's range) throw {@link InvalidVoucherError}; signature errors make
 * `recoverSigner` return null and `verify` return false.
 */
export class VoucherVerifier {
  /** Which secp256k1 implementation recovers signers. */
  readonly backend: Secp256k1BackendName
  readonly #secp256k1: Secp256k1Backend
  /** `typeHash ‖ channelId ‖ cumulativeAmount ‖ cumulativeBytes`, the encoded struct. */
  readonly #struct = Buffer.alloc(128)
  readonly #structView = new DataView(this.#struct.buffer, this.#struct.byteOffset, this.#struct.byteLength)
  /** `0x19 0x01 ‖ domainSeparator ‖ structHash`, the EIP-712 digest preimage. */
  readonly #preimage = Buffer.alloc(66)
  readonly #signature = Buffer.alloc(65)
  readonly #compactSignature = this.#signature.subarray(0, 64)
  readonly #publicKey = Buffer.alloc(65)
  readonly #expectedSigner = Buffer.alloc(20)

  constructor (domain: VoucherDomain, options: VoucherVerifierOptions = {}) {
    if (!isAddress(domain.verifyingContract, { strict: false })) {
      throw new InvalidVoucherError('verifyingContract must be a 20-byte hex address')
    }
    this.#secp256k1 = options.secp256k1 ?? secp256k1Backend()
    this.backend = this.#secp256k1.name
    this.#struct.set(VOUCHER_TYPE_HASH, 0)
    this.#preimage[0] = 0x19
    this.#preimage[1] = 0x01
    this.#preimage.write(domainSeparator({ domain: voucherDomain(domain) }).slice(2), 2, 32, 'hex')
  }

  /** The EIP-712 digest of a voucher: keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(voucher)). */
  digest (voucher: Voucher): Uint8Array {
    this.#encodeStruct(voucher)
    this.#preimage.set(keccak256(this.#struct), 34)
    return keccak256(this.#preimage)
  }

  /**
   * The checksummed address that signed the voucher, or null when the signature is
   * malformed (not 65 bytes of hex, v not 27/28/0/1), high-s, or recovers no key.
   */
  recoverSigner (voucher: SignedVoucher): Address | null {
    const signer = this.#recoverSignerBytes(voucher)
    return signer === null ? null : checksumAddress(`0x${signer.toString('hex')}`)
  }

  /** True when `expectedSigner` (any letter case) signed the voucher for this domain. */
  verify (voucher: SignedVoucher, expectedSigner: Address): boolean {
    if (typeof expectedSigner !== 'string' || expectedSigner.length !== ADDRESS_HEX_LENGTH || !hasHexPrefix(expectedSigner) ||
        this.#expectedSigner.write(expectedSigner.slice(2), 'hex') !== 20) {
      throw new InvalidVoucherError(`expected signer must be a 20-byte hex address, got ${String(expectedSigner)}`)
    }
    const signer = this.#recoverSignerBytes(voucher)
    return signer !== null && signer.equals(this.#expectedSigner)
  }

  /** The 20 signer bytes (a view into a reused buffer), or null. */
  #recoverSignerBytes (voucher: SignedVoucher): Buffer | null {
    const digest = this.digest(voucher)
    const signature = voucher.signature
    if (typeof signature !== 'string' || signature.length !== SIGNATURE_HEX_LENGTH || !hasHexPrefix(signature) ||
        this.#signature.write(signature.slice(2), 'hex') !== 65) {
      return null
    }
    const v = this.#signature[64]
    const recoveryId = v >= 27 ? v - 27 : v // the backends refuse anything but 0 and 1
    if (this.#signature.compare(HALF_CURVE_ORDER, 0, 32, 32, 64) > 0) return null
    if (!this.#secp256k1.recoverPublicKey(this.#publicKey, this.#compactSignature, recoveryId, digest)) return null
    const hash = keccak256(this.#publicKey.subarray(1))
    return Buffer.from(hash.buffer, hash.byteOffset + 12, 20)
  }

  #encodeStruct (voucher: Voucher): void {
    const { channelId, cumulativeAmount, cumulativeBytes } = voucher
    if (typeof channelId !== 'string' || channelId.length !== CHANNEL_ID_HEX_LENGTH || !hasHexPrefix(channelId) ||
        this.#struct.write(channelId.slice(2), 32, 32, 'hex') !== 32) {
      throw new InvalidVoucherError('channelId must be a 32-byte hex string (0x + 64 hex digits)')
    }
    if (typeof cumulativeAmount !== 'bigint' || cumulativeAmount < 0n || cumulativeAmount > MAX_VOUCHER_AMOUNT) {
      throw new InvalidVoucherError(`cumulativeAmount must be a bigint between 0 and 2^96-1, got ${String(cumulativeAmount)}`)
    }
    if (typeof cumulativeBytes !== 'bigint' || cumulativeBytes < 0n || cumulativeBytes > MAX_VOUCHER_BYTES) {
      throw new InvalidVoucherError(`cumulativeBytes must be a bigint between 0 and 2^64-1, got ${String(cumulativeBytes)}`)
    }
    // Both are uint256 words whose upper bytes stay zero: amount fits 96 bits, bytes 64.
    this.#structView.setUint32(84, Number(cumulativeAmount >> 64n))
    this.#structView.setBigUint64(88, BigInt.asUintN(64, cumulativeAmount))
    this.#structView.setBigUint64(120, cumulativeBytes)
  }
}

function hasHexPrefix (value: string): boolean {
  return value.charCodeAt(0) === 48 && value.charCodeAt(1) === 120 // '0x'
}
