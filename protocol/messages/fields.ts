import { isIPv4, isIPv6 } from 'node:net'
import { FormatRegistry, Type } from '@sinclair/typebox'
import { isAddress, type Address, type Hex } from 'viem'
import { MAX_VOUCHER_AMOUNT, MAX_VOUCHER_BYTES } from '../voucher.ts'

/**
 * TypeBox schemas of the fields that recur across spareband messages. Every
 * string is length-bounded, every number is a safe integer, and amounts and
 * byte counts travel as decimal strings that decode to range-checked bigints.
 */

/** Decimal string of a non-negative integer below 2^256, without leading zeros. */
export const DECIMAL_PATTERN = '^(0|[1-9][0-9]{0,77})$'

/**
 * A non-negative bigint at most `max`, carried as a decimal string. Encoding a
 * value that is not a bigint in range fails, and so does decoding one.
 */
export function DecimalBigInt (max: bigint) {
  return Type.Transform(Type.String({ maxLength: 78, pattern: DECIMAL_PATTERN }))
    .Decode((text) => {
      const value = BigInt(text)
      if (value > max) throw new RangeError(`must be at most ${max}`)
      return value
    })
    .Encode((value: bigint) => {
      if (typeof value !== 'bigint' || value < 0n || value > max) throw new RangeError(`must be a bigint between 0 and ${max}`)
      return value.toString()
    })
}

/** An amount in token base units (a voucher's range: below 2^96). */
export const Amount = DecimalBigInt(MAX_VOUCHER_AMOUNT)
/** A byte count (a voucher's range: below 2^64). */
export const ByteCount = DecimalBigInt(MAX_VOUCHER_BYTES)

/** A non-negative safe integer: sequence numbers, timestamps (unix ms), rates. */
export const SafeInteger = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })

/** An EVM chain id. */
export const ChainId = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })

const EVM_ADDRESS_FORMAT = 'spareband-evm-address'
FormatRegistry.Set(EVM_ADDRESS_FORMAT, (value) => isAddress(value))

/** A 20-byte EVM address, lower-case, upper-case or with a valid EIP-55 checksum. */
export const EvmAddress = Type.Unsafe<Address>(Type.String({ maxLength: 42, pattern: '^0x[0-9a-fA-F]{40}$', format: EVM_ADDRESS_FORMAT }))

/** A hex string of exactly `bytes` bytes with a `0x` prefix. */
export function HexBytes (bytes: number) {
  return Type.Unsafe<Hex>(Type.String({ maxLength: 2 + 2 * bytes, pattern: `^0x[0-9a-fA-F]{${2 * bytes}}$` }))
}

/** A 32-byte value: channel ids, salts. */
export const Bytes32 = HexBytes(32)
/** A 65-byte `r ‖ s ‖ v` ECDSA signature. */
export const Signature65 = HexBytes(65)

/** A 16-byte random value as 32 lower-case hex digits: session ids and offer nonces. */
export const Hex16 = Type.String({ maxLength: 32, pattern: '^[0-9a-f]{32}$' })

/** A stable machine-readable error code, e.g. `ERR_EXIT_POLICY`. */
export const ErrorCode = Type.String({ maxLength: 64, pattern: '^ERR_[A-Z0-9_]{1,60}$' })

/** A short human-readable text: an error message or a close reason. */
export const ShortText = Type.String({ maxLength: 256 })

/**
 * A DNS name: at most 253 characters (plus an optional trailing dot), labels of
 * 1–63 letters, digits, `-` or `_` that neither start nor end with `-`, and a
 * last label that starts with a letter, so that numeric forms a resolver would
 * read as IPv4 (`127.1`, `0x7f.1`, `2130706433`) are not names.
 */
const DNS_NAME = /^(?=.{1,253}\.?$)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$/

/**
 * True for a DNS name, a dotted-quad IPv4 literal, or an IPv6 literal without
 * brackets or zone id. The IP checks are Node's own, the parser `net.connect` uses.
 */
export function isRelayHost (value: string): boolean {
  return isIPv4(value) || (isIPv6(value) && !value.includes('%')) || DNS_NAME.test(value)
}

const RELAY_HOST_FORMAT = 'spareband-relay-host'
FormatRegistry.Set(RELAY_HOST_FORMAT, isRelayHost)

/** A relay target host; see {@link isRelayHost}. */
export const RelayHost = Type.String({ minLength: 1, maxLength: 254, format: RELAY_HOST_FORMAT })

/** A TCP port. */
export const Port = Type.Integer({ minimum: 1, maximum: 65535 })
