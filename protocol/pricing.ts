import { SparebandError } from './errors.ts'

/** Bytes in one GiB (2^30): prices are quoted in token base units per GiB. */
export const BYTES_PER_GIB = 1n << 30n

/** Default credit window: how far (in bytes) a buyer may run ahead of its last persisted voucher. */
export const DEFAULT_CREDIT_WINDOW_BYTES = 1n << 20n

/** Raised when a price is not a positive amount of token base units per GiB. */
export class InvalidPriceError extends SparebandError {
  constructor (price: bigint) {
    super('ERR_INVALID_PRICE', `price per GiB must be a positive number of token base units, got ${price}; fix the offer or the config`)
  }
}

/** Throws {@link InvalidPriceError} unless `pricePerGiB` is positive. */
export function assertPrice (pricePerGiB: bigint): void {
  if (pricePerGiB <= 0n) throw new InvalidPriceError(pricePerGiB)
}

/**
 * The amount owed for `bytes` at `pricePerGiB`, rounded **up** to the next base unit:
 * a fraction of a unit is charged as a whole one, so the seller never undercharges by
 * rounding (and a buyer overpays by less than one base unit per report).
 */
export function amountForBytes (bytes: bigint, pricePerGiB: bigint): bigint {
  assertPrice(pricePerGiB)
  if (bytes <= 0n) return 0n
  return (bytes * pricePerGiB + BYTES_PER_GIB - 1n) / BYTES_PER_GIB
}

/**
 * The bytes an amount pays for at `pricePerGiB`, rounded **down**: a partial byte is
 * not covered, so credit derived from a payment never exceeds what was paid.
 */
export function bytesForAmount (amount: bigint, pricePerGiB: bigint): bigint {
  assertPrice(pricePerGiB)
  if (amount <= 0n) return 0n
  return amount * BYTES_PER_GIB / pricePerGiB
}
