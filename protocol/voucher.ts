import { concatHex, hexToBytes, isAddress, isHex, numberToHex, parseSignature, type Address, type Hex, type LocalAccount, type TypedDataDomain } from 'viem'
import { SparebandError } from './errors.ts'

/** EIP-712 domain name of every spareband voucher. */
export const VOUCHER_DOMAIN_NAME = 'spareband'
/** EIP-712 domain version of every spareband voucher. */
export const VOUCHER_DOMAIN_VERSION = '1'

/** Largest cumulative amount a voucher may carry: the contract stores amounts in 96 bits. */
export const MAX_VOUCHER_AMOUNT = (1n << 96n) - 1n
/** Largest cumulative byte count a voucher may carry: the contract packs it in 64 bits. */
export const MAX_VOUCHER_BYTES = (1n << 64n) - 1n

/** EIP-712 types of a voucher. The field order is part of the signed type hash. */
export const VOUCHER_TYPES = {
  Voucher: [
    { name: 'channelId', type: 'bytes32' },
    { name: 'cumulativeAmount', type: 'uint256' },
    { name: 'cumulativeBytes', type: 'uint256' }
  ]
} as const

/** The chain and contract a voucher is bound to; the rest of the EIP-712 domain is fixed. */
export interface VoucherDomain {
  chainId: number
  verifyingContract: Address
}

/** A promise to pay: the cumulative amount (token base units) and bytes of one channel. */
export interface Voucher {
  channelId: Hex
  cumulativeAmount: bigint
  cumulativeBytes: bigint
}

/** A voucher with its 65-byte `r ‖ s ‖ v` signature by the channel's signer. */
export interface SignedVoucher extends Voucher {
  signature: Hex
}

/** Raised when a voucher's fields are out of range or malformed. */
export class InvalidVoucherError extends SparebandError {
  constructor (message: string) {
    super('ERR_INVALID_VOUCHER', message)
  }
}

/** The full EIP-712 domain of a voucher for one chain and contract. */
export function voucherDomain (domain: VoucherDomain): TypedDataDomain {
  return {
    name: VOUCHER_DOMAIN_NAME,
    version: VOUCHER_DOMAIN_VERSION,
    chainId: domain.chainId,
    verifyingContract: domain.verifyingContract
  }
}

/** Throws {@link InvalidVoucherError} unless every field of the voucher is in range. */
export function assertVoucherFields (voucher: Voucher): void {
  if (!isHex(voucher.channelId, { strict: true }) || voucher.channelId.length !== 66) {
    throw new InvalidVoucherError('channelId must be a 32-byte hex string (0x + 64 hex digits)')
  }
  if (voucher.cumulativeAmount < 0n || voucher.cumulativeAmount > MAX_VOUCHER_AMOUNT) {
    throw new InvalidVoucherError(`cumulativeAmount must be between 0 and 2^96-1, got ${voucher.cumulativeAmount}`)
  }
  if (voucher.cumulativeBytes < 0n || voucher.cumulativeBytes > MAX_VOUCHER_BYTES) {
    throw new InvalidVoucherError(`cumulativeBytes must be between 0 and 2^64-1, got ${voucher.cumulativeBytes}`)
  }
}

/** The viem `signTypedData`/`verifyTypedData` arguments for a voucher. */
export function voucherTypedData (domain: VoucherDomain, voucher: Voucher) {
  if (!isAddress(domain.verifyingContract)) {
    throw new InvalidVoucherError('verifyingContract must be an address')
  }
  return {
    domain: voucherDomain(domain),
    types: VOUCHER_TYPES,
    primaryType: 'Voucher' as const,
    message: {
      channelId: voucher.channelId,
      cumulativeAmount: voucher.cumulativeAmount,
      cumulativeBytes: voucher.cumulativeBytes
    }
  }
}

/** Signs a voucher with the channel's signer (a hot session key held by the buyer). */
export async function signVoucher (account: LocalAccount, domain: VoucherDomain, voucher: Voucher): Promise<SignedVoucher> {
  assertVoucherFields(voucher)
  const signature = await account.signTypedData(voucherTypedData(domain, voucher))
  return { ...voucher, signature }
}

/** Size in bytes of one voucher record in `settleBatch` calldata. */
export const VOUCHER_RECORD_BYTES = 116

/**
 * Packs a signed voucher into the 116-byte record `settleBatch` reads:
 * `channelId (32) ‖ cumulativeAmount (12) ‖ cumulativeBytes (8) ‖ r (32) ‖ yParity·2^255 + s (32)`
 * (the last two are the EIP-2098 compact signature).
 */
export function encodeVoucherRecord (voucher: SignedVoucher): Hex {
  assertVoucherFields(voucher)
  const { r, s, yParity } = parseSignature(voucher.signature)
  const vs = hexToBigInt32(s) | (BigInt(yParity) << 255n)
  return concatHex([
    voucher.channelId,
    numberToHex(voucher.cumulativeAmount, { size: 12 }),
    numberToHex(voucher.cumulativeBytes, { size: 8 }),
    r,
    numberToHex(vs, { size: 32 })
  ])
}

/** Packs many signed vouchers back to back, the `vouchers` bytes of one token batch. */
export function encodeVoucherRecords (vouchers: readonly SignedVoucher[]): Hex {
  return concatHex(vouchers.map(encodeVoucherRecord))
}

function hexToBigInt32 (hex: Hex): bigint {
  const bytes = hexToBytes(hex)
  if (bytes.length !== 32) throw new InvalidVoucherError('signature component must be 32 bytes')
  return BigInt(hex)
}
