/**
 * secp256k1 public-key recovery for voucher verification, on the fastest backend that
 * proves it works: the native `secp256k1` addon (libsecp256k1), else `@noble/curves`.
 *
 * The npm `secp256k1` package's own entry point silently swaps in the pure-JS
 * `elliptic` implementation when its binding fails to load, so we never import it:
 * we load the compiled addon through `node-gyp-build` on the package directory,
 * check that it exports the native `Secp256k1` class, and run a known-answer test.
 */
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import { secp256k1 as nobleSecp256k1 } from '@noble/curves/secp256k1.js'
import { SparebandError } from './errors.ts'

/** Which secp256k1 implementation recovers signers. */
export type Secp256k1BackendName = 'native' | 'noble'

/** A secp256k1 implementation able to recover the public key of a recoverable ECDSA signature. */
export interface Secp256k1Backend {
  readonly name: Secp256k1BackendName
  /** Why the native backend is not in use, when this is the fallback chosen by {@link selectSecp256k1Backend}. */
  readonly fallbackReason?: string
  /**
   * Writes the 65-byte uncompressed public key (`0x04 ‖ x ‖ y`) that signed the 32-byte
   * `digest` into the 65-byte `out`. `signature` is the 64-byte `r ‖ s`. Returns false
   * when no public key can be recovered: recovery id other than 0 or 1 (the only ones
   * Ethereum uses), r or s zero or ≥ n, no curve point. Does not check low-s: both
   * libsecp256k1 and noble recover from high-s signatures.
   */
  recoverPublicKey (out: Uint8Array, signature: Uint8Array, recoveryId: number, digest: Uint8Array): boolean
}

/** Raised when the native addon cannot be used or a backend fails its known-answer test. */
export class Secp256k1BackendError extends SparebandError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_SECP256K1_BACKEND', message, options)
  }
}

/** The exports of the compiled `secp256k1` addon, as `node-gyp-build` returns them. */
interface NativeAddon {
  Secp256k1: new () => NativeContext
}

/** The raw libsecp256k1 context class of the addon; methods return a status code, 0 on success. */
interface NativeContext {
  ecdsaRecover (output: Uint8Array, signature: Uint8Array, recoveryId: number, message: Uint8Array): number
}

const require = createRequire(import.meta.url)

/**
 * Loads the compiled `secp256k1` addon through `node-gyp-build` on the package's own
 * directory (never through the package's entry point, which falls back to `elliptic`).
 * Throws when no binary matches this platform.
 */
export function loadNativeSecp256k1Addon (): unknown {
  const packageJson = require.resolve('secp256k1/package.json')
  const nodeGypBuild = createRequire(packageJson)('node-gyp-build') as (dir: string) => unknown
  return nodeGypBuild(dirname(packageJson))
}

/**
 * The native libsecp256k1 backend built on the given addon exports. Throws
 * {@link Secp256k1BackendError} unless they hold the native `Secp256k1` class and it
 * passes the known-answer test.
 */
export function nativeSecp256k1Backend (addon: unknown = loadNativeSecp256k1Addon()): Secp256k1Backend {
  if (!isNativeAddon(addon)) {
    throw new Secp256k1BackendError('the loaded secp256k1 module is not the native addon (no Secp256k1 class); run `npm rebuild secp256k1`')
  }
  const context = new addon.Secp256k1()
  if (typeof context.ecdsaRecover !== 'function') {
    throw new Secp256k1BackendError('the native secp256k1 addon has no ecdsaRecover; install secp256k1 >= 5.0.1')
  }
  const backend: Secp256k1Backend = {
    name: 'native',
    recoverPublicKey (out, signature, recoveryId, digest) {
      // libsecp256k1 aborts the whole process on a recovery id above 3 or a short
      // output buffer (its default illegal-argument callback), so never pass one.
      if ((recoveryId !== 0 && recoveryId !== 1) || out.length !== 65) return false
      return context.ecdsaRecover(out, signature, recoveryId, digest) === 0
    }
  }
  selfTestSecp256k1Backend(backend)
  return backend
}

/** The pure-JS `@noble/curves` backend; `fallbackReason` says why it replaces the native one. */
export function nobleSecp256k1Backend (fallbackReason?: string): Secp256k1Backend {
  const backend: Secp256k1Backend = {
    name: 'noble',
    ...(fallbackReason === undefined ? {} : { fallbackReason }),
    recoverPublicKey (out, signature, recoveryId, digest) {
      if ((recoveryId !== 0 && recoveryId !== 1) || out.length !== 65) return false
      let publicKey: Uint8Array
      try {
        publicKey = nobleSecp256k1.Signature.fromBytes(signature, 'compact')
          .addRecoveryBit(recoveryId)
          .recoverPublicKey(digest)
          .toBytes(false)
      } catch {
        return false
      }
      out.set(publicKey)
      return true
    }
  }
  selfTestSecp256k1Backend(backend)
  return backend
}

// Known answer: private key 1 (public key = the generator G) signing a fixed digest.
const SELF_TEST_DIGEST = Buffer.from('04567180066afd6be437911d6c6eeedea147ac33094f43417f9266110464162e', 'hex')
const SELF_TEST_SIGNATURE = Buffer.from('319a7aa82ca8ddf8c4d1219a73d18026f6e58b670ce9b0f339a3e8b5e83ebb3a493dcd5674e5b869a95b46a9200383e56fec46ef2ef25addcc33692c5d78ac9f', 'hex')
const SELF_TEST_RECOVERY_ID = 1
const SELF_TEST_PUBLIC_KEY = Buffer.from('0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8', 'hex')

/**
 * Known-answer test: the backend must recover G from a fixed signature by key 1 and
 * must not recover G once the digest is altered. Throws {@link Secp256k1BackendError}.
 */
export function selfTestSecp256k1Backend (backend: Secp256k1Backend): void {
  const out = Buffer.alloc(65)
  if (!backend.recoverPublicKey(out, SELF_TEST_SIGNATURE, SELF_TEST_RECOVERY_ID, SELF_TEST_DIGEST) || !out.equals(SELF_TEST_PUBLIC_KEY)) {
    throw new Secp256k1BackendError(`the ${backend.name} secp256k1 backend failed its known-answer test; reinstall its package (npm rebuild secp256k1)`)
  }
  const altered = Buffer.from(SELF_TEST_DIGEST)
  altered[31] ^= 1
  out.fill(0)
  if (backend.recoverPublicKey(out, SELF_TEST_SIGNATURE, SELF_TEST_RECOVERY_ID, altered) && out.equals(SELF_TEST_PUBLIC_KEY)) {
    throw new Secp256k1BackendError(`the ${backend.name} secp256k1 backend recovers the same key for a different digest; reinstall its package (npm rebuild secp256k1)`)
  }
}

/**
 * Picks the backend: native if `loadAddon` yields the real addon and it passes the
 * known-answer test, else noble with `fallbackReason` set (callers should log it).
 */
export function selectSecp256k1Backend (loadAddon: () => unknown = loadNativeSecp256k1Addon): Secp256k1Backend {
  try {
    return nativeSecp256k1Backend(loadAddon())
  } catch (err) {
    return nobleSecp256k1Backend(`native secp256k1 unavailable: ${err instanceof Error ? err.message : String(err)}`)
  }
}

let selected: Secp256k1Backend | undefined

/** The process-wide backend, chosen once by {@link selectSecp256k1Backend} on first use. */
export function secp256k1Backend (): Secp256k1Backend {
  selected ??= selectSecp256k1Backend()
  return selected
}

function isNativeAddon (addon: unknown): addon is NativeAddon {
  return typeof addon === 'object' && addon !== null && typeof (addon as { Secp256k1?: unknown }).Secp256k1 === 'function'
}
